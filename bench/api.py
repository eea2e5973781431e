"""API latency and throughput of the collections endpoints on its web server.

    .venv/bin/python bench/api.py --db sqlite      # or --db postgres (embedded pgserver)

Creates N collections, then lists and reads them, from C concurrent keep-alive
connections, and checks that every created collection is there. Prints and saves
requests/s and latency percentiles to bench/results/api-<db>.json. The load generator
shares the machine with the server, so the numbers are a floor, not a ceiling.
"""

from __future__ import annotations

import argparse
import http.client
import json
import sys
import threading
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.common import PRODUCTION_SERVER, machine, percentile, running, save


def run_phase(port: int, key: str, requests: list[tuple[str, str, dict | None]], concurrency: int) -> dict:
    latencies: list[float] = []
    failures: list[int] = []
    lock = threading.Lock()
    chunks = [requests[i::concurrency] for i in range(concurrency)]

    def worker(chunk: list[tuple[str, str, Any]]) -> None:
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
        mine, bad = [], []
        for method, path, body in chunk:
            payload = json.dumps(body) if body is not None else None
            start = time.perf_counter()
            conn.request(
                method, path, body=payload, headers={"X-API-Key": key, "Content-Type": "application/json"}
            )
            response = conn.getresponse()
            response.read()
            mine.append(time.perf_counter() - start)
            if response.status >= 300:
                bad.append(response.status)
        conn.close()
        with lock:
            latencies.extend(mine)
            failures.extend(bad)

    threads = [threading.Thread(target=worker, args=(c,)) for c in chunks]
    started = time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    elapsed = time.perf_counter() - started
    latencies.sort()
    return {
        "requests": len(requests),
        "failures": len(failures),
        "seconds": round(elapsed, 3),
        "requests_per_s": round(len(requests) / elapsed, 1),
        "p50_ms": round(percentile(latencies, 50) * 1000, 2),
        "p95_ms": round(percentile(latencies, 95) * 1000, 2),
        "p99_ms": round(percentile(latencies, 99) * 1000, 2),
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--db", choices=["sqlite", "postgres"], default="sqlite")
    parser.add_argument("--requests", type=int, default=3000)
    parser.add_argument("--concurrency", type=int, default=16)
    args = parser.parse_args()

    with running(args.db) as (instance, key):
        n = args.requests
        creates = [
            (
                "POST",
                "/v1/collections",
                {"name": f"Bench {i}", "slug": f"bench-{i}", "primary_key_path": "$.id"},
            )
            for i in range(n)
        ]
        lists = [("GET", "/v1/collections?limit=20", None)] * n
        gets = [("GET", f"/v1/collections/bench-{i}", None) for i in range(n)]
        phases = {}
        for name, reqs in (("create", creates), ("list", lists), ("get", gets)):
            phases[name] = run_phase(instance.port, key, reqs, args.concurrency)
        # Correctness: every created collection is listed exactly once.
        seen, cursor = set(), None
        conn = http.client.HTTPConnection("127.0.0.1", instance.port)
        while True:
            conn.request(
                "GET",
                "/v1/collections?limit=100" + (f"&cursor={cursor}" if cursor else ""),
                headers={"X-API-Key": key},
            )
            page = json.loads(conn.getresponse().read())
            seen.update(c["slug"] for c in page["collections"])
            if not page["has_more"]:
                break
            cursor = page["cursor"]
        exact = seen == {f"bench-{i}" for i in range(n)}

    result = {
        "benchmark": "api",
        "database": args.db,
        "concurrency": args.concurrency,
        "server": PRODUCTION_SERVER,
        "machine": machine(),
        "phases": phases,
        "all_collections_listed_exactly_once": exact,
    }
    path = save(f"api-{args.db}", result)
    print(f"API benchmark on {args.db}, {args.concurrency} connections ({result['machine']['cores']} cores):")
    for name, p in phases.items():
        print(
            f"  {name:<7} {p['requests_per_s']:>8.1f} req/s   p50 {p['p50_ms']:>6.2f} ms   "
            f"p95 {p['p95_ms']:>6.2f} ms   p99 {p['p99_ms']:>6.2f} ms   failures {p['failures']}"
        )
    print(
        f"  every collection listed exactly once: {exact}\n  saved {path.relative_to(Path.cwd()) if path.is_relative_to(Path.cwd()) else path}"
    )
    return 0 if exact and not any(p["failures"] for p in phases.values()) else 1


if __name__ == "__main__":
    sys.exit(main())
