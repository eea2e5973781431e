"""End to end: a real worker and Redis sync a real PostgreSQL table."""
from __future__ import annotations

import pytest
from sqlalchemy import func, select

from hookstream_ui.models import Collection, Record, db
from tests.helpers import make_key, make_user, org_of, production
from tests.sync_helpers import start, wait_for

from tests.conftest import BIG_ROWS as ROWS


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


def test_worker_killed_mid_run_resumes_exactly(client, synced, workers, pg_source):
    from tests.sync_helpers import kill_tree
    import time

    from hookstream_ui.models import SyncRun, utcnow
    from hookstream_ui.sync.scheduler import resume_stale

    key, sid, cid = synced
    [worker] = workers(1, SYNC_BATCH_SIZE="200")
    run_id = start(client, key, sid)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        db.session.expire_all()
        run = db.session.get(SyncRun, run_id)
        if run.progress >= 2000:
            break
        time.sleep(0.02)
    kill_tree(worker)  # SIGKILL the worker and its work horse, mid-run
    db.session.expire_all()
    run = db.session.get(SyncRun, run_id)
    assert run.status == "running" and 0 < run.progress < ROWS, (run.status, run.progress)
    checkpointed = run.progress

    # The scheduler notices the silent heartbeat (30 s; here we ask as if a minute passed).
    from datetime import timedelta
    assert resume_stale(utcnow() + timedelta(seconds=60)) == [run_id]
    workers(1, SYNC_BATCH_SIZE="200")
    run = wait_for(run_id)
    assert run.status == "completed", run.error
    assert run.records_inserted == ROWS and run.records_updated == 0, "counts doubled on resume"
    assert run.progress == ROWS and run.progress > checkpointed
    data = records(cid)
    assert len(data) == ROWS and data[str(ROWS)]["name"] == f"name {ROWS}"
    assert db.session.get(Collection, cid).record_count == ROWS


def test_cancel_and_409_while_running(client, synced, workers):
    import time

    from hookstream_ui.models import SyncRun

    key, sid, cid = synced
    workers(1, SYNC_BATCH_SIZE="100")
    run_id = start(client, key, sid)
    h = {"X-API-Key": key}
    r = client.post(f"/api/v1/source-connections/{sid}/run", json={}, headers=h)
    assert r.status_code == 409 and r.json["error"] == "sync_in_progress"
    for method, path, body in [("put", "/config", {"config": {"table": "big"}}), ("put", "/credentials", {"credentials": {}}),
                               ("delete", "/data", None), ("delete", "", None)]:
        r = client.open(f"/api/v1/source-connections/{sid}{path}", method=method.upper(), json=body, headers=h)
        assert r.status_code == 409 and r.json["error"] == "sync_in_progress", (method, path, r.json)
    while db.session.get(SyncRun, run_id).progress < 500:
        time.sleep(0.02)
        db.session.expire_all()
    cancel_at = time.monotonic()
    r = client.post(f"/api/v1/source-connections/{sid}/runs/{run_id}/cancel", headers=h)
    assert r.status_code == 200 and r.json["run"]["status"] in ("cancelling", "cancelled")
    run = wait_for(run_id, timeout=10)
    assert run.status == "cancelled" and time.monotonic() - cancel_at < 5
    assert run.progress < ROWS
    r = client.get(f"/api/v1/source-connections/{sid}/runs/{run_id}", headers=h)
    assert r.json["run"]["status"] == "cancelled" and r.json["run"]["finishedAt"]
    runs = client.get(f"/api/v1/source-connections/{sid}/runs", headers=h).json["runs"]
    assert [x["id"] for x in runs] == [run_id]
