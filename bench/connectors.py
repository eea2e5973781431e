"""API connectors against their rate limits: how much of the budget a provider announces a
real worker's sync uses, whether it ever runs into the limit, and the worker's CPU.

    .venv/bin/python bench/connectors.py            # about four minutes
    .venv/bin/python bench/connectors.py --seconds 90

The fixture servers the tests use (tests/*_fixture.py, on 127.0.0.1 in this process) speak
each provider's protocol and enforce the limits it documents, announced in its headers:

- HubSpot: a private app's 100 requests per 10-second window (X-HubSpot-RateLimit-*), 100
  contacts a page;
- GitHub: a token's hourly budget scaled to 42 requests per 30-second window (5,040 an
  hour, X-RateLimit-Remaining and -Reset), 100 issues a page;
- Shopify: the standard plan's leaky bucket, 40 calls draining 2 a second
  (X-Shopify-Shop-Api-Call-Limit), 250 products a page;
- Salesforce: a daily allocation (Sforce-Limit-Info) that a read cannot spend in minutes,
  2,000 accounts a page: the worker, not the limit, sets the pace.

The sync itself has no rate limit of its own here, so only the provider's announcement paces
it. Each provider's backfill runs on a real `flask worker --burst` against SQLite (or
`--db postgres`). The share of the budget: requests answered in the run's whole windows over
what those windows allow (for the bucket: what its size and drain allow over the run). CPU:
the worker's, less what a worker that finds no job uses, per 1,000 records. Saves
bench/results/connectors.json.
"""

from __future__ import annotations

import argparse
import math
import resource
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.common import ROOT, app_env, database_url, machine, migrate, save, source_and_collection


@dataclass
class Provider:
    name: str  # the source type's short name
    stream: str
    key_path: str
    page: int  # records a full page holds
    budget: str  # the announced limit, in words
    rate: float | None  # requests a second the budget allows in the long run; None: not the bound


PROVIDERS = (
    Provider("hubspot", "contact", "$.id", 100, "100 requests / 10 s window", 10.0),
    Provider("github", "issues", "$.id", 100, "42 requests / 30 s window (5,040 / h)", 42 / 30),
    Provider("shopify", "products", "$.id", 250, "bucket of 40, draining 2 / s", 2.0),
    Provider("salesforce", "Account", "$.Id", 2000, "15,000 requests / 24 h", None),
)


def announce(provider: str, seconds: float) -> tuple[int, dict, dict]:
    """Seed the fixture with enough records for about `seconds` at the budget, set its limit;
    the record count, the credentials and the config to connect with."""
    from tests.github_fixture import GITHUB, GITHUB_TOKEN
    from tests.github_fixture import PREFIX as GITHUB_PREFIX
    from tests.hubspot_fixture import HUBSPOT, HUBSPOT_TOKEN
    from tests.hubspot_fixture import PREFIX as HUBSPOT_PREFIX
    from tests.salesforce_fixture import CLIENT_ID, CLIENT_SECRET, REFRESH_TOKEN, SALESFORCE, TOKEN_PATH
    from tests.shopify_fixture import PREFIX as SHOPIFY_PREFIX
    from tests.shopify_fixture import SHOPIFY, SHOPIFY_TOKEN

    base = FIXTURE.base
    if provider == "hubspot":
        HUBSPOT.reset()
        HUBSPOT.budget, HUBSPOT.window_ms = 100, 10_000
        n = int(seconds * 10 * 100)
        HUBSPOT.add("contacts", n, second=1)
        return n, {"token": HUBSPOT_TOKEN, "base_url": base + HUBSPOT_PREFIX}, {}
    if provider == "github":
        GITHUB.reset()
        GITHUB.budget, GITHUB.window_seconds = 42, 30.0
        # Bursts of 42 pages a window: whole windows, and a last one part used and half full.
        n = (42 * max(int(seconds / 30), 1) + 30) * 100 - 50
        GITHUB.repo("bench", issues=n)
        return (
            n,
            {"token": GITHUB_TOKEN, "base_url": base + GITHUB_PREFIX},
            {"owner": "acme", "repository": "bench"},
        )
    if provider == "shopify":
        SHOPIFY.reset()
        SHOPIFY.bucket_size, SHOPIFY.leak_per_second = 40, 2.0
        n = int((32 + seconds * 2) * 250)
        SHOPIFY.add("products", n)
        creds = {"shop": "acme", "access_token": SHOPIFY_TOKEN, "base_url": base + SHOPIFY_PREFIX}
        return n, creds, {}
    SALESFORCE.reset()
    SALESFORCE.batch_size = 2000
    n = 200_000
    SALESFORCE.add("Account", n)
    creds = {
        "instance_url": base,
        "token_url": base + TOKEN_PATH,
        "client_id": CLIENT_ID,
        "client_secret": CLIENT_SECRET,
        "refresh_token": REFRESH_TOKEN,
    }
    return n, creds, {"objects": "Account"}


