"""Bodies over their limit, however they are framed, and records over theirs, from every
source: refused or skipped with the reason, never cut short and accepted."""

from __future__ import annotations

import http.client
import io
import json
import os
import threading
from pathlib import Path

import pytest
from sqlalchemy import select

from hookstream_ui.models import Event, Record, db
from tests.fixture_servers import REST_TOKEN, free_port, web_server
from tests.helpers import make_key, make_user, org_of, production
from tests.test_sync_rest_and_files import connect

ROOT = Path(__file__).resolve().parent.parent
LIMIT = 1024 * 1024  # the default MAX_BODY_BYTES


@pytest.fixture(scope="module", params=["web server", "werkzeug"])
def served(request, app, database_url, redis_url, tmp_root):
    """The app on a real HTTP server on 127.0.0.1: its production web server (granian, as
    `make run` starts it) or werkzeug's server in this process. Both decode chunked bodies
    themselves."""
    if request.param == "werkzeug":
        from werkzeug.serving import make_server

        port = free_port()
        server = make_server("127.0.0.1", port, app, threaded=True)
        threading.Thread(target=server.serve_forever, daemon=True).start()
        yield port
        server.shutdown()
        return
    env = dict(
        os.environ, DATABASE_URL=database_url, REDIS_URL=redis_url, INSTANCE_PATH=str(tmp_root / "instance")
    )
    with web_server(env, threads=4) as (_proc, port):
        yield port


def send_chunked(port, path, body: bytes, headers=None) -> tuple[int, dict | None]:
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    chunks = (body[i : i + 65536] for i in range(0, len(body), 65536))
    try:
        connection.request(
            "POST",
            path,
            body=chunks,
            encode_chunked=True,
            headers={"Content-Type": "application/json", **(headers or {})},
        )
        answer = connection.getresponse()
        data = answer.read()
    except (ConnectionResetError, BrokenPipeError):  # refused before the whole body went
        return 413, None
    return answer.status, json.loads(data) if data else None


def webhook(client, key) -> str:
    h = {"X-API-Key": key}
    sid = client.post(
        "/api/v1/source-connections",
        headers=h,
        json={"sourceShortName": "webhook", "name": "Hook", "credentials": {"verification_type": "none"}},
    ).json["sourceConnection"]["id"]
    client.post(
        "/v1/collections",
        headers=h,
        json={"name": "Orders", "slug": "orders", "source_id": sid, "primary_key_path": "$.id"},
    )
    return sid


def padded(size: int, **fields) -> bytes:
    head = json.dumps({**fields, "pad": ""}).encode()
    return head[:-2] + b"x" * (size - len(head)) + b'"}'


def test_chunked_bodies_over_the_limit_are_413(client, ctx, served):
    key = make_key(production(org_of(make_user("owner@example.com"))))
    sid = webhook(client, key)
    over, under = padded(LIMIT + 100, id="big"), padded(LIMIT - 100, id="fits")
    assert send_chunked(served, f"/v1/ingest/{sid}", over)[0] == 413
    status, answer = send_chunked(served, f"/v1/ingest/{sid}", under)
    assert status == 200 and answer["event_id"], answer
    db.session.expire_all()
    assert [e.size for e in db.session.scalars(select(Event))] == [len(under)]  # the 413 stored nothing
    status, _ = send_chunked(
        served,
        "/v1/collections",
        padded(LIMIT + 100, name="Too big", primary_key_path="$.id"),
        {"X-API-Key": key},
    )
    assert status == 413
    assert [r.record_key for r in db.session.scalars(select(Record))] == ["fits"]


# --- one record size limit for every source ------------------------------------------------


SMALL = {"MAX_RECORD_BYTES": "20000", "MAX_RECORD_FIELDS": "300", "SYNC_BATCH_BYTES": "50000"}


@pytest.mark.parametrize(
    "filename, content, reason",
    [
        (
            "wide.ndjson",
            b'{"id": 1}\n{"id": 2, "x": "' + b"y" * 30000 + b'"}\n{"id": 3}\n',
            "malformed row: line 2 is larger than the record size limit (20,000 bytes)",
        ),
        (
            "wide.csv",
            b"id,x\n1,a\n2," + b"y" * 30000 + b"\n3,c\n",
            "malformed row: line 3 holds a field larger than the record size limit (20,000 bytes)",
        ),
        (
            "wide.json",
            b'[{"id": 1}, {"id": 2, "x": "' + b"y" * 30000 + b'"}, {"id": 3}]',
            "malformed row: item 2 is larger than the record size limit (20,000 bytes)",
        ),
        (
            "many.ndjson",
            b'{"id": 1}\n'
            + json.dumps({"id": 2, **{f"f{i}": i for i in range(400)}}).encode()
            + b'\n{"id": 3}\n',
            "more than 300 fields",
        ),
    ],
)
def test_uploaded_rows_over_the_record_limit_are_skipped_saying_why(
    client, key, workers, filename, content, reason
):
    from tests.sync_helpers import wait_for

    sid, _cid = connect(client, key, "file", config={"format": "auto"})
    workers(1, **SMALL)
    r = client.post(
        f"/api/v1/source-connections/{sid}/files",
        headers={"X-API-Key": key},
        data={"file": (io.BytesIO(content), filename)},
        content_type="multipart/form-data",
    )
    run = wait_for(r.json["syncId"])
    assert run.status == "completed" and run.records_inserted == 2, run.error
    assert run.skip_reasons == {reason: 1}, run.skip_reasons
    db.session.expire_all()
    assert sorted(r.record_key for r in db.session.scalars(select(Record))) == ["1", "3"]


