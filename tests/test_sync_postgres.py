"""End to end: a real worker and Redis sync a real PostgreSQL table."""

from __future__ import annotations

import pytest
from sqlalchemy import func, select

from hookstream_ui.models import Collection, Record, db
from tests.conftest import BIG_ROWS as ROWS
from tests.helpers import make_key, make_user, org_of, production
from tests.sync_helpers import start, wait_for, wait_for_progress


@pytest.fixture
def synced(client, ctx, pg_source, table):
    key = make_key(production(org_of(make_user("owner@example.com"))))
    sid = client.post(
        "/api/v1/source-connections",
        headers={"X-API-Key": key},
        json={
            "sourceShortName": "postgresql",
            "name": "Big table",
            "credentials": pg_source.credentials(),
            "config": {"table": table, "primary_key": "id", "cursor_column": "updated_at"},
        },
    ).json["sourceConnection"]["id"]
    cid = client.post(
        "/v1/collections",
        headers={"X-API-Key": key},
        json={
            "name": "Big table",
            "slug": "big",
            "source_id": sid,
            "stream": table,
            "primary_key_path": "$.id",
        },
    ).json["collection"]["id"]
    return key, sid, cid


def records(cid) -> dict:
    db.session.expire_all()
    return {
        r.record_key: r.data for r in db.session.scalars(select(Record).where(Record.collection_id == cid))
    }


def connect(client, pg_source, name: str, config: dict, key_path: str = "$.id"):
    """A new owner's API key, a PostgreSQL source with `config`, and a collection of it."""
    key = make_key(production(org_of(make_user("owner@example.com"))))
    sid = client.post(
        "/api/v1/source-connections",
        headers={"X-API-Key": key},
        json={
            "sourceShortName": "postgresql",
            "name": name,
            "credentials": pg_source.credentials(),
            "config": config,
        },
    ).json["sourceConnection"]["id"]
    cid = client.post(
        "/v1/collections",
        headers={"X-API-Key": key},
        json={"name": name, "source_id": sid, "primary_key_path": key_path},
    ).json["collection"]["id"]
    return key, sid, cid


def session_of(pg_source):
    """A connection of the test's own to the source database (for transactions held open)."""
    import psycopg

    creds = pg_source.credentials()
    return psycopg.connect(
        host=creds["host"],
        port=creds["port"],
        dbname=creds["database"],
        user=creds["username"],
        password=creds["password"],
    )


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

    pg_source.sql(
        "UPDATE big SET name = 'changed', updated_at = now() + interval '1 second' WHERE id <= 10;"
        f"INSERT INTO big (id, name, amount, updated_at) SELECT g, 'new', 1, now() + interval '1 second' "
        f"FROM generate_series({ROWS + 1}, {ROWS + 5}) g;"
    )
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
    from hookstream_ui.models import SyncRun
    from hookstream_ui.sync.scheduler import resume_stale
    from hookstream_ui.values.times import utcnow
    from tests.sync_helpers import kill_tree

    key, sid, cid = synced
    [worker] = workers(1, SYNC_BATCH_SIZE="200")
    run_id = start(client, key, sid)
    wait_for_progress(run_id, 2000)
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


BATCH = 100


