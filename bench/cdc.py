"""PostgreSQL change capture: a table changed at steady rates, streamed by a real worker
through logical replication; changes applied per second, end-to-end lag, worker CPU, and
the ceiling of the same decoding and writes in a bare script.

    .venv/bin/python bench/cdc.py                       # 250, 1000 and the most, 60 s each
    .venv/bin/python bench/cdc.py --rates 1000 --seconds 30

The source is the embedded PostgreSQL the tests use (wal_level=logical), the app database
SQLite (or --db postgres). A load process commits a steady mix of inserts (50%), updates
(35%) and deletes (15%) of ~200-byte rows, 10 changes a transaction, and notes when each
commit returned; every change sets the row's `seq`. A watcher reads the records table
every 20 ms (what the API reads) for the newest `seq` visible: lag is when it was first
seen less when its commit returned. At the end every row of the table is compared with its
record. The ceiling: a second slot on the same table, read with the same pgoutput decoder
and the same row_to_json round trip, written with the same upsert statement into a bare
records table, as fast as it goes. Saves bench/results/cdc[-postgres].json.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import os
import signal
import sqlite3
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.common import (
    ROOT,
    app_env,
    database_url,
    machine,
    migrate,
    percentile,
    process_cpu,
    save,
    source_and_collection,
)

PAD = "x" * 150  # with the other columns, ~200 bytes a row
SEED_ROWS = 10_000
PER_TXN = 10


def load(dsn: str, rate: float, seconds: float, first_id: int, seq0: int, live: list[int], out: Any) -> None:
    """Commit `rate` changes a second for `seconds` (0: as fast as it goes) on the rows
    `live`; put ({seq: commit time}, the last id, the last seq, the rows live) in `out`."""
    import random

    import psycopg

    rng = random.Random(first_id)
    committed: dict[int, float] = {}
    next_id, seq = first_id, seq0
    with psycopg.connect(dsn, autocommit=False) as pg:
        start = time.monotonic()
        sent = 0
        while time.monotonic() - start < seconds:
            due = start + sent / rate if rate else 0
            if due > time.monotonic():
                time.sleep(due - time.monotonic())
            with pg.cursor() as cur:
                for _ in range(PER_TXN):
                    seq += 1
                    roll = rng.random()
                    if roll < 0.5 or len(live) < 100:
                        next_id += 1
                        live.append(next_id)
                        cur.execute(
                            "INSERT INTO cdc_rows (id, name, amount, seq, pad) VALUES (%s, %s, %s, %s, %s)",
                            [next_id, f"row {next_id}", next_id % 1000 / 10, seq, PAD],
                        )
                    elif roll < 0.85:
                        cur.execute(
                            "UPDATE cdc_rows SET amount = amount + 1, seq = %s WHERE id = %s",
                            [seq, rng.choice(live)],
                        )
                    else:
                        victim = live.pop(rng.randrange(len(live)))
                        cur.execute("DELETE FROM cdc_rows WHERE id = %s", [victim])
                        seq -= 1  # a delete is not watched for (no record to see)
            pg.commit()
            now = time.time()
            committed[seq] = now  # the newest seq of the transaction
            sent += PER_TXN
    out.put((committed, next_id, seq, live))


def watch(db_url: str, collection_id: str, stop: threading.Event, seen: dict[int, float]) -> None:
    """Every 20 ms, the newest seq in the collection's records, with when it was first seen."""
    from sqlalchemy import create_engine, text

    engine = create_engine(_driver(db_url))
    path = "json_extract(data, '$.seq')" if db_url.startswith("sqlite") else "(data->>'seq')::bigint"
    query = text(f"SELECT max({path}) FROM records WHERE collection_id = :c")
    with engine.connect() as conn:
        while not stop.is_set():
            newest = conn.execute(query, {"c": collection_id}).scalar()
            conn.rollback()
            if newest is not None and int(newest) not in seen:
                seen[int(newest)] = time.time()
            time.sleep(0.02)
    engine.dispose()


