"""Every API answer tells the truth: what the API contract and its document state, and
what the audit log records."""

from __future__ import annotations

import json
import re

import pytest
from sqlalchemy import select

from hookstream_ui.models import SourceConnection, db
from hookstream_ui.values.schedule import parse_frequency
from tests.fixture_servers import STRIPE_KEY
from tests.helpers import add_env, make_key, make_user, org_of, production

MASK = "***********"


def stripe_sync(base: str, secret: str, streams=("customer",), name="Stripe sync") -> dict:
    return {
        "provider": "stripe",
        "stream_id": "stream-1",
        "name": name,
        "collection_ids": [f"stripe:{s}" for s in streams],
        "credential": {
            "properties": {"kind": "stripe_key", "secret": secret, "api_base": base, "name": "Stripe key"},
            "metadata": {"team": "billing"},
        },
    }


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
    body = {
        **stripe_sync(http_fixture.base, "unused", streams=("invoice",), name="Second"),
        "credential_id": first["credential_id"],
    }
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
    r = client.patch(
        f"/v1/syncs/{first['id']}",
        headers=h,
        json={
            "credential": {
                "properties": {"kind": "stripe_key", "secret": STRIPE_KEY, "api_base": http_fixture.base}
            }
        },
    )
    assert r.status_code == 200, r.json
    assert _tested(client, key, second["id"])
    # ... and rotating it through the second reaches the first.
    r = client.patch(
        f"/v1/syncs/{second['id']}",
        headers=h,
        json={"credential": {"properties": {"secret": "sk_test_wrongAgain", "api_base": http_fixture.base}}},
    )
    assert r.status_code == 200 and r.json["credential_id"] == first["id"], r.json
    assert not _tested(client, key, first["id"])
    assert STRIPE_KEY not in r.get_data(as_text=True)


def test_a_shared_secret_still_goes_only_where_it_was_given(client, key, http_fixture):
    h = {"X-API-Key": key}
    first = client.post("/v1/syncs", json=stripe_sync(http_fixture.base, STRIPE_KEY), headers=h).json
    body = {**stripe_sync(http_fixture.base, "x", streams=("invoice",)), "credential_id": first["id"]}
    del body["credential"]
    second = client.post("/v1/syncs", json=body, headers=h).json
    r = client.patch(
        f"/v1/syncs/{second['id']}",
        headers=h,
        json={"credential": {"properties": {"secret": MASK, "api_base": "https://elsewhere.example.com"}}},
    )
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
    elsewhere = client.post(
        "/v1/syncs", json=stripe_sync(http_fixture.base, STRIPE_KEY), headers={"X-API-Key": other_env_key}
    ).json
    body = {**stripe_sync(http_fixture.base, "x"), "credential_id": elsewhere["id"]}
    del body["credential"]
    r = client.post("/v1/syncs", json=body, headers={"X-API-Key": key})
    assert r.status_code == 404 and "credential_id" in r.json["errors"], r.json
    both = {**stripe_sync(http_fixture.base, STRIPE_KEY), "credential_id": elsewhere["id"]}
    r = client.post("/v1/syncs", json=both, headers={"X-API-Key": key})
    assert r.status_code == 400 and "credential_id" in r.json["errors"], r.json
    assert (
        db.session.scalars(
            select(SourceConnection).where(SourceConnection.env_id == production(org_of(owner)).id)
        ).all()
        == []
    )


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
        r = client.get(
            path, query_string={"limit": 2, **({"cursor": cursor} if cursor else {})}, headers=headers
        )
        assert r.status_code == 200, r.json
        assert len(r.json[plural]) <= 2 and set(r.json) == {plural, "cursor", "has_more"}
        seen += r.json[plural]
        pages += 1
        if not r.json["has_more"]:
            assert r.json["cursor"] is None
            return seen, pages
        cursor = r.json["cursor"]


@pytest.mark.parametrize(
    "path, plural, ident, count",
    [
        ("/v1/environments", "environments", "id", 5),  # production and four more
        ("/v1/members", "members", "user_id", 5),  # the owner and four more
        ("/v1/invitations", "invitations", "id", 4),
    ],
)
def test_team_lists_are_paginated_like_the_others(admin_session, owner, path, plural, ident, count):
    client, h = admin_session
    org = org_of(owner)
    for n in range(4):
        add_env(org, f"env-{n}")
        make_user(f"member{n}@example.com", org=org, role="member")
        assert (
            client.post("/v1/invitations", json={"email": f"new{n}@example.com"}, headers=h).status_code
            == 201
        )
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
    r = client.post(
        "/v1/collections",
        json={"name": "Finance", "readable_id": value, "primary_key_path": "$.id"},
        headers=h,
    )
    assert r.status_code == status and set(r.json["errors"]) == {"readable_id"}, r.json
    assert client.get("/v1/collections", headers=h).json["collections"] == []


def test_readable_id_conflicts_and_changes_name_readable_id(client, key):
    h = {"X-API-Key": key}
    made = client.post(
        "/v1/collections",
        json={"name": "Finance", "readable_id": "finance", "primary_key_path": "$.id"},
        headers=h,
    )
    assert made.status_code == 201 and made.json["collection"]["readable_id"] == "finance"
    r = client.post(
        "/v1/collections",
        json={"name": "Finance 2", "readable_id": "finance", "primary_key_path": "$.id"},
        headers=h,
    )
    assert r.status_code == 409 and set(r.json["errors"]) == {"readable_id"}, r.json
    other = client.post(
        "/v1/collections", json={"name": "Other", "slug": "other", "primary_key_path": "$.id"}, headers=h
    )
    r = client.patch("/v1/collections/other", json={"readable_id": "finance"}, headers=h)
    assert r.status_code == 409 and set(r.json["errors"]) == {"readable_id"}, r.json
    r = client.patch("/v1/collections/other", json={"readable_id": "Bad Slug"}, headers=h)
    assert r.status_code == 400 and set(r.json["errors"]) == {"readable_id"}, r.json
    r = client.patch("/v1/collections/other", json={"readable_id": "renamed"}, headers=h)
    assert r.status_code == 200 and r.json["collection"]["slug"] == "renamed", r.json
    r = client.post(
        "/v1/collections",
        json={"name": "Both", "slug": "one", "readable_id": "two", "primary_key_path": "$.id"},
        headers=h,
    )
    assert r.status_code == 400 and "readable_id" in r.json["errors"], r.json
    # The slug, given as slug, is still reported as slug.
    r = client.post(
        "/v1/collections", json={"name": "Slugged", "slug": "Bad Slug", "primary_key_path": "$.id"}, headers=h
    )
    assert r.status_code == 400 and set(r.json["errors"]) == {"slug"}, r.json
    assert other.status_code == 201


