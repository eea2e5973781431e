"""Sessions, forms, team, keys and accounts tell the truth (issue 19, the forms part)."""
from __future__ import annotations

import re
from urllib.parse import parse_qs, urlsplit

import pytest
from sqlalchemy import select

from hookstream_ui.models import Membership, User, db
from hookstream_ui.services import accounts
from tests.helpers import PASSWORD, csrf_token, login, make_user, org_of

HX = {"HX-Request": "true"}


@pytest.fixture
def signed_in(app, ctx):
    user = make_user("owner@example.com")
    client = app.test_client()
    token = login(client, "owner@example.com")
    return client, token, org_of(user)


def _make_collection(client, token, slug="orders"):
    r = client.post("/collections/new", data={"csrf_token": token, "name": "Orders", "slug": slug,
                                              "primary_key_path": "$.id"})
    assert r.status_code == 302, r.get_data(as_text=True)


def _htmx(client, path, page, method="get", **kwargs):
    return getattr(client, method)(path, headers={**HX, "HX-Current-URL": f"http://localhost{page}"}, **kwargs)


def _redirect_target(response):
    target = response.headers.get("HX-Redirect")
    assert target, (response.status_code, response.headers)
    parts = urlsplit(target)
    return parts.path, parse_qs(parts.query)


# 1. An htmx request whose session ended sends the whole page to sign-in.

@pytest.mark.parametrize("how", ["signed out elsewhere", "password changed", "user disabled"])
def test_htmx_request_after_the_session_ended_sends_the_page_to_sign_in(signed_in, how):
    client, token, _ = signed_in
    _make_collection(client, token)
    user = db.session.scalar(select(User).where(User.email == "owner@example.com"))
    if how == "signed out elsewhere":
        from hookstream_ui.models import UserSession

        for opened in db.session.scalars(select(UserSession).where(UserSession.user_id == user.id)):
            accounts.end_session(opened.id)
    elif how == "password changed":
        accounts.change_password(user, PASSWORD, "another-long-password")
    else:
        from hookstream_ui.services import instance_admin

        admin = make_user("root@example.com", admin=True)
        instance_admin.set_user_disabled(admin, user.id, True)

    r = _htmx(client, "/collections/orders/_live", "/collections/orders?q=abc")
    assert r.status_code == 401
    assert "Sign in" not in r.get_data(as_text=True)  # nothing to swap into the fragment
    path, query = _redirect_target(r)
    assert path == "/login" and query["next"] == ["/collections/orders?q=abc"]
    # A whole-page request still gets the ordinary redirect.
    page = client.get("/collections/orders")
    assert page.status_code == 302 and "/login?next=" in page.location


def test_htmx_sign_in_redirect_never_leaves_the_site(app, ctx):
    client = app.test_client()
    make_user("owner@example.com")
    for current in ("http://evil.example/collections", "http://localhost//evil.example/x",
                    "http://localhost/\\evil.example", "javascript:alert(1)"):
        r = client.get("/collections/orders/_live", headers={**HX, "HX-Current-URL": current})
        path, query = _redirect_target(r)
        assert path == "/login" and "next" not in query, current


def test_htmx_post_after_the_session_ended_sends_the_page_to_sign_in(signed_in):
    client, token, _ = signed_in
    client.post("/logout", data={"csrf_token": token})
    # The session cookie went with sign-out, and its CSRF token with it.
    r = _htmx(client, "/sources/test-form/webhook", "/sources/new/webhook", method="post",
              data={"name": "x"}, )
    path, query = _redirect_target(r)
    assert path == "/login" and query["next"] == ["/sources/new/webhook"]


def test_htmx_request_for_something_gone_reloads_the_page(signed_in):
    client, token, _ = signed_in
    _make_collection(client, token)
    r = _htmx(client, "/collections/nothing-here/_live", "/collections/nothing-here")
    assert r.status_code == 404 and r.get_data(as_text=True) == ""
    assert _redirect_target(r) == ("/collections/nothing-here", {})


def test_htmx_request_without_an_org_reloads_the_page(signed_in):
    client, token, org = signed_in
    _make_collection(client, token)
    db.session.execute(db.delete(Membership).where(Membership.org_id == org.id))
    db.session.commit()
    r = _htmx(client, "/collections/orders/_live", "/collections/orders")
    assert r.status_code == 403 and _redirect_target(r) == ("/collections/orders", {})
    page = client.get("/collections/orders")
    assert page.status_code == 403 and "not a member of any organization" in page.get_data(as_text=True)


def test_htmx_request_losing_its_role_reloads_the_page(app, ctx):
    owner = make_user("owner@example.com")
    make_user("member@example.com", org=org_of(owner), role="member")
    client = app.test_client()
    login(client, "member@example.com")
    r = _htmx(client, "/settings/api-keys", "/settings/api-keys")
    assert r.status_code == 403 and _redirect_target(r) == ("/settings/api-keys", {})
