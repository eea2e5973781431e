"""API keys: created in a session, shown once, hashed, counted, revocable; API auth and CSRF."""

from __future__ import annotations

import pytest
from sqlalchemy import select

from hookstream_ui.models import ApiKey, User, db
from tests.helpers import login, make_key, make_user, org_of, production


def session_client(app, email="owner@example.com", role="owner"):
    client = app.test_client()
    if role == "owner":
        make_user(email)
    else:
        owner = make_user(f"owner-of-{email}")
        make_user(email, org=org_of(owner), role=role)
    token = login(client, email)
    return client, token


def test_create_list_revoke_in_a_session(app, ctx):
    client, token = session_client(app)
    r = client.post("/v1/auth/api-keys", json={"name": "CI"}, headers={"X-CSRFToken": token})
    assert r.status_code == 201
    created = r.json["api_key"]
    raw = created["key"]
    assert raw.startswith("hs_live_") and len(raw) > 40 and raw.startswith(created["prefix"])
    assert created["created_by_email"] == "owner@example.com"
    stored = db.session.get(ApiKey, created["id"])
    assert raw not in (stored.key_hash, stored.prefix) and len(stored.key_hash) == 64

    listed = client.get("/v1/auth/api-keys").json["api_keys"]
    assert [k["id"] for k in listed] == [created["id"]]
    assert "key" not in listed[0] and raw not in client.get("/v1/auth/api-keys").get_data(as_text=True)
    assert listed[0]["request_count"] == 0 and listed[0]["last_used_at"] is None

    api = app.test_client()
    for headers in ({"X-API-Key": raw}, {"Authorization": f"Bearer {raw}"}):
        assert api.get("/v1/collections", headers=headers).status_code == 200
    used = client.get("/v1/auth/api-keys").json["api_keys"][0]
    assert used["request_count"] == 2 and used["last_used_at"] is not None

    r = client.delete(f"/v1/auth/api-keys/{created['id']}", headers={"X-CSRFToken": token})
    assert r.status_code == 200 and r.json == {"id": created["id"], "deleted": True}
    r = api.get("/v1/collections", headers={"X-API-Key": raw})
    assert r.status_code == 401 and r.json["error"] == "This API key no longer works: revoked by its owner"
    # Still listed, as revoked.
    [revoked] = client.get("/v1/auth/api-keys").json["api_keys"]
    assert revoked["id"] == created["id"] and revoked["status"] == "revoked"
    assert revoked["revoked_reason"] == "revoked by its owner" and revoked["revoked_at"] is not None


def test_key_name_is_validated(app, ctx):
    client, token = session_client(app)
    for body, msg in [
        ({}, "is required"),
        ({"name": ""}, "is required"),
        ({"name": "   "}, "is required"),
        ({"name": 7}, "must be a string"),
        ({"name": "x" * 101}, "must be 1 to 100 characters"),
    ]:
        r = client.post("/v1/auth/api-keys", json=body, headers={"X-CSRFToken": token})
        assert r.status_code == 400 and r.json["errors"] == {"name": msg}
    assert db.session.scalar(select(ApiKey)) is None


def test_keys_cannot_manage_keys(app, client, ctx):
    raw = make_key(production(org_of(make_user("owner@example.com"))))
    for method, path in [
        ("get", "/v1/auth/api-keys"),
        ("post", "/v1/auth/api-keys"),
        ("delete", "/v1/auth/api-keys/key_x"),
    ]:
        r = getattr(client, method)(path, json={"name": "x"}, headers={"X-API-Key": raw})
        assert r.status_code == 403 and "signed-in session" in r.json["error"]


def test_session_calls_need_the_csrf_header_for_unsafe_methods(app, ctx):
    client, token = session_client(app)
    assert client.get("/v1/collections").status_code == 200  # safe methods need none
    body = {"name": "Users", "primary_key_path": "$.id"}
    for headers in ({}, {"X-CSRFToken": "forged"}):
        r = client.post("/v1/collections", json=body, headers=headers)
        assert r.status_code == 403 and "CSRF" in r.json["error"]
    assert client.get("/v1/collections").json["collections"] == []
    assert client.post("/v1/collections", json=body, headers={"X-CSRFToken": token}).status_code == 201


def test_missing_unknown_and_malformed_keys_are_json_401(client, ctx):
    for headers in (
        {},
        {"X-API-Key": "hs_live_nope"},
        {"X-API-Key": "something-else"},
        {"Authorization": "Bearer hs_live_nope"},
        {"Authorization": "Basic abc"},
    ):
        r = client.get("/v1/collections", headers=headers)
        assert r.status_code == 401 and r.is_json and r.json["code"] == "unauthorized", headers
        assert "Location" not in r.headers


def test_a_bad_key_is_refused_even_with_a_good_session(app, ctx):
    client, _ = session_client(app)
    r = client.get("/v1/collections", headers={"X-API-Key": "hs_live_wrong"})
    assert r.status_code == 401


