"""Record queries on a large collection, through the API on its web server.

    .venv/bin/python bench/records.py --db sqlite --records 1000000

Loads N records (~200 bytes, through the upsert engine, as a sync would) into one
collection, then times each query kind 200 times, the kinds interleaved, from 4 keep-alive
connections: the newest page, the next page by cursor, a field filter matching 20% of
records, a filter matching one record, two filters together, search for a term in one
record and search for a common term. Prints p50/p95 per kind (goal: p95 under 100 ms) and saves
bench/results/records-<db>.json.
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import sys
import threading
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.common import Instance, machine, percentile, running, save

STATUSES = ("active", "trialing", "past_due", "canceled", "paused")
COUNTRIES = ("NZ", "DE", "US", "BR", "JP", "FR", "IN", "ZA", "CA", "GB")
ROUNDS = 200  # per query kind
CONNECTIONS = 4


def record(i: int) -> dict:
    return {
        "id": f"cus_{i:08d}",
        "email": f"user{i}@example.com",
        "name": f"Customer {i}",
        "status": STATUSES[i % 5],
        "country": COUNTRIES[i % 10],
        "plan": ("free", "pro", "team")[i % 3],
        "amount": i % 1000,
        "created": 1_700_000_000 + i,
    }


def load(instance: Instance, records: int) -> None:
    """In-process through the upsert engine, in the same batches a sync uses."""
    os.environ.update(instance.env)
    from hookstream_ui import create_app
    from hookstream_ui.models import Collection, db
    from hookstream_ui.services import upsert

    app = create_app()
    with app.app_context():
        collection = db.session.query(Collection).filter_by(slug="customers").one()
        for start in range(0, records, 5000):
            items = [upsert.Incoming(record(i)) for i in range(start, min(records, start + 5000))]
            upsert.apply(collection, items, keys_are_new=True)
            db.session.commit()
        db.session.remove()
        db.engine.dispose()


def get(conn: http.client.HTTPConnection, path: str, key: str) -> Any:
    conn.request("GET", path, headers={"X-API-Key": key})
    response = conn.getresponse()
    body = response.read()
    assert response.status == 200, (path, response.status, body[:200])
    return json.loads(body)


def timed(port: int, key: str, queries: dict[str, str]) -> dict[str, list[float]]:
    """ROUNDS of every query from CONNECTIONS connections, the kinds interleaved (each
    connection starting at another one), so that a noisy moment of a shared machine falls on
    all kinds alike instead of on whichever one it ran during."""
    latencies: dict[str, list[float]] = {name: [] for name in queries}
    names = list(queries)

    def worker(offset: int) -> None:
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=120)
        for _ in range(ROUNDS // CONNECTIONS):
            for i in range(len(names)):
                name = names[(i + offset) % len(names)]
                start = time.perf_counter()
                get(conn, queries[name], key)
                latencies[name].append(time.perf_counter() - start)

    threads = [threading.Thread(target=worker, args=(n,)) for n in range(CONNECTIONS)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return {name: sorted(values) for name, values in latencies.items()}


def settle(instance: Instance, table: str = "records") -> None:
    """PostgreSQL: what autovacuum would do within a minute of the load (statistics, the GIN
    indexes' pending entries), done first, so queries are timed in the steady state and not
    while racing the vacuum for the two cores."""
    url = instance.env["DATABASE_URL"]
    if url.startswith("postgresql"):
        import psycopg

        with psycopg.connect(url.replace("postgresql+psycopg://", "postgresql://"), autocommit=True) as conn:
            conn.execute(f"VACUUM (ANALYZE) {table}")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--db", choices=["sqlite", "postgres"], default="sqlite")
    parser.add_argument("--records", type=int, default=1_000_000)
    args = parser.parse_args()
    with running(args.db) as (instance, key):
        conn = http.client.HTTPConnection("127.0.0.1", instance.port, timeout=120)
        conn.request(
            "POST",
            "/v1/collections",
            body=json.dumps({"name": "Customers", "slug": "customers", "primary_key_path": "$.id"}),
            headers={"X-API-Key": key, "Content-Type": "application/json"},
        )
        made = conn.getresponse()
        assert made.status == 201, made.read()
        made.read()
        started = time.perf_counter()
        load(instance, args.records)
        load_seconds = time.perf_counter() - started
        conn = http.client.HTTPConnection("127.0.0.1", instance.port, timeout=120)  # the old one idled out
        base = "/v1/collections/customers/records?limit=20"
        first = get(conn, base, key)
        rare = args.records // 2 + 7
        queries = {
            "newest page": base,
            "next page (cursor)": f"{base}&cursor={first['next_cursor']}",
            "filter, 20% match": f"{base}&filter[status]=past_due",
            "filter, 1 match": f"{base}&filter[email]=user{rare}@example.com",
            "two filters": f"{base}&filter[country]=NZ&filter[plan]=pro",
            "search, 1 match": f"{base}&search=user{rare}@",
            "search, common": f"{base}&search=trialing",
        }
        # Every query answers what it should before it is timed.
        assert len(get(conn, queries["filter, 1 match"], key)["records"]) == 1
        assert len(get(conn, queries["search, 1 match"], key)["records"]) == 1
        matched = get(conn, queries["filter, 20% match"], key)["records"]
        assert matched and all(r["data"]["status"] == "past_due" for r in matched)
        settle(instance)
        results = {
            name: {
                "p50_ms": round(percentile(lat, 50) * 1000, 1),
                "p95_ms": round(percentile(lat, 95) * 1000, 1),
            }
            for name, lat in timed(instance.port, key, queries).items()
        }
    out = {
        "benchmark": "records",
        "database": args.db,
        "records": args.records,
        "machine": machine(),
        "load_rows_per_s": round(args.records / load_seconds),
        "queries": results,
        "all_p95_under_100ms": all(r["p95_ms"] < 100 for r in results.values()),
    }
    path = save(f"records-{args.db}", out)
    print(f"{args.records:,} records in {args.db} (loaded at {out['load_rows_per_s']:,} rows/s):")
    for name, r in results.items():
        print(f"  {name:<20} p50 {r['p50_ms']:>7} ms   p95 {r['p95_ms']:>7} ms")
    print(f"  saved {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
