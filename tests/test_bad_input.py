"""Bad input never gets a 5xx: every route, API and dashboard, swept with malformed bodies,
wrong types, over-long text and NUL characters (which PostgreSQL cannot store in text).

The routes come from the app itself, so a new one is swept the day it is added. Run on
both databases: SQLite stores what PostgreSQL refuses, so only the PostgreSQL run catches
a length or a NUL that no check stopped.
"""

from __future__ import annotations

import io
from collections import Counter

import pytest
from sqlalchemy import func, select

from hookstream_ui.api.openapi import DOC_ATTR
from hookstream_ui.models import Collection, Event, Record, SourceConnection, SourceFile, db
from tests.helpers import login
from tests.test_isolation import fill
from tests.test_sources_dashboard import connect

FIELDS = [
    "name",
    "slug",
    "source_id",
    "primary_key_path",
    "event_type_field",
    "description",
    "stream",
    "timestamp_path",
    "search_index",
    "sourceShortName",
    "credentials",
    "config",
    "collectionId",
    "collection_ids",
    "credential",
    "credential_id",
    "sync_frequency",
    "rate_limit",
    "max_age_days",
    "status",
    "metadata",
    "external_id",
    "stream_id",
    "role",
    "email",
    "delete_event_types",
    "provider",
    "full",
]
JUNK = [[], {"a": [1, None]}, -1, None, "x" * 5000, "nul\x00here", ["y" * 5000], 1e308]
QUERY = (
    "?limit=abc&cursor=%25zz&format=xml&sample=-7&deleteData=maybe&filter[$..x]=1&filter[]=2&since=notadate"
    "&until=1e99&status=bogus&search=a%00b&source_id=[]&collectionId=x&event_type=%00&filename=a%00b"
)
BAD_BODIES = [None, "[]", '"x"', "{bad json", "\xff\xfe"]


ENDINGS = ("delete", "remove", "revoke", "leave", "logout", "clear")


def _sweep(routes, send) -> Counter:
    statuses = Counter()
    # Deletions (and signing out) last, so that every other route meets what they remove.
    for rule, method, path in sorted(
        routes, key=lambda r: r[1] == "DELETE" or any(w in r[2] for w in ENDINGS)
    ):
        for answer in send(rule, method, path):
            assert answer.status_code < 500, (method, path, answer.status_code, answer.get_data()[:300])
            statuses[answer.status_code] += 1
    return statuses


def test_no_api_route_answers_5xx_to_bad_input(app, two_tenants):
    api = app.test_client()
    key = {"X-API-Key": two_tenants["a_raw"]}
    ids = dict(two_tenants["a_ids"], short_name="postgresql")
    routes = [
        (rule, getattr(app.view_functions[rule.endpoint], DOC_ATTR)["method"].upper(), fill(rule, ids))
        for rule in app.url_map.iter_rules()
        if getattr(app.view_functions[rule.endpoint], DOC_ATTR, None)
    ]
    assert len(routes) > 40

    def send(rule, method, path):
        for body in BAD_BODIES:
            yield api.open(
                path + QUERY, method=method, data=body, content_type="application/json", headers=key
            )
        if method in ("POST", "PATCH", "PUT"):
            for field in FIELDS:
                for junk in JUNK:
                    yield api.open(path, method=method, json={field: junk}, headers=key)

    statuses = _sweep(routes, send)
    assert statuses[400] > 500 and statuses[200] > 0, statuses


def test_no_dashboard_route_answers_5xx_to_bad_input(app, two_tenants):
    client = app.test_client()
    token = login(client, "alice@example.com")
    ids = dict(two_tenants["a_ids"], short_name="postgresql", token="no-such-token")
    routes = []
    for rule in app.url_map.iter_rules():
        view = app.view_functions[rule.endpoint]
        if getattr(view, DOC_ATTR, None) or rule.endpoint == "static" or "healthz" in rule.rule:
            continue
        if rule.arguments - set(ids):  # admin pages: this user is no instance admin
            continue
        routes += [(rule, method, fill(rule, ids)) for method in sorted(rule.methods - {"HEAD", "OPTIONS"})]
    assert len(routes) > 50

    def send(rule, method, path):
        for junk in ("", "x" * 5000, "nul\x00here", "-1", "[]", "$..["):
            form = dict.fromkeys([*FIELDS, "env_id", "password", "q", "cursor", "limit", "format"], junk)
            yield client.open(
                path,
                method=method,
                data={**form, "csrf_token": token},
                headers={"X-CSRFToken": token, "HX-Request": "true"},
            )

    statuses = _sweep(routes, send)
    assert statuses[400] > 20 and statuses[200] > 20, statuses


