"""PostgreSQL's logical replication as a source's change feed, against the embedded
PostgreSQL with wal_level=logical: a snapshot, then every insert, update, delete and
truncate streamed from the source's own slot (pgoutput), committed here with its position;
the slot advanced only past that, and dropped with the source."""

from __future__ import annotations

import threading
import time

import pytest
from sqlalchemy import select

from hookstream_ui.models import Collection, SourceConnection, SyncRun, db
from hookstream_ui.sources import pg_replication
from hookstream_ui.values.times import as_utc, utcnow
from tests.helpers import auth, connect_pull
from tests.helpers import records_of as records
from tests.helpers import run_inline as run


@pytest.fixture(autouse=True)
def _streams_end_once_caught_up(app):
    app.config["SYNC_STREAM_SECONDS"] = 0
    yield
    app.config["SYNC_STREAM_SECONDS"] = 300


@pytest.fixture
def tables(pg_source):
    pg_source.sql(
        "DROP TABLE IF EXISTS people, orders, nokey CASCADE;"
        "CREATE TABLE people (id integer PRIMARY KEY, name text, amount numeric(10,2), tags text[], "
        "doc jsonb, seen timestamptz, note text);"
        "INSERT INTO people (id, name, amount) SELECT g, 'person ' || g, g / 4.0 FROM generate_series(1, 5) g;"
        "CREATE TABLE orders (id integer PRIMARY KEY, person integer, total numeric);"
        "CREATE TABLE nokey (code text, label text);"
    )
    yield
    pg_source.sql(
        "SELECT pg_drop_replication_slot(slot_name) FROM pg_replication_slots "
        "WHERE slot_name LIKE 'hookstream_%' AND NOT active;"
        "DO $$ DECLARE p text; BEGIN FOR p IN SELECT pubname FROM pg_publication LOOP "
        "EXECUTE format('DROP PUBLICATION %I', p); END LOOP; END $$;"
        "DROP TABLE IF EXISTS people, orders, nokey CASCADE;"
    )


def connect(client, key, pg_source, table: str = "people", key_column: str = "id") -> tuple[str, str]:
    return connect_pull(
        client, key, "PostgreSQL", pg_source.credentials(), table, f"$.{key_column}",
        replication="logical", table=table, primary_key=key_column,
    )  # fmt: skip


def connection_test(client, key, credentials: dict, table: str) -> str:
    """What the connection test of a new logical-replication source says."""
    body = {
        "sourceShortName": "postgresql",
        "name": "Not ready",
        "credentials": credentials,
        "config": {"replication": "logical", "table": table},
    }
    sid = client.post("/api/v1/source-connections", headers=auth(key), json=body).json["sourceConnection"][
        "id"
    ]
    return client.post(f"/api/v1/source-connections/{sid}/test", json={}, headers=auth(key)).json["message"]


def bind(client, key, sid: str, table: str, key_column: str = "id") -> str:
    made = client.post(
        "/v1/collections",
        headers=auth(key),
        json={
            "name": f"Rows of {table}",
            "source_id": sid,
            "stream": table,
            "primary_key_path": f"$.{key_column}",
        },
    )
    assert made.status_code == 201, made.json
    return made.json["collection"]["id"]


def slot_of(pg_source, sid: str) -> str:
    slot, _ = pg_replication.names(sid)
    return pg_source.sql(
        f"SELECT slot_name || ':' || confirmed_flush_lsn FROM pg_replication_slots WHERE slot_name = '{slot}'"
    )


def test_a_snapshot_then_every_change_streams_in_deletes_included(client, key, pg_source, tables):
    sid, cid = connect(client, key, pg_source)
    done = run(sid)
    assert done.status == "completed", done.error
    assert sorted(records(cid)) == ["1", "2", "3", "4", "5"]
    slot, _ = pg_replication.names(sid)
    assert slot in slot_of(pg_source, sid)

    pg_source.sql(
        "INSERT INTO people (id, name, amount, tags, doc, seen) VALUES "
        "(6, 'six', 1.50, '{a,b}', '{\"deep\": {\"n\": 1}}', '2026-01-02 03:04:05+00');"
        "UPDATE people SET name = 'renamed' WHERE id = 2;"
        "DELETE FROM people WHERE id = 3;"
    )
    done = run(sid)
    assert done.status == "completed" and done.mode == "incremental", done.error
    assert (done.records_inserted, done.records_updated, done.records_deleted) == (1, 1, 1)
    data = records(cid)
    assert sorted(data) == ["1", "2", "4", "5", "6"] and data["2"]["name"] == "renamed"
    # As the cursor reader gives it: PostgreSQL's own row_to_json of the row.
    expected = (
        pg_source.sql("SELECT row_to_json(t) FROM people t WHERE id = 6").strip().splitlines()[2].strip()
    )
    import json

    assert data["6"] == json.loads(expected)
    assert (
        data["6"]["amount"] == 1.50
        and data["6"]["tags"] == ["a", "b"]
        and data["6"]["doc"] == {"deep": {"n": 1}}
    )

    done = run(sid)  # nothing new: nothing applied twice
    assert done.status == "completed" and done.records_inserted == done.records_updated == 0, done.error


