"""Event log queries on a large log, through the API on its web server.

    .venv/bin/python bench/events.py --db sqlite --events 300000

Stores N webhook events (~1 KB each, two sources, 1% failed) as the ingest writer does, then
times each query kind 200 times, the kinds interleaved, from 4 keep-alive connections: the
newest page (what the events page polls), the next page by cursor, one source's events,
the failed ones, and search for a term in one event and in every event. Prints p50/p95 per
kind and saves bench/results/events-<db>.json.
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import secrets
import sys
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.common import Instance, machine, percentile, running, save
from bench.ingest import api
from bench.records import get, settle, timed


def load(instance: Instance, sources: list[str], events: int) -> None:
    """In-process, one insert per batch of rows, as the ingest writer stores them."""
    os.environ.update(instance.env)
    from hookstream_ui import create_app
    from hookstream_ui.models import Event, SourceConnection, db

    app = create_app()
    with app.app_context():
        scope = db.session.get(SourceConnection, sources[0])
        start = datetime.now(UTC) - timedelta(seconds=events)
        for first in range(0, events, 5000):
            rows = []
            for i in range(first, min(events, first + 5000)):
                body = json.dumps(
                    {
                        "type": "order.updated",
                        "data": {"id": f"o{i}", "email": f"user{i}@example.com", "pad": "x" * 850},
                    }
                )
                at = start + timedelta(seconds=i)
                rows.append(
                    {
                        "id": "evt_" + secrets.token_hex(12),
                        "org_id": scope.org_id,
                        "env_id": scope.env_id,
                        "source_id": sources[i % 2],
                        "method": "POST",
                        "headers": {},
                        "query": {},
                        "body": body,
                        "body_encoding": "utf-8",
                        "content_type": "application/json",
                        "size": len(body),
                        "source_ip": "127.0.0.1",
                        "received_at": at,
                        "verification": "verified",
                        "verification_error": None,
                        "dedup_key": None,
                        "duplicate": False,
                        "duplicate_of": None,
                        "status": "failed" if i % 100 == 0 else "applied",
                        "error": None,
                        "outcomes": {},
                        "created_at": at,
                        "updated_at": at,
                    }
                )
            db.session.execute(Event.__table__.insert(), rows)
            db.session.commit()
        db.session.remove()
        db.engine.dispose()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--db", choices=["sqlite", "postgres"], default="sqlite")
    parser.add_argument("--events", type=int, default=300_000)
    args = parser.parse_args()
    with running(args.db) as (instance, key):
        sources = [
            api(
                instance.port,
                key,
                "POST",
                "/api/v1/source-connections",
                {
                    "sourceShortName": "webhook",
                    "name": f"bench {n}",
                    "credentials": {"verification_type": "none"},
                },
            )[1]["sourceConnection"]["id"]
            for n in range(2)
        ]
        started = time.perf_counter()
        load(instance, sources, args.events)
        load_seconds = time.perf_counter() - started
        settle(instance, "events")
        conn = http.client.HTTPConnection("127.0.0.1", instance.port, timeout=120)
        base = "/v1/events?limit=20"
        first = get(conn, base, key)
        rare = args.events // 2 + 7
        queries = {
            "newest page": base,
            "next page (cursor)": f"{base}&cursor={first['cursor']}",
            "one source": f"{base}&source_id={sources[1]}",
            "failed": f"{base}&status=failed",
            "search, 1 match": f"{base}&search=user{rare}@",
            "search, every event": f"{base}&search=order.updated",
        }
        # Every query answers what it should before it is timed.
        assert len(get(conn, queries["search, 1 match"], key)["events"]) == 1
        assert all(e["status"] == "failed" for e in get(conn, queries["failed"], key)["events"])
        results = {
            name: {
                "p50_ms": round(percentile(lat, 50) * 1000, 1),
                "p95_ms": round(percentile(lat, 95) * 1000, 1),
            }
            for name, lat in timed(instance.port, key, queries).items()
        }
    out = {
        "benchmark": "events",
        "database": args.db,
        "events": args.events,
        "machine": machine(),
        "load_events_per_s": round(args.events / load_seconds),
        "queries": results,
    }
    path = save(f"events-{args.db}", out)
    print(f"{args.events:,} events in {args.db}:")
    for name, r in results.items():
        print(f"  {name:<20} p50 {r['p50_ms']:>7} ms   p95 {r['p95_ms']:>7} ms")
    print(f"  saved {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
