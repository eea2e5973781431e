"""Issue 19, the API part: every answer tells the truth (seeds, SPEC §5 and the audit log)."""
from __future__ import annotations

import copy

import pytest
from sqlalchemy import select

from hookstream_ui.models import SourceConnection, db
from tests.fixture_servers import STRIPE_KEY
from tests.helpers import add_env, make_key, make_user, org_of, production

MASK = "***********"


def stripe_sync(base: str, secret: str, streams=("customer",), name="Stripe sync") -> dict:
    return {"provider": "stripe", "stream_id": "stream-1", "name": name,
            "collection_ids": [f"stripe:{s}" for s in streams],
            "credential": {"properties": {"kind": "stripe_key", "secret": secret, "api_base": base,
                                          "name": "Stripe key"}, "metadata": {"team": "billing"}}}


@pytest.fixture
def owner(ctx):
    return make_user("owner@example.com")


@pytest.fixture
def key(owner):
    return make_key(production(org_of(owner)), name="deploy")


def _tested(client, key, sync_id) -> bool:
    r = client.post(f"/api/v1/source-connections/{sync_id}/test", json={}, headers={"X-API-Key": key})
    assert r.status_code == 200, r.json
    return r.json["success"]


# --- 1. credential_id reuses the credential --------------------------------------------------

def test_credential_id_shares_the_credential_and_rotation_reaches_every_sync(client, key, http_fixture):
    h = {"X-API-Key": key}
    first = client.post("/v1/syncs", json=stripe_sync(http_fixture.base, "sk_test_wrongKey"), headers=h).json
    body = {**stripe_sync(http_fixture.base, "unused", streams=("invoice",), name="Second"),
            "credential_id": first["credential_id"]}
    body.pop("credential")
    r = client.post("/v1/syncs", json=body, headers=h)
    assert r.status_code == 201, r.json
    second = r.json
    assert second["credential_id"] == first["credential_id"] == first["id"]
    assert second["credential"]["id"] == first["credential_id"]
    assert second["credential"]["properties"]["secret"] == MASK
    assert second["credential"]["metadata"] == {"team": "billing"}
    # One credential, stored once.
    assert db.session.get(SourceConnection, second["id"]).credentials_encrypted is None
    assert not _tested(client, key, first["id"]) and not _tested(client, key, second["id"])

    # Rotating it on the first sync reaches the second.
    r = client.patch(f"/v1/syncs/{first['id']}", headers=h, json={"credential": {"properties": {
        "kind": "stripe_key", "secret": STRIPE_KEY, "api_base": http_fixture.base}}})
    assert r.status_code == 200, r.json
    assert _tested(client, key, second["id"])
    # ... and rotating it through the second reaches the first.
    r = client.patch(f"/v1/syncs/{second['id']}", headers=h, json={"credential": {"properties": {
        "secret": "sk_test_wrongAgain", "api_base": http_fixture.base}}})
    assert r.status_code == 200 and r.json["credential_id"] == first["id"], r.json
    assert not _tested(client, key, first["id"])
    assert STRIPE_KEY not in r.get_data(as_text=True)


def test_a_shared_secret_still_goes_only_where_it_was_given(client, key, http_fixture):
    h = {"X-API-Key": key}
    first = client.post("/v1/syncs", json=stripe_sync(http_fixture.base, STRIPE_KEY), headers=h).json
    body = {**stripe_sync(http_fixture.base, "x", streams=("invoice",)), "credential_id": first["id"]}
    del body["credential"]
    second = client.post("/v1/syncs", json=body, headers=h).json
    r = client.patch(f"/v1/syncs/{second['id']}", headers=h, json={"credential": {"properties": {
        "secret": MASK, "api_base": "https://elsewhere.example.com"}}})
    assert r.status_code == 400 and "secret_key" in r.json["errors"], r.json
    assert _tested(client, key, first["id"]) and _tested(client, key, second["id"])


def test_deleting_the_sync_that_holds_a_shared_credential_keeps_it_for_the_others(client, key, http_fixture):
    h = {"X-API-Key": key}
    first = client.post("/v1/syncs", json=stripe_sync(http_fixture.base, STRIPE_KEY), headers=h).json
    ids = []
    for stream in ("invoice", "charge"):
        body = {**stripe_sync(http_fixture.base, "x", streams=(stream,)), "credential_id": first["id"]}
        del body["credential"]
        ids.append(client.post("/v1/syncs", json=body, headers=h).json["id"])
    assert client.delete(f"/v1/syncs/{first['id']}", headers=h).status_code == 200
    got = [client.get(f"/v1/syncs/{i}", headers=h).json for i in ids]
    assert got[0]["credential_id"] == got[1]["credential_id"] == ids[0]
    assert all(_tested(client, key, i) for i in ids)