def test_a_truncate_empties_the_collection_and_later_rows_arrive(client, key, pg_source, tables):
    sid, cid = connect(client, key, pg_source)
    assert run(sid).status == "completed"
    pg_source.sql("TRUNCATE people; INSERT INTO people (id, name) VALUES (10, 'after');")
    done = run(sid)
    assert done.status == "completed", done.error
    assert sorted(records(cid)) == ["10"]


def test_a_transaction_over_two_tables_reaches_both_collections(client, key, pg_source, tables):
    sid, people = connect(client, key, pg_source)
    orders = bind(client, key, sid, "orders")
    assert run(sid).status == "completed"
    pg_source.sql(
        "BEGIN; INSERT INTO orders VALUES (1, 1, 9.99), (2, 4, 5); UPDATE people SET note = 'ordered' "
        "WHERE id IN (1, 4); COMMIT;"
    )
    done = run(sid)
    assert done.status == "completed", done.error
    assert sorted(records(orders)) == ["1", "2"] and records(orders)["1"]["total"] == 9.99
    assert records(people)["4"]["note"] == "ordered"


def test_a_collection_paused_meanwhile_is_read_whole_again_when_resumed(client, key, pg_source, tables):
    sid, people = connect(client, key, pg_source)
    orders = bind(client, key, sid, "orders")
    assert run(sid).status == "completed"
    r = client.patch(f"/v1/collections/{orders}", json={"status": "PAUSED"}, headers=auth(key))
    assert r.status_code == 200, r.json
    pg_source.sql("INSERT INTO orders VALUES (5, 1, 3); INSERT INTO people (id, name) VALUES (30, 'thirty')")
    assert run(sid).status == "completed"
    assert "30" in records(people) and not records(orders)  # paused: takes nothing
    r = client.patch(f"/v1/collections/{orders}", json={"status": "ACTIVE"}, headers=auth(key))
    assert r.status_code == 200, r.json
    done = run(sid)
    assert done.status == "completed", done.error
    assert sorted(records(orders)) == ["5"]  # what changed while it was paused is not lost


def test_a_long_transaction_is_applied_in_parts_and_whole(app, client, key, pg_source, tables):
    sid, cid = connect(client, key, pg_source)
    assert run(sid).status == "completed"
    app.config["SYNC_BATCH_SIZE"] = 400
    try:
        pg_source.sql(
            "INSERT INTO people (id, name) SELECT g, 'bulk ' || g FROM generate_series(100, 2599) g"
        )
        done = run(sid)
    finally:
        app.config["SYNC_BATCH_SIZE"] = 5000
    assert done.status == "completed" and done.records_inserted == 2500, done.error
    assert len(records(cid)) == 2505
    db.session.expire_all()
    position = db.session.get(SourceConnection, sid).feed_position
    assert "txn" not in position and position["lsn"]  # the whole transaction is in


def test_a_row_deleted_and_inserted_again_in_one_long_transaction_is_there(
    app, client, key, pg_source, tables
):
    """The delete and the insert share the transaction's commit time and fall in different
    parts of it: the feed's order, not the time, says the insert came last."""
    sid, cid = connect(client, key, pg_source)
    assert run(sid).status == "completed"
    app.config["SYNC_BATCH_SIZE"] = 100
    try:
        pg_source.sql(
            "BEGIN; DELETE FROM people WHERE id = 1;"
            "INSERT INTO people (id, name) SELECT g, 'filler ' || g FROM generate_series(100, 599) g;"
            "INSERT INTO people (id, name) VALUES (1, 'back again'); COMMIT;"
        )
        done = run(sid)
    finally:
        app.config["SYNC_BATCH_SIZE"] = 5000
    assert done.status == "completed", done.error
    assert records(cid)["1"]["name"] == "back again"