def lags(committed: dict[int, float], seen: dict[int, float]) -> list[float]:
    """Each transaction's lag: from its commit to the first look that saw its seq or a later one."""
    looks = sorted(seen.items())
    out, at = [], 0
    for seq, when in sorted(committed.items()):
        while at < len(looks) and looks[at][0] < seq:
            at += 1
        if at < len(looks):
            out.append(max(looks[at][1] - when, 0.0))
    return sorted(out)


def ceiling(source_dsn: str, slot: str, publication: str, tmp: Path) -> dict:
    """The changes in `slot`, decoded and written as the feed does, nothing else."""
    import psycopg

    from hookstream_ui.services.upsert import UPSERT_SQL, new_record_id
    from hookstream_ui.sources.pg_replication import advance, rows_json, transactions
    from hookstream_ui.sources.pgoutput import lsn_text

    migrate(
        dict(os.environ, DATABASE_URL=f"sqlite:///{tmp / 'ceiling.db'}", INSTANCE_PATH=str(tmp / "ceiling"))
    )
    target = sqlite3.connect(tmp / "ceiling.db")
    target.executescript("PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL; PRAGMA foreign_keys=OFF;")
    sql = UPSERT_SQL["sqlite"]
    done, position = 0, {"lsn": "0/0"}
    started = time.perf_counter()
    with psycopg.connect(source_dsn, autocommit=True) as pg:
        while True:
            got = 0
            for txn in transactions(pg, slot, publication, position, 20_000, 5000):
                by_relation: dict[int, tuple[Any, list]] = {}
                for change in txn.changes:
                    if hasattr(change, "relation"):
                        values = change.new if change.op != "delete" else change.old
                        by_relation.setdefault(change.relation.oid, (change.relation, []))[1].append(
                            (change.op, values)
                        )
                for relation, tuples in by_relation.values():
                    rows = rows_json(pg, relation, "id", [t for _, t in tuples])
                    stamp = time.strftime("%Y-%m-%d %H:%M:%S")
                    upserts = [
                        (new_record_id(), "o", "e", "ceiling", str(k), j, None, None, stamp, stamp, stamp, None,
                         "src_ceiling", "run_ceiling")
                        for (op, _), (k, j) in zip(tuples, rows, strict=True) if op != "delete"
                    ]  # fmt: skip
                    deletes = [
                        (str(k),) for (op, _), (k, _) in zip(tuples, rows, strict=True) if op == "delete"
                    ]
                    target.executemany(sql, upserts)
                    target.executemany(
                        "DELETE FROM records WHERE collection_id = 'ceiling' AND record_key = ?", deletes
                    )
                target.commit()
                got += len(txn.changes)
                if txn.end_lsn:
                    position = {"lsn": lsn_text(txn.end_lsn)}
            advance(pg, slot, position["lsn"])  # as the feed does once its batch is committed
            done += got
            if not got:
                break
    seconds = time.perf_counter() - started
    return {
        "changes": done,
        "seconds": round(seconds, 2),
        "changes_per_s": round(done / seconds) if seconds else 0,
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--db", choices=["sqlite", "postgres"], default="sqlite")
    parser.add_argument("--rates", default="250,1000,0", help="changes a second; 0: as fast as the load goes")
    parser.add_argument("--seconds", type=float, default=60.0)
    args = parser.parse_args()
    from tests.fixture_servers import PostgresSource

    with tempfile.TemporaryDirectory(prefix="hookstream-bench-", ignore_cleanup_errors=True) as tmp_name:
        tmp = Path(tmp_name)
        source = PostgresSource(tmp / "source")
        try:
            result = run_bench(args, tmp, source)
        finally:
            source.stop()
    path = save("cdc" + ("" if args.db == "sqlite" else f"-{args.db}"), result)
    print(f"PostgreSQL change capture into {args.db} ({result['machine']['cores']} cores):")
    for phase in result["phases"]:
        lag = phase["lag_ms"]
        said = f", lag p50 {lag['p50']} / p95 {lag['p95']} / p99 {lag['p99']} ms" if lag else " catching up"
        print(
            f"  asked {phase['asked_rate'] or 'max'}: {phase['applied_per_s']:>6,} changes/s applied{said}, "
            f"{phase['worker_cpu_ms_per_1000']} ms CPU / 1,000 changes"
        )
    roof = result["ceiling"]
    print(f"  ceiling: {roof['changes_per_s']:,} changes/s ({roof['changes']:,} in {roof['seconds']} s)")
    print(f"  exact final state: {result['exact']}\n  saved {path}")
    return 0 if result["exact"] else 1


def run_bench(args: argparse.Namespace, tmp: Path, source: Any) -> dict:
    from hookstream_ui import embedded_redis

    source.sql(
        "CREATE TABLE cdc_rows (id bigint PRIMARY KEY, name text, amount numeric(12,2), seq bigint, pad text);"
        f"INSERT INTO cdc_rows SELECT g, 'row ' || g, g % 1000 / 10.0, 0, '{PAD}' FROM generate_series(1, {SEED_ROWS}) g;"
        "CREATE PUBLICATION bench_ceiling FOR TABLE cdc_rows;"
    )
    source.sql("SELECT pg_create_logical_replication_slot('bench_ceiling', 'pgoutput')")
    creds = source.credentials()
    dsn = f"host=127.0.0.1 port={creds['port']} dbname=postgres user={creds['username']} password={creds['password']}"
    redis_proc, redis_url = embedded_redis.start(tmp / "redis", {"stdout": subprocess.DEVNULL})
    db_url = database_url(args.db, tmp)
    env = app_env(tmp, db_url, redis_url, SYNC_STREAM_SECONDS="3600")
    worker = None
    try:
        migrate(env)
        from hookstream_ui import create_app
        from hookstream_ui.models import Collection, db
        from hookstream_ui.services import runs

        app = create_app()
        with app.app_context():
            config = {"replication": "logical", "table": "cdc_rows", "primary_key": "id"}
            src, collection = source_and_collection(
                "cdc@example.com", "postgresql", creds, config, "cdc_rows", "$.id"
            )
            cid = collection.id
            worker = start_worker(env, tmp)
            runs.start_run(src, full=True)
            deadline = time.monotonic() + 120
            while db.session.get(Collection, cid).record_count < SEED_ROWS:
                db.session.expire_all()
                assert time.monotonic() < deadline, "the snapshot did not arrive"
                time.sleep(0.2)
        phases, next_id, seq, live = [], SEED_ROWS, 0, list(range(1, SEED_ROWS + 1))
        for rate in [float(r) for r in args.rates.split(",")]:
            seen: dict[int, float] = {}
            stop = threading.Event()
            watcher = threading.Thread(target=watch, args=(db_url, cid, stop, seen), daemon=True)
            watcher.start()
            cpu_before = process_cpu(worker.pid)
            out: Any = mp.Queue()
            began = time.time()
            first = next_id + 1
            loader = mp.Process(target=load, args=(dsn, rate, args.seconds, first, seq, live, out))
            loader.start()
            committed, next_id, seq, live = out.get()
            loader.join()
            newest = max(committed)
            while max(seen, default=0) < newest and time.time() - began < args.seconds + 120:
                time.sleep(0.05)
            cpu = process_cpu(worker.pid) - cpu_before
            stop.set()
            watcher.join(5)
            spread = lags(committed, seen)
            changes = len(committed) * PER_TXN
            took = (seen[max(seen)] if seen else time.time()) - began
            phases.append(
                {
                    "asked_rate": rate or None,
                    "changes": changes,
                    "seconds": round(took, 1),
                    "loaded_per_s": round(changes / (max(committed.values()) - began)),
                    "applied_per_s": round(changes / took),
                    "lag_ms": {
                        p: round(percentile(spread, q) * 1000)
                        for p, q in (("p50", 50), ("p95", 95), ("p99", 99))
                    },
                    "worker_cpu_ms_per_1000": round(cpu / changes * 1_000_000, 1) if changes else None,
                }
            )
        # Catch-up: the worker stopped while the load goes flat out, then started on the backlog.
        os.killpg(worker.pid, signal.SIGKILL)
        worker.wait(30)
        out = mp.Queue()
        loader = mp.Process(target=load, args=(dsn, 0, args.seconds, next_id + 1, seq, live, out))
        loader.start()
        committed, next_id, seq, live = out.get()
        loader.join()
        seen = {}
        stop = threading.Event()
        watcher = threading.Thread(target=watch, args=(db_url, cid, stop, seen), daemon=True)
        watcher.start()
        with app.app_context():
            from datetime import timedelta

            from hookstream_ui.sync.scheduler import resume_stale
            from hookstream_ui.values.times import utcnow

            resume_stale(utcnow() + timedelta(seconds=60))  # the killed run, noticed
        worker = start_worker(env, tmp)
        cpu_before = process_cpu(worker.pid)
        newest, began = max(committed), time.time()
        while max(seen, default=0) < newest and time.time() - began < 600:
            time.sleep(0.05)
        cpu = process_cpu(worker.pid) - cpu_before
        stop.set()
        watcher.join(5)
        first_seq, first_at = min(seen.items(), key=lambda kv: kv[1])
        after_first = sum(1 for q in committed if q > first_seq) * PER_TXN
        took = seen[max(seen)] - first_at
        phases.append(
            {
                "asked_rate": "backlog",
                "changes": len(committed) * PER_TXN,
                "seconds": round(took, 1),
                "applied_per_s": round(after_first / took) if took > 0 else None,
                "lag_ms": None,
                "worker_cpu_ms_per_1000": round(cpu / (len(committed) * PER_TXN) * 1_000_000, 1),
            }
        )
        exact = compare(source, db_url, cid)
    finally:
        if worker is not None:  # its run streams for an hour: stopped, work horse and all
            os.killpg(worker.pid, signal.SIGKILL)
            worker.wait(30)
        redis_proc.kill()
        redis_proc.wait(20)
    roof = ceiling(dsn, "bench_ceiling", "bench_ceiling", tmp)
    return {
        "benchmark": "cdc",
        "database": args.db,
        "machine": machine(),
        "phases": phases,
        "ceiling": roof,
        "exact": exact,
    }


def _driver(db_url: str) -> str:
    """The app's database URL with psycopg 3 named, as the app uses it (not psycopg2)."""
    return db_url.replace("postgresql://", "postgresql+psycopg://", 1)


def start_worker(env: dict, tmp: Path) -> subprocess.Popen:
    with open(tmp / "worker.log", "ab") as log:
        return subprocess.Popen(
            [sys.executable, "-m", "flask", "--app", "app", "worker"], cwd=ROOT, env=env,
            stdout=subprocess.DEVNULL, stderr=log, start_new_session=True,
        )  # fmt: skip


def compare(source: Any, db_url: str, collection_id: str) -> bool:
    from sqlalchemy import create_engine, text

    rows = source.sql("SELECT json_object_agg(id, row_to_json(t)) FROM cdc_rows t").strip().splitlines()[2]
    want = json.loads(rows)
    engine = create_engine(_driver(db_url))
    with engine.connect() as conn:
        have = {
            k: d if isinstance(d, dict) else json.loads(d)
            for k, d in conn.execute(
                text("SELECT record_key, data FROM records WHERE collection_id = :c"), {"c": collection_id}
            )
        }
    engine.dispose()
    return have == want


if __name__ == "__main__":
    sys.exit(main())