def test_nul_characters_are_refused_by_field_and_change_nothing(client, two_tenants):
    key = {"X-API-Key": two_tenants["a_raw"]}
    r = client.patch("/v1/collections/alice-users", json={"description": "a\x00b"}, headers=key)
    assert r.status_code == 400 and r.json["errors"] == {"description": "must not contain NUL characters"}
    r = client.post(
        "/v1/syncs",
        json={
            "provider": "stripe",
            "name": "S",
            "stream_id": "s",
            "collection_ids": ["x"],
            "metadata": {"tags": ["ok", "b\x00d"]},
        },
        headers=key,
    )
    assert r.status_code == 400 and r.json["errors"] == {
        "metadata.tags[1]": "must not contain NUL characters"
    }
    r = client.get("/v1/collections/alice-users/records?search=a%00", headers=key)
    assert r.status_code == 400 and r.json["errors"] == {"search": "must not contain NUL characters"}
    assert client.get("/v1/collections/alice%00users", headers=key).status_code == 404
    assert db.session.scalar(select(Collection.description)) is None
    assert (
        db.session.scalar(select(func.count(SourceConnection.id))) == 2
    )  # the webhook and the Stripe source
    # A page says it in the dashboard's own error page, naming the field.
    login(client, "alice@example.com")
    r = client.get("/collections/alice-users?q=a%00")
    assert r.status_code == 400 and r.mimetype == "text/html"
    assert "<h1>400 · Bad Request</h1>" in r.get_data(as_text=True)
    assert "q: must not contain NUL characters" in r.get_data(as_text=True)


def test_over_long_text_is_refused_by_field(client, two_tenants):
    key = {"X-API-Key": two_tenants["a_raw"]}
    r = client.patch("/v1/collections/alice-users", json={"primary_key_path": "$." + "a" * 600}, headers=key)
    assert r.status_code == 400 and r.json["errors"] == {"primary_key_path": "must be at most 500 characters"}
    sync = two_tenants["a_ids"]["sync_id"]
    r = client.patch(f"/v1/syncs/{sync}", json={"external_id": "e" * 201}, headers=key)
    assert r.status_code == 400 and r.json["errors"] == {"external_id": "must be at most 200 characters"}
    assert db.session.get(SourceConnection, sync).external_id is None


def test_unpaired_surrogates_in_json_bodies_are_refused_by_field_and_change_nothing(client, two_tenants):
    """JSON can escape half a surrogate pair, which neither database can be sent (500)."""
    key = {"X-API-Key": two_tenants["a_raw"], "Content-Type": "application/json"}
    r = client.patch("/v1/collections/alice-users", data=b'{"description": "a\\ud800b"}', headers=key)
    assert r.status_code == 400
    assert r.json["errors"] == {"description": "must not contain unpaired surrogates (\\ud800-\\udfff)"}
    r = client.patch("/v1/collections/alice-users", data=b'{"metadata": {"x\\udc00": 1}}', headers=key)
    assert r.status_code == 400 and list(r.json["errors"]) == ["metadata.x\ufffd"]
    r = client.patch("/v1/collections/alice-users", data=b'{"description": "ok \\ud83d\\ude00"}', headers=key)
    assert (
        r.status_code == 200 and r.json["collection"]["description"] == "ok \U0001f600"
    )  # a whole pair is one character


def test_webhook_deliveries_with_nul_are_stored_and_applied_alike_on_both_databases(client, two_tenants):
    source = two_tenants["a_ids"]["source_id"]
    answers = [
        client.post(f"/v1/ingest/{source}?q=%00", data=body, content_type="application/json")
        for body in (b'{"id": "k\\u0000", "note": "a\\u0000b", "x\\u0000": 1}', b'{"id": "raw\x00nul"}')
    ]
    assert [a.status_code for a in answers] == [200, 200]
    record = db.session.scalar(select(Record).where(Record.record_key == "k\ufffd"))
    assert record.data == {"id": "k\ufffd", "note": "a\ufffdb", "x\ufffd": 1}
    event = db.session.get(Event, answers[0].json["event_id"])
    assert (
        event.status == "applied"
        and event.body.startswith('{"id": "k\\u0000"')
        and event.query == {"q": "\x00"}
    )
    raw = db.session.get(
        Event, answers[1].json["event_id"]
    )  # a raw NUL is no JSON: stored as sent, in base64
    assert raw.status == "not_json" and raw.body_encoding == "base64"
    # Headers longer than their columns are cut, not a reason to lose the event
    long = client.post(
        f"/v1/ingest/{source}", data=b'{"id": "long"}', content_type="application/json; x=" + "y" * 400
    )
    assert long.status_code == 200 and len(db.session.get(Event, long.json["event_id"]).content_type) == 200


