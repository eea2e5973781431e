"""Sessions, forms, team, keys and accounts tell the truth."""

from __future__ import annotations

import json
import re
from datetime import UTC
from html import unescape as html_unescape
from urllib.parse import parse_qs, urlsplit

import pytest
from markupsafe import escape
from sqlalchemy import select

from hookstream_ui.models import Membership, User, db
from hookstream_ui.services import accounts
from tests.helpers import PASSWORD, login, make_user, org_of

HX = {"HX-Request": "true"}


def _make_collection(client, token, slug="orders"):
    r = client.post(
        "/collections/new",
        data={"csrf_token": token, "name": "Orders", "slug": slug, "primary_key_path": "$.id"},
    )
    assert r.status_code == 302, r.get_data(as_text=True)


def _htmx(client, path, page, method="get", **kwargs):
    return getattr(client, method)(
        path, headers={**HX, "HX-Current-URL": f"http://localhost{page}"}, **kwargs
    )


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
    for current in (
        "http://localhost//evil.example/x",
        "http://localhost/\\evil.example",
        "javascript:alert(1)",
        "http://localhost/a\x7fb",
    ):
        r = client.get("/collections/orders/_live", headers={**HX, "HX-Current-URL": current})
        path, query = _redirect_target(r)
        assert path == "/login" and "next" not in query, current
    # Only the path is taken, whatever host the header names.
    r = client.get(
        "/collections/orders/_live", headers={**HX, "HX-Current-URL": "http://evil.example/collections"}
    )
    assert _redirect_target(r) == ("/login", {"next": ["/collections"]})


def test_htmx_post_after_the_session_ended_sends_the_page_to_sign_in(signed_in):
    client, token, _ = signed_in
    client.post("/logout", data={"csrf_token": token})
    # The session cookie went with sign-out, and its CSRF token with it.
    r = _htmx(
        client,
        "/sources/test-form/webhook",
        "/sources/new/webhook",
        method="post",
        data={"name": "x"},
    )
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


# 2. A refused value is shown beside its field, by label, as typed; nothing changes.


def _error_beside(html: str, field_id: str) -> str:
    """The error shown beside the control `field_id` (a row's input) or `f-<field_id>`,
    which is marked invalid and points at it."""
    match = re.search(rf'id="e-{re.escape(field_id)}">([^<]+)<', html)
    assert match, f"no error beside {field_id}"
    control = field_id if "-" in field_id else f"f-{field_id}"
    assert re.search(
        rf'id="{re.escape(control)}"[^>]*aria-invalid="true"[^>]*aria-describedby="e-{re.escape(field_id)}"',
        html,
    ), control
    return match.group(1)


@pytest.mark.parametrize("path", ["/settings/audit-log", "/admin/audit-log"])
def test_a_bad_audit_filter_is_shown_beside_its_field(app, ctx, path):
    make_user("root@example.com", admin=True)
    client = app.test_client()
    login(client, "root@example.com")
    r = client.get(path, query_string={"since": "yesterday-ish", "actor": "root", "until": "2026-12-01"})
    html = r.get_data(as_text=True)
    assert r.status_code == 400 and "Bad Request" not in html
    assert "ISO 8601" in _error_beside(html, "since")
    assert 'value="yesterday-ish"' in html and 'value="root"' in html and 'value="2026-12-01"' in html
    assert "<h1>Audit log</h1>" in html  # the page, with its navigation, not an error card
    ok = client.get(path, query_string={"since": "2026-01-01"})
    assert ok.status_code == 200 and 'id="e-since"' not in ok.get_data(as_text=True)


@pytest.fixture
def root(app, ctx):
    make_user("root@example.com", admin=True)
    client = app.test_client()
    return client, login(client, "root@example.com")