def test_credential_id_of_another_project_or_provider_is_refused(client, owner, key, http_fixture):
    other_env_key = make_key(add_env(org_of(owner), "staging"))
    elsewhere = client.post("/v1/syncs", json=stripe_sync(http_fixture.base, STRIPE_KEY),
                            headers={"X-API-Key": other_env_key}).json
    body = {**stripe_sync(http_fixture.base, "x"), "credential_id": elsewhere["id"]}
    del body["credential"]
    r = client.post("/v1/syncs", json=body, headers={"X-API-Key": key})
    assert r.status_code == 404 and "credential_id" in r.json["errors"], r.json
    both = {**stripe_sync(http_fixture.base, STRIPE_KEY), "credential_id": elsewhere["id"]}
    r = client.post("/v1/syncs", json=both, headers={"X-API-Key": key})
    assert r.status_code == 400 and "credential_id" in r.json["errors"], r.json
    assert db.session.scalars(select(SourceConnection).where(SourceConnection.env_id == production(org_of(owner)).id)).all() == []


# --- 2. every list is paginated alike ------------------------------------------------------

@pytest.fixture
def admin_session(app, owner):
    from tests.helpers import login

    client = app.test_client()
    token = login(client, "owner@example.com")
    return client, {"X-CSRFToken": token}


def _all_pages(client, path, plural, headers=None):
    seen, cursor, pages = [], None, 0
    while True:
        r = client.get(path, query_string={"limit": 2, **({"cursor": cursor} if cursor else {})}, headers=headers)
        assert r.status_code == 200, r.json
        assert len(r.json[plural]) <= 2 and set(r.json) == {plural, "cursor", "has_more"}
        seen += r.json[plural]
        pages += 1
        if not r.json["has_more"]:
            assert r.json["cursor"] is None
            return seen, pages
        cursor = r.json["cursor"]


@pytest.mark.parametrize("path, plural, ident, count", [
    ("/v1/environments", "environments", "id", 5),  # production and four more
    ("/v1/members", "members", "user_id", 5),  # the owner and four more
    ("/v1/invitations", "invitations", "id", 4),
])
def test_team_lists_are_paginated_like_the_others(admin_session, owner, path, plural, ident, count):
    client, h = admin_session
    org = org_of(owner)
    for n in range(4):
        add_env(org, f"env-{n}")
        make_user(f"member{n}@example.com", org=org, role="member")
        assert client.post("/v1/invitations", json={"email": f"new{n}@example.com"}, headers=h).status_code == 201
    seen, pages = _all_pages(client, path, plural)
    assert pages == (count + 1) // 2 and len(seen) == count and len({item[ident] for item in seen}) == count
    r = client.get(path, query_string={"limit": 101})
    assert r.status_code == 400 and "limit" in r.json["errors"]
    r = client.get(path, query_string={"cursor": "nonsense"})
    assert r.status_code == 400 and "cursor" in r.json["errors"]


def test_api_keys_are_paginated_too(admin_session, owner):
    client, h = admin_session
    for n in range(3):
        assert client.post("/v1/auth/api-keys", json={"name": f"key {n}"}, headers=h).status_code == 201
    seen, pages = _all_pages(client, "/v1/auth/api-keys", "api_keys")
    assert pages == 2 and len({k["id"] for k in seen}) == 3


def test_a_key_pages_through_its_own_environment_only(client, owner, key):
    add_env(org_of(owner), "staging")
    seen, _ = _all_pages(client, "/v1/environments", "environments", headers={"X-API-Key": key})
    assert [e["slug"] for e in seen] == ["production"]


# --- 3. a bad readable_id is reported under readable_id --------------------------------------

@pytest.mark.parametrize("value, status", [("Not A Slug", 400), ("-x", 400), ("a" * 65, 400)])
def test_a_bad_readable_id_is_reported_under_readable_id(client, key, value, status):
    h = {"X-API-Key": key}
    r = client.post("/v1/collections", json={"name": "Finance", "readable_id": value, "primary_key_path": "$.id"},
                    headers=h)
    assert r.status_code == status and set(r.json["errors"]) == {"readable_id"}, r.json
    assert client.get("/v1/collections", headers=h).json["collections"] == []