def test_cancel_and_409_while_running(client, synced, workers):
    from hookstream_ui.models import SyncRun

    key, sid, _cid = synced
    workers(1, SYNC_BATCH_SIZE=str(BATCH))
    run_id = start(client, key, sid)
    h = {"X-API-Key": key}
    r = client.post(f"/api/v1/source-connections/{sid}/run", json={}, headers=h)
    assert r.status_code == 409 and r.json["error"] == "sync_in_progress"
    for method, path, body in [
        ("put", "/config", {"config": {"table": "big"}}),
        ("put", "/credentials", {"credentials": {"port": 5432}}),
        ("delete", "/data", None),
        ("delete", "", None),
    ]:
        r = client.open(
            f"/api/v1/source-connections/{sid}{path}", method=method.upper(), json=body, headers=h
        )
        assert r.status_code == 409 and r.json["error"] == "sync_in_progress", (method, path, r.json)
    wait_for_progress(run_id, 500)
    r = client.post(f"/api/v1/source-connections/{sid}/runs/{run_id}/cancel", headers=h)
    assert r.status_code == 200 and r.json["run"]["status"] in ("cancelling", "cancelled")
    db.session.expire_all()
    read_when_cancelled = db.session.get(SyncRun, run_id).progress
    # Prompt in work, not in seconds (a busy machine is slow, not wrong): the worker checks
    # between batches, so it writes at most the batch it was writing when the cancel came.
    run = wait_for(run_id)
    assert run.status == "cancelled" and run.progress <= read_when_cancelled + BATCH < ROWS
    r = client.get(f"/api/v1/source-connections/{sid}/runs/{run_id}", headers=h)
    assert r.json["run"]["status"] == "cancelled" and r.json["run"]["finishedAt"]
    runs = client.get(f"/api/v1/source-connections/{sid}/runs", headers=h).json["runs"]
    assert [x["id"] for x in runs] == [run_id]


def test_incremental_reads_late_commits_and_ties_once(client, synced, workers, pg_source):
    """A row committed after rows with later cursor values were read (a transaction's now()
    is when it began), and a row given the cursor value the last read ended on, are both
    read by the next run; rows read again unchanged are counted so and not rewritten."""
    key, sid, cid = synced
    workers(1)
    assert wait_for(start(client, key, sid)).status == "completed"
    updated_at = {
        r.record_key: r.updated_at
        for r in db.session.scalars(select(Record).where(Record.collection_id == cid))
    }

    late = session_of(pg_source)
    try:
        # Begins first (its now() is earliest), commits after the next run has read past it.
        # Times counted from the table's newest row, not from now(): the re-read window then
        # holds the same rows however long the runs before took.
        late.execute(
            "UPDATE big SET name = 'late', updated_at = "
            "(SELECT max(updated_at) FROM big) + interval '5 seconds' WHERE id = 1"
        )
        pg_source.sql(
            "UPDATE big SET name = 'early', updated_at = "
            "(SELECT max(updated_at) FROM big) + interval '6 seconds' WHERE id = 5"
        )
        run = wait_for(start(client, key, sid))
        assert run.status == "completed" and run.mode == "incremental", run.error
        assert run.records_updated == 1 and records(cid)["1"]["name"] == "name 1"
        late.commit()
    finally:
        late.close()
    # The value the last run ended on, given to a row whose key sorts before the row that had it.
    pg_source.sql(
        "UPDATE big SET name = 'tie', updated_at = (SELECT updated_at FROM big WHERE id = 5) WHERE id = 3"
    )
    run = wait_for(start(client, key, sid))
    assert run.status == "completed" and run.mode == "incremental", run.error
    data = records(cid)
    assert (data["1"]["name"], data["5"]["name"], data["3"]["name"]) == ("late", "early", "tie")
    assert run.records_updated == 2 and run.records_inserted == 0
    # The re-read window (60 s back from the cursor, the newest row's time + 6 s) read the 55
    # newest rows of the table and row 5 again: unchanged, so not rewritten.
    assert run.records_skipped == run.progress - 2 == 56
    assert run.skip_reasons == {"unchanged since it was last written": run.records_skipped}
    db.session.expire_all()
    after = {
        r.record_key: r.updated_at
        for r in db.session.scalars(select(Record).where(Record.collection_id == cid))
    }
    assert after[str(ROWS)] == updated_at[str(ROWS)] and after["3"] > updated_at["3"]


def test_re_read_window_is_a_checked_setting(client, synced):
    key, sid, _ = synced
    h = {"X-API-Key": key}
    for bad in (-1, "soon", 1.5, 10**9):
        r = client.put(
            f"/api/v1/source-connections/{sid}/config",
            headers=h,
            json={"config": {"table": "big", "cursor_column": "updated_at", "cursor_lookback": bad}},
        )
        assert r.status_code == 400 and "cursor_lookback" in r.json["errors"], (bad, r.json)
    r = client.put(
        f"/api/v1/source-connections/{sid}/config",
        headers=h,
        json={"config": {"table": "big", "cursor_column": "updated_at", "cursor_lookback": 0}},
    )
    assert r.status_code == 200, r.json