def test_webhook_deliveries_with_lone_surrogates_are_applied_alike_on_both_databases(client, two_tenants):
    """JSON may escape half a surrogate pair; PostgreSQL refused such a record (the event
    failed) and SQLite could not be sent one as a key. Both now keep U+FFFD in its place; a
    whole pair is a character like any other."""
    source = two_tenants["a_ids"]["source_id"]
    db.session.get(SourceConnection, source).config = {"dedup_key": "$.id", "dedup_window_seconds": 60}
    db.session.commit()
    body = b'{"id": "s\\ud800", "note": "x\\udfffy \\ud83d\\ude00", "k\\uDBFF": 2}'
    answer = client.post(f"/v1/ingest/{source}", data=body, content_type="application/json")
    assert answer.status_code == 200
    event = db.session.get(Event, answer.json["event_id"])
    assert event.status == "applied" and event.dedup_key == "body:s\ufffd"
    record = db.session.scalar(select(Record).where(Record.record_key == "s\ufffd"))
    assert record.data == {"id": "s\ufffd", "note": "x\ufffdy \U0001f600", "k\ufffd": 2}
    again = client.post(f"/v1/ingest/{source}", data=body, content_type="application/json")
    assert again.status_code == 200 and db.session.get(Event, again.json["event_id"]).status == "duplicate"


def nested(levels: int) -> bytes:
    return b'{"id": "deep", "x": ' * (levels - 1) + b'{"id": "deep"}' + b"}" * (levels - 1)


def test_json_nested_past_a_hundred_levels_is_stored_but_not_applied_and_refused_by_the_api(
    client, two_tenants
):
    """Past Python's recursion limit json.loads raises RecursionError, which no `except
    ValueError` caught: a webhook, the API and the event page answered 500."""
    source = two_tenants["a_ids"]["source_id"]
    bomb = b"[" * 100_000 + b"]" * 100_000
    answers = [
        client.post(f"/v1/ingest/{source}", data=body, content_type="application/json")
        for body in (bomb, nested(101), nested(100))
    ]
    assert [a.status_code for a in answers] == [200, 200, 200]
    events = [db.session.get(Event, a.json["event_id"]) for a in answers]
    assert [e.status for e in events] == ["not_json", "not_json", "applied"]
    assert events[1].error == "the body is nested more than 100 levels deep, so it was stored but not applied"
    assert db.session.scalar(select(Record).where(Record.record_key == "deep")) is not None
    login(client, "alice@example.com")
    page = client.get(f"/events/{events[0].id}")
    assert page.status_code == 200 and "[[[[" in page.get_data(as_text=True)
    key = {"X-API-Key": two_tenants["a_raw"], "Content-Type": "application/json"}
    r = client.patch("/v1/collections/alice-users", data=b'{"description": ' + bomb + b"}", headers=key)
    assert r.status_code == 400 and r.json["errors"] == {"body": "is nested more than 100 levels deep"}
    assert db.session.scalar(select(Collection.description)) is None


def test_dashboard_upload_takes_files_beyond_the_request_limit_and_checks_csrf(app, ctx):
    from tests.helpers import make_user

    make_user("owner@example.com")
    client = app.test_client()
    token = login(client, "owner@example.com")
    sid = connect(client, token, "file", **{"config.format": "auto", "config.has_header": "true"})
    body = b"id,note\n" + b"".join(b"%d,%s\n" % (i, b"x" * 100) for i in range(20000))
    assert len(body) > app.config["MAX_CONTENT_LENGTH"]
    refused = client.post(
        f"/sources/{sid}/upload",
        data={"file": (io.BytesIO(body), "big.csv")},
        content_type="multipart/form-data",
    )
    assert refused.status_code == 400 and db.session.scalar(select(func.count(SourceFile.id))) == 0
    r = client.post(
        f"/sources/{sid}/upload",
        data={"csrf_token": token, "file": (io.BytesIO(body), "big.csv")},
        content_type="multipart/form-data",
    )
    assert r.status_code == 302, r.get_data(as_text=True)[:300]
    assert db.session.scalar(select(SourceFile.size)) == len(body)