def test_a_column_added_meanwhile_simply_appears(client, key, pg_source, tables):
    sid, cid = connect(client, key, pg_source)
    assert run(sid).status == "completed"
    pg_source.sql(
        "INSERT INTO people (id, name) VALUES (50, 'before');"
        "ALTER TABLE people ADD COLUMN city text;"
        "INSERT INTO people (id, name, city) VALUES (51, 'after', 'Oslo');"
        "UPDATE people SET city = 'Lima' WHERE id = 50;"
    )
    done = run(sid)
    assert done.status == "completed", done.error
    data = records(cid)
    assert data["51"]["city"] == "Oslo" and data["50"]["city"] == "Lima"
    pg_source.sql("ALTER TABLE people DROP COLUMN city")


def test_changes_committed_here_are_not_applied_again_when_the_slot_was_not_advanced(
    client, key, pg_source, tables
):
    """A worker killed after its commit and before the slot moved: the next run reads the
    same transactions from the slot and skips them by the committed position."""
    sid, cid = connect(client, key, pg_source)
    assert run(sid).status == "completed"
    before = slot_of(pg_source, sid)
    pg_source.sql(
        "INSERT INTO people (id, name) VALUES (7, 'seven'); UPDATE people SET name = 'again' WHERE id = 1"
    )
    from hookstream_ui.sources import pg_replication as replication

    advance, replication.advance = replication.advance, lambda *args: None  # as if killed before it
    try:
        done = run(sid)
    finally:
        replication.advance = advance
    assert done.status == "completed" and done.records_inserted == 1, done.error
    assert slot_of(pg_source, sid) == before  # the slot still holds them
    done = run(sid)
    assert done.status == "completed", done.error
    assert done.records_inserted == done.records_updated == 0
    assert slot_of(pg_source, sid) != before  # now past them
    assert records(cid)["1"]["name"] == "again"


def test_the_stream_goes_on_after_the_source_restarts(client, key, pg_source, tables):
    sid, cid = connect(client, key, pg_source)
    assert run(sid).status == "completed"
    pg_source.sql("INSERT INTO people (id, name) VALUES (20, 'before the crash')")
    pg_source.restart()  # the slot, and what it holds, survive it
    pg_source.sql("INSERT INTO people (id, name) VALUES (21, 'after it')")
    done = run(sid)
    assert done.status == "completed" and done.records_inserted == 2, done.error
    assert {"20", "21"} <= set(records(cid))


def test_a_table_without_a_key_is_refused_until_its_replica_identity_is_full(client, key, pg_source, tables):
    sid, cid = connect(client, key, pg_source, table="nokey", key_column="code")
    tested = client.post(f"/api/v1/source-connections/{sid}/test", json={}, headers=auth(key)).json
    assert "public.nokey has no primary key" in tested["message"], tested
    assert "REPLICA IDENTITY FULL" in tested["message"]
    done = run(sid)
    assert done.status == "failed" and "public.nokey has no primary key" in done.error, done.error

    pg_source.sql(
        "ALTER TABLE nokey REPLICA IDENTITY FULL; INSERT INTO nokey VALUES ('a', 'one'), ('b', 'two')"
    )
    done = run(sid)
    assert done.status == "completed", done.error
    pg_source.sql("DELETE FROM nokey WHERE code = 'a'; UPDATE nokey SET label = 'deux' WHERE code = 'b'")
    done = run(sid)
    assert done.status == "completed", done.error
    assert records(cid) == {"b": {"code": "b", "label": "deux"}}


def test_a_user_without_replication_is_told_what_to_grant(client, key, pg_source, tables):
    pg_source.sql(
        "DROP ROLE IF EXISTS reader; CREATE ROLE reader LOGIN PASSWORD 'reader-pw-42'; GRANT SELECT ON people TO reader;"
    )
    try:
        message = connection_test(
            client, key, pg_source.credentials(username="reader", password="reader-pw-42"), "people"
        )
        assert "the user reader lacks the REPLICATION attribute: ALTER ROLE reader REPLICATION" in message
        assert "there is no publication" in message and "CREATE PUBLICATION" in message
    finally:
        pg_source.sql("DROP OWNED BY reader; DROP ROLE reader")


