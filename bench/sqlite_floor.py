"""What SQLite itself can write into hookstream's records table on this machine, and what
DuckDB takes of the same rows: the bound under bench/peers.py's SQLite-against-DuckDB ratio.

    .venv/bin/python bench/sqlite_floor.py --rows 1000000

The rows bench/backfill.py syncs (the same source table, serialised by row_to_json) are
staged in a table of the migrated app database before the clock starts; then one
`INSERT ... SELECT` per case moves them into the records table, in one transaction, with
the app's pragmas. No Python, no driver, no network on the clock: the rate a backfill into
SQLite could reach if everything but SQLite cost nothing. Cases: every index and the word
index filled after (as hookstream runs), without the word index, and with only the unique
key the upsert needs. Beside them, DuckDB (what dlt loads into) taking the same rows, keys
and JSON text, from a Parquet file into a table with a primary key (it need not parse them:
dlt hands it typed Arrow columns). Saves bench/results/sqlite-floor.json.
"""

from __future__ import annotations

import argparse
import os
import sqlite3
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.backfill import make_source
from bench.common import machine, migrate, save
from bench.pg_floor import make_collection, rate

COLUMNS = (
    "id, org_id, env_id, collection_id, record_key, data, event_type, source_event_id, source_event_at, "
    "created_at, updated_at, seen_run_id, source_id, sync_run_id"
)
SECONDARY = ("ix_records_collection_updated", "ix_records_collection_event_type")


def stage(conn: sqlite3.Connection, source_uri: str, owner: tuple[str, str, str]) -> list[tuple[str, str]]:
    """The rows as the app writes them, into floor_rows (not timed); returns (key, JSON)."""
    import psycopg

    from hookstream_ui.services.upsert import new_record_id

    with psycopg.connect(source_uri) as src:
        rows = src.execute(
            "SELECT id::text, row_to_json(b)::text, updated_at FROM bench_rows b ORDER BY id"
        ).fetchall()
    conn.execute(f"CREATE TABLE floor_rows AS SELECT {COLUMNS} FROM records WHERE 0")
    conn.executemany(
        f"INSERT INTO floor_rows ({COLUMNS}) VALUES ({', '.join('?' * 14)})",
        (
            (new_record_id(), *owner, key, data, None, None, str(at), str(at), str(at), None, None, None)
            for key, data, at in rows
        ),
    )
    conn.commit()
    return [(key, data) for key, data, _ in rows]


def timed_insert(conn: sqlite3.Connection, fill_words: bool) -> float:
    from hookstream_ui.services.search_index import SQLITE_FILL

    started = time.perf_counter()
    conn.execute(f"INSERT INTO records ({COLUMNS}) SELECT {COLUMNS} FROM floor_rows")
    if fill_words:
        conn.execute(SQLITE_FILL)
    conn.commit()
    return time.perf_counter() - started


def duckdb_load(tmp: Path, rows: list[tuple[str, str]]) -> float:
    import duckdb
    import pyarrow as pa
    import pyarrow.parquet as pq

    path = str(tmp / "floor.parquet")
    pq.write_table(pa.table({"record_key": [k for k, _ in rows], "data": [d for _, d in rows]}), path)
    conn = duckdb.connect(str(tmp / "floor.duckdb"))
    conn.execute("CREATE TABLE records (record_key VARCHAR PRIMARY KEY, data VARCHAR)")
    started = time.perf_counter()
    conn.execute(f"INSERT INTO records SELECT * FROM read_parquet('{path}')")
    seconds = time.perf_counter() - started
    conn.close()
    return seconds


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="hookstream-bench-", ignore_cleanup_errors=True) as tmp_name:
        tmp = Path(tmp_name)
        server = make_source(tmp, args.rows)
        path = tmp / "app.db"
        env = dict(
            os.environ, INSTANCE_PATH=str(tmp / "instance"), DATABASE_URL=f"sqlite:///{path}", FLASK_APP="app"
        )
        migrate(env)
        conn = sqlite3.connect(path)
        for pragma in ("journal_mode=WAL", "synchronous=NORMAL", "foreign_keys=OFF"):
            conn.execute(f"PRAGMA {pragma}")
        rows = stage(conn, server.get_uri(), make_collection(env))
        result = {"all_indexes": rate(args.rows, timed_insert(conn, fill_words=True))}
        conn.execute("DELETE FROM records")
        conn.execute("DELETE FROM records_fts")
        conn.commit()
        result["without_word_index"] = rate(args.rows, timed_insert(conn, fill_words=False))
        conn.execute("DELETE FROM records")
        for name in SECONDARY:
            conn.execute(f"DROP INDEX {name}")
        conn.commit()
        result["unique_key_only"] = rate(args.rows, timed_insert(conn, fill_words=False))
        conn.close()
        result["duckdb_from_parquet"] = rate(args.rows, duckdb_load(tmp, rows))
    out = {"benchmark": "sqlite-floor", "rows": args.rows, "machine": machine(), **result}
    saved = save("sqlite-floor", out)
    print(
        f"SQLite alone, {args.rows:,} staged rows into the records table ({out['machine']['cores']} cores):"
    )
    for case, numbers in result.items():
        print(f"  {case:<22} {numbers['rows_per_s']:>9,} rows/s  ({numbers['seconds']} s)")
    print(f"  saved {saved}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
