"""/api/v1 sources and source connections against real servers."""

from __future__ import annotations

import pytest
from sqlalchemy import select

from hookstream_ui.models import Collection, Record, SourceConnection, db
from hookstream_ui.sources import MASK, REGISTRY
from tests.fixture_servers import PG_PASSWORD, REST_TOKEN, STRIPE_KEY, free_port
from tests.helpers import add_env, make_key, make_user, org_of


def api(client, method, path, key, **kw):
    return client.open(f"/api/v1{path}", method=method, headers={"X-API-Key": key}, **kw)


def create(client, key, short, credentials=None, config=None, **extra):
    body = {
        "sourceShortName": short,
        "name": f"My {short}",
        "credentials": credentials or {},
        "config": config or {},
        **extra,
    }
    return api(client, "POST", "/source-connections", key, json=body)


def pg_conn(client, key, pg_source, config=None, **changes):
    r = create(client, key, "postgresql", pg_source.credentials(**changes), config)
    assert r.status_code == 201, r.json
    return r.json["sourceConnection"]["id"]


def test_catalog_lists_every_type_in_the_seed_shape(client, key):
    r = api(client, "GET", "/sources", key)
    assert r.status_code == 200 and r.json["success"] is True
    assert {s["shortName"] for s in r.json["sources"]} == {
        "webhook",
        "postgresql",
        "rest_api",
        "stripe",
        "file",
        "github",
        "shopify",
        "hubspot",
        "salesforce",
    }
    pg = next(s for s in r.json["sources"] if s["shortName"] == "postgresql")
    assert (
        pg["labels"] == ["database"]
        and pg["authMethods"] == ["credentials"]
        and pg["supportsContinuous"] is True  # with logical replication
    )


def test_source_detail_has_fields(client, key):
    r = api(client, "GET", "/sources/postgresql", key)
    fields = {f["name"]: f for f in r.json["source"]["authFields"]}
    assert list(fields) == ["host", "port", "database", "username", "password", "sslmode"]
    assert fields["password"]["type"] == "password" and fields["port"] == {
        **fields["port"],
        "type": "number",
        "required": True,
    }
    assert [o["value"] for o in fields["sslmode"]["options"]][:3] == ["disable", "allow", "prefer"]
    assert {f["name"] for f in r.json["source"]["configFields"]} >= {
        "schema",
        "table",
        "primary_key",
        "cursor_column",
    }
    webhook = {f["name"] for f in api(client, "GET", "/sources/webhook", key).json["source"]["authFields"]}
    assert webhook == {"verification_type", "signing_secret", "signature_header"}
    r = api(client, "GET", "/sources/nope", key)
    assert r.status_code == 404 and r.json == {
        "success": False,
        "error": "not_found",
        "message": "No source type 'nope'",
    }


def test_a_type_without_a_test_cannot_register():
    from hookstream_ui.sources.base import SourceType, register

    class Incomplete(SourceType):
        short_name, name, description = "incomplete", "Incomplete", "no test"

    with pytest.raises(TypeError):
        register(Incomplete)
    assert "incomplete" not in REGISTRY


def test_create_validates_credentials_first_and_stores_nothing(client, key):
    r = create(client, key, "postgresql", {"host": "db", "port": "not-a-port", "sslmode": "sometimes"})
    assert r.status_code == 400 and r.json["success"] is False and r.json["error"] == "invalid_credentials"
    assert r.json["errors"] == {
        "port": "must be a number",
        "database": "is required",
        "username": "is required",
        "password": "is required",
        "sslmode": "must be one of: disable, allow, prefer, require, verify-ca, verify-full",
    }
    r = create(client, key, "rest_api", {"base_url": "ftp://x", "auth_type": "bearer"})
    assert r.status_code == 400 and r.json["errors"]["base_url"] == "must be an http:// or https:// URL"
    r = create(client, key, "webhook", {"verification_type": "hmac_sha256"})
    assert r.status_code == 400 and r.json["errors"] == {
        "signing_secret": "is required when signature verification is on"
    }
    r = create(
        client, key, "webhook", {}, {"ip_allowlist": "10.0.0.0/8\nnot-an-ip", "dedup_window_seconds": True}
    )
    assert r.status_code == 400 and r.json["error"] == "validation_error"
    assert set(r.json["errors"]) == {"dedup_window_seconds", "ip_allowlist"}  # every error at once
    r = create(client, key, "webhook", {}, {"ip_allowlist": "10.0.0.0/8\nnot-an-ip"})
    assert r.json["errors"] == {"ip_allowlist": "'not-an-ip' is not an IP address or CIDR range"}
    r = create(client, key, "nope")
    assert r.status_code == 400 and "sourceShortName" in r.json["errors"]
    r = api(client, "POST", "/source-connections", key, json={"sourceShortName": "webhook"})
    assert r.json["errors"] == {"name": "is required"}
    assert db.session.scalar(select(SourceConnection)) is None


