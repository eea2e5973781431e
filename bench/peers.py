"""hookstream beside dlt, the tool a Python team would pick instead: the same PostgreSQL table
(~200-byte rows, as bench/backfill.py makes it) copied into something queryable and merged
on its primary key, by each configuration in turn, in one run.

    make bench-deps   # dlt and its stores: requirements-bench.txt
    .venv/bin/python bench/peers.py --rows 1000000 --rounds 3

- hookstream: a backfill by a real RQ worker into a new collection, the app on SQLite and on
  PostgreSQL, its search index on and off; after each, its ceiling on the same database (a
  bare script doing the same writes, bench/backfill.py's).
- dlt 1.31: `sql_table` with its SQLAlchemy and pyarrow backends, `write_disposition="merge"`
  on the primary key, into DuckDB (its embedded default, the peer of SQLite) and PostgreSQL.

Each configuration runs in a process of its own, once a round, the order turned each round so
none always goes first. Every run's rows are counted on the store it wrote. Prints medians
and spread (min-max), and the ratios the goals are stated in; saves bench/results/peers.json.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.common import ROOT, machine, save

HOOKSTREAM = [("sqlite", True), ("sqlite", False), ("postgres", True), ("postgres", False)]
DLT = [("duckdb", "pyarrow"), ("duckdb", "sqlalchemy"), ("postgres", "pyarrow"), ("postgres", "sqlalchemy")]
PEER_STORE = {"sqlite": "duckdb", "postgres": "postgres"}  # the same kind of store: embedded, or PostgreSQL


def name_of(config: dict) -> str:
    if config["tool"] == "hookstream":
        return f"hookstream {config['db']} index {'on' if config['index'] else 'off'}"
    return f"dlt {config['store']} {config['backend']}"


# --- one run, in its own process -----------------------------------------------------------


def run_hookstream(config: dict, dsn: dict, server_uri: str, tmp: Path) -> dict:
    from sqlalchemy.engine import make_url

    from bench import backfill

    if config["db"] == "sqlite":
        db_url = f"sqlite:///{tmp / 'app.db'}"
    else:
        url = make_url(server_uri)
        name = f"peers_app_{os.getpid()}"
        _psql(server_uri, f"DROP DATABASE IF EXISTS {name}", f"CREATE DATABASE {name}")
        db_url = url.set(drivername="postgresql+psycopg", database=name).render_as_string(False)
    app = backfill.app_run(tmp, db_url, dsn, config["rows"], config["index"])
    roof = backfill.ceiling(dsn, db_url, config["rows"], config["index"])
    return {
        "rows_per_s": app["rows_per_s"],
        "seconds": app["seconds"],
        "exact": app["exact"],
        "peak_rss_mb": app["worker_peak_rss_mb"],
        "ceiling_rows_per_s": roof["rows_per_s"],
    }


def run_dlt(config: dict, dsn: dict, server_uri: str, tmp: Path) -> dict:
    os.environ.update({"RUNTIME__DLTHUB_TELEMETRY": "false", "RUNTIME__LOG_LEVEL": "WARNING"})
    import dlt
    from dlt.sources.sql_database import sql_table

    source_url = (
        f"postgresql+psycopg2://{dsn['username']}@/{dsn['database']}?host={dsn['host']}&port={dsn['port']}"
    )
    table = sql_table(credentials=source_url, table="bench_rows", backend=config["backend"])
    table.apply_hints(primary_key="id", write_disposition="merge")
    if config["store"] == "duckdb":
        path = str(tmp / "peers.duckdb")
        destination = dlt.destinations.duckdb(path)
    else:
        name = f"peers_dlt_{os.getpid()}"
        _psql(server_uri, f"DROP DATABASE IF EXISTS {name}", f"CREATE DATABASE {name}")
        destination = dlt.destinations.postgres(
            credentials={
                "database": name,
                "username": dsn["username"],
                "password": "unused-by-trust-auth",
                "host": "localhost",
                "port": dsn["port"],
                "query": {"host": dsn["host"]},  # libpq: the socket's directory wins
            }
        )
    pipeline = dlt.pipeline(
        pipeline_name="peers", pipelines_dir=str(tmp / "dlt"), destination=destination, dataset_name="bench"
    )
    started = time.perf_counter()
    pipeline.run(table)
    seconds = time.perf_counter() - started
    with pipeline.sql_client() as client:
        count = client.execute_sql("SELECT count(*), count(DISTINCT id) FROM bench_rows")[0]
    return {
        "rows_per_s": round(config["rows"] / seconds),
        "seconds": round(seconds, 2),
        "exact": tuple(count) == (config["rows"], config["rows"]),
    }


def _psql(server_uri: str, *statements: str) -> None:
    import psycopg

    with psycopg.connect(
        server_uri.replace("postgresql+psycopg://", "postgresql://"), autocommit=True
    ) as conn:
        for statement in statements:
            conn.execute(statement)


def child(spec: str) -> int:
    """One configuration's run (`--child '<json>'`): its result as the last line printed."""
    given = json.loads(spec)
    with tempfile.TemporaryDirectory(prefix="hookstream-peers-", ignore_cleanup_errors=True) as tmp_name:
        run = run_hookstream if given["config"]["tool"] == "hookstream" else run_dlt
        result = run(given["config"], given["dsn"], given["server_uri"], Path(tmp_name))
    print(json.dumps(result))
    return 0