def answered_at(provider: str) -> tuple[list[float], int]:
    """When each request the fixture answered within its limit came, and how many it refused."""
    from tests.github_fixture import GITHUB
    from tests.hubspot_fixture import HUBSPOT
    from tests.salesforce_fixture import SALESFORCE
    from tests.shopify_fixture import SHOPIFY

    state: Any = {"hubspot": HUBSPOT, "github": GITHUB, "shopify": SHOPIFY, "salesforce": SALESFORCE}[
        provider
    ]
    refused = {
        "hubspot": lambda: HUBSPOT.refused,
        "github": lambda: GITHUB.refused,
        "shopify": lambda: SHOPIFY.too_many,
        "salesforce": lambda: 0,
    }[provider]()
    return sorted(r["at"] for r in state.requests), refused


def budget_share(provider: str, at: list[float], refused: int) -> float | None:
    """Requests answered over what the announced budget allowed in the same time."""
    if not at or provider == "salesforce":
        return None
    answered = len(at) - refused
    start, end = at[0], at[-1]
    if provider == "shopify":
        return answered / (40 + 2.0 * (end - start))
    budget, window = (100, 10.0) if provider == "hubspot" else (42, 30.0)
    whole = math.floor((end - start) / window)
    if whole == 0:
        return None
    in_windows = sum(1 for t in at if t < start + whole * window) - (refused if provider == "github" else 0)
    return min(in_windows, whole * budget) / (whole * budget) if answered else None


def children_cpu() -> float:
    used = resource.getrusage(resource.RUSAGE_CHILDREN)
    return used.ru_utime + used.ru_stime


def burst_worker(env: dict) -> float:
    """CPU seconds a `flask worker --burst` used until it found the queues empty."""
    before = children_cpu()
    subprocess.run(
        [sys.executable, "-m", "flask", "--app", "app", "worker", "--burst"],
        cwd=ROOT,
        env=env,
        check=True,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    return children_cpu() - before


FIXTURE: Any = None


def main() -> int:
    global FIXTURE
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--db", choices=["sqlite", "postgres"], default="sqlite")
    parser.add_argument("--seconds", type=float, default=60.0, help="about how long each sync lasts")
    parser.add_argument("--only", help="comma-separated providers")
    args = parser.parse_args()
    chosen = [p for p in PROVIDERS if not args.only or p.name in args.only.split(",")]

    from tests.fixture_servers import HttpFixture

    FIXTURE = HttpFixture()
    results = []
    with tempfile.TemporaryDirectory(prefix="hookstream-bench-", ignore_cleanup_errors=True) as tmp_name:
        tmp = Path(tmp_name)
        from hookstream_ui import embedded_redis

        redis_proc, redis_url = embedded_redis.start(tmp / "redis")
        env = app_env(tmp, database_url(args.db, tmp), redis_url)
        try:
            migrate(env)
            idle = min(burst_worker(env) for _ in range(2))
            results = [measure(p, args.seconds, env, idle) for p in chosen]
        finally:
            redis_proc.kill()
            redis_proc.wait(20)
            FIXTURE.stop()

    out = {"benchmark": "connectors", "database": args.db, "machine": machine(), "providers": results}
    path = save("connectors" + ("" if args.db == "sqlite" else f"-{args.db}"), out)
    print(
        f"API connectors, one backfill each on a real worker, into {args.db} ({out['machine']['cores']} cores):"
    )
    for r in results:
        share = f"{r['budget_share']:.1%} of the budget" if r["budget_share"] is not None else "worker-bound"
        print(
            f"  {r['provider']:<10} {r['records']:>7,} records in {r['seconds']:>5} s: "
            f"{r['records_per_hour']:>11,} records/h, {share}; {r['refused']} refused; "
            f"{r['worker_cpu_ms_per_1000']} ms CPU / 1,000 records  [{r['budget']}]"
        )
    print(f"  saved {path}")
    return 0 if all(r["exact"] and r["refused"] == 0 for r in results) else 1


def measure(provider: Provider, seconds: float, env: dict, idle: float) -> dict:
    from hookstream_ui import create_app
    from hookstream_ui.models import Collection, SyncRun, db
    from hookstream_ui.services import runs

    n, credentials, config = announce(provider.name, seconds)
    app = create_app()
    with app.app_context():
        source, collection = source_and_collection(
            f"{provider.name}@example.com",
            provider.name,
            credentials,
            config,
            provider.stream,
            provider.key_path,
        )
        source.rate_limit = None  # no limit of the sync's own: the provider's announcement paces it
        db.session.commit()
        run = runs.start_run(source, full=True)
        cpu = burst_worker(env) - idle
        db.session.expire_all()
        run = db.session.get(SyncRun, run.id)
        assert run.status == "completed", run.error
        took = (run.finished_at - run.started_at).total_seconds()
        count = db.session.get(Collection, collection.id).record_count
    at, refused = answered_at(provider.name)
    share = budget_share(provider.name, at, refused)
    return {
        "provider": provider.name,
        "budget": provider.budget,
        "records": n,
        "exact": count == n and run.records_inserted == n,
        "seconds": round(took, 1),
        "requests": len(at),
        "refused": refused,
        "records_per_hour": round(n / took * 3600),
        "budget_allows_per_hour": round(provider.rate * provider.page * 3600) if provider.rate else None,
        "budget_share": round(share, 4) if share is not None else None,
        "worker_cpu_ms_per_1000": round(cpu / n * 1000 * 1000, 1),
    }


if __name__ == "__main__":
    sys.exit(main())
