"""Backfill throughput: a PostgreSQL table of N rows (~200 bytes each) synced into a new
collection by a real RQ worker, with the app on SQLite or on PostgreSQL.

    .venv/bin/python bench/backfill.py --db sqlite --rows 1000000
    .venv/bin/python bench/backfill.py --db postgres --rows 1000000
    .venv/bin/python bench/backfill.py --db postgres --no-search-index

In the same run it measures the ceiling: the same rows read with the same driver and
bulk-upserted into the same records table by a bare script. Prints rows/s, the ratio to
the ceiling and the worker's peak RSS; saves bench/results/backfill-<db>[-no-search-index].json.
"""

from __future__ import annotations

import argparse
import sqlite3
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import psutil

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from datetime import UTC

from bench.common import ROOT, app_env, machine, migrate, save, source_and_collection

BATCH = 5000


def make_source(tmp: Path, rows: int) -> Any:  # a pgserver server
    import pgserver

    server = pgserver.get_server(str(tmp / "pg"), cleanup_mode="stop")
    server.psql(
        "DROP TABLE IF EXISTS bench_rows; CREATE TABLE bench_rows (id bigint PRIMARY KEY, name text, "
        "email text, amount numeric(12,2), status text, note text, updated_at timestamptz NOT NULL);"
        f"INSERT INTO bench_rows SELECT g, 'Customer ' || g, 'customer' || g || '@example.com', "
        "(g % 100000) / 100.0, (ARRAY['active','trialing','past_due'])[1 + g % 3], "
        "repeat(md5(g::text), 2), now() - (g || ' seconds')::interval "
        f"FROM generate_series(1, {rows}) g; ANALYZE bench_rows;"
    )
    return server


def source_dsn(server: Any) -> tuple[str, dict]:
    """The source server's URI, and the credentials a PostgreSQL source takes for it."""
    from sqlalchemy.engine import make_url

    uri = server.get_uri()
    url = make_url(uri)
    return uri, {
        "host": url.query["host"],
        "port": url.port or 5432,
        "database": "postgres",
        "username": url.username or "postgres",
        "password": "unused-by-trust-auth",
        "sslmode": "disable",
    }


def rss_sampler(pid_holder: list[int], peak: list[int], stop: threading.Event) -> None:
    while not stop.wait(0.05):
        for pid in list(pid_holder):
            try:
                proc = psutil.Process(pid)
                total = proc.memory_info().rss
                for child in proc.children(recursive=True):
                    peak[1] = max(peak[1], child.memory_info().rss)
                peak[0] = max(peak[0], total)
            except psutil.NoSuchProcess:
                pass


def app_run(tmp: Path, db_url: str, source_dsn: dict, rows: int, search_index: bool = True) -> dict:
    from hookstream_ui import embedded_redis

    redis_proc, redis_url = embedded_redis.start(tmp / "redis")
    env = app_env(tmp, db_url, redis_url, SYNC_BATCH_SIZE=str(BATCH))
    migrate(env)
    from hookstream_ui import create_app
    from hookstream_ui.models import Collection, SyncRun, db
    from hookstream_ui.services import runs

    app = create_app()
    worker = None
    peak = [0, 0]
    stop = threading.Event()
    try:
        with app.app_context():
            config = {"table": "bench_rows", "primary_key": "id", "cursor_column": "updated_at"}
            source, collection = source_and_collection(
                "bench@example.com",
                "postgresql",
                source_dsn,
                config,
                "bench_rows",
                "$.id",
                search_index=search_index,
            )
            worker = subprocess.Popen(
                [sys.executable, "-m", "flask", "--app", "app", "worker"],
                cwd=ROOT,
                env=env,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
            )
            pids = [worker.pid]
            sampler = threading.Thread(target=rss_sampler, args=(pids, peak, stop), daemon=True)
            sampler.start()
            time.sleep(1.5)  # let the worker start before the clock does
            run = runs.start_run(source, full=True)
            while True:
                db.session.expire_all()
                run = db.session.get(SyncRun, run.id)
                if run.final:
                    break
                time.sleep(0.2)
            assert run.status == "completed", run.error
            seconds = (run.finished_at - run.started_at).total_seconds()
            count = db.session.get(Collection, collection.id).record_count
            exact = count == rows and run.records_inserted == rows
    finally:
        stop.set()
        if worker:
            worker.terminate()
            worker.wait(20)
        redis_proc.terminate()
        redis_proc.wait(20)
    return {
        "seconds": round(seconds, 2),
        "rows_per_s": round(rows / seconds),
        "exact": exact,
        "worker_peak_rss_mb": round(max(peak) / 2**20, 1),
    }


