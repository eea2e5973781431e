"""Delivery to an HTTP destination: webhook events ingested at a steady rate, sent on to a
receiver on 127.0.0.1 that fails 20% of requests with 500 and goes away for 10 s in the
middle.

    .venv/bin/python bench/deliver.py --rate 500 --seconds 40

Prints deliveries/s, end-to-end lag (the ingest's answer -> the receiver got the change)
p50/p95/p99 for changes ingested while the receiver was up, the catch-up rate after the
outage (deliveries/s until the backlog is gone, and its ratio to the ingest rate), and checks
that every change arrived, each key's in order. In the same run, the ceiling: a bare script
posting the same changes to the same receiver (32 keep-alive connections, a failure sent
again at once), alone and again while ingest goes on at the same rate, as it does during the
catch-up: what it delivers beyond the ingest rate bounds any catch-up on this machine. Saves
bench/results/deliver-<db>.json.
"""

from __future__ import annotations

import argparse
import http.client
import json
import multiprocessing as mp
import random
import subprocess
import sys
import tempfile
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.common import ROOT, Instance, database_url, free_port, machine, percentile, process_cpu, save

FAIL_SHARE = 0.2
OUTAGE_SECONDS = 10.0
KEYS = 2000
SENDERS = 8  # load threads, each pacing its share of the rate
LOADED_SECONDS = 12  # the ceiling measured again while ingest goes on at the same rate


def receiver(port: int, log_path: str, outage: tuple[float, float], ready: Any) -> None:
    """A process: an HTTP/1.1 server that fails FAIL_SHARE of requests with 500, refuses
    connections during `outage` (wall-clock seconds), and logs each request it accepted."""
    rng = random.Random(7)
    lock = threading.Lock()
    log = open(log_path, "a", buffering=1)  # noqa: SIM115 - the process's whole life

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers["content-length"]))
            if outage[0] <= time.time() < outage[1]:  # away: kept-alive connections drop too
                self.close_connection = True
                return
            with lock:
                fail = rng.random() < FAIL_SHARE
            if not fail:
                data = json.loads(body)["data"]
                with lock:
                    log.write(
                        json.dumps(
                            [time.time(), self.headers["webhook-id"], data["key"], data["record"]["n"]]
                        )
                        + "\n"
                    )
            self.send_response(500 if fail else 204)
            self.send_header("content-length", "0")
            self.end_headers()

        def log_message(self, *args: object) -> None:
            return None

    class Server(ThreadingHTTPServer):
        request_queue_size = 256  # a real receiver's backlog; 5 drops SYNs (1 s retries)

    def serve() -> ThreadingHTTPServer:
        server = Server(("127.0.0.1", port), Handler)
        server.daemon_threads = True
        threading.Thread(target=server.serve_forever, daemon=True).start()
        return server

    server = serve()
    ready.set()
    while time.time() < outage[0]:
        time.sleep(0.01)
    server.shutdown()
    server.server_close()  # away: connections are refused
    while time.time() < outage[1]:
        time.sleep(0.01)
    server = serve()
    while True:
        time.sleep(1)