def test_admin_create_org_errors_are_beside_their_fields(root):
    client, token = root
    from hookstream_ui.models import Org

    before = db.session.scalar(select(db.func.count(Org.id)))
    r = client.post(
        "/admin/orgs", data={"csrf_token": token, "name": "Acme", "owner_email": "nobody@example.com"}
    )
    html = r.get_data(as_text=True)
    assert r.status_code == 400 and "no user with that email" in _error_beside(html, "owner_email")
    assert 'value="Acme"' in html and 'value="nobody@example.com"' in html
    assert "owner_email:" not in html
    assert db.session.scalar(select(db.func.count(Org.id))) == before


@pytest.mark.parametrize(
    "action,data,field",
    [
        ("rename", {"name": "x" * 121}, "name"),
        ("suspend", {"reason": "   "}, "reason"),
        ("delete", {"confirm": "not-the-slug"}, "confirm"),
    ],
)
def test_admin_org_row_errors_are_beside_that_rows_field(root, action, data, field):
    client, token = root
    from hookstream_ui.models import Org

    org = org_of(db.session.scalar(select(User).where(User.email == "root@example.com")))
    other = org_of(make_user("other@example.com"))
    r = client.post(f"/admin/orgs/{org.id}/{action}", data={"csrf_token": token, **data})
    html = r.get_data(as_text=True)
    assert r.status_code == 400
    message = _error_beside(html, f"{action}-{org.id}")
    assert f"{field}:" not in html and message.split()[0] in ("Name", "Reason", "Confirmation:")
    assert f'id="e-{action}-{other.id}"' not in html  # only the row that was sent
    typed = next(iter(data.values()))
    assert re.search(rf'id="{action}-{org.id}"[^>]*value="{re.escape(typed)}"', html)
    db.session.expire_all()
    org = db.session.get(Org, org.id)
    assert org is not None and org.suspended_at is None and len(org.name) < 121


def test_project_rename_error_is_beside_that_rows_field(signed_in):
    client, token, org = signed_in
    env = org.environments[0]
    r = client.post(f"/settings/projects/{env.id}/rename", data={"csrf_token": token, "name": ""})
    html = r.get_data(as_text=True)
    assert r.status_code == 400 and _error_beside(html, f"rename-{env.id}") == "Name is required"
    assert "name:" not in html
    db.session.expire_all()
    assert org.environments[0].name == "production"


def test_org_delete_confirmation_error_is_beside_the_field(signed_in):
    client, token, org = signed_in
    r = client.post("/settings/org/delete", data={"csrf_token": token, "confirm": "wrong"})
    html = r.get_data(as_text=True)
    assert r.status_code == 400 and "to confirm" in _error_beside(html, "confirm")
    assert 'value="wrong"' in html
    from hookstream_ui.models import Org

    assert db.session.get(Org, org.id) is not None


def test_test_connection_names_fields_by_label_and_marks_them(signed_in):
    client, token, _ = signed_in
    data = {
        "csrf_token": token,
        "name": "Shop",
        "credentials.base_url": "not a url",
        "config.path": "/orders",
    }
    tested = client.post("/sources/test-form/rest_api", data=data, headers=HX).get_data(as_text=True)
    connect = client.post("/sources/new/rest_api", data=data).get_data(as_text=True)
    assert "base_url:" not in tested and "Base URL" in tested
    errors = json.loads(html_unescape(re.search(r"data-field-errors='([^']*)'", tested).group(1)))
    # The same fields and messages as Connect shows beside them.
    assert errors and all(f'id="e-{name}">{escape(message)}<' in connect for name, message in errors.items())


# 3. Future times read as future times.