def test_deleting_the_source_drops_its_slot_and_publication(client, key, pg_source, tables):
    sid, _ = connect(client, key, pg_source)
    assert run(sid).status == "completed"
    slot, publication = pg_replication.names(sid)
    assert slot in slot_of(pg_source, sid)
    r = client.delete(f"/api/v1/source-connections/{sid}", headers=auth(key))
    assert r.status_code in (200, 204), r.get_data(as_text=True)
    assert slot not in slot_of(pg_source, sid)
    assert publication not in pg_source.sql("SELECT pubname FROM pg_publication")


def test_turning_replication_off_drops_the_slot(client, key, pg_source, tables):
    sid, _ = connect(client, key, pg_source)
    assert run(sid).status == "completed"
    slot, _ = pg_replication.names(sid)
    assert client.get(f"/v1/syncs/{sid}", headers=auth(key)).json["health"]["replication"]["position"]
    r = client.put(
        f"/api/v1/source-connections/{sid}/config",
        headers=auth(key),
        json={"config": {"replication": "cursor"}},
    )
    assert r.status_code == 200, r.json
    assert slot not in slot_of(pg_source, sid)
    db.session.expire_all()
    assert db.session.get(SourceConnection, sid).feed_position is None
    assert "replication" not in client.get(f"/v1/syncs/{sid}", headers=auth(key)).json["health"]


def test_the_run_records_the_feed_position_with_the_records(client, key, pg_source, tables):
    sid, cid = connect(client, key, pg_source)
    assert run(sid).status == "completed"
    pg_source.sql("INSERT INTO people (id, name) VALUES (8, 'eight')")
    done = run(sid)
    db.session.expire_all()
    source = db.session.get(SourceConnection, sid)
    flushed = slot_of(pg_source, sid).strip().splitlines()[2].split(":")[1].strip()
    assert source.feed_position["lsn"] == flushed
    assert done.cursor["changes"]["inserted"] == 1
    assert db.session.scalar(select(SyncRun).where(SyncRun.id == done.id)).status == "completed"
    assert db.session.get(Collection, cid).record_count == 6
    assert done.cursor["changes"]["lag_ms"] >= 0 and done.cursor["changes"]["last_change_at"]


def test_a_server_not_set_up_for_it_is_told_each_thing_to_change(client, key, tmp_root, tables):
    from tests.fixture_servers import PostgresSource

    plain = PostgresSource(tmp_root / "pg-plain", settings="-c wal_level=replica -c max_replication_slots=0")
    try:
        message = connection_test(client, key, plain.credentials(), "customers")
        assert message.startswith(
            "Connected, but logical replication cannot start: wal_level is replica, not logical"
        )
        assert "rds.logical_replication = 1" in message and "restart PostgreSQL" in message
        assert "every replication slot is in use: raise max_replication_slots" in message
        assert "REPLICATION attribute" not in message  # this user is a superuser
    finally:
        plain.stop()


@pytest.mark.slow
def test_a_worker_killed_mid_stream_twice_loses_and_doubles_nothing(client, key, pg_source, tables, workers):
    """Rows committed in small transactions while the stream runs; its worker is SIGKILLed
    twice mid-stream and the run resumed each time: every row arrives once, counted once."""
    import threading
    from datetime import timedelta

    from hookstream_ui.sync.scheduler import resume_stale
    from hookstream_ui.values.times import utcnow
    from tests.sync_helpers import kill_tree, start, wait_for, wait_for_progress

    sid, cid = connect(client, key, pg_source)
    settings = {"SYNC_BATCH_SIZE": "20", "SYNC_STREAM_SECONDS": "3"}
    [worker] = workers(1, **settings)
    run_id = start(client, key, sid)
    wait_for_progress(run_id, 5)  # the snapshot is in

    def load() -> None:
        for first in range(100, 1600, 25):
            pg_source.sql(
                f"INSERT INTO people (id, name) SELECT g, 'n' || g FROM generate_series({first}, {first + 24}) g;"
                f"UPDATE people SET amount = {first} WHERE id = {first};"
            )

    writer = threading.Thread(target=load)
    writer.start()
    for at_least in (200, 700):
        wait_for_progress(run_id, at_least)
        kill_tree(worker)
        assert resume_stale(utcnow() + timedelta(seconds=60)) == [run_id]
        [worker] = workers(1, **settings)
    writer.join(60)
    done = wait_for(run_id, timeout=120)
    assert done.status == "completed", done.error
    data = records(cid)
    assert len(data) == 5 + 1500 and data["1575"]["amount"] == 1575
    assert done.records_inserted == 5 + 1500, "a change was counted twice, or lost"
    assert done.records_updated == 60