def test_create_binds_collection_and_lists_by_it(client, key):
    c = client.post(
        "/v1/collections", json={"name": "Orders", "primary_key_path": "$.id"}, headers={"X-API-Key": key}
    ).json["collection"]
    r = create(client, key, "webhook", collectionId=c["id"])
    assert r.status_code == 201
    sc = r.json["sourceConnection"]
    assert sc["id"].startswith("sc_") and sc["status"] == "pending" and sc["collectionIds"] == [c["id"]]
    assert sc["ingestUrl"].endswith(f"/v1/ingest/{sc['id']}")
    got = client.get(f"/v1/collections/{c['id']}", headers={"X-API-Key": key}).json["collection"]
    assert got["status"] == "ACTIVE" and got["source_name"] == "My webhook"
    create(client, key, "webhook")
    listed = api(client, "GET", f"/source-connections?collectionId={c['id']}", key).json["sourceConnections"]
    assert [s["id"] for s in listed] == [sc["id"]]
    assert len(api(client, "GET", "/source-connections", key).json["sourceConnections"]) == 2
    assert create(client, key, "webhook", collectionId="col_missing").status_code == 404


def test_postgresql_test_connection_success_and_each_failure(client, key, pg_source):
    ok = pg_conn(client, key, pg_source, {"table": "customers", "cursor_column": "updated_at"})
    r = api(client, "POST", f"/source-connections/{ok}/test", key)
    assert r.status_code == 200 and r.json["success"] is True and r.json["status"] == "connected"
    assert "public.customers is readable" in r.json["message"] and "Note" not in r.json["message"]
    assert (
        api(client, "GET", f"/source-connections/{ok}", key).json["sourceConnection"]["status"] == "connected"
    )
    # A key column that is not unique still connects, with a note saying what it means.
    loose = pg_conn(client, key, pg_source, {"table": "customers", "primary_key": "email"})
    r = api(client, "POST", f"/source-connections/{loose}/test", key)
    assert (
        r.json["success"] is True and "column 'email' has no primary key or unique index" in r.json["message"]
    )

    cases = [
        ({"password": "wrong-password"}, {}, "Authentication failed: wrong username or password"),
        ({}, {"table": "missing_table"}, "Connected, but table public.missing_table does not exist"),
        ({}, {"table": "customers", "cursor_column": "nope"}, "has no column 'nope'"),
        ({"port": free_port()}, {}, "Connection refused: nothing is listening on 127.0.0.1:"),
        ({"host": "no-such-host.invalid"}, {}, "Host not found: 'no-such-host.invalid' does not resolve"),
        ({"database": "nodb"}, {}, "that database does not exist"),
        ({"sslmode": "require"}, {}, "TLS error"),
    ]
    for changes, config, expected in cases:
        sid = pg_conn(client, key, pg_source, config, **changes)
        r = api(client, "POST", f"/source-connections/{sid}/test", key)
        assert r.json["success"] is False and r.json["status"] == "failed", (changes, r.json)
        assert expected in r.json["message"], (changes, r.json["message"])
        assert PG_PASSWORD not in r.get_data(as_text=True)
        assert (
            api(client, "GET", f"/source-connections/{sid}", key).json["sourceConnection"]["status"]
            == "error"
        )