def test_future_times_say_how_long_until():
    from datetime import datetime, timedelta

    from hookstream_ui.templating import ago

    now = datetime(2026, 12, 1, 12, 0, tzinfo=UTC)

    def ahead(**delta):
        return ago(now + timedelta(**delta), now=now)

    assert ahead(days=7, seconds=-0.2) == "in 7 days"  # an invitation made a moment ago
    assert ahead(days=2) == "in 2 days"
    assert ahead(hours=36) == "in 36 hours"
    assert ahead(hours=5, minutes=1) == "in 5 hours"
    assert ahead(minutes=90) == "in 90 minutes"
    assert ahead(minutes=1) == "in 1 minute"
    assert ahead(seconds=40) == "in under a minute"
    assert ahead(seconds=3) == "just now"
    assert ago(now - timedelta(seconds=3), now=now) == "just now"
    assert ago(now - timedelta(days=3, hours=2), now=now) == "3d ago"
    assert ago(now - timedelta(seconds=42), now=now) == "42s ago"


def test_a_new_invitation_expires_in_7_days(signed_in):
    client, token, _ = signed_in
    html = client.post(
        "/settings/team",
        data={"csrf_token": token, "email": "new@example.com", "role": "member"},
        follow_redirects=True,
    ).get_data(as_text=True)
    assert re.search(r"expires <time[^>]*>in 7 days</time>", html)
    listed = client.get("/settings/team").get_data(as_text=True)
    row = re.search(r"<tr><td>new@example.com</td>.*?</tr>", listed, re.S).group(0)
    assert ">in 7 days</time>" in row and "just now" not in row


# 4. A suspended org is not switched to, and says why.


@pytest.fixture
def two_orgs(app, ctx):
    from hookstream_ui.services import accounts as accounts_svc

    user = make_user("both@example.com")
    home = org_of(user)
    home.name = "Home Org"
    other = accounts_svc.create_org("Frozen Org", owner=user)
    db.session.commit()
    client = app.test_client()
    token = login(client, "both@example.com")
    return client, token, home, other


def _suspend(org, reason="unpaid invoice"):
    from hookstream_ui.services import instance_admin

    instance_admin.suspend_org(org.id, reason)


def test_switching_to_a_suspended_org_says_why_and_stays(two_orgs):
    client, token, home, other = two_orgs
    _suspend(other)
    picker = client.get("/").get_data(as_text=True)
    assert "Frozen Org (suspended)" in picker
    r = client.post("/switch-org", data={"csrf_token": token, "org_id": other.id}, follow_redirects=True)
    html = r.get_data(as_text=True)
    assert "Switched" not in html
    assert "Frozen Org is suspended: unpaid invoice" in html
    assert re.search(rf'<option value="{home.id}" selected>Home Org', html)


def test_the_org_in_use_being_suspended_is_said_on_the_next_page(two_orgs):
    client, token, _home, other = two_orgs
    r = client.post("/switch-org", data={"csrf_token": token, "org_id": other.id}, follow_redirects=True)
    assert "Switched to Frozen Org" in r.get_data(as_text=True)
    _suspend(other, "security review")
    html = client.get("/").get_data(as_text=True)
    assert "Frozen Org is suspended: security review. You are now in Home Org." in html
    assert "suspended: security review" not in client.get("/").get_data(as_text=True)  # said once


# 5c. Names made only of invisible characters are refused everywhere, by one rule.

INVISIBLE_NAMES = [
    "\u200b\u200b\u200b\u200b\u200b",
    " \u200c\u200d\ufeff ",
    "\u3164\u3164\u3164\u3164",
    "\u2060\u180e\u2800\u2800",
]
VISIBLE = "must contain a visible character, not only spaces or invisible ones"


@pytest.mark.parametrize("name", INVISIBLE_NAMES)
def test_invisible_names_are_refused_by_the_api(signed_in, name):
    from hookstream_ui.models import ApiKey, Collection, Environment, SourceConnection

    client, token, _org = signed_in
    h = {"X-CSRFToken": token}
    refused = [
        client.post("/v1/collections", json={"name": name, "primary_key_path": "$.id"}, headers=h),
        client.post("/v1/environments", json={"name": name}, headers=h),
        client.post("/v1/auth/api-keys", json={"name": name}, headers=h),
        client.post(
            "/api/v1/source-connections", json={"sourceShortName": "webhook", "name": name}, headers=h
        ),
    ]
    for r in refused:
        assert r.status_code == 400 and r.json["errors"]["name"] == VISIBLE, (r.request.path, r.json)
    assert db.session.scalar(select(db.func.count(Collection.id))) == 0
    assert db.session.scalar(select(db.func.count(SourceConnection.id))) == 0
    assert db.session.scalar(select(db.func.count(ApiKey.id))) == 0
    assert db.session.scalar(select(db.func.count(Environment.id))) == 1


