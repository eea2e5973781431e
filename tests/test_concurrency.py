"""Checks that count and then change hold when the same change arrives several times at
once: the last owner, a single-use invitation, the first sign-up. Each test holds the
requests at the point between counting and writing (a barrier, released after a timeout
when only one can get there), which is where the races were."""

from __future__ import annotations

import contextlib
import threading
from concurrent.futures import ThreadPoolExecutor

import pytest
from sqlalchemy import func, select

from hookstream_ui.models import Membership, User, db
from hookstream_ui.services import accounts, team
from tests.helpers import PASSWORD, csrf_token, login, make_user, org_of

HOLD_SECONDS = 1.5


def held(monkeypatch, module, name: str, parties: int):
    """Wrap module.name so that each caller waits, after it ran, for the others to get there
    too (or for HOLD_SECONDS, when a lock keeps them out: then it goes on alone)."""
    barrier = threading.Barrier(parties, timeout=HOLD_SECONDS)
    original = getattr(module, name)

    def wrapper(*args, **kwargs):
        result = original(*args, **kwargs)
        with contextlib.suppress(threading.BrokenBarrierError):  # timed out: a lock kept the others out
            barrier.wait()
        return result

    monkeypatch.setattr(module, name, wrapper)


def at_once(app, calls):
    def run(call):
        with app.app_context():  # each its own session and connection
            return call()

    with ThreadPoolExecutor(len(calls)) as pool:
        return [f.result() for f in [pool.submit(run, call) for call in calls]]


def test_two_owners_demoting_each_other_at_once_leave_one_owner(app, ctx, monkeypatch):
    first = make_user("first@example.com")
    org = org_of(first)
    second = make_user("second@example.com", org=org, role="owner")
    sessions = {}
    for email in ("first@example.com", "second@example.com"):
        client = app.test_client()
        sessions[email] = (client, {"X-CSRFToken": login(client, email)})
    held(monkeypatch, team, "_owners", 2)

    def demote(actor, target_id):  # ids read here: the test's objects belong to its own session
        client, headers = sessions[actor]
        return lambda: (
            client.patch(f"/v1/members/{target_id}", json={"role": "admin"}, headers=headers).status_code
        )

    codes = at_once(app, [demote("first@example.com", second.id), demote("second@example.com", first.id)])
    db.session.expire_all()
    owners = db.session.scalar(
        select(func.count())
        .select_from(Membership)
        .where(Membership.org_id == org.id, Membership.role == "owner")
    )
    assert owners == 1 and sorted(codes) in ([200, 403], [200, 409]), codes


def test_an_invitation_accepted_four_times_at_once_is_used_once(app, ctx, monkeypatch):
    owner = make_user("owner@example.com")
    admin = app.test_client()
    headers = {"X-CSRFToken": login(admin, "owner@example.com")}
    url = admin.post(
        "/v1/invitations", json={"email": "new@example.com", "role": "member"}, headers=headers
    ).json["invitation"]["url"]
    path = url[url.index("/invitations") :]
    browsers = [app.test_client() for _ in range(4)]
    tokens = [csrf_token(b, path) for b in browsers]
    held(monkeypatch, accounts, "check_password_strength", 4)

    def accept(browser, token):
        return lambda: (
            browser.post(
                path, data={"password": PASSWORD, "password_confirm": PASSWORD, "csrf_token": token}
            ).status_code
        )

    codes = at_once(app, [accept(b, t) for b, t in zip(browsers, tokens, strict=True)])
    assert sorted(codes) == [302, 410, 410, 410], codes
    assert (
        db.session.scalar(select(func.count()).select_from(User).where(User.email == "new@example.com")) == 1
    )
    assert (
        db.session.scalar(
            select(func.count()).select_from(Membership).where(Membership.org_id == org_of(owner).id)
        )
        == 2
    )


def test_concurrent_first_sign_ups_make_one_instance_admin(app, ctx, monkeypatch):
    browsers = [app.test_client() for _ in range(4)]
    tokens = [csrf_token(b, "/signup") for b in browsers]
    held(monkeypatch, accounts, "create_user", 4)

    def sign_up(browser, token, n):
        return lambda: (
            browser.post(
                "/signup",
                data={
                    "email": f"first{n}@example.com",
                    "password": PASSWORD,
                    "password_confirm": PASSWORD,
                    "csrf_token": token,
                },
            ).status_code
        )

    codes = at_once(app, [sign_up(b, t, n) for n, (b, t) in enumerate(zip(browsers, tokens, strict=True))])
    db.session.expire_all()
    assert db.session.scalar(select(func.count()).select_from(User)) == 1
    assert db.session.scalar(select(func.count()).select_from(User).where(User.is_instance_admin)) == 1
    assert sorted(codes) == [302, 403, 403, 403], codes


@pytest.fixture(autouse=True)
def _no_leftover_locks(app):
    yield
    with app.app_context():
        db.session.remove()
