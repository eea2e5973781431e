"""POST/GET/PATCH/DELETE /v1/collections against seeds 000, 001 and 002."""

from __future__ import annotations

import re

import pytest

from hookstream_ui.models import Collection, db
from tests.helpers import add_env, auth, make_key, make_source, make_user, org_of, production

SEED_FIELDS = {
    "id",
    "org_id",
    "env_id",
    "name",
    "slug",
    "source_id",
    "primary_key_path",
    "event_type_field",
    "description",
    "status",
    "record_count",
    "last_sync_at",
    "created_at",
    "updated_at",
    "backfill_status",
    "backfill_progress",
    "backfill_total",
    "backfill_cursor",
    "backfill_started_at",
    "backfill_completed_at",
    "backfill_error",
    "source_name",
}
EXTRA_FIELDS = {
    "readable_id",
    "stream",
    "timestamp_path",
    "created_by_email",
    "modified_by_email",
    "delete_event_types",
    "search_index",
    "sources",
}


@pytest.fixture
def tenant(ctx):
    user = make_user("owner@example.com")
    org = org_of(user)
    env = production(org)
    return {"user": user, "org": org, "env": env, "key": make_key(env)}


def post(client, key, body, **kw):
    return client.post("/v1/collections", json=body, headers=auth(key), **kw)