def test_api_upload_names_an_unknown_format(client, two_tenants):
    key = {"X-API-Key": two_tenants["a_raw"]}
    sid = client.post(
        "/api/v1/source-connections",
        headers=key,
        json={"sourceShortName": "file", "name": "Files", "config": {"format": "auto"}},
    ).json["sourceConnection"]["id"]
    r = client.post(
        f"/api/v1/source-connections/{sid}/files?filename=a.xml&format=xml", data=b"<a/>", headers=key
    )
    assert r.status_code == 400 and r.json["errors"] == {"format": "must be one of auto, csv, ndjson, json"}
    assert db.session.scalar(select(func.count(SourceFile.id))) == 0


def strict_json(text: str):
    """JSON as every other parser reads it: NaN and Infinity are errors."""
    import json

    def refuse(constant):
        raise ValueError(f"not JSON: {constant}")

    return json.loads(text, parse_constant=refuse)


NON_FINITE = ["NaN", "Infinity", "-Infinity", "1e999", "-1e400"]


@pytest.mark.parametrize("number", NON_FINITE)
def test_nan_and_infinity_in_api_bodies_are_refused_by_field(client, two_tenants, number):
    key = {"X-API-Key": two_tenants["a_raw"], "Content-Type": "application/json"}
    sync = two_tenants["a_ids"]["sync_id"]
    cases = [
        ("PATCH", f"/v1/syncs/{sync}", '{"metadata": {"plan": {"price": %s}}}', "metadata.plan.price"),
        (
            "PATCH",
            f"/v1/syncs/{sync}",
            '{"rate_limit": {"allowed_requests": 5, "interval": %s}}',
            "rate_limit.interval",
        ),
        (
            "PATCH",
            f"/v1/syncs/{sync}",
            '{"credential": {"properties": {"secret": "sk_test_x"}, "metadata": {"n": %s}}}',
            "credential.metadata.n",
        ),
        ("PATCH", "/v1/collections/alice-users", '{"description": "x", "extra": [1, %s]}', "extra[1]"),
        ("PUT", f"/api/v1/source-connections/{sync}/config", '{"config": {"x": %s}}', "config.x"),
    ]
    before = client.get(f"/v1/syncs/{sync}", headers=key).json
    for method, path, body, field in cases:
        r = client.open(path, method=method, data=body % number, headers=key)
        assert r.status_code == 400 and set(r.json["errors"]) == {field}, (path, r.json)
        assert "finite" in r.json["errors"][field]
        strict_json(r.get_data(as_text=True))
    assert client.get(f"/v1/syncs/{sync}", headers=key).json == before


@pytest.mark.parametrize("number", NON_FINITE)
def test_nan_in_a_webhook_is_stored_as_received_but_not_applied(client, two_tenants, number):
    source = two_tenants["a_ids"]["source_id"]
    body = f'{{"id": "nan-1", "price": {number}}}'
    answer = client.post(f"/v1/ingest/{source}", data=body, content_type="application/json")
    assert answer.status_code == 200, answer.json
    event = db.session.get(Event, answer.json["event_id"])
    assert event.status == "not_json" and event.body == body
    assert "NaN or Infinity" in event.error
    assert db.session.scalar(select(Record).where(Record.record_key == "nan-1")) is None
    shown = client.get(f"/v1/events/{event.id}", headers={"X-API-Key": two_tenants["a_raw"]})
    assert strict_json(shown.get_data(as_text=True))["event"]["body"] == body


@pytest.mark.parametrize("value", ["1e999", "NaN", "-Infinity", "1e308"])
def test_filters_on_numbers_no_float_holds_are_text(client, two_tenants, value):
    r = client.get(
        f"/v1/collections/alice-users/records?filter[data.price]={value}",
        headers={"X-API-Key": two_tenants["a_raw"]},
    )
    assert r.status_code == 200 and r.json["records"] == [], r.json


def test_every_json_answer_is_standard_json(app):
    with app.app_context():
        assert strict_json(app.json.dumps({"a": float("nan"), "b": [float("inf"), 1.5]})) == {
            "a": None,
            "b": [None, 1.5],
        }


@pytest.mark.parametrize("typed", ["nan", "inf", "-Infinity", "1e999"])
def test_a_number_field_takes_only_finite_numbers(typed):
    from hookstream_ui.errors import ValidationFailed
    from hookstream_ui.sources.fields import Field, validate

    with pytest.raises(ValidationFailed) as caught:
        validate((Field("n", "number", "N"),), {"n": typed})
    assert caught.value.errors == {"n": "must be a finite number"}