def test_invisible_names_are_refused_by_the_dashboard_beside_the_field(app, ctx):
    make_user("root@example.com", admin=True)
    client = app.test_client()
    token = login(client, "root@example.com")
    name = INVISIBLE_NAMES[1]
    for path, data in [
        ("/collections/new", {"name": name, "primary_key_path": "$.id"}),
        ("/settings/projects", {"name": name}),
        ("/settings/api-keys", {"name": name}),
        ("/sources/new/webhook", {"name": name}),
        ("/admin/orgs", {"name": name}),
    ]:
        r = client.post(path, data={"csrf_token": token, **data})
        assert r.status_code == 400, path
        assert _error_beside(r.get_data(as_text=True), "name") == VISIBLE, path


def test_visible_names_with_invisible_padding_are_trimmed(signed_in):
    from hookstream_ui.models import Collection

    client, token, _ = signed_in
    r = client.post(
        "/v1/collections",
        json={"name": "\u200b Orders \u200b", "slug": "orders", "primary_key_path": "$.id"},
        headers={"X-CSRFToken": token},
    )
    assert r.status_code == 201, r.json
    assert db.session.scalar(select(Collection.name)) == "Orders"
    r = client.post("/v1/environments", json={"name": "Caf\u0065\u0301"}, headers={"X-CSRFToken": token})
    assert r.status_code == 201 and "Caf\u0065\u0301" in str(r.json)  # its accent stays
    r = client.post("/v1/environments", json={"name": "tab\there"}, headers={"X-CSRFToken": token})
    assert r.status_code == 400 and "control characters" in r.json["errors"]["name"]


# 5a/b. Re-inviting says it withdraws the earlier link; roles are saved on purpose.


def test_reinviting_says_it_withdraws_the_earlier_link_first(signed_in):
    from hookstream_ui.models import Invitation

    client, token, _ = signed_in

    def invite(**extra):
        return client.post(
            "/settings/team",
            data={"csrf_token": token, "email": "New@Example.com", "role": "viewer", **extra},
            follow_redirects=True,
        )

    first = re.search(r'id="invite-url" class="mono">([^<]+)<', invite().get_data(as_text=True)).group(1)
    asked = invite()
    html = asked.get_data(as_text=True)
    assert asked.status_code == 200 and 'id="invite-url"' not in html
    assert re.search(
        r'id="invite-pending">new@example.com already has a pending invitation as viewer, which expires '
        r"<time[^>]*>in 7 days</time>\. A new invitation withdraws it",
        html,
    )
    assert 'value="New@Example.com"' in html  # what was typed stays
    pending = db.session.scalars(select(Invitation).where(Invitation.revoked_at.is_(None))).all()
    assert len(pending) == 1  # nothing withdrawn yet

    replace = re.search(r'name="replace" value="([^"]+)"', html).group(1)
    assert replace == pending[0].id
    done = invite(replace=replace).get_data(as_text=True)
    assert "The earlier invitation for new@example.com was withdrawn: its link no longer works." in done
    second = re.search(r'id="invite-url" class="mono">([^<]+)<', done).group(1)
    assert second != first
    client.post("/logout", data={"csrf_token": token})
    assert client.get(first.replace("http://localhost", "")).status_code == 410
    assert client.get(second.replace("http://localhost", "")).status_code == 200