def test_postgresql_streams(client, key, pg_source):
    sid = pg_conn(client, key, pg_source)
    names = [s["name"] for s in api(client, "GET", f"/source-connections/{sid}/streams", key).json["streams"]]
    assert "customers" in names and "sales.orders" in names


def test_rest_api_test_connection(client, key, http_fixture):
    def check(credentials, config, ok, expected):
        r = create(client, key, "rest_api", {"base_url": http_fixture.base, **credentials}, config)
        assert r.status_code == 201, r.json
        t = api(client, "POST", f"/source-connections/{r.json['sourceConnection']['id']}/test", key).json
        assert t["success"] is ok and expected in t["message"], t
        assert REST_TOKEN not in t["message"]

    bearer = {"auth_type": "bearer", "token": REST_TOKEN}
    check(bearer, {"path": "/orders", "records_path": "data"}, True, "Connected: 2 records on the first page")
    check(
        {"auth_type": "bearer", "token": "wrong"},
        {"path": "/orders"},
        False,
        "The API rejected the credentials (HTTP 401)",
    )
    check(
        bearer, {"path": "/orders", "records_path": "$.items"}, False, "records path $.items matched nothing"
    )
    check(bearer, {"path": "/html"}, False, "did not answer JSON")
    check(bearer, {"path": "/slow"}, False, "did not answer within 5 s")
    check(bearer, {"path": "/nowhere"}, False, "HTTP 404")
    # A key in the URL's query string is not quoted back
    r = create(
        client,
        key,
        "rest_api",
        {**bearer, "base_url": http_fixture.base},
        {"path": "/nowhere?api_key=s3cret"},
    )
    t = api(client, "POST", f"/source-connections/{r.json['sourceConnection']['id']}/test", key).json
    assert "HTTP 404 for http://127.0.0.1:" in t["message"] and "s3cret" not in t["message"], t


def test_credentials_go_only_to_the_origin_they_were_given_for(ctx, http_fixture):
    import httpx

    from hookstream_ui.sources import http
    from hookstream_ui.sources.base import Connection, ReadContext, SourceError

    other = http_fixture.base.replace("127.0.0.1", "localhost")  # the same server, another origin
    creds = {"headers": {"Authorization": "Bearer t0ken", "X-API-Key": "k3y"}}
    same = http.request("GET", f"{http_fixture.base}/redirect?to=/echo-auth", **creds).json()
    assert same == {"authorization": "Bearer t0ken", "x_api_key": "k3y"}
    for kwargs in (creds, {"auth": httpx.BasicAuth("user", "secret")}):
        away = http.request("GET", f"{http_fixture.base}/redirect?to={other}/echo-auth", **kwargs).json()
        assert away == {"authorization": "", "x_api_key": None}
    # A REST source's next link to another host is refused, not followed with the token.
    conn = Connection(
        "sc_test",
        {"base_url": http_fixture.base, "auth_type": "bearer", "token": REST_TOKEN},
        {
            "path": "/items/link-away",
            "records_path": "$.data",
            "pagination": "next_link",
            "next_path": "$.links.next",
            "page_size_param": "limit",
            "page_size": 5,
        },
    )
    pages = REGISTRY["rest_api"].read(conn, None, None, {}, True, ReadContext())
    assert len(next(pages).items) == 5
    with pytest.raises(SourceError, match=r"next link leads to another host \(localhost:\d+\)") as refused:
        next(pages)
    assert "pa55word" not in str(refused.value)  # the link's user-info is never quoted back


