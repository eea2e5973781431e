"""Record search and filters through the word index: where a word starts, on the key or the
JSON text; the index, the newest-records window and a plain scan always agree; the index
follows writes and deletions."""

from __future__ import annotations

import json

import pytest
from sqlalchemy import select, text

from hookstream_ui.extensions import db
from hookstream_ui.services import records as record_svc
from tests.test_ingest import webhook

PEOPLE = [
    ("cus_00420001", {"email": "user42@example.com", "name": "Customer 42", "city": "Zürich", "n": 4.5}),
    (
        "cus_00420002",
        {
            "email": "user420@example.org",
            "name": "Customer 420",
            "city": "Auckland",
            "n": 7,
            "team": "ÉQUIPE Ost",
        },
    ),
    (
        "cus_00990003",
        {
            "email": "other@sample.net",
            "name": "Second customer",
            "city": "Köln",
            "n": 4.5,
            "note": 'says "hi" \\ bye',
            "visits": "Москва, Łódź",
        },
    ),
]


@pytest.fixture
def people(client, key):
    sid = webhook(client, key)
    for record_key, fields in PEOPLE:
        assert (
            client.post(f"/v1/ingest/{sid}", json={"data": {"id": record_key, **fields}}).status_code == 200
        )
    return sid


def keys(client, key, **query):
    response = client.get(
        "/v1/collections/orders/records", query_string={"limit": 100, **query}, headers={"X-API-Key": key}
    )
    assert response.status_code == 200, response.json
    return sorted(r["record_key"] for r in response.json["records"])


@pytest.fixture(params=["index", "window", "scan"])
def path(request, monkeypatch):
    """The same question asked the three ways the service can answer it."""
    if request.param == "index":
        monkeypatch.setattr(record_svc, "WINDOW", 10**9)
    elif request.param == "window":
        monkeypatch.setattr(record_svc, "WINDOW", 1)
    else:
        monkeypatch.setattr(record_svc, "WINDOW", 10**9)
        monkeypatch.setattr(record_svc.search_index, "candidates", lambda words: None)
    return request.param


@pytest.mark.parametrize(
    "term, expected",
    [
        ("cus_0042", ["cus_00420001", "cus_00420002"]),  # a key, by its start
        ("00990003", ["cus_00990003"]),  # a word inside the key
        ("user42@", ["cus_00420001"]),
        ("USER42", ["cus_00420001", "cus_00420002"]),  # any case
        ("example.com", ["cus_00420001"]),  # a word in the middle of a value
        ("@example.com", ["cus_00420001"]),  # starts with a separator: anywhere
        ("customer 42", ["cus_00420001", "cus_00420002"]),
        ("ustomer", []),  # not where a word starts
        ("zürich", ["cus_00420001"]),  # beyond ASCII
        ("Köln", ["cus_00990003"]),
        ("ZÜRICH", ["cus_00420001"]),  # any case beyond ASCII too
        ("équipe", ["cus_00420002"]),
        ("москва", ["cus_00990003"]),  # a capital and small letters beyond ASCII
        ("МОСКВА", ["cus_00990003"]),
        ("łódź", ["cus_00990003"]),
        ("осква", []),
        ('"hi"', ["cus_00990003"]),  # quotes and backslashes as written
        ('hi" \\ bye', ["cus_00990003"]),
        ("4.5", ["cus_00420001", "cus_00990003"]),
        ("nothing-like-this", []),
    ],
)
def test_search_matches_where_a_word_starts(client, key, people, path, term, expected):
    assert keys(client, key, search=term) == expected


@pytest.mark.parametrize(
    "field, value, expected",
    [
        ("data.email", "user42@example.com", ["cus_00420001"]),
        ("data.city", "Zürich", ["cus_00420001"]),
        ("data.n", "4.5", ["cus_00420001", "cus_00990003"]),
        ("data.n", "4.50", ["cus_00420001", "cus_00990003"]),
        ("data.n", "7", ["cus_00420002"]),
        ("data.note", 'says "hi" \\ bye', ["cus_00990003"]),
        ("data.name", "Customer", []),  # a filter is the whole value
    ],
)
def test_filters_through_the_index(client, key, people, path, field, value, expected):
    assert keys(client, key, **{f"filter[{field}]": value}) == expected