def ceiling(source_dsn: dict, db_url: str, rows: int, search_index: bool = True) -> dict:
    """Same driver, same rows, the same statement into the same table with its word index
    (SQLite: its FTS5 table; PostgreSQL: the words column), and each row's change in the
    change feed, no framework: the same work the app does for each row (all its columns),
    and nothing else."""
    from datetime import datetime

    import psycopg
    from psycopg.rows import dict_row

    from hookstream_ui.services.changes import PG_COPY as FEED_COPY
    from hookstream_ui.services.changes import SQLITE_INSERT as FEED_INSERT
    from hookstream_ui.services.search_index import SQLITE_FILL, pg_document
    from hookstream_ui.services.upsert import UPSERT_SQL, new_record_id, pg_bulk_upsert

    def feed(batch: list, done: int, at: Any) -> list[tuple]:
        """The change feed's rows of a batch, as the app writes one per record it inserts."""
        return [
            (
                "ceiling",
                done + i + 1,
                "o",
                "e",
                "insert",
                str(r["id"]),
                r["j"],
                None,
                None,
                "run_ceiling",
                "src_ceiling",
                at,
            )
            for i, r in enumerate(batch)
        ]

    started = time.perf_counter()
    src = psycopg.connect(
        host=source_dsn["host"],
        port=source_dsn["port"],
        dbname=source_dsn["database"],
        user=source_dsn["username"],
        password=source_dsn["password"],
        row_factory=dict_row,
    )
    sqlite = db_url.startswith("sqlite")
    if sqlite:
        target = sqlite3.connect(db_url.split("sqlite:///", 1)[1])
        target.execute("PRAGMA journal_mode=WAL")
        target.execute("PRAGMA synchronous=NORMAL")
        target.execute("PRAGMA foreign_keys=OFF")
    else:
        target = psycopg.connect(db_url.replace("postgresql+psycopg://", "postgresql://"))
        target.execute("SET session_replication_role = replica")  # no FK checks: a bare ceiling
    sql = UPSERT_SQL["sqlite" if sqlite else "postgresql"]
    after, done = 0, 0
    while True:
        batch = src.execute(
            "SELECT t.id, t.updated_at AS c, row_to_json(t)::text AS j FROM bench_rows t "
            "WHERE t.id > %s ORDER BY t.id LIMIT %s",
            [after, BATCH],
        ).fetchall()
        if not batch:
            break
        now = datetime.now(UTC)
        if sqlite:
            stamp = now.replace(tzinfo=None).isoformat(sep=" ", timespec="microseconds")
            params = [
                (
                    new_record_id(),
                    "o",
                    "e",
                    "ceiling",
                    str(r["id"]),
                    r["j"],
                    None,
                    None,
                    r["c"].astimezone(UTC).replace(tzinfo=None).isoformat(sep=" ", timespec="microseconds"),
                    stamp,
                    stamp,
                    None,
                    "src_ceiling",
                    "run_ceiling",
                )
                for r in batch
            ]
            before = target.execute("SELECT coalesce(max(rowid), 0) FROM records").fetchone()[0]
            target.executemany(sql, params)
            if search_index:  # its word index, as the app keeps it
                target.execute(f"{SQLITE_FILL} WHERE rowid > ?", (before,))
            target.executemany(FEED_INSERT, feed(batch, done, stamp))
        else:
            params = [
                (
                    new_record_id(),
                    "o",
                    "e",
                    "ceiling",
                    str(r["id"]),
                    r["j"],
                    None,
                    None,
                    r["c"],
                    now,
                    now,
                    None,
                    "src_ceiling",
                    "run_ceiling",
                    pg_document(str(r["id"]), r["j"]) if search_index else None,
                )
                for r in batch
            ]
            with target.cursor() as cur:
                pg_bulk_upsert(cur, params, keys_are_new=True)  # the app's own best statement shape
                with cur.copy(FEED_COPY) as copy:
                    for row in feed(batch, done, now):
                        copy.write_row(row)
        target.commit()
        after = batch[-1]["id"]
        done += len(batch)
    seconds = time.perf_counter() - started
    return {"seconds": round(seconds, 2), "rows_per_s": round(done / seconds)}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--db", choices=["sqlite", "postgres"], default="sqlite")
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument(
        "--no-search-index",
        action="store_true",
        help="create the collection with its word index off (and leave it out of the ceiling)",
    )
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="hookstream-bench-", ignore_cleanup_errors=True) as tmp_name:
        tmp = Path(tmp_name)
        server = make_source(tmp, args.rows)
        uri, dsn = source_dsn(server)
        from sqlalchemy.engine import make_url

        url = make_url(uri)
        if args.db == "sqlite":
            db_url = f"sqlite:///{tmp / 'app.db'}"
        else:
            server.psql("DROP DATABASE IF EXISTS bench_app; CREATE DATABASE bench_app;")
            db_url = url.set(drivername="postgresql+psycopg", database="bench_app").render_as_string(False)
        result = app_run(tmp, db_url, dsn, args.rows, not args.no_search_index)
        roof = ceiling(dsn, db_url, args.rows, not args.no_search_index)
    ratio = result["rows_per_s"] / roof["rows_per_s"]
    out = {
        "benchmark": "backfill",
        "database": args.db,
        "rows": args.rows,
        "batch": BATCH,
        "machine": machine(),
        "search_index": not args.no_search_index,
        "app": result,
        "ceiling": roof,
        "ratio_to_ceiling": round(ratio, 3),
    }
    path = save(f"backfill-{args.db}" + ("-no-search-index" if args.no_search_index else ""), out)
    print(f"Backfill of {args.rows:,} rows into {args.db} ({out['machine']['cores']} cores):")
    print(
        f"  hookstream  {result['rows_per_s']:>9,} rows/s  ({result['seconds']} s, exact: {result['exact']}, "
        f"worker peak RSS {result['worker_peak_rss_mb']} MB)"
    )
    print(f"  ceiling     {roof['rows_per_s']:>9,} rows/s  ({roof['seconds']} s)")
    print(f"  ratio       {ratio:.2f}\n  saved {path}")
    return 0 if result["exact"] else 1


if __name__ == "__main__":
    sys.exit(main())