def test_a_table_that_is_not_there_fails_the_run_at_once_saying_so(client, synced, workers, pg_source):
    key, sid, cid = synced
    workers(1)
    pg_source.sql("ALTER TABLE big RENAME TO big_renamed")
    try:
        run = wait_for(start(client, key, sid), timeout=20)  # not after minutes of retries
    finally:
        pg_source.sql("ALTER TABLE big_renamed RENAME TO big")
    assert (run.status, run.attempt) == ("failed", 1)
    assert run.error == 'PostgreSQL could not read public.big: relation "public.big" does not exist'
    assert db.session.get(Collection, cid).status == "ERROR"


def test_a_view_too_slow_to_count_is_still_read(client, ctx, workers, pg_source, table):
    """Counting (for progress) gives up after a moment instead of failing the run; reads
    are not held to a connection test's few seconds."""
    pg_source.sql(
        "CREATE OR REPLACE VIEW slow_big AS SELECT id, name FROM big WHERE id <= 6 AND pg_sleep(1) IS NOT NULL"
    )
    key, sid, cid = connect(client, pg_source, "Slow view", {"table": "slow_big", "primary_key": "id"})
    workers(1)
    try:
        run = wait_for(start(client, key, sid), timeout=60)
    finally:
        pg_source.sql("DROP VIEW slow_big")
    assert run.status == "completed" and run.attempt == 0, run.error
    assert run.records_inserted == 6 and run.total is None and sorted(records(cid), key=int) == list("123456")


def test_odd_names_text_keys_and_a_date_cursor(client, ctx, workers, pg_source):
    """A schema other than public, names needing quotes, a text key and a date cursor (a
    coarse one: a row changed later the same day has the value the last read ended on)."""
    pg_source.sql(
        'CREATE SCHEMA IF NOT EXISTS "Sales Dept"; DROP TABLE IF EXISTS "Sales Dept"."Open Orders";'
        'CREATE TABLE "Sales Dept"."Open Orders" ("Order Key" text PRIMARY KEY, "Changed On" date NOT NULL, '
        "payload jsonb, tags text[]);"
        'INSERT INTO "Sales Dept"."Open Orders" SELECT \'ord-\' || g, current_date - (3 - g % 3), '
        "'{\"n\": 1}', ARRAY['a'] FROM generate_series(1, 30) g"
    )
    key, sid, cid = connect(
        client,
        pg_source,
        "Orders",
        {
            "schema": "Sales Dept",
            "table": "Open Orders",
            "primary_key": "Order Key",
            "cursor_column": "Changed On",
        },
        key_path="$['Order Key']",
    )
    workers(1)
    try:
        run = wait_for(start(client, key, sid))
        assert run.status == "completed" and run.records_inserted == 30, run.error
        data = records(cid)
        assert data["ord-7"]["payload"] == {"n": 1} and data["ord-7"]["tags"] == ["a"]
        pg_source.sql(
            'UPDATE "Sales Dept"."Open Orders" SET payload = \'{"n": 2}\', "Changed On" = current_date '
            "WHERE \"Order Key\" = 'ord-1'"
        )  # sorts before every key already read today
        run = wait_for(start(client, key, sid))
        assert run.status == "completed" and run.mode == "incremental", run.error
        assert run.records_updated == 1 and records(cid)["ord-1"]["payload"] == {"n": 2}
        assert run.progress == 11  # today's rows only: a date cursor is not rewound
    finally:
        pg_source.sql('DROP SCHEMA "Sales Dept" CASCADE')