def test_only_admins_manage_keys(app, ctx):
    member, token = session_client(app, "member@example.com", role="member")
    r = member.post("/v1/auth/api-keys", json={"name": "x"}, headers={"X-CSRFToken": token})
    assert r.status_code == 403 and "admin" in r.json["error"]
    assert member.get("/settings/api-keys").status_code == 403
    assert "API keys" not in member.get("/").get_data(as_text=True)


def test_viewer_reads_but_cannot_write(app, ctx):
    viewer, token = session_client(app, "viewer@example.com", role="viewer")
    assert viewer.get("/v1/collections").status_code == 200
    r = viewer.post(
        "/v1/collections", json={"name": "Users", "primary_key_path": "$.id"}, headers={"X-CSRFToken": token}
    )
    assert r.status_code == 403 and r.json["code"] == "forbidden"
    assert viewer.get("/collections/new").status_code == 403
    assert "New collection" not in viewer.get("/collections").get_data(as_text=True)


def test_api_keys_page_shows_the_key_once(app, ctx):
    client, token = session_client(app)
    r = client.post("/settings/api-keys", data={"name": "Deploy", "csrf_token": token})
    assert r.status_code == 302 and r.location.endswith(
        "/settings/api-keys"
    )  # reloading it makes no second key
    page = client.get(r.location).get_data(as_text=True)
    assert "shown only once" in page
    stored = db.session.scalar(select(ApiKey).where(ApiKey.name == "Deploy"))
    import re

    raw = re.search(r'id="new-key" class="mono">(hs_live_[^<]+)<', page).group(1)
    assert stored.prefix in raw
    again = client.get("/settings/api-keys").get_data(as_text=True)
    assert raw not in again and stored.prefix in again
    r = client.post("/settings/api-keys", data={"name": "", "csrf_token": token})
    assert r.status_code == 400 and 'id="e-name"' in r.get_data(as_text=True)
    r = client.post(f"/settings/api-keys/{stored.id}/revoke", data={"csrf_token": token})
    assert r.status_code == 302
    assert app.test_client().get("/v1/collections", headers={"X-API-Key": raw}).status_code == 401


def test_usage_is_counted_even_when_redis_is_down(app, monkeypatch, tmp_path, ctx):
    owner = make_user("owner@example.com")
    raw = make_key(production(org_of(owner)), "ops")
    monkeypatch.setitem(app.config, "REDIS_URL", f"unix://{tmp_path}/gone.sock")
    app.extensions.pop("hookstream_redis", None)
    try:
        api = app.test_client()
        assert api.get("/v1/collections", headers={"X-API-Key": raw}).status_code == 200
        assert api.get("/v1/collections", headers={"X-API-Key": raw}).status_code == 200
    finally:
        app.extensions.pop("hookstream_redis", None)
    db.session.expire_all()
    key = db.session.scalar(select(ApiKey).where(ApiKey.name == "ops"))
    assert key.request_count == 2 and key.last_used_at is not None


def test_usage_counts_from_concurrent_requests_are_exact(app, ctx):
    from concurrent.futures import ThreadPoolExecutor

    client, _ = session_client(app)
    owner_env = production(org_of(db.session.scalar(select(User).where(User.email == "owner@example.com"))))
    raw = make_key(owner_env, "busy")
    with ThreadPoolExecutor(8) as pool:
        codes = list(
            pool.map(
                lambda _: app.test_client().get("/v1/collections", headers={"X-API-Key": raw}).status_code,
                range(80),
            )
        )
    assert codes == [200] * 80
    busy = next(k for k in client.get("/v1/auth/api-keys").json["api_keys"] if k["name"] == "busy")
    assert busy["request_count"] == 80


# --- a key acts inside its environment, for its owner ------------------------------------


def _org_with_admin(app):
    """An owner's org with an admin who is signed in; a staging project beside production."""
    from tests.helpers import add_env

    owner = make_user("owner@example.com")
    org = org_of(owner)
    admin = make_user("admin@example.com", org=org, role="admin")
    client = app.test_client()
    token = login(client, "admin@example.com")
    return owner, admin, org, add_env(org, "staging"), client, {"X-CSRFToken": token}