# --- 4. what a key does is by its owner --------------------------------------------------------


def test_a_key_acts_for_its_owner_in_created_by_and_the_audit_log(app, client, owner, admin_session):
    from hookstream_ui.models import ApiKey

    member = make_user("member@example.com", org=org_of(owner), role="member")
    raw = make_key(production(org_of(owner)), name="ci deploy", owner=member)
    h = {"X-API-Key": raw}
    made = client.post(
        "/v1/collections", json={"name": "By key", "slug": "by-key", "primary_key_path": "$.id"}, headers=h
    )
    assert made.status_code == 201, made.json
    assert made.json["collection"]["created_by_email"] == "member@example.com"
    assert made.json["collection"]["modified_by_email"] == "member@example.com"
    session, sh = admin_session
    changed = session.patch("/v1/collections/by-key", json={"name": "By owner"}, headers=sh).json[
        "collection"
    ]
    assert (
        changed["created_by_email"] == "member@example.com"
        and changed["modified_by_email"] == "owner@example.com"
    )
    changed = client.patch("/v1/collections/by-key", json={"name": "By key again"}, headers=h).json[
        "collection"
    ]
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
    """A server having a bad minute (503) is retried with backoff; health tells at once."""
    from tests.sync_helpers import wait_for

    h = {"X-API-Key": key}
    sid = client.post(
        "/api/v1/source-connections",
        headers=h,
        json={
            "sourceShortName": "rest_api",
            "name": "Flaky API",
            "credentials": {"base_url": http_fixture.base},
            "config": {"path": "/unavailable", "records_path": "$.data"},
        },
    ).json["sourceConnection"]["id"]
    client.post(
        "/v1/collections", headers=h, json={"name": "Items", "source_id": sid, "primary_key_path": "$.id"}
    )
    assert client.get(f"/v1/syncs/{sid}", headers=h).json["health"]["status"] == "healthy"
    workers(1)
    run_id = client.post(f"/api/v1/source-connections/{sid}/run", json={}, headers=h).json["syncId"]
    run = wait_for(run_id, statuses=("pending",), timeout=30, attempted=True)
    assert (run.status, run.attempt) == ("pending", 1)  # waiting for its retry
    health = client.get(f"/v1/syncs/{sid}", headers=h).json["health"]
    assert health["status"] == "degraded", health
    assert health["last_error"] == f"The API answered HTTP 503 for {http_fixture.base}/unavailable"
    assert client.get("/v1/syncs", headers=h).json["syncs"][0]["health"] == health
    assert (
        db.session.get(SourceConnection, sid).consecutive_failures == 0
    )  # runs, not attempts, count to error


def test_a_completed_run_after_a_failed_attempt_is_healthy_again(ctx, owner):
    """The other half, on the service that decides it: a success clears what an attempt said."""
    from hookstream_ui.models import SyncRun
    from hookstream_ui.services.runs import record_failed_attempt, record_outcome
    from tests.helpers import make_source

    source = make_source(production(org_of(owner)), "Pull", "rest_api")
    record_failed_attempt(source, "The API answered HTTP 503")
    assert (source.health_status, source.last_error) == ("degraded", "The API answered HTTP 503")
    source.health_status = "error"
    record_failed_attempt(source, "again")
    assert source.health_status == "error"  # an attempt never makes it look better
    record_outcome(source, SyncRun(status="completed", mode="incremental"))
    assert (source.health_status, source.last_error) == ("healthy", None)


# --- 6. binding a source never silently unbinds another ----------------------------------------


def _webhook(client, key, name="Orders hook") -> str:
    r = client.post(
        "/api/v1/source-connections",
        headers={"X-API-Key": key},
        json={"sourceShortName": "webhook", "name": name, "credentials": {}, "config": {}},
    )
    assert r.status_code == 201, r.json
    return r.json["sourceConnection"]["id"]


@pytest.fixture
def bound(client, key):
    """A collection fed by a webhook source."""
    sid = _webhook(client, key)
    r = client.post(
        "/v1/collections",
        headers={"X-API-Key": key},
        json={"name": "Orders", "slug": "orders", "source_id": sid, "primary_key_path": "$.id"},
    )
    assert r.status_code == 201, r.json
    return sid, r.json["collection"]["id"]


def _still_bound(client, key, sid, collection_id):
    got = client.get(f"/v1/collections/{collection_id}", headers={"X-API-Key": key}).json["collection"]
    assert got["source_id"] == sid and got["status"] == "ACTIVE"


def _sources_of(client, key, collection_id) -> list[str]:
    got = client.get(f"/v1/collections/{collection_id}", headers={"X-API-Key": key}).json["collection"]
    return [s["source_id"] for s in got["sources"]]