def test_rows_changed_while_the_backfill_runs_are_read_next(client, synced, workers, pg_source):
    """A row whose key the backfill had passed, changed while it ran, is read by the next
    run, even when rows read after it carry later cursor values still."""
    from hookstream_ui.models import SyncRun

    key, sid, cid = synced
    workers(1, SYNC_BATCH_SIZE="100")
    run_id = start(client, key, sid)
    wait_for_progress(run_id, 1000)
    pg_source.sql(
        "UPDATE big SET name = 'passed', updated_at = now() + interval '1 hour' WHERE id = 5;"
        f"UPDATE big SET name = 'ahead', updated_at = now() + interval '2 hours' WHERE id = {ROWS - 10}"
    )
    db.session.expire_all()
    assert db.session.get(SyncRun, run_id).progress < ROWS - 10, (
        "the backfill ended before the changes (too fast)"
    )
    run = wait_for(run_id)
    assert run.status == "completed" and records(cid)[str(ROWS - 10)]["name"] == "ahead", run.error
    run = wait_for(start(client, key, sid))
    assert run.status == "completed" and run.mode == "incremental", run.error
    assert records(cid)["5"]["name"] == "passed"


def test_a_numeric_cursor_reads_numbers_committed_late(client, ctx, workers, pg_source):
    """A sequence hands out numbers before their rows commit: a row given 21 can commit after
    the row given 22 was read. The re-read window (in values for a number) finds it."""
    pg_source.sql(
        "DROP TABLE IF EXISTS versioned; DROP SEQUENCE IF EXISTS versioned_v; CREATE SEQUENCE versioned_v;"
        "CREATE TABLE versioned (id int PRIMARY KEY, name text, "
        "version bigint NOT NULL DEFAULT nextval('versioned_v'));"
        "INSERT INTO versioned (id, name) SELECT g, 'name ' || g FROM generate_series(1, 20) g"
    )
    key, sid, cid = connect(
        client,
        pg_source,
        "Versioned",
        {"table": "versioned", "primary_key": "id", "cursor_column": "version", "cursor_lookback": 5},
    )
    workers(1)
    late = session_of(pg_source)
    try:
        assert wait_for(start(client, key, sid)).status == "completed"
        late.execute(
            "UPDATE versioned SET name = 'late', version = nextval('versioned_v') WHERE id = 1"
        )  # 21
        pg_source.sql(
            "UPDATE versioned SET name = 'early', version = nextval('versioned_v') WHERE id = 2"
        )  # 22
        run = wait_for(start(client, key, sid))
        assert run.status == "completed" and run.mode == "incremental", run.error
        assert run.records_updated == 1 and records(cid)["2"]["name"] == "early"
        late.commit()
        run = wait_for(start(client, key, sid))
        assert run.status == "completed" and run.mode == "incremental", run.error
        assert (run.records_updated, records(cid)["1"]["name"]) == (1, "late")
        # Rows 17 to 22 read again (22 less 5), unchanged but for the late one.
        assert run.progress == 6 and run.records_skipped == 5
    finally:
        late.close()
        pg_source.sql("DROP TABLE versioned; DROP SEQUENCE versioned_v")


def test_a_row_nested_too_deep_is_skipped_saying_why_and_the_rest_applied(client, ctx, workers, pg_source):
    """PostgreSQL keeps JSON thousands of levels deep; stored, such a record answered 500 to
    every read of its collection's records (RecursionError), and froze the records page."""
    depth = 5000
    pg_source.sql(
        "DROP TABLE IF EXISTS nested; CREATE TABLE nested (id int PRIMARY KEY, doc jsonb);"
        "INSERT INTO nested SELECT g, '{\"n\": 1}' FROM generate_series(1, 3) g;"
        f"UPDATE nested SET doc = (repeat('[', {depth}) || repeat(']', {depth}))::jsonb WHERE id = 2"
    )
    key, sid, cid = connect(client, pg_source, "Nested", {"table": "nested", "primary_key": "id"})
    workers(1)
    try:
        run = wait_for(start(client, key, sid))
    finally:
        pg_source.sql("DROP TABLE nested")
    assert run.status == "completed", run.error
    assert (run.records_inserted, run.records_skipped) == (2, 1)
    assert run.skip_reasons == {"nested more than 100 levels deep": 1}
    r = client.get(f"/v1/collections/{cid}/records", headers={"X-API-Key": key})
    assert r.status_code == 200 and sorted(x["record_key"] for x in r.json["records"]) == ["1", "3"], r.json