def test_a_key_cannot_reach_across_its_org(app, ctx):
    """A staging key invited an admin, who took over production."""
    from hookstream_ui.models import Invitation, Membership

    owner, admin, org, staging, _, _ = _org_with_admin(app)
    raw = make_key(staging, "staging ci", owner=admin)
    api = app.test_client()
    h = {"X-API-Key": raw}
    member_id = owner.id
    refused = [
        api.get("/v1/members", headers=h),
        api.patch(f"/v1/members/{member_id}", json={"role": "viewer"}, headers=h),
        api.delete(f"/v1/members/{member_id}", headers=h),
        api.get("/v1/invitations", headers=h),
        api.post("/v1/invitations", json={"email": "attacker@example.com", "role": "admin"}, headers=h),
        api.post("/v1/environments", json={"name": "Mine"}, headers=h),
        api.patch(f"/v1/environments/{production(org).id}", json={"name": "Renamed"}, headers=h),
        api.get("/v1/audit-log", headers=h),
        api.get("/v1/auth/api-keys", headers=h),
    ]
    for answer in refused:
        assert answer.status_code == 403 and "signed-in session" in answer.json["error"], answer.json
    assert db.session.scalar(select(db.func.count()).select_from(Invitation)) == 0
    assert db.session.scalar(select(Membership.role).where(Membership.user_id == owner.id)) == "owner"
    envs = api.get("/v1/environments", headers=h).json["environments"]
    assert [(e["slug"], e["current"]) for e in envs] == [("staging", True)]


def test_a_viewer_key_only_reads(app, ctx):
    _owner, _admin, _org, _, client, session = _org_with_admin(app)
    r = client.post("/v1/auth/api-keys", json={"name": "dashboards", "role": "viewer"}, headers=session)
    assert r.status_code == 201 and r.json["api_key"]["role"] == "viewer"
    h = {"X-API-Key": r.json["api_key"]["key"]}
    api = app.test_client()
    assert api.get("/v1/collections", headers=h).status_code == 200
    made = api.post("/v1/collections", json={"name": "Nope", "primary_key_path": "$.id"}, headers=h)
    assert made.status_code == 403 and made.json["error"] == (
        "This needs the member role or higher; this API key is read only"
    )
    bad = client.post("/v1/auth/api-keys", json={"name": "x", "role": "admin"}, headers=session)
    assert bad.status_code == 400 and set(bad.json["errors"]) == {"role"}


def _works(app, raw) -> tuple[int, str]:
    answer = app.test_client().get("/v1/collections", headers={"X-API-Key": raw})
    return answer.status_code, answer.json.get("error", "")


@pytest.mark.parametrize(
    "change, reason",
    [
        ("remove", "its owner was removed from the organization"),
        ("leave", "its owner left the organization"),
        ("demote to viewer", "its owner was made a viewer"),
        ("disable", "its owner's account was disabled"),
    ],
)
def test_keys_end_with_their_owner_s_membership(app, ctx, change, reason):
    from tests.helpers import csrf_token

    owner, admin, org, staging, client, session = _org_with_admin(app)
    keys = [make_key(production(org), "prod ci", owner=admin), make_key(staging, "staging ci", owner=admin)]
    kept = make_key(production(org), "owner's", owner=owner)
    root = app.test_client()
    owner_session = app.test_client()
    login(owner_session, "owner@example.com")
    headers = {"X-CSRFToken": csrf_token(owner_session)}
    if change == "remove":
        assert owner_session.delete(f"/v1/members/{admin.id}", headers=headers).status_code == 200
    elif change == "leave":
        assert client.delete(f"/v1/members/{admin.id}", headers=session).status_code == 200
    elif change == "demote to viewer":
        r = owner_session.patch(f"/v1/members/{admin.id}", json={"role": "viewer"}, headers=headers)
        assert r.status_code == 200
    else:
        make_user("root@example.com", admin=True)
        login(root, "root@example.com")
        root.post(
            f"/admin/users/{admin.id}/disable", data={"csrf_token": csrf_token(root), "confirm": "disable"}
        )
    for raw in keys:
        assert _works(app, raw) == (401, f"This API key no longer works: {reason}")
    assert _works(app, kept)[0] == 200
    page = owner_session.get("/settings/api-keys").get_data(as_text=True)
    ended = page[page.index("Keys that no longer work") :]
    assert "prod ci" in ended and "admin@example.com" in ended and reason.replace("'", "&#39;") in ended


def test_a_demotion_the_key_s_role_allows_keeps_it(app, ctx):
    from tests.helpers import csrf_token

    _owner, admin, org, _, _, _ = _org_with_admin(app)
    member_key = make_key(production(org), "member key", owner=admin)
    owner_session = app.test_client()
    login(owner_session, "owner@example.com")
    r = owner_session.patch(
        f"/v1/members/{admin.id}", json={"role": "member"}, headers={"X-CSRFToken": csrf_token(owner_session)}
    )
    assert r.status_code == 200 and _works(app, member_key)[0] == 200


def test_an_owner_changed_around_the_services_ends_the_key_at_its_next_use(app, ctx):
    from hookstream_ui.models import Membership

    _owner, admin, org, _, _, _ = _org_with_admin(app)
    raw = make_key(production(org), "ci", owner=admin)
    db.session.execute(Membership.__table__.delete().where(Membership.__table__.c.user_id == admin.id))
    db.session.commit()
    assert _works(app, raw) == (
        401,
        "This API key no longer works: its owner is no longer a member of the organization",
    )
    db.session.expire_all()
    assert db.session.scalar(select(ApiKey.revoked_at).where(ApiKey.name == "ci")) is not None