def test_stripe_test_connection(client, key, http_fixture):
    good = create(client, key, "stripe", {"secret_key": STRIPE_KEY, "api_base": http_fixture.base}).json[
        "sourceConnection"
    ]
    t = api(client, "POST", f"/source-connections/{good['id']}/test", key).json
    assert t == {"success": True, "status": "connected", "message": "Connected to Stripe (test mode)"}
    bad_key = "sk_test_wrongKeyThatMustNotLeak"
    bad = create(client, key, "stripe", {"secret_key": bad_key, "api_base": http_fixture.base}).json[
        "sourceConnection"
    ]
    r = api(client, "POST", f"/source-connections/{bad['id']}/test", key)
    assert r.json["success"] is False and r.json["message"].startswith(
        "Stripe rejected the key: Invalid API Key provided"
    )
    assert bad_key not in r.get_data(as_text=True)
    assert create(client, key, "stripe", {"secret_key": "pk_live_x"}).json["errors"] == {
        "secret_key": "must be a Stripe secret (sk_…) or restricted (rk_…) key"
    }
    streams = api(client, "GET", f"/source-connections/{good['id']}/streams", key).json["streams"]
    assert {"customer", "invoice", "charge", "subscription", "product", "price"} <= {
        s["name"] for s in streams
    }


def test_file_upload_and_test(client, key):
    sid = create(client, key, "file").json["sourceConnection"]["id"]
    t = api(client, "POST", f"/source-connections/{sid}/test", key).json
    assert t["success"] is False and "No file uploaded yet" in t["message"]
    r = api(
        client,
        "POST",
        f"/source-connections/{sid}/files?filename=people.csv",
        key,
        data=b"id,name\n1,Ann\n2,Bob\n",
        content_type="text/csv",
    )
    assert (
        r.status_code == 201 and r.json["file"]["size"] == 20 and r.json["file"]["filename"] == "people.csv"
    )
    t = api(client, "POST", f"/source-connections/{sid}/test", key).json
    assert t["success"] is True and "people.csv parses as CSV: fields id, name" in t["message"]
    import io

    r = api(
        client,
        "POST",
        f"/source-connections/{sid}/files",
        key,
        data={"file": (io.BytesIO(b'{"id": 1}\nnot json\n'), "events.ndjson")},
        content_type="multipart/form-data",
    )
    assert r.status_code == 201
    t = api(client, "POST", f"/source-connections/{sid}/test", key).json
    assert t["success"] is False and t["message"] == "events.ndjson: line 2 is not valid JSON"
    api(
        client,
        "POST",
        f"/source-connections/{sid}/files?filename=list.json",
        key,
        data=b'[{"id": 1}, {"id": 2.5}]',
    )
    assert api(client, "POST", f"/source-connections/{sid}/test", key).json["success"] is True
    r = api(client, "POST", f"/source-connections/{sid}/files?filename=empty.csv", key, data=b"")
    assert r.status_code == 400 and r.json["errors"] == {"file": "is empty"}
    webhook = create(client, key, "webhook").json["sourceConnection"]["id"]
    r = api(client, "POST", f"/source-connections/{webhook}/files?filename=x.csv", key, data=b"a\n1\n")
    assert r.status_code == 400 and "only file sources" in r.json["errors"]["file"]


def test_credentials_mask_and_keep(client, key, pg_source):
    sid = pg_conn(client, key, pg_source)
    sc = api(client, "GET", f"/source-connections/{sid}", key).json["sourceConnection"]
    assert sc["credentials"]["password"] == MASK and sc["credentials"]["host"] == "127.0.0.1"
    r = api(
        client,
        "PUT",
        f"/source-connections/{sid}/credentials",
        key,
        json={"credentials": {**sc["credentials"], "username": "hookstream"}},
    )
    assert r.status_code == 200
    assert (
        api(client, "POST", f"/source-connections/{sid}/test", key).json["success"] is True
    )  # password kept
    r = api(
        client,
        "PUT",
        f"/source-connections/{sid}/credentials",
        key,
        json={**sc["credentials"], "password": "changed"},
    )
    assert r.status_code == 200 and r.json["sourceConnection"]["status"] == "pending"
    assert api(client, "POST", f"/source-connections/{sid}/test", key).json["success"] is False
    r = api(client, "PUT", f"/source-connections/{sid}/credentials", key, json={"credentials": {"host": ""}})
    assert r.status_code == 400 and r.json["error"] == "invalid_credentials" and "host" in r.json["errors"]