@pytest.fixture
def team_of_two(signed_in):
    client, token, org = signed_in
    member = make_user("member@example.com", org=org, role="member")
    return client, token, org, member


def _role_of(user):
    db.session.expire_all()
    return db.session.scalar(select(Membership.role).where(Membership.user_id == user.id))


def test_role_selects_do_not_save_on_change(team_of_two):
    client, token, _, member = team_of_two
    html = client.get("/settings/team").get_data(as_text=True)
    form = re.search(rf"<form[^>]*/settings/team/{member.id}/role.*?</form>", html, re.S).group(0)
    assert "data-autosubmit" not in form and "Save role" in form
    r = client.post(f"/settings/team/{member.id}/role", data={"csrf_token": token, "role": "admin"})
    assert r.status_code == 302 and _role_of(member) == "admin"


def test_making_someone_owner_asks_first(team_of_two):
    client, token, _, member = team_of_two
    asked = client.post(f"/settings/team/{member.id}/role", data={"csrf_token": token, "role": "owner"})
    html = asked.get_data(as_text=True)
    assert asked.status_code == 200 and "Make member@example.com an owner?" in html
    assert _role_of(member) == "member"
    done = client.post(
        f"/settings/team/{member.id}/role", data={"csrf_token": token, "role": "owner", "confirm": "owner"}
    )
    assert done.status_code == 302 and _role_of(member) == "owner"


def test_a_refused_role_change_is_shown_beside_that_members_role(app, ctx):
    owner = make_user("owner@example.com")
    org = org_of(owner)
    make_user("admin@example.com", org=org, role="admin")
    other = make_user("other@example.com", org=org, role="member")
    client = app.test_client()
    token = login(client, "admin@example.com")
    r = client.post(f"/settings/team/{other.id}/role", data={"csrf_token": token, "role": "superuser"})
    html = r.get_data(as_text=True)
    assert r.status_code == 400 and re.search(rf'id="e-role-{other.id}">Role: must be one of', html)
    assert _role_of(other) == "member"


# 6. API keys: made once per click, with their owner and expiry; ended ones stay listed.


def _keys():
    from hookstream_ui.models import ApiKey

    db.session.expire_all()
    return db.session.scalars(select(ApiKey)).all()


def test_reloading_after_creating_a_key_makes_no_second_key(signed_in):
    client, token, _ = signed_in
    r = client.post("/settings/api-keys", data={"csrf_token": token, "name": "Deploy", "role": "member"})
    assert r.status_code == 302 and r.location.endswith("/settings/api-keys")
    assert "hs_live_" not in (r.headers.get("Set-Cookie") or "")
    page = client.get(r.location).get_data(as_text=True)
    raw = re.search(r'id="new-key" class="mono">(hs_live_[^<]+)<', page).group(1)
    assert "shown only once" in page
    assert raw not in client.get("/settings/api-keys").get_data(as_text=True)  # once
    assert len(_keys()) == 1
    assert app_client_status(client, raw) == 200


def app_client_status(client, raw):
    return client.application.test_client().get("/v1/collections", headers={"X-API-Key": raw}).status_code


def test_the_new_key_is_still_shown_once_when_redis_is_down(signed_in, redis_down):
    client, token, _ = signed_in
    r = client.post("/settings/api-keys", data={"csrf_token": token, "name": "Deploy", "role": "member"})
    assert r.status_code == 200 and re.search(r'id="new-key" class="mono">hs_live_', r.get_data(as_text=True))
    assert len(_keys()) == 1