def test_create_returns_every_seed_field(client, tenant):
    r = post(
        client,
        tenant["key"],
        {
            "name": "Users",
            "slug": "users",
            "primary_key_path": "$.id",
            "event_type_field": "type",
            "description": "All users",
        },
    )
    assert r.status_code == 201
    c = r.json["collection"]
    assert set(c) == SEED_FIELDS | EXTRA_FIELDS
    assert c["id"].startswith("col_")
    assert c["org_id"] == tenant["org"].id and c["env_id"] == tenant["env"].id
    assert (c["name"], c["slug"], c["readable_id"]) == ("Users", "users", "users")
    assert c["status"] == "NEEDS_SOURCE" and c["source_id"] is None and c["source_name"] is None
    assert c["record_count"] == 0 and c["last_sync_at"] is None and c["backfill_status"] is None
    assert c["event_type_field"] == "$.type" and c["description"] == "All users"
    assert c["created_by_email"] == tenant["user"].email  # the person the API key acts for
    assert re.match(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$", c["created_at"])


def test_create_with_source_is_active_and_names_it(client, tenant):
    source = make_source(tenant["env"], "Orders webhook")
    r = post(
        client,
        tenant["key"],
        {
            "name": "Orders",
            "source_id": source.id,
            "primary_key_path": "data.order.id",
            "stream": "orders",
            "timestamp_path": "updated_at",
        },
    )
    assert r.status_code == 201, r.json
    c = r.json["collection"]
    assert c["status"] == "ACTIVE" and c["source_id"] == source.id
    assert c["source_name"] == "Orders webhook"
    assert c["primary_key_path"] == "$.data.order.id"
    assert c["timestamp_path"] == "$.updated_at" and c["stream"] == "orders"


def test_unknown_source_is_404_source_not_found(client, tenant):
    r = post(client, tenant["key"], {"name": "Orders", "source_id": "sc_nope", "primary_key_path": "$.id"})
    assert r.status_code == 404
    assert r.json["error"] == "Source not found" and r.json["code"] == "not_found"
    assert db.session.query(Collection).count() == 0


def test_source_of_another_environment_is_not_found(client, tenant):
    staging = add_env(tenant["org"], "staging")
    source = make_source(staging)
    r = post(client, tenant["key"], {"name": "Orders", "source_id": source.id, "primary_key_path": "$.id"})
    assert r.status_code == 404 and r.json["error"] == "Source not found"


def test_generated_slug_has_six_character_suffix(client, tenant):
    r = post(client, tenant["key"], {"name": "Finance Data!", "primary_key_path": "$.id"})
    assert r.status_code == 201
    assert re.fullmatch(r"finance-data-[a-z0-9]{6}", r.json["collection"]["slug"])


def test_readable_id_is_accepted_as_slug(client, tenant):
    r = post(
        client, tenant["key"], {"name": "Finance", "readable_id": "fin-data", "primary_key_path": "$.id"}
    )
    assert r.status_code == 201 and r.json["collection"]["slug"] == "fin-data"


@pytest.mark.parametrize(
    "name, ok", [("abc", False), ("abcd", True), ("x" * 64, True), ("x" * 65, False), ("   ab  ", False)]
)
def test_name_length(client, tenant, name, ok):
    r = post(client, tenant["key"], {"name": name, "primary_key_path": "$.id"})
    if ok:
        assert r.status_code == 201
    else:
        assert r.status_code == 400
        assert r.json["code"] == "validation_error"
        assert r.json["errors"] == {"name": "must be 4 to 64 characters"}
        assert "name" in r.json["error"]


@pytest.mark.parametrize(
    "slug", ["Users", "users_1", "-users", "users-", "us--ers", "us ers", "üsers", "a" * 65]
)
def test_bad_slugs_are_rejected(client, tenant, slug):
    r = post(client, tenant["key"], {"name": "Users", "slug": slug, "primary_key_path": "$.id"})
    assert r.status_code == 400 and set(r.json["errors"]) == {"slug"}
    assert db.session.query(Collection).count() == 0


@pytest.mark.parametrize("slug", ["users", "a1", "finance-data-2024", "x"])
def test_good_slugs_are_accepted(client, tenant, slug):
    assert (
        post(client, tenant["key"], {"name": "Users", "slug": slug, "primary_key_path": "$.id"}).status_code
        == 201
    )


def test_taken_slug_is_409(client, tenant):
    body = {"name": "Users", "slug": "users", "primary_key_path": "$.id"}
    assert post(client, tenant["key"], body).status_code == 201
    r = post(client, tenant["key"], body)
    assert r.status_code == 409 and r.json["code"] == "conflict" and "slug" in r.json["errors"]
    assert db.session.query(Collection).count() == 1


def test_same_slug_in_another_environment_is_fine(client, tenant):
    staging_key = make_key(add_env(tenant["org"], "staging"))
    body = {"name": "Users", "slug": "users", "primary_key_path": "$.id"}
    assert post(client, tenant["key"], body).status_code == 201
    assert post(client, staging_key, body).status_code == 201


@pytest.mark.parametrize(
    "given, stored",
    [
        ("$.id", "$.id"),
        ("id", "$.id"),
        ("data.id", "$.data.id"),
        ("$.data.object.id", "$.data.object.id"),
        ("$['user-id']", "$['user-id']"),
        (".id", "$.id"),
    ],
)
def test_primary_key_path_is_normalised(client, tenant, given, stored):
    r = post(client, tenant["key"], {"name": "Users", "primary_key_path": given})
    assert r.status_code == 201, r.json
    assert r.json["collection"]["primary_key_path"] == stored


@pytest.mark.parametrize("path", ["$.[[", "$..", "a b c", "$.id)", "   "])
def test_unparsable_primary_key_path_is_400_naming_the_field(client, tenant, path):
    r = post(client, tenant["key"], {"name": "Users", "primary_key_path": path})
    assert r.status_code == 400
    assert set(r.json["errors"]) == {"primary_key_path"}
    assert r.json["error"].startswith("primary_key_path:")


def test_missing_fields_are_named(client, tenant):
    r = post(client, tenant["key"], {})
    assert r.status_code == 400
    assert r.json["errors"] == {"name": "is required", "primary_key_path": "is required"}
    r = client.post("/v1/collections", headers=auth(tenant["key"]))  # no body at all
    assert r.status_code == 400 and set(r.json["errors"]) == {"name", "primary_key_path"}


@pytest.mark.parametrize(
    "body, field",
    [
        ({"name": 42, "primary_key_path": "$.id"}, "name"),
        ({"name": "Users", "primary_key_path": ["$.id"]}, "primary_key_path"),
        ({"name": "Users", "primary_key_path": "$.id", "slug": 5}, "slug"),
        ({"name": "Users", "primary_key_path": "$.id", "description": {}}, "description"),
        ({"name": None, "primary_key_path": "$.id"}, "name"),
    ],
)
def test_wrong_types_are_named(client, tenant, body, field):
    r = post(client, tenant["key"], body)
    assert r.status_code == 400 and field in r.json["errors"]


def test_unknown_fields_are_ignored(client, tenant):
    r = post(
        client,
        tenant["key"],
        {
            "name": "Users",
            "primary_key_path": "$.id",
            "colour": "blue",
            "org_id": "org_evil",
            "record_count": 99,
        },
    )
    assert r.status_code == 201
    assert r.json["collection"]["org_id"] == tenant["org"].id and r.json["collection"]["record_count"] == 0


@pytest.mark.parametrize("raw", ["{bad json", "[1, 2]", '"a string"', "null"])
def test_malformed_or_non_object_body(client, tenant, raw):
    r = client.post("/v1/collections", data=raw, content_type="application/json", headers=auth(tenant["key"]))
    assert r.status_code == 400
    assert r.json["status"] == 400 and r.json["request_id"].startswith("req_")
    assert "body" in r.json["errors"]


def test_error_shape_and_request_id_header(client, tenant):
    r = client.get("/v1/collections/nope", headers={**auth(tenant["key"]), "X-Request-ID": "trace-123"})
    assert r.status_code == 404
    assert r.json == {
        "error": "Collection not found",
        "code": "not_found",
        "status": 404,
        "request_id": "trace-123",
    }
    assert r.headers["X-Request-ID"] == "trace-123"


def test_get_by_id_and_by_slug(client, tenant):
    c = post(client, tenant["key"], {"name": "Users", "slug": "users", "primary_key_path": "$.id"}).json[
        "collection"
    ]
    for ident in (c["id"], "users"):
        r = client.get(f"/v1/collections/{ident}", headers=auth(tenant["key"]))
        assert r.status_code == 200 and r.json["collection"]["id"] == c["id"]


def test_patch_changes_only_given_fields(client, tenant):
    c = post(
        client,
        tenant["key"],
        {"name": "Users", "slug": "users", "primary_key_path": "$.id", "description": "keep me"},
    ).json["collection"]
    r = client.patch(
        f"/v1/collections/{c['id']}",
        json={"name": "Customers", "slug": "customers"},
        headers=auth(tenant["key"]),
    )
    assert r.status_code == 200
    got = r.json["collection"]
    assert (got["name"], got["slug"], got["description"], got["primary_key_path"]) == (
        "Customers",
        "customers",
        "keep me",
        "$.id",
    )
    assert client.get("/v1/collections/users", headers=auth(tenant["key"])).status_code == 404
    assert client.get("/v1/collections/customers", headers=auth(tenant["key"])).status_code == 200


def test_patch_validation_changes_nothing(client, tenant):
    post(client, tenant["key"], {"name": "Other", "slug": "other", "primary_key_path": "$.id"})
    c = post(client, tenant["key"], {"name": "Users", "slug": "users", "primary_key_path": "$.id"}).json[
        "collection"
    ]
    url = f"/v1/collections/{c['id']}"
    for body, status, field in [
        ({"name": "ab"}, 400, "name"),
        ({"slug": "other"}, 409, "slug"),
        ({"primary_key_path": "$.[["}, 400, "primary_key_path"),
        ({"name": "Renamed", "slug": "BAD"}, 400, "slug"),
        ({"name": None}, 400, "name"),
        ({"status": "SYNCING"}, 400, "status"),
        ({"source_id": "sc_missing"}, 404, "source_id"),
    ]:
        r = client.patch(url, json=body, headers=auth(tenant["key"]))
        assert r.status_code == status and field in r.json["errors"], (body, r.json)
    db.session.expire_all()
    assert client.get(url, headers=auth(tenant["key"])).json["collection"]["name"] == "Users"


def test_patch_binding_a_source_activates_and_pause_resume(client, tenant):
    source = make_source(tenant["env"])
    c = post(client, tenant["key"], {"name": "Users", "primary_key_path": "$.id"}).json["collection"]
    url = f"/v1/collections/{c['id']}"
    h = auth(tenant["key"])
    assert client.patch(url, json={"status": "ACTIVE"}, headers=h).status_code == 400
    r = client.patch(url, json={"source_id": source.id}, headers=h)
    assert r.json["collection"]["status"] == "ACTIVE" and r.json["collection"]["source_name"] == source.name
    assert client.patch(url, json={"status": "PAUSED"}, headers=h).json["collection"]["status"] == "PAUSED"
    assert client.patch(url, json={"status": "ACTIVE"}, headers=h).json["collection"]["status"] == "ACTIVE"
    r = client.patch(url, json={"source_id": None}, headers=h)
    assert r.json["collection"]["status"] == "NEEDS_SOURCE" and r.json["collection"]["source_id"] is None


def test_delete(client, tenant):
    c = post(client, tenant["key"], {"name": "Users", "primary_key_path": "$.id"}).json["collection"]
    r = client.delete(f"/v1/collections/{c['id']}", headers=auth(tenant["key"]))
    assert r.status_code == 200 and r.json == {"id": c["id"], "deleted": True}
    assert client.get(f"/v1/collections/{c['id']}", headers=auth(tenant["key"])).status_code == 404
    assert client.delete(f"/v1/collections/{c['id']}", headers=auth(tenant["key"])).status_code == 404


def test_cursor_pagination_walks_every_collection_once(client, tenant):
    created = {
        post(client, tenant["key"], {"name": f"Coll {i:02d}", "primary_key_path": "$.id"}).json["collection"][
            "id"
        ]
        for i in range(25)
    }
    seen, cursor, pages = [], None, 0
    while True:
        params = {"limit": 10, **({"cursor": cursor} if cursor else {})}
        r = client.get("/v1/collections", query_string=params, headers=auth(tenant["key"]))
        assert r.status_code == 200
        seen += [c["id"] for c in r.json["collections"]]
        pages += 1
        if not r.json["has_more"]:
            assert r.json["cursor"] is None
            break
        cursor = r.json["cursor"]
    assert pages == 3 and len(seen) == 25 and set(seen) == created
    first = client.get("/v1/collections", headers=auth(tenant["key"])).json
    assert len(first["collections"]) == 20 and first["has_more"] is True  # default limit 20


@pytest.mark.parametrize(
    "params, field",
    [
        ({"limit": 0}, "limit"),
        ({"limit": 101}, "limit"),
        ({"limit": "ten"}, "limit"),
        ({"cursor": "garbage!"}, "cursor"),
    ],
)
def test_bad_pagination_parameters(client, tenant, params, field):
    r = client.get("/v1/collections", query_string=params, headers=auth(tenant["key"]))
    assert r.status_code == 400 and field in r.json["errors"]


def test_list_filters(client, tenant):
    source = make_source(tenant["env"])
    post(client, tenant["key"], {"name": "Bound one", "source_id": source.id, "primary_key_path": "$.id"})
    post(client, tenant["key"], {"name": "Lonely one", "primary_key_path": "$.id"})
    h = auth(tenant["key"])

    def names(**q):
        return [
            c["name"] for c in client.get("/v1/collections", query_string=q, headers=h).json["collections"]
        ]

    assert names(status="NEEDS_SOURCE") == ["Lonely one"]
    assert names(source_id=source.id) == ["Bound one"]
    assert names(search="lone") == ["Lonely one"]


def test_session_caller_is_recorded_as_creator_and_modifier(client, ctx):
    from tests.helpers import login

    make_user("ann@example.com")
    token = login(client, "ann@example.com")
    r = client.post(
        "/v1/collections", json={"name": "Users", "primary_key_path": "$.id"}, headers={"X-CSRFToken": token}
    )
    assert r.status_code == 201
    assert r.json["collection"]["created_by_email"] == "ann@example.com"
    assert r.json["collection"]["modified_by_email"] == "ann@example.com"


def test_delete_event_types(client, tenant):
    h = auth(tenant["key"])
    r = post(
        client,
        tenant["key"],
        {
            "name": "Users",
            "slug": "users",
            "primary_key_path": "$.id",
            "delete_event_types": ["user.archived", " purged "],
        },
    )
    assert r.status_code == 201 and r.json["collection"]["delete_event_types"] == ["user.archived", "purged"]
    for bad in (["ok", ""], [5], ["x" * 201], {"a": 1}):
        r = client.patch("/v1/collections/users", json={"delete_event_types": bad}, headers=h)
        assert r.status_code == 400 and "delete_event_types" in r.json["errors"], bad
    r = client.patch("/v1/collections/users", json={"delete_event_types": []}, headers=h)
    assert r.json["collection"]["delete_event_types"] == []


@pytest.mark.parametrize("page", ["first", "cursor"])
def test_a_collections_page_is_read_in_list_order_from_an_index(client, key, page):
    """A page of collections never sorts the environment's collections: at 3,000 that sort
    was most of a list's time."""
    from tests.helpers import assert_read_in_index_order

    h = {"X-API-Key": key}
    for i in range(3):
        body = {"name": f"Listed {i}", "slug": f"listed-{i}", "primary_key_path": "$.id"}
        assert client.post("/v1/collections", json=body, headers=h).status_code == 201
    query = "limit=1"
    if page == "cursor":
        query += "&cursor=" + client.get("/v1/collections?limit=1", headers=h).json["cursor"]
    assert_read_in_index_order(
        client, f"/v1/collections?{query}", h, "collections", "ix_collections_env_created"
    )