def test_a_sync_adds_to_a_collection_fed_by_another_source(client, key, bound, http_fixture):
    """collection_ids add the sync to a collection other sources feed, never take it from them."""
    sid, cid = bound
    h = {"X-API-Key": key}
    body = {**stripe_sync(http_fixture.base, STRIPE_KEY), "collection_ids": ["orders"]}
    r = client.post("/v1/syncs", json=body, headers=h)
    assert r.status_code == 201, r.json
    _still_bound(client, key, sid, cid)  # the first source is still the first
    assert _sources_of(client, key, cid) == [sid, r.json["id"]]
    # Nor does a change of an existing sync take it; leaving it out unbinds the sync alone.
    sync = client.post("/v1/syncs", json=stripe_sync(http_fixture.base, STRIPE_KEY), headers=h).json
    r = client.patch(f"/v1/syncs/{sync['id']}", json={"collection_ids": ["stripe:customer", cid]}, headers=h)
    assert r.status_code == 200, r.json
    assert _sources_of(client, key, cid)[0] == sid and sync["id"] in _sources_of(client, key, cid)
    r = client.patch(f"/v1/syncs/{sync['id']}", json={"collection_ids": ["stripe:customer"]}, headers=h)
    assert r.status_code == 200 and sync["id"] not in _sources_of(client, key, cid)
    _still_bound(client, key, sid, cid)


def test_a_new_source_connection_is_added_beside_the_bound_one(client, key, bound):
    sid, cid = bound
    r = client.post(
        "/api/v1/source-connections",
        headers={"X-API-Key": key},
        json={
            "sourceShortName": "webhook",
            "name": "Second",
            "credentials": {},
            "config": {},
            "collectionId": cid,
        },
    )
    assert r.status_code == 201 and r.json["success"] is True, r.json
    assert _sources_of(client, key, cid) == [sid, r.json["sourceConnection"]["id"]]
    _still_bound(client, key, sid, cid)
    listed = client.get(f"/api/v1/source-connections?collectionId={cid}", headers={"X-API-Key": key}).json
    assert {s["name"] for s in listed["sourceConnections"]} == {"Orders hook", "Second"}


def test_a_collection_gains_a_source_and_loses_only_the_one_removed(client, key, bound):
    sid, cid = bound
    other = _webhook(client, key, "Other hook")
    h = {"X-API-Key": key}
    r = client.patch(f"/v1/collections/{cid}", json={"source_id": other, "name": "Renamed"}, headers=h)
    assert r.status_code == 200, r.json
    assert r.json["collection"]["source_id"] == sid and _sources_of(client, key, cid) == [sid, other]
    # Bound again: nothing changes; a second add says it is there already.
    assert client.patch(f"/v1/collections/{cid}", json={"source_id": sid}, headers=h).status_code == 200
    r = client.post(f"/v1/collections/{cid}/sources", json={"source_id": other}, headers=h)
    assert r.status_code == 409 and set(r.json["errors"]) == {"source_id"}, r.json
    # Removing the first makes the other the first.
    assert client.delete(f"/v1/collections/{cid}/sources/{sid}", headers=h).status_code == 200
    got = client.get(f"/v1/collections/{cid}", headers=h).json["collection"]
    assert got["source_id"] == other and [s["source_id"] for s in got["sources"]] == [other]
    assert client.delete(f"/v1/collections/{cid}/sources/{sid}", headers=h).status_code == 404
    assert client.delete(f"/v1/collections/{cid}/sources/{other}", headers=h).status_code == 200
    got = client.get(f"/v1/collections/{cid}", headers=h).json["collection"]
    assert got["source_id"] is None and got["sources"] == [] and got["status"] == "NEEDS_SOURCE"


def test_a_binding_maps_its_records_and_refuses_bad_paths(client, key, bound):
    sid, cid = bound
    other = _webhook(client, key, "Stripe events")
    h = {"X-API-Key": key}
    bad = client.post(
        f"/v1/collections/{cid}/sources", json={"source_id": other, "record_path": "$..["}, headers=h
    )
    assert bad.status_code == 400 and set(bad.json["errors"]) == {"record_path"}, bad.json
    assert _sources_of(client, key, cid) == [sid]  # nothing changed
    r = client.post(
        f"/v1/collections/{cid}/sources",
        json={"source_id": other, "record_path": "data.object", "timestamp_path": "$.created"},
        headers=h,
    )
    assert r.status_code == 201 and r.json["source"]["record_path"] == "$.data.object", r.json
    event = {
        "id": "evt_1",
        "type": "order.updated",
        "created": 1700000000,
        "data": {"object": {"id": "o1", "n": 2}},
    }
    assert client.post(f"/v1/ingest/{other}", json=event).status_code == 200
    record = client.get(f"/v1/collections/{cid}/records/o1", headers=h).json["record"]
    assert record["data"] == {"id": "o1", "n": 2} and record["source_id"] == other
    assert record["source_event_at"].startswith("2023-11-14T22:13:20")
    r = client.patch(f"/v1/collections/{cid}/sources/{other}", json={"record_path": None}, headers=h)
    assert r.status_code == 200 and r.json["source"]["record_path"] is None


def test_the_dashboard_collection_page_says_which_sources_feed_it(app, owner, key, bound):
    from tests.helpers import login

    sid, cid = bound
    session = app.test_client()
    token = login(session, "owner@example.com")
    other = _webhook(app.test_client(), key, "Other hook")
    # The edit form carries no source: a source sent with it changes nothing.
    r = session.post(
        "/collections/orders/edit",
        data={
            "csrf_token": token,
            "name": "Orders",
            "slug": "orders",
            "source_id": other,
            "primary_key_path": "$.id",
        },
    )
    assert r.status_code == 302
    _still_bound(app.test_client(), key, sid, cid)
    page = session.get("/collections/orders").get_data(as_text=True)
    assert f'id="binding-{sid}"' in page and "Orders hook" in page and f'id="binding-{other}"' not in page
    # Added on the collection's page, it feeds the collection beside the first.
    r = session.post("/collections/orders/sources", data={"csrf_token": token, "source_id": other})
    assert r.status_code == 302
    page = session.get("/collections/orders").get_data(as_text=True)
    assert f'id="binding-{sid}"' in page and f'id="binding-{other}"' in page


# --- 7. the OpenAPI document states the rules the server enforces ------------------------------


def _document(client) -> dict:
    return client.get("/v1/openapi.json").json