def test_the_index_follows_updates_and_deletions(client, key, people, monkeypatch):
    monkeypatch.setattr(record_svc, "WINDOW", 10**9)  # always through the index
    h = {"X-API-Key": key}
    client.post(f"/v1/ingest/{people}", json={"data": {"id": "cus_00420001", "email": "renamed@example.com"}})
    assert keys(client, key, search="user42@") == []
    assert keys(client, key, search="renamed") == ["cus_00420001"]
    assert keys(client, key, **{"filter[data.email]": "renamed@example.com"}) == ["cus_00420001"]
    assert client.delete("/v1/collections/orders/records/cus_00420001", headers=h).status_code == 200
    assert keys(client, key, search="renamed") == []
    if db.engine.dialect.name == "sqlite":
        # The entries go with their records, and the index is really what answers.
        def count():
            return db.session.execute(text("SELECT count(*) FROM records_fts")).scalar()

        assert count() == 2
        db.session.execute(text("DELETE FROM records_fts"))
        db.session.commit()
        assert keys(client, key, search="user420") == []
        record_svc.search_index.refresh(
            db.session.execute(text("SELECT collection_id FROM records LIMIT 1")).scalar(),
            ["cus_00420002", "cus_00990003"],
        )
        db.session.commit()
        assert keys(client, key, search="user420") == ["cus_00420002"]
        assert client.delete("/v1/collections/orders", headers=h).status_code in (200, 204)
        assert count() == 0


def test_search_and_filters_narrow_together(client, key, people, path):
    assert keys(client, key, search="customer", **{"filter[data.n]": "4.5"}) == [
        "cus_00420001",
        "cus_00990003",
    ]
    assert keys(client, key, search="second", **{"filter[data.n]": "4.5"}) == ["cus_00990003"]
    assert keys(client, key, search="second", **{"filter[data.n]": "7"}) == []


def test_bulk_writes_of_new_keys_are_indexed(client, key, people, monkeypatch):
    """A backfill's batches (keys_are_new) are indexed by rowid range; when a key turns out
    to exist after all, the batch is indexed key by key, so nothing is missed either way."""
    from hookstream_ui.models import Collection
    from hookstream_ui.services import upsert

    monkeypatch.setattr(record_svc, "WINDOW", 10**9)
    collection = db.session.query(Collection).filter_by(slug="orders").one()
    fresh = [upsert.Incoming({"data": {"id": f"bulk_{i:03d}", "word": f"alpha{i}"}}) for i in range(50)]
    assert upsert.apply(collection, fresh, keys_are_new=True).inserted == 50
    db.session.commit()
    assert keys(client, key, search="alpha7") == ["bulk_007"]
    mixed = [
        upsert.Incoming({"data": {"id": "bulk_007", "word": "omega"}}),
        upsert.Incoming({"data": {"id": "bulk_999", "word": "omega"}}),
    ]
    upsert.apply(collection, mixed, keys_are_new=True)
    db.session.commit()
    assert keys(client, key, search="omega") == ["bulk_007", "bulk_999"]
    assert keys(client, key, search="alpha7") == []


def test_the_migration_indexes_records_already_stored(app, client, key, people, monkeypatch):
    from flask_migrate import downgrade, upgrade

    monkeypatch.setattr(record_svc, "WINDOW", 10**9)
    downgrade(revision="0006")
    try:
        db.session.execute(
            text(
                "INSERT INTO records (id, org_id, env_id, collection_id, record_key, data, created_at, updated_at) "
                "SELECT 'rec_old', org_id, env_id, collection_id, 'old_1', :data, created_at, updated_at "
                "FROM records WHERE record_key = 'cus_00420001'"
            ),
            {"data": '{"data": {"id": "old_1", "word": "Zebra"}}'},
        )
        db.session.commit()
    finally:
        upgrade()
    assert keys(client, key, search="zebra") == ["old_1"]
    assert keys(client, key, search="user42@") == ["cus_00420001"]