def test_put_config(client, key, pg_source):
    sid = pg_conn(client, key, pg_source)
    r = api(client, "PUT", f"/source-connections/{sid}/config", key, json={"config": {"table": "customers"}})
    assert r.status_code == 200 and r.json["sourceConnection"]["config"]["table"] == "customers"
    assert r.json["sourceConnection"]["config"]["schema"] == "public"
    r = api(client, "PUT", f"/source-connections/{sid}/config", key, json={"table": 5})
    assert r.status_code == 400 and r.json["errors"] == {"table": "must be a string"}


def _with_records(client, key, sid, n=3):
    c = client.post(
        "/v1/collections",
        json={"name": "Orders", "primary_key_path": "$.id", "source_id": sid},
        headers={"X-API-Key": key},
    ).json["collection"]
    coll = db.session.get(Collection, c["id"])
    for i in range(n):
        db.session.add(
            Record(
                org_id=coll.org_id,
                env_id=coll.env_id,
                collection_id=coll.id,
                record_key=str(i),
                data={"id": i},
                source_id=sid,
            )
        )
    coll.record_count = n
    db.session.commit()
    return c["id"]


def test_clear_data_keeps_connection_and_collection(client, key):
    sid = create(client, key, "webhook").json["sourceConnection"]["id"]
    cid = _with_records(client, key, sid)
    r = api(client, "DELETE", f"/source-connections/{sid}/data", key)
    assert r.json == {"success": True, "id": sid, "recordsDeleted": 3}
    db.session.expire_all()
    assert db.session.scalar(select(Record)) is None
    assert (
        db.session.get(Collection, cid).record_count == 0 and db.session.get(Collection, cid).source_id == sid
    )


@pytest.mark.parametrize("delete_data", [True, False])
def test_delete_with_and_without_data(client, key, delete_data):
    sid = create(client, key, "webhook").json["sourceConnection"]["id"]
    cid = _with_records(client, key, sid)
    r = api(client, "DELETE", f"/source-connections/{sid}?deleteData={str(delete_data).lower()}", key)
    assert r.json == {"success": True, "id": sid, "deleted": True, "dataDeleted": delete_data}
    db.session.expire_all()
    coll = db.session.get(Collection, cid)
    assert coll.source_id is None and coll.status == "NEEDS_SOURCE"
    assert (db.session.scalar(select(Record)) is None) is delete_data
    assert api(client, "GET", f"/source-connections/{sid}", key).status_code == 404


def test_delete_data_flag_is_validated(client, key):
    sid = create(client, key, "webhook").json["sourceConnection"]["id"]
    r = api(client, "DELETE", f"/source-connections/{sid}?deleteData=maybe", key)
    assert r.status_code == 400 and r.json["errors"] == {"deleteData": "must be true or false"}
    assert api(client, "GET", f"/source-connections/{sid}", key).status_code == 200


def test_private_addresses_refused_unless_allowed(app, client, key, pg_source, http_fixture, monkeypatch):
    pg = pg_conn(client, key, pg_source)
    rest = create(
        client,
        key,
        "rest_api",
        {"base_url": http_fixture.base, "auth_type": "bearer", "token": REST_TOKEN},
        {"path": "/orders", "records_path": "$.data"},
    ).json["sourceConnection"]["id"]
    monkeypatch.setitem(app.config, "ALLOW_PRIVATE_NETWORKS", False)
    for sid in (pg, rest):
        t = api(client, "POST", f"/source-connections/{sid}/test", key).json
        assert t["success"] is False and "Refusing to connect to 127.0.0.1" in t["message"], t
    for host in ("localhost", "10.1.2.3", "169.254.169.254", "[::1]", "192.168.0.1"):
        base = f"http://{host}:9"
        sid = create(client, key, "rest_api", {"base_url": base}).json["sourceConnection"]["id"]
        t = api(client, "POST", f"/source-connections/{sid}/test", key).json
        assert "Refusing to connect" in t["message"], (host, t)
    monkeypatch.setitem(app.config, "ALLOW_PRIVATE_NETWORKS", True)
    assert api(client, "POST", f"/source-connections/{pg}/test", key).json["success"] is True