def _properties(doc: dict, method: str, path: str) -> dict:
    ref = doc["paths"][path][method]["requestBody"]["content"]["application/json"]["schema"]["$ref"]
    schema = doc["components"]["schemas"][ref.rsplit("/", 1)[1]]
    out = {}
    for name, prop in schema["properties"].items():
        branches = [b for b in prop.get("anyOf", [prop]) if b.get("type") != "null"]
        out[name] = branches[0] if len(branches) == 1 else prop
    return out


# (method, path, a body the server accepts, whether it needs a session)
BODIES = [
    ("post", "/v1/collections", lambda: {"name": "Valid name", "primary_key_path": "$.id"}, False),
    ("post", "/v1/syncs", lambda: stripe_sync("https://api.stripe.com", STRIPE_KEY), False),
    (
        "post",
        "/api/v1/source-connections",
        lambda: {"sourceShortName": "webhook", "name": "Hook", "credentials": {}, "config": {}},
        False,
    ),
    ("post", "/v1/auth/api-keys", lambda: {"name": "A key"}, True),
    ("post", "/v1/environments", lambda: {"name": "An env"}, True),
]
# Values tried against every documented pattern: the document and the server must agree.
PATTERN_TRIES = [
    "finance-data",
    "Finance Data",
    "-x",
    "x-",
    "a--b",
    "a1",
    "  ",
    " x ",
    "",
    "continuous",
    "30s",
    "29s",
    "5s",
    "00030s",
    "0m",
    "1m",
    "15m",
    "24h",
    "7d",
    "99999d",
    "100000s",
    "1h30m",
]


def _refused(r, field) -> bool:
    """Refused for what `field` holds (a 409, taken, is about the state, not the rules)."""
    return r.status_code == 400 and field in (r.json.get("errors") or {})


def _call(client, session, method, path, body, needs_session, key):
    if needs_session:
        return session[0].open(path, method=method, json=body, headers=session[1])
    return client.open(path, method=method, json=body, headers={"X-API-Key": key})


def _check_lengths(attempt, name, prop):
    stated = 0
    if "maxLength" in prop:
        stated += 1
        limit = prop["maxLength"]
        filler = "a" if name not in ("primary_key_path", "timestamp_path", "event_type_field") else "$." + "a"
        assert _refused(attempt(filler.ljust(limit + 1, "a")), name), (name, limit)
        assert not _refused(attempt(filler.ljust(limit, "a")), name), (name, limit)
    if "minLength" in prop and prop["minLength"] > 1:
        stated += 1
        assert _refused(attempt("a" * (prop["minLength"] - 1)), name), name
    return stated


def _check_pattern(attempt, name, prop):
    if "pattern" not in prop:
        return 0
    for value in PATTERN_TRIES:
        if "maxLength" in prop and len(value) > prop["maxLength"]:
            continue
        matches = re.search(prop["pattern"], value) is not None
        if name in ("slug", "readable_id") and value.strip() == "":
            continue  # blank means "generate one", a documented default
        if not matches and re.search(prop["pattern"], value.strip()):
            continue  # surrounding spaces are trimmed first, as the document says
        assert _refused(attempt(value), name) != matches, (name, value, prop["pattern"])
    return 1


def _check_enum(attempt, name, prop):
    if "enum" not in prop:
        return 0
    assert _refused(attempt("not-one-of-them"), name), name
    for value in prop["enum"]:
        assert not _refused(attempt(value), name), (name, value)
    return 1


def _check_items(attempt, name, prop):
    stated = 0
    if "maxItems" in prop:
        stated += 1
        assert _refused(attempt(["x"] * (prop["maxItems"] + 1)), name), name
        assert _refused(attempt(["a" * (prop["items"]["maxLength"] + 1)]), name), name
    if "minItems" in prop:
        stated += 1
        assert _refused(attempt([]), name), name
    return stated


def _check_bounds(attempt, name, prop):
    stated = 0
    for bound, beyond in (("maximum", 1), ("exclusiveMinimum", 0), ("minimum", -1)):
        if bound in prop:
            stated += 1
            assert _refused(attempt(prop[bound] + beyond), name), (name, bound)
    return stated


BODY_RULE_CHECKS = (_check_lengths, _check_pattern, _check_enum, _check_items, _check_bounds)


@pytest.mark.parametrize("method, path, base, needs_session", BODIES, ids=[p for _, p, _, _ in BODIES])
def test_every_documented_body_rule_is_the_servers(
    client, key, admin_session, method, path, base, needs_session
):
    doc = _document(client)
    stated = 0
    for name, prop in _properties(doc, method, path).items():

        def attempt(value, name=name):
            body = base()
            body[name] = value
            return _call(client, admin_session, method.upper(), path, body, needs_session, key)

        # Each check asserts what the document states of the field and counts the rules it saw.
        stated += sum(check(attempt, name, prop) for check in BODY_RULE_CHECKS)
    assert stated >= 1  # every body with rules of its own states at least one of them


def test_the_documented_sync_frequency_is_what_the_scheduler_parses(client):
    pattern = _properties(_document(client), "post", "/v1/syncs")["sync_frequency"]["pattern"]
    tries = ["continuous", "Continuous", "", "h", "1", "1.5h", "-1h", "1 h"] + [
        f"{n}{unit}"
        for n in ("0", "1", "29", "30", "31", "00029", "00030", "000030", "99999", "100000")
        for unit in "smhdw"
    ]
    for value in tries:
        try:
            parse_frequency(value)
            parsed = True
        except ValueError:
            parsed = False
        assert (re.search(pattern, value) is not None) == parsed, value


def test_the_nested_rate_limit_states_its_bounds(client):
    rate = _document(client)["components"]["schemas"]["RateLimit"]["properties"]
    assert rate["allowed_requests"]["exclusiveMinimum"] == 0 and rate["interval"]["exclusiveMinimum"] == 0
    assert rate["max_concurrent_requests"]["minimum"] == 0