def test_keys_show_their_owner_and_expiry_and_expire(signed_in):
    client, token, _ = signed_in
    r = client.post("/settings/api-keys", data={"csrf_token": token, "name": "Month", "expires_in": "30"})
    raw = re.search(
        r'id="new-key" class="mono">(hs_live_[^<]+)<', client.get(r.location).get_data(as_text=True)
    ).group(1)
    [key] = _keys()
    from datetime import timedelta

    from hookstream_ui.values.times import as_utc, utcnow

    assert abs(as_utc(key.expires_at) - (utcnow() + timedelta(days=30))) < timedelta(minutes=1)
    html = client.get("/settings/api-keys").get_data(as_text=True)
    row = re.search(r"<tr>\s*<td>Month</td>.*?</tr>", html, re.S).group(0)
    assert "owner@example.com" in row and ">in 30 days</time>" in row

    key.expires_at = utcnow() - timedelta(seconds=1)
    db.session.commit()
    r = client.application.test_client().get("/v1/collections", headers={"X-API-Key": raw})
    assert r.status_code == 401 and "expired" in r.json["error"]
    html = client.get("/settings/api-keys").get_data(as_text=True)
    assert 'id="keys-table"' not in html
    ended = re.search(r'<tr data-status="expired">.*?</tr>', html, re.S).group(0)
    assert "Month" in ended and "Expired" in ended and "owner@example.com" in ended


def test_a_bad_expiry_choice_is_shown_beside_its_field(signed_in):
    client, token, _ = signed_in
    r = client.post("/settings/api-keys", data={"csrf_token": token, "name": "Odd", "expires_in": "12"})
    assert r.status_code == 400 and "must be one of" in _error_beside(r.get_data(as_text=True), "expires_in")
    assert 'value="Odd"' in r.get_data(as_text=True) and _keys() == []


def test_the_api_sets_and_returns_expires_at(signed_in):
    client, token, _ = signed_in
    h = {"X-CSRFToken": token}
    r = client.post(
        "/v1/auth/api-keys", json={"name": "Week", "expires_at": "2099-01-31T00:00:00Z"}, headers=h
    )
    assert r.status_code == 400 and r.json["errors"] == {"expires_at": "must be within 10 years"}
    from datetime import timedelta

    from hookstream_ui.values.times import utcnow

    when = (utcnow() + timedelta(days=7)).replace(microsecond=0)
    r = client.post("/v1/auth/api-keys", json={"name": "Week", "expires_at": when.isoformat()}, headers=h)
    assert r.status_code == 201 and r.json["api_key"]["expires_at"].startswith(
        when.strftime("%Y-%m-%dT%H:%M:%S")
    )
    assert r.json["api_key"]["status"] == "active"
    for bad, message in [
        ("2001-01-01T00:00:00Z", "must be in the future"),
        ("next week", "must be an ISO 8601"),
        (7, "must be an ISO 8601"),
    ]:
        r = client.post("/v1/auth/api-keys", json={"name": "Bad", "expires_at": bad}, headers=h)
        assert r.status_code == 400 and r.json["errors"]["expires_at"].startswith(message), bad
    never = client.post("/v1/auth/api-keys", json={"name": "Forever"}, headers=h).json["api_key"]
    assert never["expires_at"] is None
    assert [k["name"] for k in client.get("/v1/auth/api-keys").json["api_keys"]] == ["Forever", "Week"]


# 7. Account basics: reset links, the owner renames the org, the new password twice.


def _reset_link(client, token, user_id):
    r = client.post(f"/admin/users/{user_id}/reset-link", data={"csrf_token": token})
    assert r.status_code == 302 and r.location.endswith("/admin/users")
    page = client.get("/admin/users").get_data(as_text=True)
    url = re.search(r'id="reset-url" class="mono">([^<]+)<', page).group(1)
    assert url not in client.get("/admin/users").get_data(as_text=True)  # shown once
    return url.replace("http://localhost", "")