def test_file_batches_are_cut_by_bytes_too(ctx, app):
    """80 MB of wide CSV rows took a worker to 1.7 GB: batches counted rows only."""
    from hookstream_ui.models import SourceConnection, SourceFile, SourceFileChunk
    from hookstream_ui.sources import REGISTRY
    from hookstream_ui.sources.base import Connection, ReadContext

    user = make_user("owner@example.com")
    env = production(org_of(user))
    source = SourceConnection(org_id=env.org_id, env_id=env.id, name="f", short_name="file", config={})
    db.session.add(source)
    db.session.flush()
    content = b"id,x\n" + b"".join(b"%d,%s\n" % (i, b"y" * 1000) for i in range(200))
    stored = SourceFile(
        org_id=env.org_id,
        env_id=env.id,
        source_id=source.id,
        filename="w.csv",
        format="csv",
        size=len(content),
    )
    db.session.add(stored)
    db.session.flush()
    db.session.add(SourceFileChunk(file_id=stored.id, seq=0, data=content))
    db.session.commit()
    ctx_ = ReadContext(file_id=stored.id, batch_size=5000, batch_bytes=50_000)
    batches = list(REGISTRY["file"].read(Connection(source.id, {}, {}), None, None, {}, True, ctx_))
    sizes = [len(b.items) for b in batches if b.items]
    assert sum(sizes) == 200 and len(sizes) >= 4 and max(sizes) <= 50, sizes


def test_postgresql_rows_over_the_limit_are_skipped_and_batches_cut_by_bytes(client, key, workers, pg_source):
    from tests.sync_helpers import start, wait_for

    pg_source.sql(
        "DROP TABLE IF EXISTS wide; CREATE TABLE wide (id integer PRIMARY KEY, body text);"
        "INSERT INTO wide SELECT g, repeat('y', CASE WHEN g = 7 THEN 30000 ELSE 2000 END) "
        "FROM generate_series(1, 60) g;"
    )
    try:
        sid, _cid = connect(client, key, "postgresql", pg_source.credentials(), {"table": "wide"})
        workers(1, **SMALL)
        run = wait_for(start(client, key, sid, full=True))
        assert run.status == "completed" and run.records_inserted == 59, run.error
        assert run.skip_reasons == {"larger than the record size limit (20,000 bytes)": 1}, run.skip_reasons
        from hookstream_ui.models import SourceConnection
        from hookstream_ui.services.sources import connection_for
        from hookstream_ui.sources import REGISTRY
        from hookstream_ui.sources.base import ReadContext

        conn = connection_for(db.session.get(SourceConnection, sid))
        ctx_ = ReadContext(batch_size=5000, batch_bytes=10_000, max_record_bytes=20_000)
        sizes = [
            len(b.items) for b in REGISTRY["postgresql"].read(conn, None, None, {}, True, ctx_) if b.items
        ]
        assert sum(sizes) == 60 and len(sizes) >= 6 and max(sizes) <= 6, sizes
    finally:
        pg_source.sql("DROP TABLE IF EXISTS wide")


def test_an_api_answer_past_the_limit_fails_saying_so(ctx, http_fixture, monkeypatch):
    from hookstream_ui.sources import http
    from hookstream_ui.sources.base import SourceError

    monkeypatch.setattr(http, "MAX_ANSWER_BYTES", 100)
    with pytest.raises(SourceError, match=r"answered more than 100 bytes"):
        http.request(
            "GET",
            f"{http_fixture.base}/items/page?limit=20",
            headers={"Authorization": f"Bearer {REST_TOKEN}"},
        )


def test_webhook_records_over_the_field_limit_are_skipped_and_pages_stay_small(app, client, key, monkeypatch):
    monkeypatch.setitem(app.config, "MAX_RECORD_FIELDS", 300)
    sid = webhook(client, key)
    wide = client.post(f"/v1/ingest/{sid}", json={"id": "wide", **{f"f{i}": i for i in range(400)}})
    assert wide.status_code == 200
    event = db.session.get(Event, wide.json["event_id"])
    assert list(event.outcomes.values()) == [
        {"result": "skipped", "reason": "more than 300 fields", "key": "wide"}
    ]
    for i in range(8):  # 8 records of 900 KB: a page of 100 would be 7 MB
        assert (
            client.post(
                f"/v1/ingest/{sid}", data=padded(900_000, id=f"big{i}"), content_type="application/json"
            ).status_code
            == 200
        )
    h = {"X-API-Key": key}
    seen, cursor, pages = [], None, 0
    while True:
        page = client.get(
            "/v1/collections/orders/records?limit=100" + (f"&cursor={cursor}" if cursor else ""), headers=h
        )
        assert len(page.get_data()) < 5 * 1024 * 1024 and page.json["records"]
        seen += [r["record_key"] for r in page.json["records"]]
        pages += 1
        if not page.json["has_more"]:
            break
        cursor = page.json["next_cursor"]
    assert sorted(seen) == sorted(f"big{i}" for i in range(8)) and pages >= 2
    schema = client.get("/v1/collections/orders/schema", headers=h).json
    assert all(len(str(f["example"])) <= 201 for f in schema["fields"])


def test_an_answer_that_trickles_in_is_cut_off(ctx, http_fixture, monkeypatch):
    from hookstream_ui.sources import http
    from hookstream_ui.sources.base import SourceError

    monkeypatch.setattr(http, "ANSWER_SECONDS", 1)
    with pytest.raises(SourceError, match="did not answer within"):
        http.request("GET", f"{http_fixture.base}/trickle")
