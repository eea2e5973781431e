"""Webhook ingest throughput and latency on its web server, and the bare-Flask ceiling.

    .venv/bin/python bench/ingest.py --db sqlite --events 50000

A load process sends signed (HMAC-SHA256) events of about 1 KB, 20% of them updates of
earlier keys, from 64 keep-alive connections to a webhook source bound to two collections.
Prints accepted events/s, latency p50/p95/p99 and the visibility lag (how long after its
answer an event's record is readable: applied before the answer, so it is measured, not
assumed), checks every event and every key's final state, and saves
bench/results/ingest-<db>.json. The ceiling (a bare Flask app on the same server that only
inserts the body into the same database) runs in the same run, in turns with hookstream, a
fifth of the events each. The load generator shares the two cores with the server.

Both are served as `make run` serves (granian, 2 processes × 16 threads; bench/servers.py
compares other servers).
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import hmac
import http.client
import itertools
import json
import multiprocessing as mp
import os
import re
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.common import (
    PRODUCTION_SERVER,
    ROOT,
    Instance,
    cpu_used,
    database_url,
    free_port,
    machine,
    percentile,
    process_cpu,
    redis_client,
    save,
    server_command,
)

SECRET = "bench-signing-secret"
CONNECTIONS = 64
PROCESSES = 2  # asyncio load processes, 32 connections each
ROUNDS = 5  # hookstream and the ceiling take turns, a fifth of the events each time


def body_for(i: int, keys: int) -> bytes:
    key = i if i < keys else (i * 7919) % keys  # later events update earlier keys
    return json.dumps(
        {"type": "order.updated", "seq": i, "data": {"id": f"o{key}", "seq": i, "pad": "x" * 900}}
    ).encode()


def request_bytes(path: str, i: int, keys: int, signed: bool) -> bytes:
    body = body_for(i, keys)
    head = (
        f"POST {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
        f"Content-Length: {len(body)}\r\n"
    )
    if signed:
        head += "X-Signature: sha256=" + hmac.new(SECRET.encode(), body, hashlib.sha256).hexdigest() + "\r\n"
    return (head + "\r\n").encode() + body


async def _connection(
    port: int, queue: list[int], requests: list[bytes], latencies: list[float], failures: list[int]
) -> None:
    reader = writer = None
    while queue:
        n = queue.pop()
        for _attempt in range(3):
            try:
                if writer is None:
                    reader, writer = await asyncio.open_connection("127.0.0.1", port)
                start = time.perf_counter()
                writer.write(requests[n])
                head = await reader.readuntil(b"\r\n\r\n")
                length = int(re.search(rb"(?i)content-length: *(\d+)", head).group(1))
                answer = await reader.readexactly(length)
                latencies.append(time.perf_counter() - start)
                if not head.startswith(b"HTTP/1.1 200"):
                    failures.append(head.split(b"\r\n", 1)[0] + b" " + answer[:300])
                if re.search(rb"(?i)connection: *close", head):
                    writer.close()
                    writer = None
                break
            except (ConnectionError, asyncio.IncompleteReadError):
                # The server closed an idle keep-alive connection: open a new one and resend.
                writer = None
        else:
            failures.append(b"connection failed")


def load(
    port: int, requests: list[bytes], connections: int, out: Any
) -> None:  # out: a multiprocessing queue
    latencies, failures = [], []
    queue = list(range(len(requests)))[::-1]  # pop() from the end sends them in order

    async def run() -> None:
        await asyncio.gather(
            *(_connection(port, queue, requests, latencies, failures) for _ in range(connections))
        )

    asyncio.run(run())
    if failures:
        print("failed:", sorted(set(failures))[:5], file=sys.stderr)
    spent = os.times()
    out.put((latencies, len(failures), spent.user + spent.system))


def blast(
    port: int,
    path: str,
    first: int,
    end: int,
    keys: int,
    signed: bool,
    server_cpu: Callable[[], dict],
    connections: int = CONNECTIONS,
) -> dict:
    """Events first..end-1 from `connections` concurrent keep-alive connections in PROCESSES
    asyncio processes. Requests (bodies and signatures) are built before the clock starts,
    so the generator spends its time sending."""
    slices = [
        [request_bytes(path, i, keys, signed) for i in range(first + p, end, PROCESSES)]
        for p in range(PROCESSES)
    ]
    out = mp.Queue()
    procs = [mp.Process(target=load, args=(port, s, connections // PROCESSES, out)) for s in slices]
    cpu_before = server_cpu()
    started = time.perf_counter()
    for p in procs:
        p.start()
    results = [out.get() for _ in procs]
    for p in procs:
        p.join()
    return {
        "events": end - first,
        "seconds": time.perf_counter() - started,
        "cpu": {**cpu_used(cpu_before, server_cpu()), "load": sum(r[2] for r in results)},
        "latencies": [x for r in results for x in r[0]],
        "failures": sum(r[1] for r in results),
    }


def summary(parts: list[dict]) -> dict:
    events, seconds = sum(p["events"] for p in parts), sum(p["seconds"] for p in parts)
    latencies = sorted(x for p in parts for x in p["latencies"])
    return {
        "events": events,
        "failures": sum(p["failures"] for p in parts),
        "seconds": round(seconds, 2),
        "events_per_s": round(events / seconds),
        "p50_ms": round(percentile(latencies, 50) * 1000, 2),
        "p95_ms": round(percentile(latencies, 95) * 1000, 2),
        "p99_ms": round(percentile(latencies, 99) * 1000, 2),
        # CPU seconds each part used (two cores give 2 × seconds in all; a PostgreSQL
        # server's own processes are not counted)
        "cpu_seconds": {k: round(sum(p["cpu"][k] for p in parts), 1) for k in parts[0]["cpu"]},
    }


def start_ceiling(
    tmp: Path, db_url: str, server: str = PRODUCTION_SERVER
) -> tuple[subprocess.Popen[bytes], int]:
    """The bare app on `server`, writing into the same database (psycopg 3 too)."""
    env = dict(os.environ, DATABASE_URL=db_url.replace("postgresql://", "postgresql+psycopg://", 1))
    # Its table (and SQLite's WAL mode) made first: two server processes switching a new
    # database to WAL at once can find it locked.
    subprocess.run([sys.executable, "-c", "import ceiling_app"], cwd=ROOT / "bench", env=env, check=True)
    port = free_port()
    with open(tmp / "ceiling.log", "ab") as log:  # the server keeps its own descriptor
        proc = subprocess.Popen(
            server_command(server, port, "ceiling_app:app"),
            cwd=ROOT / "bench",
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=log,
        )
    deadline = time.monotonic() + 30
    while True:
        if proc.poll() is not None or time.monotonic() > deadline:
            raise RuntimeError(f"the bare app did not start:\n{(tmp / 'ceiling.log').read_text()[-2000:]}")
        try:
            http.client.HTTPConnection("127.0.0.1", port, timeout=1).request("GET", "/")
            return proc, port
        except OSError:
            time.sleep(0.2)


def api(port: int, key: str, method: str, path: str, body: object = None) -> tuple[int, Any]:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    conn.request(
        method,
        path,
        body=json.dumps(body) if body is not None else None,
        headers={"X-API-Key": key, "Content-Type": "application/json"},
    )
    response = conn.getresponse()
    return response.status, json.loads(response.read() or b"null")


def signed_source(instance: Instance) -> tuple[str, str]:
    """(API key, source id) of a new user's HMAC-signed webhook source, bound to two
    collections (orders-a, orders-b) keyed by $.data.id, newest by $.seq."""
    key = instance.api_key()
    _, made = api(
        instance.port,
        key,
        "POST",
        "/api/v1/source-connections",
        {
            "sourceShortName": "webhook",
            "name": "bench",
            "credentials": {"verification_type": "hmac_sha256", "signing_secret": SECRET},
            "config": {"dedup_window_seconds": 0},
        },
    )
    sid = made["sourceConnection"]["id"]
    for slug in ("orders-a", "orders-b"):
        api(
            instance.port,
            key,
            "POST",
            "/v1/collections",
            {
                "name": f"Bench {slug}",
                "slug": slug,
                "source_id": sid,
                "primary_key_path": "$.data.id",
                "timestamp_path": "$.seq",
            },
        )
    return key, sid


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--db", choices=["sqlite", "postgres"], default="sqlite")
    parser.add_argument("--events", type=int, default=50_000)
    args = parser.parse_args()
    keys = int(args.events * 0.8)
    with tempfile.TemporaryDirectory(prefix="hookstream-bench-", ignore_cleanup_errors=True) as tmp_name:
        tmp = Path(tmp_name)
        db_url = database_url(args.db, tmp)
        instance = Instance(tmp, db_url)
        try:
            key, sid = signed_source(instance)
            ceiling_server, ceiling_port = start_ceiling(tmp, db_url)
            ours, bare = [], []
            try:
                # In turns, a slice each: a slow spell of this shared machine then falls on
                # both, not on whichever ran during it.
                bounds = [args.events * r // ROUNDS for r in range(ROUNDS + 1)]
                for first, end in itertools.pairwise(bounds):
                    ours.append(
                        blast(
                            instance.port, f"/v1/ingest/{sid}", first, end, keys, True, instance.cpu_seconds
                        )
                    )
                    bare.append(
                        blast(
                            ceiling_port,
                            "/ingest",
                            first,
                            end,
                            keys,
                            True,
                            lambda: {"web": process_cpu(ceiling_server.pid)},
                        )
                    )
            finally:
                ceiling_server.terminate()
                ceiling_server.wait(20)
            result, ceiling = summary(ours), summary(bare)
            if result["failures"]:  # what hookstream said about the requests it failed
                print("\n".join(["logged:", *instance.problems()[-20:]]), file=sys.stderr)
            if ceiling["failures"]:
                log = (tmp / "ceiling.log").read_text()[-2000:]
                raise SystemExit(
                    f"the ceiling app failed {ceiling['failures']} requests: no fair comparison\n{log}"
                )
            # Visibility: a fresh event's record is readable the moment its answer arrives.
            lags = []
            for i in range(200):
                body = json.dumps({"type": "probe", "seq": 10**9 + i, "data": {"id": f"probe{i}"}}).encode()
                sig = "sha256=" + hmac.new(SECRET.encode(), body, hashlib.sha256).hexdigest()
                conn = http.client.HTTPConnection("127.0.0.1", instance.port)
                conn.request(
                    "POST",
                    f"/v1/ingest/{sid}",
                    body=body,
                    headers={"X-Signature": sig, "Content-Type": "application/json"},
                )
                conn.getresponse().read()
                answered = time.perf_counter()
                while api(instance.port, key, "GET", f"/v1/collections/orders-a/records/probe{i}")[0] != 200:
                    time.sleep(0.001)
                lags.append(time.perf_counter() - answered)
            lags.sort()
            # Exactness: every key present once, holding its newest seq, in both collections.
            expected = {}
            for i in range(args.events):
                k = f"o{i if i < keys else (i * 7919) % keys}"
                expected[k] = max(expected.get(k, -1), i)
            exact = True
            for slug in ("orders-a", "orders-b"):
                conn = http.client.HTTPConnection("127.0.0.1", instance.port, timeout=120)
                conn.request("GET", f"/v1/collections/{slug}/export", headers={"X-API-Key": key})
                rows = [json.loads(line) for line in conn.getresponse().read().decode().splitlines()]
                got = {
                    r["record_key"]: r["data"]["seq"] for r in rows if not r["record_key"].startswith("probe")
                }
                exact = exact and got == expected
            stats = {
                k.decode(): int(v)
                for k, v in redis_client(instance.env["REDIS_URL"]).hgetall("hookstream:ingest:stats").items()
            }
        finally:
            instance.stop()

    out = {
        "benchmark": "ingest",
        "database": args.db,
        "events": args.events,
        "connections": CONNECTIONS,
        "rounds": ROUNDS,
        "server": PRODUCTION_SERVER,
        "machine": machine(),
        "hookstream": result,
        "ceiling": ceiling,
        "ratio_to_ceiling": round(result["events_per_s"] / ceiling["events_per_s"], 3),
        "visibility_lag_ms": {
            "p50": round(percentile(lags, 50) * 1000, 2),
            "p99": round(percentile(lags, 99) * 1000, 2),
        },
        "exact": exact and result["failures"] == 0,
        "writer": {**stats, "mean_batch": round(stats.get("events", 0) / max(1, stats.get("batches", 0)), 1)},
    }
    path = save(f"ingest-{args.db}", out)
    print(
        f"Ingest of {args.events:,} signed events into {args.db}, {CONNECTIONS} connections "
        f"({out['machine']['cores']} cores):"
    )
    print(
        f"  hookstream {result['events_per_s']:>7,} events/s  p50 {result['p50_ms']} ms  p95 {result['p95_ms']} ms  "
        f"p99 {result['p99_ms']} ms  failures {result['failures']}"
    )
    print(f"  ceiling    {ceiling['events_per_s']:>7,} events/s  p99 {ceiling['p99_ms']} ms")
    print(f"  CPU seconds: hookstream {result['cpu_seconds']}, ceiling {ceiling['cpu_seconds']}")
    print(
        f"  ratio {out['ratio_to_ceiling']}, visibility lag p99 {out['visibility_lag_ms']['p99']} ms, "
        f"exact: {out['exact']}\n  writer: {out['writer']}\n  saved {path}"
    )
    return 0 if out["exact"] else 1


if __name__ == "__main__":
    sys.exit(main())