LISTS = [
    "/v1/collections",
    "/v1/syncs",
    "/v1/events",
    "/v1/environments",
    "/v1/members",
    "/v1/invitations",
    "/v1/audit-log",
    "/v1/auth/api-keys",
]


@pytest.mark.parametrize("path", LISTS)
def test_every_list_documents_the_limit_the_server_enforces(client, admin_session, path):
    doc = _document(client)
    params = {p["name"]: p for p in doc["paths"][path]["get"]["parameters"]}
    assert {"limit", "cursor"} <= set(params)
    limit = params["limit"]["schema"]
    session, _ = admin_session
    assert session.get(path, query_string={"limit": limit["maximum"]}).status_code == 200
    over = session.get(path, query_string={"limit": limit["maximum"] + 1})
    assert over.status_code == 400 and "limit" in over.json["errors"]
    assert session.get(path, query_string={"limit": limit["minimum"] - 1}).status_code == 400


def test_session_only_operations_are_marked_and_refuse_keys(client, key):
    doc = _document(client)
    marked = [
        (path, method)
        for path, item in doc["paths"].items()
        for method, op in item.items()
        if op.get("x-session-only")
    ]
    assert ("/v1/members", "get") in marked and ("/v1/auth/api-keys", "post") in marked
    for path, method in marked:
        op = doc["paths"][path][method]
        assert (
            op["security"] == [{"session": []}]
            and "API keys get 403" in op["responses"]["403"]["description"]
        )
        if "{" not in path:
            r = client.open(path, method=method.upper(), json={}, headers={"X-API-Key": key})
            assert r.status_code == 403, (path, method, r.json)


def test_bodies_csrf_413_exports_ingest_and_filters_are_documented(client, key, app):
    doc = _document(client)
    for path, item in doc["paths"].items():
        for method, op in item.items():
            if method in ("post", "put", "patch", "delete"):
                assert "413" in op["responses"], (path, method)
                if op.get("security") != []:
                    assert any(p["name"] == "X-CSRFToken" and p["in"] == "header" for p in op["parameters"])
    export = doc["paths"]["/v1/collections/{ident}/export"]["get"]["responses"]["200"]["content"]
    assert set(export) == {"application/x-ndjson", "text/csv"}
    ingest = doc["paths"]["/v1/ingest/{source_id}"]["post"]["requestBody"]
    assert ingest["required"] is False and "application/json" in ingest["content"]
    upload = doc["paths"]["/api/v1/source-connections/{source_id}/files"]["post"]["requestBody"]["content"]
    assert "multipart/form-data" in upload

    # The filter parameter, used as documented, filters.
    records = doc["paths"]["/v1/collections/{ident}/records"]["get"]["parameters"]
    [flt] = [p for p in records if p["name"] == "filter"]
    assert (flt["style"], flt["explode"], flt["in"]) == ("deepObject", True, "query")
    h = {"X-API-Key": key}
    sid = _webhook(client, key)
    client.post(
        "/v1/collections",
        headers=h,
        json={"name": "Orders", "slug": "orders", "source_id": sid, "primary_key_path": "$.id"},
    )
    for n, status in enumerate(("open", "closed", "open")):
        assert client.post(f"/v1/ingest/{sid}", json={"id": f"o{n}", "status": status}).status_code == 200
    # deepObject with explode: name[property]=value
    query = {f"{flt['name']}[status]": "open"}
    got = client.get("/v1/collections/orders/records", query_string=query, headers=h).json["records"]
    assert sorted(r["record_key"] for r in got) == ["o0", "o2"]
    assert re.search(flt["schema"]["propertyNames"]["pattern"], "data status") is None
    bad = client.get("/v1/collections/orders/records", query_string={"filter[data status]": "x"}, headers=h)
    assert bad.status_code == 400
    too_big = client.post(
        "/v1/collections",
        headers=h,
        data=b"{" + b" " * app.config["MAX_CONTENT_LENGTH"] + b"}",
        content_type="application/json",
    )
    assert too_big.status_code == 413 and too_big.json["code"] == "payload_too_large"


def test_the_document_states_the_servers_own_limits(client):
    from hookstream_ui.services import api_keys, collections, sources, team
    from hookstream_ui.sources import REGISTRY

    doc = _document(client)
    coll = _properties(doc, "post", "/v1/collections")
    assert (coll["name"]["minLength"], coll["name"]["maxLength"]) == (
        collections.NAME_MIN,
        collections.NAME_MAX,
    )
    assert coll["slug"]["pattern"] == coll["readable_id"]["pattern"] == collections.SLUG_RE.pattern
    assert coll["description"]["maxLength"] == collections.DESCRIPTION_MAX
    assert coll["primary_key_path"]["maxLength"] == collections.PATH_MAX
    assert _properties(doc, "patch", "/v1/collections/{ident}")["status"]["enum"] == ["ACTIVE", "PAUSED"]
    sync = _properties(doc, "post", "/v1/syncs")
    assert sync["name"]["maxLength"] == sources.NAME_MAX and sync["stream_id"]["maxLength"] == 200
    assert sync["provider"]["enum"] == sorted(k for k, t in REGISTRY.items() if t.pull)
    assert sync["collection_ids"]["minItems"] == 1 and sync["collection_ids"]["items"]["maxLength"] == 200
    assert _properties(doc, "patch", "/v1/syncs/{sync_id}")["status"]["enum"] == ["active", "disabled"]
    assert _properties(doc, "post", "/v1/auth/api-keys")["name"]["maxLength"] == api_keys.NAME_MAX
    assert _properties(doc, "post", "/v1/environments")["name"]["maxLength"] == team.ENV_NAME_MAX
    conn = _properties(doc, "post", "/api/v1/source-connections")
    assert (
        conn["sourceShortName"]["enum"] == sorted(REGISTRY) and conn["name"]["maxLength"] == sources.NAME_MAX
    )
    assert _properties(doc, "post", "/v1/invitations")["email"]["format"] == "email"


# --- 8. the web server's own refusals quote nothing back; the app's are the API's JSON ------------


