"""End to end: a real worker and Redis sync a real PostgreSQL table."""
from __future__ import annotations

import pytest
from sqlalchemy import func, select

from hookstream_ui.models import Collection, Record, db
from tests.helpers import make_key, make_user, org_of, production
from tests.sync_helpers import start, wait_for

ROWS = 10_000


@pytest.fixture
def table(pg_source):
    pg_source.sql("DROP TABLE IF EXISTS big; CREATE TABLE big (id integer PRIMARY KEY, name text, "
                  "amount numeric(10,2), updated_at timestamptz NOT NULL DEFAULT now());"
                  f"INSERT INTO big (id, name, amount) SELECT g, 'name ' || g, g / 100.0 FROM generate_series(1, {ROWS}) g;")
    yield "big"
    pg_source.sql("DROP TABLE IF EXISTS big")


@pytest.fixture
def synced(client, ctx, pg_source, table):
    key = make_key(production(org_of(make_user("owner@example.com"))))
    sid = client.post("/api/v1/source-connections", headers={"X-API-Key": key}, json={
        "sourceShortName": "postgresql", "name": "Big table", "credentials": pg_source.credentials(),
        "config": {"table": table, "primary_key": "id", "cursor_column": "updated_at"}}).json["sourceConnection"]["id"]
    cid = client.post("/v1/collections", headers={"X-API-Key": key}, json={
        "name": "Big table", "slug": "big", "source_id": sid, "stream": table,
        "primary_key_path": "$.id"}).json["collection"]["id"]
    return key, sid, cid


def records(cid) -> dict:
    db.session.expire_all()
    return {r.record_key: r.data for r in db.session.scalars(select(Record).where(Record.collection_id == cid))}


def test_backfill_incremental_and_deletes(client, synced, workers, pg_source):
    key, sid, cid = synced
    workers(1)
    run = wait_for(start(client, key, sid))
    assert run.status == "completed", run.error
    assert (run.mode, run.records_inserted, run.records_updated, run.records_skipped) == ("full", ROWS, 0, 0)
    assert run.progress == ROWS and run.total == ROWS
    data = records(cid)
    assert len(data) == ROWS and data["42"]["name"] == "name 42" and data["42"]["amount"] == 0.42
    coll = db.session.get(Collection, cid)
    assert coll.record_count == ROWS and coll.status == "ACTIVE" and coll.backfill_status == "completed"
    assert coll.last_sync_at is not None

    pg_source.sql("UPDATE big SET name = 'changed', updated_at = now() + interval '1 second' WHERE id <= 10;"
                  f"INSERT INTO big (id, name, amount, updated_at) SELECT g, 'new', 1, now() + interval '1 second' "
                  f"FROM generate_series({ROWS + 1}, {ROWS + 5}) g;")
    run = wait_for(start(client, key, sid))
    assert run.status == "completed", run.error
    assert run.mode == "incremental" and run.records_inserted == 5 and run.records_updated >= 10
    assert run.progress < 100  # only what changed was read
    data = records(cid)
    assert len(data) == ROWS + 5 and data["3"]["name"] == "changed" and data[str(ROWS + 5)]["name"] == "new"

    pg_source.sql("DELETE FROM big WHERE id IN (7, 8, 9)")
    run = wait_for(start(client, key, sid, full=True))
    assert run.status == "completed", run.error
    assert run.mode == "full" and run.records_deleted == 3 and run.records_inserted == 0
    data = records(cid)
    assert len(data) == ROWS + 2 and "8" not in data
    assert db.session.get(Collection, cid).record_count == ROWS + 2
    assert db.session.scalar(select(func.count()).select_from(Record)) == ROWS + 2