def test_other_environment_connection_is_404_and_cannot_bind(client, key, ctx):
    staging_key = make_key(add_env(org_of(make_user("x@example.com")), "staging"))
    sid = create(client, key, "webhook").json["sourceConnection"]["id"]
    assert api(client, "GET", f"/source-connections/{sid}", staging_key).status_code == 404
    r = client.post(
        "/v1/collections",
        json={"name": "Steal", "primary_key_path": "$.id", "source_id": sid},
        headers={"X-API-Key": staging_key},
    )
    assert r.status_code == 404


@pytest.fixture
def silent_port():
    """A TCP port that accepts connections and never says a word."""
    import socket

    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(16)
    yield listener.getsockname()[1]
    listener.close()


def test_postgresql_timeout(client, key, pg_source, silent_port):
    sid = pg_conn(client, key, pg_source, port=silent_port)
    t = api(client, "POST", f"/source-connections/{sid}/test", key).json
    assert (
        t["success"] is False and t["message"] == f"Timed out connecting to 127.0.0.1:{silent_port} after 4 s"
    )


def test_rest_api_tls_error_and_closed_port(client, key, http_fixture):
    tls = create(client, key, "rest_api", {"base_url": http_fixture.base.replace("http://", "https://")}).json
    t = api(client, "POST", f"/source-connections/{tls['sourceConnection']['id']}/test", key).json
    assert t["success"] is False and t["message"].startswith("TLS error talking to 127.0.0.1:"), t
    closed = create(client, key, "rest_api", {"base_url": f"http://127.0.0.1:{free_port()}"}).json
    t = api(client, "POST", f"/source-connections/{closed['sourceConnection']['id']}/test", key).json
    assert t["success"] is False and t["message"].startswith("Connection refused by 127.0.0.1:"), t


def test_fields_for_another_choice_are_not_stored(client, key, http_fixture):
    """A token typed and then another auth type chosen, or a secret left behind when
    verification is turned off, is dropped: no secret is kept that does not apply."""
    from hookstream_ui.models import SourceConnection, db
    from hookstream_ui.services.sources import connection_for

    def stored(sid):
        db.session.expire_all()
        return connection_for(db.session.get(SourceConnection, sid)).credentials

    r = create(
        client,
        key,
        "rest_api",
        {
            "base_url": http_fixture.base,
            "auth_type": "basic",
            "username": "ann",
            "password": "pw-kept",
            "token": "abandoned-token",
        },
        {"path": "/orders"},
    )
    assert r.status_code == 201, r.json
    sid = r.json["sourceConnection"]["id"]
    assert "token" not in stored(sid) and stored(sid)["password"] == "pw-kept"
    assert "token" not in r.json["sourceConnection"]["credentials"]
    r = api(
        client,
        "PUT",
        f"/source-connections/{sid}/credentials",
        key,
        json={"credentials": {"base_url": http_fixture.base, "auth_type": "none", "password": MASK}},
    )
    assert r.status_code == 200, r.json
    assert {"username", "password", "token"}.isdisjoint(stored(sid))

    r = create(client, key, "webhook", {"verification_type": "none", "signing_secret": "left-behind"})
    assert r.status_code == 201, r.json
    assert "signing_secret" not in stored(r.json["sourceConnection"]["id"])


@pytest.mark.parametrize(
    "name, ok",
    [("X Api Key", False), ("X-Api-Key:", False), ("X-Api-Key\r\nHost: evil", False), ("X-Api-Key", True)],
)
def test_api_key_header_name_must_be_a_header_name(client, key, http_fixture, name, ok):
    from tests.fixture_servers import REST_TOKEN

    r = create(
        client,
        key,
        "rest_api",
        {"base_url": http_fixture.base, "auth_type": "header", "header_name": name, "token": REST_TOKEN},
        {"path": "/orders"},
    )
    if ok:
        assert "header_name" not in (r.json.get("errors") or {}), r.json
    else:
        assert r.status_code == 400 and "must be a header name" in r.json["errors"]["header_name"], r.json