def test_readable_id_conflicts_and_changes_name_readable_id(client, key):
    h = {"X-API-Key": key}
    made = client.post("/v1/collections", json={"name": "Finance", "readable_id": "finance", "primary_key_path": "$.id"},
                       headers=h)
    assert made.status_code == 201 and made.json["collection"]["readable_id"] == "finance"
    r = client.post("/v1/collections", json={"name": "Finance 2", "readable_id": "finance", "primary_key_path": "$.id"},
                    headers=h)
    assert r.status_code == 409 and set(r.json["errors"]) == {"readable_id"}, r.json
    other = client.post("/v1/collections", json={"name": "Other", "slug": "other", "primary_key_path": "$.id"}, headers=h)
    r = client.patch("/v1/collections/other", json={"readable_id": "finance"}, headers=h)
    assert r.status_code == 409 and set(r.json["errors"]) == {"readable_id"}, r.json
    r = client.patch("/v1/collections/other", json={"readable_id": "Bad Slug"}, headers=h)
    assert r.status_code == 400 and set(r.json["errors"]) == {"readable_id"}, r.json
    r = client.patch("/v1/collections/other", json={"readable_id": "renamed"}, headers=h)
    assert r.status_code == 200 and r.json["collection"]["slug"] == "renamed", r.json
    r = client.post("/v1/collections", json={"name": "Both", "slug": "one", "readable_id": "two",
                                             "primary_key_path": "$.id"}, headers=h)
    assert r.status_code == 400 and "readable_id" in r.json["errors"], r.json
    # The slug, given as slug, is still reported as slug.
    r = client.post("/v1/collections", json={"name": "Slugged", "slug": "Bad Slug", "primary_key_path": "$.id"},
                    headers=h)
    assert r.status_code == 400 and set(r.json["errors"]) == {"slug"}, r.json
    assert other.status_code == 201


# --- 4. what a key does is by its owner --------------------------------------------------------

def test_a_key_acts_for_its_owner_in_created_by_and_the_audit_log(app, client, owner, admin_session):
    from hookstream_ui.models import ApiKey

    member = make_user("member@example.com", org=org_of(owner), role="member")
    raw = make_key(production(org_of(owner)), name="ci deploy", owner=member)
    h = {"X-API-Key": raw}
    made = client.post("/v1/collections", json={"name": "By key", "slug": "by-key", "primary_key_path": "$.id"},
                       headers=h)
    assert made.status_code == 201, made.json
    assert made.json["collection"]["created_by_email"] == "member@example.com"
    assert made.json["collection"]["modified_by_email"] == "member@example.com"
    session, sh = admin_session
    changed = session.patch("/v1/collections/by-key", json={"name": "By owner"}, headers=sh).json["collection"]
    assert changed["created_by_email"] == "member@example.com" and changed["modified_by_email"] == "owner@example.com"
    changed = client.patch("/v1/collections/by-key", json={"name": "By key again"}, headers=h).json["collection"]
    assert changed["modified_by_email"] == "member@example.com"

    prefix = db.session.scalar(select(ApiKey.prefix).where(ApiKey.name == "ci deploy"))
    log = session.get("/v1/audit-log", query_string={"resource": "collection"}).json["entries"]
    by_key = [e for e in log if e["actor_id"] != owner.id]
    assert [e["action"] for e in by_key] == ["collection.update", "collection.create"]
    assert all(e["actor"] == f"API key ci deploy ({prefix}…) of member@example.com" for e in by_key)
    # The owner's email finds what their keys did.
    found = session.get("/v1/audit-log", query_string={"actor": "member@example.com"}).json["entries"]
    assert {e["id"] for e in by_key} <= {e["id"] for e in found}
    assert raw not in repr(log)


# --- 5. health is degraded from the first failure ----------------------------------------------

def test_health_is_degraded_from_the_first_failed_attempt(client, key, http_fixture, workers):
    from tests.fixture_servers import STRIPE
    from tests.sync_helpers import wait_for

    STRIPE.seed(2)
    STRIPE.raw_customers = b"<html>maintenance</html>"  # retried: the next attempt may work
    h = {"X-API-Key": key}
    sync = client.post("/v1/syncs", json=stripe_sync(http_fixture.base, STRIPE_KEY), headers=h).json
    assert sync["health"]["status"] == "healthy"
    workers(1)
    run_id = client.post(f"/api/v1/source-connections/{sync['id']}/run", json={}, headers=h).json["syncId"]
    run = wait_for(run_id, statuses=("pending",), timeout=30, attempted=True)
    assert run.attempt == 1
    health = client.get(f"/v1/syncs/{sync['id']}", headers=h).json["health"]
    assert health["status"] == "degraded", health
    assert health["last_error"] == f"Stripe did not answer JSON for {http_fixture.base}/v1/customers"
    listed = client.get("/v1/syncs", headers=h).json["syncs"][0]["health"]
    assert listed == health
    STRIPE.raw_customers = None
    run = wait_for(run_id, timeout=30)  # the retry, 5 s later, reads it
    assert run.status == "completed", run.error
    health = client.get(f"/v1/syncs/{sync['id']}", headers=h).json["health"]
    assert health["status"] == "healthy" and health["last_error"] is None and health["last_success_at"]