@pytest.fixture(scope="module")
def served_port(app, database_url, redis_url, tmp_root):
    """The app on its web server exactly as `make run` starts it (one for the module: it
    holds nothing of its own between requests)."""
    import os

    from tests.fixture_servers import web_server

    env = dict(
        os.environ, DATABASE_URL=database_url, REDIS_URL=redis_url, INSTANCE_PATH=str(tmp_root / "instance")
    )
    with web_server(env) as (_proc, port):
        yield port


def _raw(port: int, data: bytes) -> tuple[int, dict, bytes]:
    import socket

    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        sock.sendall(data)
        answer = b""
        while chunk := sock.recv(65536):
            answer += chunk
    head, _, body = answer.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    headers = {k.lower(): v for k, v in (line.split(": ", 1) for line in lines[1:])}
    return int(lines[0].split()[1]), headers, body


def _is_api_error(doc: dict, body: bytes, status: int) -> dict:
    import json

    from jsonschema import Draft202012Validator

    data = json.loads(body)
    schema = doc["components"]["schemas"]["Error"]
    assert list(Draft202012Validator({**schema, "components": doc["components"]}).iter_errors(data)) == []
    assert data["status"] == status and data["request_id"].startswith("req_")
    return data


def test_a_url_or_header_over_the_limit_is_refused_by_name_in_either_shape(client):
    doc = _document(client)
    r = client.get("/v1/collections?q=" + "x" * 5000)
    assert r.status_code == 414 and "xxxxx" not in _is_api_error(doc, r.data, 414)["error"]
    r = client.get("/v1/collections", headers={"X-Big": "y" * 9000})
    assert r.status_code == 431 and "at most 8190 bytes" in _is_api_error(doc, r.data, 431)["error"]
    r = client.get("/api/v1/sources?q=" + "x" * 5000)
    assert r.status_code == 414 and r.json["error"] == "uri_too_long" and "xxxxx" not in r.json["message"]
    # Just under the limit is an ordinary request (401: no key).
    assert client.get("/v1/collections?q=" + "x" * (4094 - len("/v1/collections?q="))).status_code == 401


@pytest.mark.parametrize(
    "request_bytes, status",
    [
        (b"GET /v1/collections?q=" + b"x" * 5000 + b" HTTP/1.1\r\nHost: x\r\n\r\n", 414),
        (b"GET /api/v1/sources?q=" + b"x" * 5000 + b" HTTP/1.1\r\nHost: x\r\n\r\n", 414),
        (b"GET /v1/collections HTTP/1.1\r\nHost: x\r\nX-Big: " + b"y" * 9000 + b"\r\n\r\n", 431),
        (b"GET /api/v1/sources HTTP/1.1\r\nHost: x\r\nX-Big: " + b"y" * 9000 + b"\r\n\r\n", 431),
    ],
    ids=["long-url", "long-url-sources-api", "big-header", "big-header-sources-api"],
)
def test_requests_over_the_limits_answer_in_the_api_error_shape(client, served_port, request_bytes, status):
    doc = _document(client)
    got, headers, body = _raw(served_port, request_bytes.replace(b"Host: x", b"Host: x\r\nConnection: close"))
    assert got == status, body[:300]
    assert headers["content-type"] == "application/json" and b"<html" not in body
    data = json.loads(body)
    if b"/api/v1/" in request_bytes.split(b"\r\n", 1)[0]:
        assert data["success"] is False and data["error"] == _is_code(status)
        message = data["message"]
    else:
        message = _is_api_error(doc, body, status)["error"]
    assert "xxxxx" not in message and "yyyyy" not in message  # the request is not quoted back


def _is_code(status: int) -> str:
    return {414: "uri_too_long", 431: "header_fields_too_large"}[status]


@pytest.mark.parametrize(
    "request_bytes, status",
    [
        (b"GET /v1/collections HTTP/1.1 junk\r\nHost: x\r\n\r\n", 400),
        (b"G\x01T /v1/collections HTTP/1.1\r\nHost: x\r\n\r\n", 400),
        (b"GET /v1/collections HTTP/1.1\r\nHost: x\r\nBad Header: y\r\n\r\n", 400),
        (
            b"GET /v1/collections HTTP/1.1\r\nHost: x\r\n"
            + b"".join(b"X-%d: y\r\n" % n for n in range(120))
            + b"\r\n",
            431,
        ),
    ],
    ids=["bad-request-line", "bad-method", "bad-header", "past-100-headers"],
)
def test_requests_the_server_cannot_parse_are_refused_quoting_nothing(served_port, request_bytes, status):
    got, headers, body = _raw(served_port, request_bytes)
    assert got == status and body == b"" and headers["connection"] == "close"


def test_a_request_line_past_the_servers_buffer_is_refused_quoting_nothing(served_port):
    # granian answers 431 when its buffer fills before the line has ended, and 414 (a URI over
    # 64 KiB) when the rest arrived in the read that filled it: which, depends on how the
    # bytes arrive. Either way it never reaches the app, and nothing is quoted back.
    line = b"GET /v1/collections?q=" + b"x" * 500_000 + b" HTTP/1.1\r\n"
    got, headers, body = _raw(served_port, line + b"Host: x\r\n\r\n")
    assert got in (414, 431) and body == b"" and headers["connection"] == "close"


def test_the_app_still_answers_through_that_server(client, served_port):
    import http.client
    import json

    conn = http.client.HTTPConnection("127.0.0.1", served_port, timeout=10)
    conn.request("GET", "/v1/collections")
    answer = conn.getresponse()
    assert answer.status == 401 and json.loads(answer.read())["code"] == "unauthorized"


# --- 9. the audit log has what happened, and reads well -------------------------------------------


def _entries(session, **query) -> list[dict]:
    return session.get("/v1/audit-log", query_string=query).json["entries"]