def test_a_slot_nobody_reads_turns_the_source_degraded_then_error(app, signed_in_with_key, pg_source, tables):
    from hookstream_ui.sync import feeds

    client, _, key = signed_in_with_key
    sid, _ = connect(client, key, pg_source)
    assert run(sid).status == "completed"
    pg_source.sql(
        "INSERT INTO people (id, name) SELECT g, repeat('x', 500) FROM generate_series(100, 2000) g"
    )
    source = db.session.get(SourceConnection, sid)
    slot, _ = pg_replication.names(sid)
    app.config.update(FEED_DEGRADED_BYTES=100_000)
    try:
        lag = feeds.check(source)
        assert lag["slot"] == slot and lag["retained_bytes"] >= 100_000 and lag["behind_bytes"] > 0, lag
        assert source.health_status == "degraded"
        assert source.last_error.startswith(f"The replication slot {slot} keeps ")
        assert "turn logical replication off or delete the source" in source.last_error
        app.config.update(FEED_ERROR_BYTES=100_000)
        feeds.check(source)
        assert source.health_status == "error"
        shown = client.get(f"/v1/syncs/{sid}", headers=auth(key)).json["health"]
        assert shown["status"] == "error" and slot in shown["last_error"]
        slot_said = shown["replication"]
        assert slot_said["slot"] == slot and slot_said["retained_bytes"] >= 100_000, slot_said
        assert (
            slot_said["behind_bytes"] > 0
            and slot_said["behind_seconds"] is not None
            and slot_said["checked_at"]
        )
        page = client.get(f"/sources/{sid}").get_data(as_text=True)
        assert "Replication slot" in page and slot in page and "of WAL that PostgreSQL cannot remove" in page
    finally:
        app.config.update(FEED_DEGRADED_BYTES=1024**3, FEED_ERROR_BYTES=16 * 1024**3)
    streamed = run(sid)  # read: the slot moves on
    assert streamed.status == "completed" and streamed.records_inserted == 1901, streamed.error
    page = client.get(f"/runs/{streamed.id}").get_data(as_text=True)
    assert "Streamed changes. The newest change was committed at" in " ".join(page.split())
    db.session.expire_all()
    source = db.session.get(SourceConnection, sid)
    feeds.check(source)
    assert source.health_status == "healthy" and source.feed_lag["behind_seconds"] == 0, source.feed_lag


def test_an_unknown_change_capture_mode_is_refused_by_name(client, key, pg_source):
    body = {
        "sourceShortName": "postgresql",
        "name": "Bad mode",
        "credentials": pg_source.credentials(),
        "config": {"replication": "bogus", "table": "customers"},
    }
    r = client.post("/api/v1/source-connections", headers=auth(key), json=body)
    assert r.status_code == 400 and r.json["errors"] == {"replication": "must be one of: cursor, logical"}
    assert db.session.scalar(select(SourceConnection)) is None


def stream_in_thread(app, sid: str) -> tuple[str, threading.Thread]:
    """A run of the source executed in a thread as a worker would, once it streams."""
    from hookstream_ui.services.runs import start_run
    from hookstream_ui.sync import jobs

    started = start_run(db.session.get(SourceConnection, sid))
    run_id, token = started.id, started.claim_token

    def work() -> None:
        with app.app_context():
            jobs.run_sync(run_id, token)

    thread = threading.Thread(target=work, daemon=True)
    thread.start()
    wait_until(lambda: db.session.get(SyncRun, run_id).streaming, "the run never began to stream")
    return run_id, thread


def wait_until(check, failure: str, seconds: float = 20) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        db.session.expire_all()
        if check():
            return
        time.sleep(0.05)
    raise AssertionError(failure)


def ended(run_id: str, thread: threading.Thread) -> SyncRun:
    thread.join(15)
    assert not thread.is_alive(), "the stream went on"
    db.session.expire_all()
    return db.session.get(SyncRun, run_id)