# --- 6. binding a source never silently unbinds another ----------------------------------------

def _webhook(client, key, name="Orders hook") -> str:
    r = client.post("/api/v1/source-connections", headers={"X-API-Key": key},
                    json={"sourceShortName": "webhook", "name": name, "credentials": {}, "config": {}})
    assert r.status_code == 201, r.json
    return r.json["sourceConnection"]["id"]


@pytest.fixture
def bound(client, key):
    """A collection fed by a webhook source."""
    sid = _webhook(client, key)
    r = client.post("/v1/collections", headers={"X-API-Key": key},
                    json={"name": "Orders", "slug": "orders", "source_id": sid, "primary_key_path": "$.id"})
    assert r.status_code == 201, r.json
    return sid, r.json["collection"]["id"]


def _still_bound(client, key, sid, collection_id):
    got = client.get(f"/v1/collections/{collection_id}", headers={"X-API-Key": key}).json["collection"]
    assert got["source_id"] == sid and got["status"] == "ACTIVE"


def test_a_sync_does_not_take_over_a_collection_fed_by_another_source(client, key, bound, http_fixture):
    sid, cid = bound
    h = {"X-API-Key": key}
    body = {**stripe_sync(http_fixture.base, STRIPE_KEY), "collection_ids": ["orders"]}
    r = client.post("/v1/syncs", json=body, headers=h)
    assert r.status_code == 409 and set(r.json["errors"]) == {"collection_ids"}, r.json
    assert "Orders hook" in r.json["errors"]["collection_ids"] and sid in r.json["errors"]["collection_ids"]
    assert client.get("/v1/syncs", headers=h).json["syncs"] == []  # nothing made
    _still_bound(client, key, sid, cid)
    # Nor through a change of an existing sync.
    sync = client.post("/v1/syncs", json=stripe_sync(http_fixture.base, STRIPE_KEY), headers=h).json
    r = client.patch(f"/v1/syncs/{sync['id']}", json={"collection_ids": ["stripe:customer", cid]}, headers=h)
    assert r.status_code == 409 and "collection_ids" in r.json["errors"], r.json
    assert client.get(f"/v1/syncs/{sync['id']}", headers=h).json["collection_ids"] == ["stripe:customer"]
    _still_bound(client, key, sid, cid)
    # Unbound first, it can be fed by the sync.
    assert client.patch(f"/v1/collections/{cid}", json={"source_id": None}, headers=h).status_code == 200
    r = client.patch(f"/v1/syncs/{sync['id']}", json={"collection_ids": ["stripe:customer", cid]}, headers=h)
    assert r.status_code == 200, r.json


def test_a_new_source_connection_does_not_take_over_a_bound_collection(client, key, bound):
    sid, cid = bound
    r = client.post("/api/v1/source-connections", headers={"X-API-Key": key},
                    json={"sourceShortName": "webhook", "name": "Thief", "credentials": {}, "config": {},
                          "collectionId": cid})
    assert r.status_code == 409 and r.json["success"] is False and "collectionId" in r.json["errors"], r.json
    assert [s["name"] for s in client.get("/api/v1/source-connections", headers={"X-API-Key": key})
            .json["sourceConnections"]] == ["Orders hook"]
    _still_bound(client, key, sid, cid)


def test_a_collection_is_not_moved_to_another_source_silently(client, key, bound):
    sid, cid = bound
    other = _webhook(client, key, "Other hook")
    h = {"X-API-Key": key}
    r = client.patch(f"/v1/collections/{cid}", json={"source_id": other, "name": "Renamed"}, headers=h)
    assert r.status_code == 409 and set(r.json["errors"]) == {"source_id"}, r.json
    assert "Orders hook" in r.json["errors"]["source_id"]
    _still_bound(client, key, sid, cid)
    assert client.get(f"/v1/collections/{cid}", headers=h).json["collection"]["name"] == "Orders"
    assert client.patch(f"/v1/collections/{cid}", json={"source_id": sid}, headers=h).status_code == 200  # the same


def test_the_dashboard_edit_form_says_which_source_holds_the_collection(app, owner, key, bound):
    from tests.helpers import login

    sid, cid = bound
    session = app.test_client()
    token = login(session, "owner@example.com")
    other = _webhook(app.test_client(), key, "Other hook")
    r = session.post("/collections/orders/edit", data={"csrf_token": token, "name": "Orders", "slug": "orders",
                                                      "source_id": other, "primary_key_path": "$.id"})
    page = r.get_data(as_text=True)
    assert r.status_code == 400  # as every dashboard form answers a refused change
    assert 'id="e-source_id"' in page and "Orders hook" in page
    _still_bound(app.test_client(), key, sid, cid)