# --- the run -------------------------------------------------------------------------------


def measured(config: dict, dsn: dict, server_uri: str) -> dict:
    """One run in a new process, its peak RSS (with its children: the RQ worker's own is in
    the result) sampled as it goes."""
    import psutil

    spec = json.dumps({"config": config, "dsn": dsn, "server_uri": server_uri})
    proc = subprocess.Popen(
        [sys.executable, __file__, "--child", spec], cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE
    )
    peak = [0]
    stop = threading.Event()

    def sample() -> None:
        while not stop.wait(0.1):
            try:
                me = psutil.Process(proc.pid)
                peak[0] = max(peak[0], me.memory_info().rss)
            except psutil.NoSuchProcess:
                return

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    out, err = proc.communicate()
    stop.set()
    if proc.returncode != 0:
        raise SystemExit(f"{name_of(config)} failed:\n{err.decode()[-3000:]}")
    result = json.loads(out.decode().strip().splitlines()[-1])
    result.setdefault("peak_rss_mb", round(peak[0] / 2**20, 1))
    return result


def summary(runs: list[dict]) -> dict:
    rates = [r["rows_per_s"] for r in runs]
    out: dict[str, Any] = {
        "rows_per_s": round(statistics.median(rates)),
        "spread": [min(rates), max(rates)],
        "exact": all(r["exact"] for r in runs),
        "peak_rss_mb": max(r["peak_rss_mb"] for r in runs),
        "runs": runs,
    }
    if "ceiling_rows_per_s" in runs[0]:
        roofs = [r["ceiling_rows_per_s"] for r in runs]
        out["ceiling_rows_per_s"] = round(statistics.median(roofs))
        out["ceiling_spread"] = [min(roofs), max(roofs)]
    return out


def goals(results: dict[str, dict]) -> dict[str, dict]:
    """Each goal as a ratio of medians from this run, beside the ratio it must reach."""
    out = {}
    for db in ("sqlite", "postgres"):
        store = PEER_STORE[db]
        peers = {n: r for n, r in results.items() if n.startswith(f"dlt {store} ")}
        off, on = results.get(f"hookstream {db} index off"), results.get(f"hookstream {db} index on")
        if not peers or not off or not on:
            continue
        fastest = max(peers, key=lambda n: peers[n]["rows_per_s"])
        best = peers[fastest]["rows_per_s"]
        out[f"{db} index off vs {fastest}"] = {"ratio": round(off["rows_per_s"] / best, 2), "goal": 1.0}
        out[f"{db} index on vs {fastest}"] = {"ratio": round(on["rows_per_s"] / best, 2), "goal": 0.75}
        for label, r in (("on", on), ("off", off)):
            out[f"{db} index {label} vs its ceiling"] = {
                "ratio": round(r["rows_per_s"] / r["ceiling_rows_per_s"], 2),
                "goal": 0.9,
            }
    return out


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--only", default="", help="run only the configurations whose name holds this")
    parser.add_argument("--child", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        return child(args.child)
    configs = [{"tool": "hookstream", "db": db, "index": index} for db, index in HOOKSTREAM]
    configs += [{"tool": "dlt", "store": store, "backend": backend} for store, backend in DLT]
    configs = [dict(c, rows=args.rows) for c in configs if args.only in name_of(c)]
    runs: dict[str, list[dict]] = {name_of(c): [] for c in configs}
    with tempfile.TemporaryDirectory(prefix="hookstream-peers-", ignore_cleanup_errors=True) as tmp_name:
        from bench.backfill import make_source, source_dsn

        server = make_source(Path(tmp_name), args.rows)  # held: it stops when collected
        uri, dsn = source_dsn(server)
        for round_no in range(args.rounds):
            turned = configs[round_no % len(configs) :] + configs[: round_no % len(configs)]
            for config in turned:
                result = measured(config, dsn, uri)
                runs[name_of(config)].append(result)
                print(
                    f"  round {round_no + 1}  {name_of(config):<34} {result['rows_per_s']:>8,} rows/s",
                    flush=True,
                )
    results = {name: summary(r) for name, r in runs.items()}
    out = {
        "benchmark": "peers",
        "rows": args.rows,
        "rounds": args.rounds,
        "machine": machine(),
        "results": results,
        "goals": goals(results),
    }
    print(f"\n{args.rows:,} rows, {args.rounds} rounds, medians (min-max), {out['machine']['cores']} cores:")
    for name, r in results.items():
        roof = f"   ceiling {r['ceiling_rows_per_s']:,}" if "ceiling_rows_per_s" in r else ""
        print(
            f"  {name:<34} {r['rows_per_s']:>8,} rows/s ({r['spread'][0]:,}-{r['spread'][1]:,})"
            f"  exact: {r['exact']}  peak RSS {r['peak_rss_mb']} MB{roof}"
        )
    for goal, g in out["goals"].items():
        print(f"  {goal:<48} {g['ratio']:.2f} (goal {g['goal']})")
    print(f"  saved {save('peers', out)}")
    return 0 if all(r["exact"] for r in results.values()) else 1


if __name__ == "__main__":
    sys.exit(main())