def test_an_instance_admin_issues_a_one_time_reset_link(root, app):
    from hookstream_ui.models import AuditEntry, PasswordReset

    client, token = root
    user = make_user("locked@example.com")
    elsewhere = app.test_client()
    login(elsewhere, "locked@example.com")
    first = _reset_link(client, token, user.id)
    link = _reset_link(client, token, user.id)
    stored = db.session.scalars(select(PasswordReset)).all()
    secret = parse_qs(urlsplit(link).query)["token"][0]
    assert len(stored) == 2 and all(secret not in r.token_hash for r in stored)  # only hashes

    browser = app.test_client()
    assert "replaced by a newer one" in browser.get(first).get_data(as_text=True)
    page = browser.get(link)
    assert page.status_code == 200 and "locked@example.com" in page.get_data(as_text=True)
    form_token = re.search(r'name="csrf_token" value="([^"]+)"', page.get_data(as_text=True)).group(1)
    bad = browser.post(
        link,
        data={
            "csrf_token": form_token,
            "password": "a-new-password-1",
            "password_confirm": "a-new-password-2",
        },
    )
    assert bad.status_code == 400 and "does not match" in _error_beside(
        bad.get_data(as_text=True), "password_confirm"
    )
    done = browser.post(
        link,
        data={
            "csrf_token": form_token,
            "password": "a-new-password-1",
            "password_confirm": "a-new-password-1",
        },
    )
    assert done.status_code == 302
    assert browser.get("/").status_code == 200  # signed in with the new password
    assert elsewhere.get("/").status_code == 302  # the other session ended
    assert app.test_client().get(link).status_code == 410  # single use
    login(app.test_client(), "locked@example.com", "a-new-password-1")
    actions = set(db.session.scalars(select(AuditEntry.action)))
    assert {"user.password_reset_link", "user.password_reset"} <= actions


def test_reset_links_expire_and_are_for_instance_admins_only(root, app):
    from datetime import timedelta

    from hookstream_ui.models import PasswordReset
    from hookstream_ui.values.times import utcnow

    client, token = root
    user = make_user("late@example.com")
    link = _reset_link(client, token, user.id)
    db.session.execute(db.update(PasswordReset).values(expires_at=utcnow() - timedelta(seconds=1)))
    db.session.commit()
    assert "expired" in app.test_client().get(link).get_data(as_text=True)

    org_owner = app.test_client()
    owner_token = login(org_owner, "late@example.com")
    assert (
        org_owner.post(f"/admin/users/{user.id}/reset-link", data={"csrf_token": owner_token}).status_code
        == 403
    )


def test_the_owner_renames_the_org(team_of_two, app):
    client, token, org, member = team_of_two
    r = client.post("/settings/org/rename", data={"csrf_token": token, "name": "\u200b"})
    assert r.status_code == 400 and "visible character" in _error_beside(r.get_data(as_text=True), "name")
    r = client.post(
        "/settings/org/rename", data={"csrf_token": token, "name": "Renamed Co"}, follow_redirects=True
    )
    assert "The organization is now called Renamed Co." in r.get_data(as_text=True)
    db.session.expire_all()
    from hookstream_ui.models import Org

    assert db.session.get(Org, org.id).name == "Renamed Co"
    db.session.execute(db.update(Membership).where(Membership.user_id == member.id).values(role="admin"))
    db.session.commit()
    admin = app.test_client()
    admin_token = login(admin, "member@example.com")
    assert (
        admin.post("/settings/org/rename", data={"csrf_token": admin_token, "name": "Mine"}).status_code
        == 403
    )
    assert 'id="org-rename"' not in admin.get("/settings/team").get_data(as_text=True)


def test_changing_the_password_asks_for_it_twice(signed_in):
    client, token, _ = signed_in
    page = client.get("/settings/account").get_data(as_text=True)
    assert 'id="f-new_password_confirm"' in page and 'id="f-current_password"' in page
    assert "<title>Account · hookstream</title>" in page
    r = client.post(
        "/settings/account",
        data={
            "csrf_token": token,
            "current_password": PASSWORD,
            "new_password": "brand-new-password",
            "new_password_confirm": "brand-new-passwrod",
        },
    )
    assert r.status_code == 400 and "does not match" in _error_beside(
        r.get_data(as_text=True), "new_password_confirm"
    )
    login(client.application.test_client(), "owner@example.com")  # unchanged


