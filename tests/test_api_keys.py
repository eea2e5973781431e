"""API keys: created in a session, shown once, hashed, counted, revocable; API auth and CSRF."""
from __future__ import annotations

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
    assert r.status_code == 401 and r.json["error"] == "Invalid or revoked API key"
    assert client.get("/v1/auth/api-keys").json["api_keys"] == []


def test_key_name_is_validated(app, ctx):
    client, token = session_client(app)
    for body, msg in [({}, "is required"), ({"name": ""}, "must be 1 to 100 characters"),
                      ({"name": 7}, "must be a string"), ({"name": "x" * 101}, "must be 1 to 100 characters")]:
        r = client.post("/v1/auth/api-keys", json=body, headers={"X-CSRFToken": token})
        assert r.status_code == 400 and r.json["errors"] == {"name": msg}
    assert db.session.scalar(select(ApiKey)) is None


def test_keys_cannot_manage_keys(app, client, ctx):
    raw = make_key(production(org_of(make_user("owner@example.com"))))
    for method, path in [("get", "/v1/auth/api-keys"), ("post", "/v1/auth/api-keys"),
                         ("delete", "/v1/auth/api-keys/key_x")]:
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
    for headers in ({}, {"X-API-Key": "hs_live_nope"}, {"X-API-Key": "something-else"},
                    {"Authorization": "Bearer hs_live_nope"}, {"Authorization": "Basic abc"}):
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
    r = viewer.post("/v1/collections", json={"name": "Users", "primary_key_path": "$.id"},
                    headers={"X-CSRFToken": token})
    assert r.status_code == 403 and r.json["code"] == "forbidden"
    assert viewer.get("/collections/new").status_code == 403
    assert "New collection" not in viewer.get("/collections").get_data(as_text=True)


def test_api_keys_page_shows_the_key_once(app, ctx):
    client, token = session_client(app)
    r = client.post("/settings/api-keys", data={"name": "Deploy", "csrf_token": token})
    page = r.get_data(as_text=True)
    assert r.status_code == 200 and "shown only once" in page
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
        codes = list(pool.map(lambda _: app.test_client().get("/v1/collections", headers={"X-API-Key": raw}).status_code,
                              range(80)))
    assert codes == [200] * 80
    busy = next(k for k in client.get("/v1/auth/api-keys").json["api_keys"] if k["name"] == "busy")
    assert busy["request_count"] == 80
