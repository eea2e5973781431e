"""Which WSGI server carries the most signed webhook deliveries at p99 under 100 ms.

    .venv/bin/python bench/servers.py [--events 4000] [--rounds 3] [--only NAME ...]

Serves the bare Flask app (bench/ceiling_app.py: checks the HMAC signature, inserts the
body into SQLite) and then hookstream (with its ingest writer) from each server below, two
processes each as `make run` runs, and sends the same signed ~1 KB events as
bench/ingest.py from 16, 32 and 64 keep-alive connections. A server's score is its best
rate among the loads it answered with p99 under 100 ms. The servers take turns, round by
round, so a slow spell of this shared machine falls on all. Saves
bench/results/servers.json. gunicorn and gevent are bench-only (`make bench-deps`);
production serves from granian, the fastest here.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.common import (
    SERVERS,
    Instance,
    database_url,
    machine,
    process_cpu,
    save,
    server_command,
)
from bench.ingest import blast, signed_source, start_ceiling, summary

LOADS = (16, 32, 64)  # concurrent keep-alive connections
P99_LIMIT_MS = 100


def hookstream(server: str, tmp: Path) -> tuple[Instance, str]:
    """A fresh instance served by `server`, and the ingest path of its signed webhook source."""
    instance = Instance(
        tmp, database_url("sqlite", tmp), web_command=lambda port: server_command(server, port, "app:app")
    )
    return instance, f"/v1/ingest/{signed_source(instance)[1]}"


def measure(port: int, path: str, events: int, first: int, cpu: object) -> dict:
    parts = {}
    for n, connections in enumerate(LOADS):
        start = first + n * events
        parts[connections] = summary(
            [blast(port, path, start, start + events, events, True, cpu, connections)]
        )
    return parts


def cpu_ms(runs: list[dict]) -> dict:
    """CPU milliseconds per delivery of each part of the server, over every load and round."""
    events = sum(p["events"] for run in runs for p in run.values())
    parts = {k for run in runs for p in run.values() for k in p["cpu_seconds"] if k != "load"}
    return {
        k: round(1000 * sum(p["cpu_seconds"].get(k, 0) for run in runs for p in run.values()) / events, 3)
        for k in sorted(parts)
    }


def score(parts: dict) -> int:
    within = [p["events_per_s"] for p in parts.values() if p["p99_ms"] < P99_LIMIT_MS and not p["failures"]]
    return max(within, default=0)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=4000, help="events at each load")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--only", nargs="*", default=list(SERVERS), choices=list(SERVERS))
    args = parser.parse_args()
    runs: dict[str, dict[str, list[dict]]] = {s: {"bare": [], "hookstream": []} for s in args.only}
    first = 0
    for r in range(args.rounds):
        order = args.only if r % 2 == 0 else args.only[::-1]
        for server in order:
            with tempfile.TemporaryDirectory(prefix="hookstream-bench-", ignore_cleanup_errors=True) as name:
                tmp = Path(name)
                proc, port = start_ceiling(tmp, f"sqlite:///{tmp / 'bare.db'}", server)
                try:
                    runs[server]["bare"].append(
                        measure(
                            port, "/ingest", args.events, first, lambda p=proc: {"web": process_cpu(p.pid)}
                        )
                    )
                finally:
                    proc.terminate()
                    proc.wait(20)
                instance, path = hookstream(server, tmp)
                try:
                    runs[server]["hookstream"].append(
                        measure(instance.port, path, args.events, first, instance.cpu_seconds)
                    )
                    if instance.problems():
                        print(server, "logged:", *instance.problems()[-5:], sep="\n  ", file=sys.stderr)
                finally:
                    instance.stop()
            first += len(LOADS) * args.events
            b, h = runs[server]["bare"][-1], runs[server]["hookstream"][-1]
            print(
                f"round {r + 1} {server:24}"
                + "".join(f"  {c}: {b[c]['events_per_s']:>5}/s p99 {b[c]['p99_ms']:>6} ms" for c in LOADS)
                + "\n"
                + " " * 33
                + "".join(f"  {c}: {h[c]['events_per_s']:>5}/s p99 {h[c]['p99_ms']:>6} ms" for c in LOADS),
                flush=True,
            )
    results = {}
    for server, kinds in runs.items():
        results[server] = {
            kind: {
                "score_median": statistics.median(score(p) for p in parts),
                "scores": [score(p) for p in parts],
                "cpu_ms_per_delivery": cpu_ms(parts),
                "runs": parts,
            }
            for kind, parts in kinds.items()
        }
        h, b = results[server]["hookstream"]["score_median"], results[server]["bare"]["score_median"]
        results[server]["ratio"] = round(h / b, 3) if b else None
    best = max(results, key=lambda s: results[s]["bare"]["score_median"])
    out = {
        "benchmark": "servers",
        "database": "sqlite",
        "events_per_load": args.events,
        "loads": LOADS,
        "p99_limit_ms": P99_LIMIT_MS,
        "rounds": args.rounds,
        "machine": machine(),
        "servers": results,
        "fastest_for_the_bare_app": best,
    }
    path = save("servers", out)
    print(f"\nBest rate with p99 under {P99_LIMIT_MS} ms (median of {args.rounds} rounds), SQLite:")
    for server, r in results.items():
        print(
            f"  {server:24} bare {r['bare']['score_median']:>6,}/s  hookstream {r['hookstream']['score_median']:>6,}/s"
            f"  ratio {r['ratio']}  CPU ms a delivery: bare {r['bare']['cpu_ms_per_delivery']}, "
            f"hookstream {r['hookstream']['cpu_ms_per_delivery']}"
        )
    print(f"  fastest for the bare app: {best}\n  saved {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