def test_joining_by_invitation_is_in_the_audit_log(app, admin_session):
    from tests.helpers import PASSWORD, csrf_token

    session, h = admin_session
    inv = session.post(
        "/v1/invitations", json={"email": "joiner@example.com", "role": "viewer"}, headers=h
    ).json
    path = re.sub(r"^https?://[^/]+", "", inv["invitation"]["url"])
    browser = app.test_client()
    token = csrf_token(browser, path)
    assert (
        browser.post(
            path, data={"password": PASSWORD, "password_confirm": PASSWORD, "csrf_token": token}
        ).status_code
        == 302
    )
    [joined] = _entries(session, action="member.join")
    assert joined["actor"] == "joiner@example.com" and joined["resource_type"] == "member"
    assert joined["details"] == {
        "email": "joiner@example.com",
        "role": "viewer",
        "invitation_id": inv["invitation"]["id"],
        "invited_by": "owner@example.com",
        "new_account": True,
    }
    assert token not in repr(joined) and PASSWORD not in repr(joined)


def test_failed_sign_ins_are_in_the_audit_log(app, owner, admin_session):
    from hookstream_ui.models import AuditEntry
    from tests.helpers import CSRF_META

    session, _ = admin_session
    stranger = app.test_client()

    def attempt(email, password):
        page = stranger.get("/login").get_data(as_text=True)
        token = CSRF_META.search(page).group(1)
        return stranger.post("/login", data={"email": email, "password": password, "csrf_token": token})

    assert attempt("owner@example.com", "not-the-password-1").status_code != 302
    assert attempt("nobody@example.com", "not-the-password-2").status_code != 302
    [failed] = _entries(session, action="user.sign_in_failed")  # the org sees its member's
    assert failed["actor"] == "owner@example.com" and failed["resource_id"] == owner.id
    assert failed["details"] == {"email": "owner@example.com", "reason": "wrong password"}
    [unknown] = db.session.scalars(
        select(AuditEntry).where(AuditEntry.org_id.is_(None), AuditEntry.action == "user.sign_in_failed")
    ).all()
    assert unknown.details == {"email": "nobody@example.com", "reason": "no such account"}
    every = repr([e.details for e in db.session.scalars(select(AuditEntry))])
    assert "not-the-password" not in every
    # A password typed into the email field (it names no account) is not kept either.
    assert attempt("Hunter2-secret-pass", "x").status_code != 302
    every = repr([(e.actor, e.details) for e in db.session.scalars(select(AuditEntry))])
    assert "Hunter2" not in every and "(not an email address)" in every


def test_runs_exports_clearing_and_deleting_data_are_in_the_audit_log(
    client, key, admin_session, http_fixture
):
    from hookstream_ui.models import ApiKey

    session, _ = admin_session
    h = {"X-API-Key": key}
    sync = client.post("/v1/syncs", json=stripe_sync(http_fixture.base, STRIPE_KEY), headers=h).json
    run_id = client.post(f"/api/v1/source-connections/{sync['id']}/run", json={}, headers=h).json["syncId"]
    assert (
        client.post(
            f"/api/v1/source-connections/{sync['id']}/runs/{run_id}/cancel", json={}, headers=h
        ).status_code
        == 200
    )
    sid = _webhook(client, key)
    client.post(
        "/v1/collections",
        headers=h,
        json={"name": "Orders", "slug": "orders", "source_id": sid, "primary_key_path": "$.id"},
    )
    for n in range(3):
        client.post(f"/v1/ingest/{sid}", json={"id": f"o{n}"})
    assert client.get("/v1/collections/orders/export?format=csv", headers=h).status_code == 200
    assert client.delete("/v1/collections/orders/records/o0", headers=h).status_code == 200
    assert client.post("/v1/collections/orders/backfill", headers=h).status_code == 202
    cleared = client.delete(f"/api/v1/source-connections/{sid}/data", headers=h)
    assert cleared.status_code == 200 and cleared.json["recordsDeleted"] == 2

    prefix = db.session.scalar(select(ApiKey.prefix))
    by = f"API key deploy ({prefix}…) of owner@example.com"
    got = {e["action"]: e for e in _entries(session) if e["actor"] == by}
    assert got["run.start"]["resource_id"] == run_id and got["run.start"]["details"]["trigger"] == "manual"
    assert got["run.cancel"]["details"]["status"] == {"from": "pending", "to": "cancelled"}
    assert got["collection.export"]["details"] == {"name": "Orders", "format": "csv", "records": 3}
    assert got["record.delete"]["details"] == {"name": "Orders", "record_key": "o0"}
    assert got["collection.backfill"]["details"]["events"] == 3
    assert got["source.clear_data"]["resource_id"] == sid
    assert got["source.clear_data"]["details"]["records_deleted"] == 2


def test_readable_details():
    from hookstream_ui.services.audit import readable_details

    assert readable_details(
        {
            "changed": ["name", "primary_key_path", "config"],
            "values": {"name": {"from": "Audited", "to": "Audited 2"}},
        }
    ) == [("Name", "Audited → Audited 2"), ("Changed", "primary key path, config")]
    assert readable_details({"secrets_used": ["password"], "unsaved": False, "connected": True}) == [
        ("Secrets used", "password"),
        ("Unsaved form", "no"),
        ("Connected", "yes"),
    ]
    assert readable_details({"status": {"from": "pending", "to": None}, "records": 0}) == [
        ("Status", "pending → —"),
        ("Records", "0"),
    ]
    assert readable_details({}) == [] and readable_details(None) == []


def test_a_shared_credential_is_not_rotated_under_a_running_sync(client, key, http_fixture):
    h = {"X-API-Key": key}
    first = client.post("/v1/syncs", json=stripe_sync(http_fixture.base, STRIPE_KEY), headers=h).json
    body = {**stripe_sync(http_fixture.base, "x", streams=("invoice",)), "credential_id": first["id"]}
    del body["credential"]
    second = client.post("/v1/syncs", json=body, headers=h).json
    # No worker runs: the run stays pending, which is active.
    assert client.post(f"/api/v1/source-connections/{first['id']}/run", json={}, headers=h).status_code == 200
    r = client.patch(
        f"/v1/syncs/{second['id']}",
        headers=h,
        json={"credential": {"properties": {"secret": "sk_test_other", "api_base": http_fixture.base}}},
    )
    assert r.status_code == 409 and r.json["code"] == "sync_in_progress", r.json
    assert _tested(client, key, second["id"])  # still the credential it had