def test_tables_are_added_to_and_removed_from_a_streaming_source(app, client, key, pg_source, tables):
    sid, people = connect(client, key, pg_source)
    source = db.session.get(SourceConnection, sid)
    source.sync_frequency, source.sync_status = "24h", "active"  # scheduled, but not soon
    db.session.commit()
    app.config["SYNC_STREAM_SECONDS"] = 60
    run_id, thread = stream_in_thread(app, sid)
    pg_source.sql("INSERT INTO people (id, name) VALUES (40, 'forty'); INSERT INTO orders VALUES (1, 40, 9)")
    wait_until(lambda: "40" in records(people), "a change did not stream in")

    orders = bind(client, key, sid, "orders")  # while it streams
    done = ended(run_id, thread)
    assert done.status == "completed" and done.rebound, done.error
    source = db.session.get(SourceConnection, sid)
    assert source.next_run_at is not None and as_utc(source.next_run_at) <= utcnow()  # on at once

    run_id, thread = stream_in_thread(app, sid)  # the new table's snapshot, then both stream
    assert sorted(records(orders)) == ["1"]
    pg_source.sql("INSERT INTO orders VALUES (2, 40, 1)")
    wait_until(lambda: "2" in records(orders), "the added table's changes did not stream in")

    r = client.delete(f"/v1/collections/{orders}/sources/{sid}", headers=auth(key))
    assert r.status_code == 200, r.json  # not refused as "a sync is running"
    done = ended(run_id, thread)
    assert done.status == "completed" and done.rebound, done.error

    app.config["SYNC_STREAM_SECONDS"] = 0
    pg_source.sql("INSERT INTO orders VALUES (3, 40, 1); INSERT INTO people (id, name) VALUES (41, 'on')")
    done = run(sid)
    assert done.status == "completed", done.error
    assert "41" in records(people) and sorted(records(orders)) == ["1", "2"]
    published = pg_source.sql(
        f"SELECT string_agg(tablename, ',') FROM pg_publication_tables WHERE pubname = '{slot_of_name(sid)}'"
    )
    assert "people" in published and "orders" not in published


def slot_of_name(sid: str) -> str:
    return pg_replication.names(sid)[1]


def test_a_running_stream_outlasts_a_dropped_connection_and_a_source_restart(
    app, client, key, pg_source, tables
):
    sid, cid = connect(client, key, pg_source)
    app.config["SYNC_STREAM_SECONDS"] = 60
    run_id, thread = stream_in_thread(app, sid)
    pg_source.sql(
        "INSERT INTO people (id, name) VALUES (40, 'before');"
        "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
        "WHERE application_name = 'hookstream' AND pid <> pg_backend_pid();"
        "INSERT INTO people (id, name) VALUES (41, 'dropped');"
    )
    wait_until(lambda: "41" in records(cid), "the stream did not come back after its connection dropped")
    pg_source.restart()
    pg_source.sql("INSERT INTO people (id, name) VALUES (42, 'restarted')")
    wait_until(lambda: "42" in records(cid), "the stream did not come back after the source restarted")
    r = client.post(f"/api/v1/source-connections/{sid}/runs/{run_id}/cancel", json={}, headers=auth(key))
    assert r.status_code == 200, r.json
    done = ended(run_id, thread)
    assert done.status == "cancelled" and done.attempt == 0, done.error  # no attempt failed
    assert done.records_inserted == 5 + 3, "a change was lost or applied twice"


def test_a_streaming_run_shows_its_changes_per_second_live(
    app, signed_in_with_key, pg_source, tables, monkeypatch
):
    monkeypatch.setattr(SyncRun, "RATE_WINDOW_SECONDS", 0.3)
    client, _, key = signed_in_with_key
    sid, cid = connect(client, key, pg_source)
    app.config["SYNC_STREAM_SECONDS"] = 60
    run_id, thread = stream_in_thread(app, sid)
    page = client.get(f"/runs/{run_id}/_status").get_data(as_text=True)
    assert "No change yet" in page and 'data-rate="changes">0<' in page
    for first in range(100, 400, 50):
        pg_source.sql(
            f"INSERT INTO people (id, name) SELECT g, 'n' FROM generate_series({first}, {first + 49}) g"
        )
        time.sleep(0.1)
    wait_until(lambda: "399" in records(cid), "the changes did not stream in")
    figures = db.session.get(SyncRun, run_id).cursor[SyncRun.FEED]
    assert figures["per_second"] > 0
    page = client.get(f"/runs/{run_id}/_status").get_data(as_text=True)
    shown = page.split('data-rate="changes">')[1].split("<")[0]
    assert int(shown.replace(",", "")) == round(figures["per_second"]), page
    assert "The newest change was committed at" in page
    r = client.post(f"/api/v1/source-connections/{sid}/runs/{run_id}/cancel", json={}, headers=auth(key))
    assert r.status_code == 200, r.json
    assert ended(run_id, thread).status == "cancelled"