def test_reloading_after_inviting_invites_no_one_again(signed_in):
    from hookstream_ui.models import Invitation

    client, token, _ = signed_in
    r = client.post(
        "/settings/team", data={"csrf_token": token, "email": "new@example.com", "role": "member"}
    )
    assert r.status_code == 302 and r.location.endswith("/settings/team")
    page = client.get(r.location).get_data(as_text=True)
    url = re.search(r'id="invite-url" class="mono">([^<]+)<', page).group(1)
    assert url not in client.get("/settings/team").get_data(as_text=True)  # shown once
    assert len(db.session.scalars(select(Invitation)).all()) == 1


def test_a_wrong_collection_delete_confirmation_keeps_what_was_typed(signed_in):
    client, token, _ = signed_in
    _make_collection(client, token)
    r = client.post("/collections/orders/delete", data={"csrf_token": token, "confirm_slug": "order"})
    html = r.get_data(as_text=True)
    assert r.status_code == 400 and "to confirm" in _error_beside(html, "confirm_slug")
    assert re.search(r'id="f-confirm_slug"[^>]*value="order"', html)


def test_a_history_restore_gets_the_ordinary_sign_in_redirect(app, ctx):
    make_user("owner@example.com")
    r = app.test_client().get("/collections", headers={**HX, "HX-History-Restore-Request": "true"})
    assert r.status_code == 302 and "/login?next=" in r.location and "HX-Redirect" not in r.headers


def test_being_removed_from_the_org_in_use_is_said_on_the_next_page(two_orgs):
    client, token, _home, other = two_orgs
    client.post("/switch-org", data={"csrf_token": token, "org_id": other.id})
    db.session.execute(db.delete(Membership).where(Membership.org_id == other.id))
    db.session.commit()
    html = client.get("/").get_data(as_text=True)
    assert "You are no longer a member of Frozen Org. You are now in Home Org." in html


def test_sign_in_says_the_session_ended(signed_in):
    client, _token, _ = signed_in
    user = db.session.scalar(select(User).where(User.email == "owner@example.com"))
    accounts.change_password(user, PASSWORD, "another-long-password")
    r = _htmx(client, "/", "/settings/account")
    assert r.headers["HX-Redirect"].startswith("/login")
    page = client.get(r.headers["HX-Redirect"]).get_data(as_text=True)
    assert "Your session ended" in page
    assert "Your session ended" not in client.get("/login").get_data(as_text=True)  # said once
    fresh = client.application.test_client().get("/collections", follow_redirects=True)
    assert "Your session ended" not in fresh.get_data(as_text=True)  # never signed in: nothing ended


def test_the_cli_makes_keys_that_expire(app, ctx):
    from hookstream_ui.models import ApiKey

    make_user("ops@example.com")
    runner = app.test_cli_runner()
    r = runner.invoke(
        args=["create-api-key", "ops@example.com", "--name", "temp", "--expires-at", "2001-01-01T00:00:00Z"]
    )
    assert r.exit_code != 0 and "expires_at: must be in the future" in r.output
    r = runner.invoke(
        args=["create-api-key", "ops@example.com", "--name", "temp", "--expires-at", "2030-01-01T00:00:00Z"]
    )
    assert r.exit_code == 0, r.output
    assert db.session.scalar(select(ApiKey.expires_at).where(ApiKey.name == "temp")).year == 2030


def test_a_reset_link_stops_working_when_the_account_is_disabled(root, app):
    from hookstream_ui.services import instance_admin

    client, token = root
    user = make_user("gone@example.com")
    link = _reset_link(client, token, user.id)
    admin = db.session.scalar(select(User).where(User.email == "root@example.com"))
    instance_admin.set_user_disabled(admin, user.id, True)
    r = app.test_client().get(link)
    assert r.status_code == 410 and "disabled" in r.get_data(as_text=True)
