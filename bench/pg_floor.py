"""What PostgreSQL itself can write into hookstream's records table on this machine.

    .venv/bin/python bench/pg_floor.py --rows 1000000

The rows bench/backfill.py syncs (the same source table, serialised by row_to_json, their
words split by the app's own pg_document) are staged in an unlogged table before the clock
starts; then one `INSERT … SELECT` per case moves them into the migrated records table. No
Python, no driver, no network on the clock: the rate a backfill could reach if everything
but PostgreSQL cost nothing. Cases: every index (as hookstream runs), without the word
index, and an unindexed copy of the table loaded first with the same indexes built after.
Saves bench/results/pg-floor.json.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import psycopg

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.backfill import make_source
from bench.common import machine, migrate, save

COLUMNS = (
    "id, org_id, env_id, collection_id, record_key, data, event_type, source_event_id, source_event_at, "
    "created_at, updated_at, seen_run_id, search_words"
)


def make_collection(env: dict) -> tuple[str, str, str]:
    """A collection for the rows (records reference one), made as the app makes it."""
    os.environ.update({k: env[k] for k in ("INSTANCE_PATH", "DATABASE_URL")})
    from hookstream_ui import create_app
    from hookstream_ui.models.principal import Principal
    from hookstream_ui.services import accounts
    from hookstream_ui.services import collections as collection_svc

    with create_app().app_context():
        user = accounts.create_user("floor@example.com", "floor-password-1")
        org = user.memberships[0].org
        principal = Principal(org=org, env=org.environments[0], role="owner", user=user)
        collection = collection_svc.create_collection(
            principal, {"name": "Floor", "primary_key_path": "$.id"}
        )
        return collection.org_id, collection.env_id, collection.id


def stage(conn: psycopg.Connection, reader: psycopg.Connection, owner: tuple[str, str, str]) -> None:
    """The rows as the app writes them, into floor_rows (not timed); `reader`: a second
    connection, as one cannot fetch while it copies."""
    from hookstream_ui.services.search_index import pg_document
    from hookstream_ui.services.upsert import new_record_id

    conn.execute(f"CREATE UNLOGGED TABLE floor_rows AS SELECT {COLUMNS} FROM records WITH NO DATA")
    with reader.cursor(name="source") as source, conn.cursor() as target:
        source.itersize = 5000
        source.execute("SELECT id::text, row_to_json(b)::text, updated_at FROM bench_rows b ORDER BY id")
        with target.copy(f"COPY floor_rows ({COLUMNS}) FROM STDIN") as copy:
            for key, data, at in source:
                copy.write_row(
                    (new_record_id(), *owner, key, data, None, None, at, at, at, None, pg_document(key, data))
                )
    conn.execute("ANALYZE floor_rows")
    conn.commit()


def timed_insert(conn: psycopg.Connection, table: str) -> float:
    started = time.perf_counter()
    conn.execute(f"INSERT INTO {table} ({COLUMNS}) SELECT {COLUMNS} FROM floor_rows")
    conn.commit()
    return time.perf_counter() - started


def record_indexes(conn: psycopg.Connection) -> list[tuple[str, str]]:
    return conn.execute(
        "SELECT indexname, indexdef FROM pg_indexes WHERE tablename = 'records' ORDER BY indexname"
    ).fetchall()


def rate(rows: int, seconds: float) -> dict:
    return {"seconds": round(seconds, 2), "rows_per_s": round(rows / seconds)}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    args = parser.parse_args()
    import psycopg
    from sqlalchemy.engine import make_url

    with tempfile.TemporaryDirectory(prefix="hookstream-bench-", ignore_cleanup_errors=True) as tmp_name:
        tmp = Path(tmp_name)
        server = make_source(tmp, args.rows)
        url = make_url(server.get_uri())
        db_url = url.set(drivername="postgresql+psycopg").render_as_string(False)
        env = dict(os.environ, INSTANCE_PATH=str(tmp / "instance"), DATABASE_URL=db_url, FLASK_APP="app")
        migrate(env)
        conn = psycopg.connect(url.set(drivername="postgresql").render_as_string(False))
        with psycopg.connect(conn.info.dsn) as reader:
            stage(conn, reader, make_collection(env))
        indexes = record_indexes(conn)
        result = {"all_indexes": rate(args.rows, timed_insert(conn, "records"))}
        conn.execute("TRUNCATE records")
        words = next(definition for name, definition in indexes if name == "ix_records_search")
        conn.execute("DROP INDEX ix_records_search")
        conn.commit()
        result["without_word_index"] = rate(args.rows, timed_insert(conn, "records"))
        conn.execute("TRUNCATE records")
        conn.execute(words)
        conn.commit()

        conn.execute("CREATE TABLE records_bulk (LIKE records INCLUDING DEFAULTS)")
        conn.commit()
        load = timed_insert(conn, "records_bulk")
        builds = {}
        for name, definition in indexes:
            started = time.perf_counter()
            conn.execute(
                definition.replace(
                    f"INDEX {name} ON public.records ", f"INDEX {name}_bulk ON public.records_bulk "
                )
            )
            conn.commit()
            builds[name] = round(time.perf_counter() - started, 2)
        result["load_then_build_indexes"] = {
            **rate(args.rows, load + sum(builds.values())),
            "load_seconds": round(load, 2),
            "index_build_seconds": builds,
        }
        conn.close()
    out = {"benchmark": "pg-floor", "rows": args.rows, "machine": machine(), **result}
    path = save("pg-floor", out)
    print(
        f"PostgreSQL alone, {args.rows:,} staged rows into the records table ({out['machine']['cores']} cores):"
    )
    for case, numbers in result.items():
        print(f"  {case:<26} {numbers['rows_per_s']:>9,} rows/s  ({numbers['seconds']} s)")
    print(f"  index builds after the load: {builds}\n  saved {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