# Values a source type's required fields accept (the document gives their types, not their meaning).
SAMPLE_FIELDS = {
    "host": "db.example.com",
    "port": 5432,
    "database": "shop",
    "username": "reader",
    "password": "pw",
    "secret_key": "sk_test_1",
    "token": "github_pat_1",
    "shop": "acme",
    "access_token": "shpat_1",
    "api_version": "unstable",  # the longest version Shopify takes
    "base_url": "https://api.example.com",
    "path": "/",
    "dedup_key": "$.id",
    "instance_url": "https://acme.my.salesforce.com",
    "client_id": "3MVG9consumerKey",
    "client_secret": "consumer-secret",
    "refresh_token": "5Aep861refresh",
}


def _filled(name, n):
    """As long as asked, and still what the field takes."""
    if name == "host":  # labels of at most 63 characters
        return ".".join(["a" * 63] * 4)[:n]
    if name.startswith("ip_"):  # addresses, one a line
        return ("1.1.1.1\n" * (n // 8 + 1))[:n]
    return (str(SAMPLE_FIELDS.get(name, "")) + "a" * n)[:n]


def _check_choice(attempt, short, name, prop):
    assert attempt(name, "not-an-option"), (short, name)
    for option in prop["enum"]:
        assert not attempt(name, option), (short, name, option)


def _check_uri(attempt, short, name, prop):
    assert attempt(name, "ftp://example.com"), (short, name)
    assert attempt(name, "https://example.com/" + "a" * prop["maxLength"]), (short, name)
    assert not attempt(name, "https://example.com/" + "a" * (prop["maxLength"] - 20)), (short, name)


def _check_length(attempt, short, name, prop):
    assert attempt(name, _filled(name, prop["maxLength"]) + "a"), (short, name)
    assert not attempt(name, _filled(name, prop["maxLength"])), (short, name)


def _check_number(attempt, short, name, prop):
    assert attempt(name, "many"), (short, name)
    for bound, beyond in (("maximum", 1), ("minimum", -1)):
        if bound in prop:
            assert attempt(name, prop[bound] + beyond), (short, name, bound)
            assert not attempt(name, prop[bound]), (short, name, bound)
    if prop.get("multipleOf") == 1:
        assert attempt(name, prop.get("minimum", 0) + 1.5), (short, name)


# The first kind of rule a field's document states, and the check of it.
FIELD_CHECKS = (
    (lambda prop: "enum" in prop, _check_choice),
    (lambda prop: prop.get("format") == "uri", _check_uri),
    (lambda prop: "maxLength" in prop, _check_length),
    (lambda prop: "number" in prop["type"], _check_number),
)


def _check_source_field(attempt, short, name, prop):
    """Asserts the server checks what the document states of one field; how many rules it saw."""
    checked = 0
    check = next((check for applies, check in FIELD_CHECKS if applies(prop)), None)
    if check is not None:
        check(attempt, short, name, prop)
        checked += 1
    if "pattern" in prop:
        checked += 1
        for value in ("Valid-Name_1", "two words", "a,b", "sk_live_x", "rk_x", "pk_x", "X:Y"):
            matches = re.search(prop["pattern"], value) is not None
            assert attempt(name, value) is not matches, (short, name, value)
    return checked


def test_every_source_types_fields_are_documented_as_the_server_checks_them(client, key):
    doc = _document(client)
    ref = doc["paths"]["/api/v1/source-connections"]["post"]["requestBody"]["content"]["application/json"][
        "schema"
    ]
    variants = doc["components"]["schemas"][ref["$ref"].rsplit("/", 1)[1]]["oneOf"]
    from hookstream_ui.sources import REGISTRY

    assert sorted(v["properties"]["sourceShortName"]["const"] for v in variants) == sorted(REGISTRY)
    h = {"X-API-Key": key}
    checked = 0
    for variant in variants:
        short = variant["properties"]["sourceShortName"]["const"]
        for half in ("credentials", "config"):
            schema = variant["properties"][half]
            base = {name: SAMPLE_FIELDS[name] for name in schema["required"]}
            other = "config" if half == "credentials" else "credentials"
            other_base = {name: SAMPLE_FIELDS[name] for name in variant["properties"][other]["required"]}

            def attempt(
                name,
                value,
                half=half,
                base=base,
                other=other,
                other_base=other_base,
                short=short,
                schema=schema,
            ):
                # A field shown only for a choice is checked only with that choice made.
                when = {
                    k: v[0] for k, v in schema["properties"].get(name, {}).get("x-shown-when", {}).items()
                }
                given = {**base, **when, name: value}
                body = {"sourceShortName": short, "name": "Checked", half: given, other: other_base}
                r = client.post("/api/v1/source-connections", json=body, headers=h)
                return r.status_code == 400 and name in (r.json.get("errors") or {})

            assert attempt("not_a_field", "x") is (schema["additionalProperties"] is False), (short, half)
            for name, prop in schema["properties"].items():
                checked += _check_source_field(attempt, short, name, prop)
            for name in schema["required"]:
                assert attempt(name, ""), (short, name)  # required: blank is refused
    assert checked > 20


def test_sync_list_filters_state_and_check_their_values(client, key):
    doc = _document(client)
    params = {p["name"]: p["schema"] for p in doc["paths"]["/v1/syncs"]["get"]["parameters"]}
    h = {"X-API-Key": key}
    for name in ("provider", "status"):
        for value in params[name]["enum"]:
            assert client.get("/v1/syncs", query_string={name: value}, headers=h).status_code == 200
        r = client.get("/v1/syncs", query_string={name: "nope"}, headers=h)
        assert r.status_code == 400 and name in r.json["errors"], r.json