def ingest_load(port: int, sid: str, rate: float, seconds: float, answers: list) -> None:
    """`rate` events a second for `seconds`, each answer's time kept by event number."""
    start = time.time() + 0.2
    total = int(rate * seconds)

    def sender(lane: int) -> None:
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
        for n in range(lane, total, SENDERS):
            due = start + n / rate
            pause = due - time.time()
            if pause > 0:
                time.sleep(pause)
            body = json.dumps({"id": f"k{(n * 7919) % KEYS}", "n": n, "pad": "x" * 120}).encode()
            conn.request("POST", f"/v1/ingest/{sid}", body=body, headers={"Content-Type": "application/json"})
            response = conn.getresponse()
            response.read()
            if response.status != 200:
                raise SystemExit(f"ingest answered {response.status}")
            answers[n] = time.time()

    threads = [threading.Thread(target=sender, args=(lane,)) for lane in range(SENDERS)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()


def ceiling(port: int, log_path: str, n: int) -> float:
    """A bare script: `n` changes posted to the receiver from 32 keep-alive connections,
    each failure sent again at once; deliveries a second."""
    bodies = [
        json.dumps(
            {"type": "record.inserted", "data": {"key": f"k{i % KEYS}", "record": {"n": -1 - i}}}
        ).encode()
        for i in range(n)
    ]
    lanes = 32

    def lane(index: int) -> None:
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
        for i in range(index, n, lanes):
            while True:
                conn.request(
                    "POST",
                    "/hook",
                    body=bodies[i],
                    headers={"content-type": "application/json", "webhook-id": f"c{i}"},
                )
                response = conn.getresponse()
                response.read()
                if response.status < 300:
                    break

    started = time.monotonic()
    threads = [threading.Thread(target=lane, args=(i,)) for i in range(lanes)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return n / (time.monotonic() - started)


def api(port: int, key: str, method: str, path: str, body: object = None) -> Any:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
    conn.request(method, path, body=json.dumps(body) if body is not None else None,
                 headers={"X-API-Key": key, "Content-Type": "application/json"})  # fmt: skip
    answer = conn.getresponse()
    return answer.status, json.loads(answer.read() or b"null")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--db", choices=["sqlite", "postgres"], default="sqlite")
    parser.add_argument("--rate", type=float, default=500)
    parser.add_argument("--seconds", type=float, default=40)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="hookstream-bench-", ignore_cleanup_errors=True) as tmp_name:
        tmp = Path(tmp_name)
        instance = Instance(tmp, database_url(args.db, tmp))
        deliverer = None
        receiver_proc = None
        try:
            key = instance.api_key()
            _, made = api(instance.port, key, "POST", "/api/v1/source-connections", {
                "sourceShortName": "webhook", "name": "bench",
                "credentials": {"verification_type": "none"}, "config": {"dedup_window_seconds": 0},
            })  # fmt: skip
            sid = made["sourceConnection"]["id"]
            _, col = api(instance.port, key, "POST", "/v1/collections", {
                "name": "Bench orders", "slug": "orders", "source_id": sid, "primary_key_path": "$.id",
            })  # fmt: skip
            port = free_port()
            log_path = str(tmp / "received.jsonl")
            begin = time.time() + 3
            outage = (begin + args.seconds * 0.375, begin + args.seconds * 0.375 + OUTAGE_SECONDS)
            ready = mp.Event()
            receiver_proc = mp.Process(target=receiver, args=(port, log_path, outage, ready), daemon=True)
            receiver_proc.start()
            ready.wait(10)
            status, dest = api(instance.port, key, "POST", "/v1/destinations", {
                "name": "bench receiver", "kind": "webhook",
                "config": {"url": f"http://127.0.0.1:{port}/hook"}, "collection_ids": [col["collection"]["id"]],
            })  # fmt: skip
            if status != 201:
                raise SystemExit(f"destination refused: {dest}")
            env = dict(instance.env, ALLOW_PRIVATE_NETWORKS="1")
            with open(tmp / "deliverer.log", "ab") as dlog:
                deliverer = subprocess.Popen(
                    [sys.executable, "-m", "flask", "--app", "app", "deliverer"],
                    cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=dlog,
                )  # fmt: skip
            while time.time() < begin:
                time.sleep(0.01)
            total = int(args.rate * args.seconds)
            answers: list = [None] * total
            cpu_before = process_cpu(deliverer.pid)
            ingest_load(instance.port, sid, args.rate, args.seconds, answers)
            ingest_done = time.time()
            # Until every change has arrived (or a minute more).
            deadline = time.time() + 60
            first: dict[int, float] = {}
            arrivals: list = []
            while time.time() < deadline:
                arrivals = [json.loads(line) for line in Path(log_path).read_text().splitlines() if line]
                first = {}
                for at, _, _, n in arrivals:
                    if n >= 0 and n not in first:
                        first[n] = at
                if len(first) >= total:
                    break
                time.sleep(0.5)
            delivered_cpu = process_cpu(deliverer.pid) - cpu_before
            deliverer.terminate()
            deliverer.wait(20)
            deliverer = None
            ceiling_rate = ceiling(port, str(tmp / "ceiling.jsonl"), 10_000)
            # What the machine allows while ingest goes on, as it does during the catch-up.
            under: list = [None] * int(args.rate * LOADED_SECONDS)
            load = threading.Thread(
                target=ingest_load, args=(instance.port, sid, args.rate, LOADED_SECONDS, under)
            )
            load.start()
            time.sleep(1)
            ceiling_loaded = ceiling(port, str(tmp / "ceiling.jsonl"), int(args.rate * (LOADED_SECONDS - 3)))
            load.join()
        finally:
            if deliverer is not None:
                deliverer.terminate()
                deliverer.wait(20)
            if receiver_proc is not None:
                receiver_proc.terminate()
            instance.stop()
    missing = [n for n in range(total) if n not in first]
    # Each key's changes in order: their first arrivals, by time, in ingest number order.
    by_key: dict[str, list[int]] = {}
    for n in first:
        by_key.setdefault(f"k{(n * 7919) % KEYS}", []).append(n)
    order_ok = all(sorted(ns, key=lambda n: first[n]) == sorted(ns) for ns in by_key.values())
    healthy = sorted(first[n] - answers[n] for n in range(total) if n in first and answers[n] < outage[0] - 1)
    back = outage[1]
    backlog_n = [n for n in range(total) if n in first and answers[n] < back and first[n] >= back]
    drained_at = max((first[n] for n in backlog_n), default=back)
    catch_up = len(backlog_n) / max(drained_at - back, 0.001) if backlog_n else 0.0
    # The same for 99% of the backlog: the last few wait out their own retries' backoff
    # (a change failing five times in a row waits 3.1 s), which no throughput shortens.
    backlog_at = sorted(first[n] for n in backlog_n)
    most = backlog_at[int(len(backlog_at) * 0.99) - 1] if len(backlog_at) >= 100 else drained_at
    catch_up_99 = int(len(backlog_at) * 0.99) / max(most - back, 0.001) if backlog_at else 0.0
    deliveries = len(arrivals)
    # Arrivals each second from the receiver's return: when the backlog starts to move, and how fast.
    curve = [sum(1 for at, *_ in arrivals if back + i <= at < back + i + 1) for i in range(12)]
    result = {
        "machine": machine(),
        "db": args.db,
        "rate": args.rate,
        "seconds": args.seconds,
        "changes": total,
        "missing": len(missing),
        "per_key_order": order_ok,
        "lag_healthy_ms": {
            p: round(percentile(healthy, q) * 1000, 1) for p, q in (("p50", 50), ("p95", 95), ("p99", 99))
        },
        "catch_up_per_second": round(catch_up),
        "catch_up_ratio_to_ingest": round(catch_up / args.rate, 2),
        "catch_up_99_per_second": round(catch_up_99),
        "catch_up_99_ratio_to_ingest": round(catch_up_99 / args.rate, 2),
        "backlog_after_outage": len(backlog_n),
        "arrivals_each_second_after_outage": curve,
        "deliveries_per_second": round(
            deliveries / max(max(first.values(), default=ingest_done) - begin, 0.001)
        ),
        "received_requests": deliveries,
        "sent_twice": deliveries - len(first),
        "deliverer_cpu_ms_per_1000": round(delivered_cpu * 1000 / max(total, 1) * 1000),
        "ceiling_per_second": round(ceiling_rate),
        # The bare script while ingest goes on: the catch-up it leaves room for is what it
        # delivers beyond the changes still coming in.
        "ceiling_under_ingest_per_second": round(ceiling_loaded),
        "catch_up_bound_ratio_to_ingest": round((ceiling_loaded - args.rate) / args.rate, 2),
    }
    print(
        f"Delivery of {total:,} changes at {args.rate:.0f}/s into {args.db}, receiver failing "
        f"{FAIL_SHARE:.0%} and away {OUTAGE_SECONDS:.0f} s ({result['machine'].get('cores')} cores):\n"
        f"  lag while up   p50 {result['lag_healthy_ms']['p50']} ms  p95 {result['lag_healthy_ms']['p95']} ms  "
        f"p99 {result['lag_healthy_ms']['p99']} ms\n"
        f"  catch-up       {result['catch_up_per_second']:,}/s after the outage "
        f"({result['catch_up_ratio_to_ingest']}x the ingest rate; {result['backlog_after_outage']:,} waiting); "
        f"99% of it at {result['catch_up_99_per_second']:,}/s ({result['catch_up_99_ratio_to_ingest']}x)\n"
        f"  after it       {' '.join(str(n) for n in curve)} arrivals each second\n"
        f"  ceiling        {result['ceiling_per_second']:,}/s (a bare script, same receiver); "
        f"{result['ceiling_under_ingest_per_second']:,}/s while ingest goes on, room for a catch-up of "
        f"{result['catch_up_bound_ratio_to_ingest']}x\n"
        f"  missing {result['missing']}, per-key order {'kept' if order_ok else 'BROKEN'}, "
        f"{result['sent_twice']:,} sent again, deliverer CPU {result['deliverer_cpu_ms_per_1000']} ms per 1,000"
    )
    print(f"  saved {save(f'deliver-{args.db}', result)}")
    return 0 if not missing and order_ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