def test_records_stored_with_escapes_are_rewritten_as_written(app, client, key, people, monkeypatch):
    """Migration 0011: SQLite kept \\u escapes, so a word beyond ASCII was found only in the
    case it was stored in, and every escape began a word."""
    from flask_migrate import downgrade, upgrade

    if db.engine.dialect.name != "sqlite":
        pytest.skip("PostgreSQL's JSONB keeps no escapes")
    monkeypatch.setattr(record_svc, "WINDOW", 10**9)
    downgrade(revision="0010")
    try:
        escaped = json.dumps({"id": "cus_00990003", "visits": "Москва, Łódź", "bell": "\x07"})
        db.session.execute(
            text("UPDATE records SET data = :d WHERE record_key = 'cus_00990003'"), {"d": escaped}
        )
        db.session.execute(
            text(
                "INSERT OR REPLACE INTO records_fts(rowid, body) SELECT rowid, record_key || ' ' || data "
                "FROM records WHERE record_key = 'cus_00990003'"
            )
        )
        db.session.commit()
        # (Read through SQL: the app's own queries expect the newest schema.)
        assert (
            db.session.execute(
                text("SELECT count(*) FROM records_fts WHERE records_fts MATCH '\"москва\"'")
            ).scalar()
            == 0
        )
    finally:
        upgrade()
    stored = db.session.execute(text("SELECT data FROM records WHERE record_key = 'cus_00990003'")).scalar()
    assert "Москва, Łódź" in stored and json.loads(stored)["bell"] == "\x07"
    assert keys(client, key, search="москва") == ["cus_00990003"]
    assert keys(client, key, search="осква") == []


def test_the_lean_index_migration_keeps_search_right(app, client, key, people, monkeypatch):
    """0008 rewrites the records table on SQLite, which renumbers rows after a gap; the word
    index must follow them."""
    from flask_migrate import downgrade, upgrade

    monkeypatch.setattr(record_svc, "WINDOW", 10**9)
    downgrade(revision="0007")
    try:
        first = db.session.execute(
            text("SELECT record_key FROM records ORDER BY rowid LIMIT 1")
            if db.engine.dialect.name == "sqlite"
            else text("SELECT record_key FROM records ORDER BY id LIMIT 1")
        ).scalar()
        # Deleted as the app did then (its words first), in SQL: the app expects the newest schema.
        if db.engine.dialect.name == "sqlite":
            db.session.execute(
                text(
                    "DELETE FROM records_fts WHERE rowid IN (SELECT rowid FROM records WHERE record_key = :k)"
                ),
                {"k": first},
            )
        db.session.execute(text("DELETE FROM records WHERE record_key = :k"), {"k": first})
        db.session.commit()
    finally:
        upgrade()
    remaining = [k for k, _ in PEOPLE if k != first]
    for record_key in remaining:
        assert keys(client, key, search=record_key) == [record_key]
    assert keys(client, key, search=first) == []
    indexes = {ix["name"] for ix in db.inspect(db.engine).get_indexes("records")}
    assert not indexes & {
        "ix_records_org_id",
        "ix_records_env_id",
        "ix_records_created_at",
        "ix_records_collection_id",
    }


def test_records_and_their_words_go_with_their_organization(app, client, key, people):
    """Records carry org and environment without foreign keys: they go through their collection."""
    from hookstream_ui.models import Org

    org = db.session.scalar(select(Org))
    db.session.delete(org)
    db.session.commit()
    assert db.session.execute(text("SELECT count(*) FROM records")).scalar() == 0
    if db.engine.dialect.name == "sqlite":
        assert db.session.execute(text("SELECT count(*) FROM records_fts")).scalar() == 0


def test_rebuild_command_restores_a_lost_index(app, client, key, people, monkeypatch):
    monkeypatch.setattr(record_svc, "WINDOW", 10**9)
    lose = (
        "DELETE FROM records_fts"
        if db.engine.dialect.name == "sqlite"
        else "UPDATE records SET search_words = NULL"
    )
    db.session.execute(text(lose))
    db.session.commit()
    assert keys(client, key, search="user42@") == []
    result = app.test_cli_runner().invoke(args=["rebuild-search-index"])
    assert result.exit_code == 0 and "indexed 3 records" in result.output, result.output
    assert keys(client, key, search="user42@") == ["cus_00420001"]


def test_search_index_can_be_off_and_turned_on_later(app, client, key, workers, monkeypatch):
    """Off: nothing is indexed and searches read every record (same answers). Turning it on
    indexes the stored records in a job; until it is done, searches still scan."""
    import time

    from hookstream_ui.models import Collection

    monkeypatch.setattr(record_svc, "WINDOW", 10**9)
    h = {"X-API-Key": key}
    sid = webhook(client, key, collection={"search_index": False})
    made = client.get("/v1/collections/orders", headers=h).json["collection"]
    assert made["search_index"] == "off"
    for record_key, fields in PEOPLE:
        client.post(f"/v1/ingest/{sid}", json={"data": {"id": record_key, **fields}})

    def indexed() -> int:
        if db.engine.dialect.name == "sqlite":
            return db.session.execute(text("SELECT count(*) FROM records_fts")).scalar()
        return db.session.execute(
            text("SELECT count(*) FROM records WHERE search_words IS NOT NULL")
        ).scalar()

    assert indexed() == 0
    assert keys(client, key, search="user42@") == ["cus_00420001"]  # a scan
    bad = client.patch("/v1/collections/orders", headers=h, json={"search_index": "sometimes"})
    assert bad.status_code == 400 and "search_index" in bad.json["errors"]
    assert client.get("/v1/collections/orders", headers=h).json["collection"]["search_index"] == "off"

    turned = client.patch("/v1/collections/orders", headers=h, json={"search_index": True})
    assert turned.status_code == 200 and turned.json["collection"]["search_index"] == "building"
    assert keys(client, key, search="user42@") == ["cus_00420001"]  # still a scan, still right
    workers(1)
    deadline = time.monotonic() + 30
    while client.get("/v1/collections/orders", headers=h).json["collection"]["search_index"] != "on":
        assert time.monotonic() < deadline, "the index job did not finish"
        time.sleep(0.2)
    db.session.expire_all()
    assert indexed() == 3
    assert keys(client, key, search="user42@") == ["cus_00420001"]
    collection = db.session.query(Collection).filter_by(slug="orders").one()
    assert collection.search_index == "on"
    # Off again: new records are not indexed, and searches still find them.
    client.patch("/v1/collections/orders", headers=h, json={"search_index": False})
    client.post(f"/v1/ingest/{sid}", json={"data": {"id": "cus_new", "email": "fresh@example.com"}})
    assert keys(client, key, search="fresh@") == ["cus_new"]
    assert indexed() == 3


def test_a_lost_index_job_is_enqueued_again_by_the_scheduler(app, client, key, workers):
    """A collection left `building` with no pass waiting or running (Redis flushed, the pass
    failed, its worker died) gets a new pass from the scheduler, and the index is finished."""
    import time

    from hookstream_ui.infra.queues import queue
    from hookstream_ui.sync import scheduler

    h = {"X-API-Key": key}
    sid = webhook(client, key, collection={"search_index": False})
    for record_key, fields in PEOPLE:
        client.post(f"/v1/ingest/{sid}", json={"data": {"id": record_key, **fields}})
    assert (
        client.patch("/v1/collections/orders", headers=h, json={"search_index": True}).json["collection"][
            "search_index"
        ]
        == "building"
    )
    collection_id = client.get("/v1/collections/orders", headers=h).json["collection"]["id"]
    assert scheduler.requeue_lost_indexing() == []  # its pass is waiting
    queue("default").empty()  # lost
    assert scheduler.requeue_lost_indexing() == [collection_id]
    assert scheduler.requeue_lost_indexing() == []
    workers(1)
    deadline = time.monotonic() + 30
    while client.get("/v1/collections/orders", headers=h).json["collection"]["search_index"] != "on":
        assert time.monotonic() < deadline, "the index job did not finish"
        time.sleep(0.2)
    assert keys(client, key, search="user42@") == ["cus_00420001"]


def test_the_sqlite_word_index_merges_sixteen_segments_at_a_time(app):
    """Migration 0010: FTS5's default merges (4 segments) cost a backfill a tenth of its time."""
    from flask_migrate import downgrade, upgrade

    with app.app_context():
        if db.engine.dialect.name != "sqlite":
            pytest.skip("PostgreSQL keeps its words in a GIN index")

        def automerge():
            return db.session.execute(text("SELECT v FROM records_fts_config WHERE k = 'automerge'")).scalar()

        assert automerge() == 16
        downgrade(revision="0009")
        try:
            assert automerge() == 4
        finally:
            upgrade()
        assert automerge() == 16
