"""Prometheus metrics, served at /metrics (health.py).

Every process of an instance counts into files under PROMETHEUS_MULTIPROC_DIR when it is
set (`make run` sets it for all its children; web_server.py makes one for a web server
started alone), and /metrics adds up every process's files: the web worker that answers a
scrape reports the other workers', the RQ workers' and the ingest writer's counts too.
Without it (tests, a single process) the counts are this process's own.

Labels are a fixed few values each: an outcome, a queue name. Never an org, source or
collection id (one series per tenant would grow without bound) and never anything a
request carries.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Iterator, Mapping
from typing import Protocol

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    REGISTRY,
    CollectorRegistry,
    Counter,
    Histogram,
    generate_latest,
    values,
)
from prometheus_client.metrics_core import GaugeMetricFamily, Metric
from prometheus_client.multiprocess import MultiProcessCollector
from prometheus_client.registry import Collector
from redis import Redis
from redis.exceptions import RedisError
from rq import Queue, Worker

MULTIPROC_ENV = "PROMETHEUS_MULTIPROC_DIR"
CONTENT_TYPE = CONTENT_TYPE_LATEST
_identity: str | None = None


def _process_identifier() -> str:
    return _identity or str(os.getpid())


if os.environ.get(MULTIPROC_ENV):
    # Decided before any metric below exists, so that all of them count through it.
    values.ValueClass = values.MultiProcessValue(process_identifier=_process_identifier)


def in_work_horse() -> None:
    """Call in an RQ work horse, forked for each job: it counts into its worker's one set of
    files rather than a new set per job (the horses of one worker run one at a time), so the
    folder does not gain files with every job and scrapes do not slow down with them."""
    global _identity
    _identity = f"horse{os.getppid()}"


LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)
INGEST_DELIVERIES = Counter(
    "hookstream_ingest_deliveries", "Webhook deliveries answered, by outcome", ["outcome"]
)
INGEST_SECONDS = Histogram(
    "hookstream_ingest_duration_seconds",
    "Time from a webhook delivery's arrival in the app to its answer, by outcome",
    ["outcome"],
    buckets=LATENCY_BUCKETS,
)
WRITER_BATCH = Histogram(
    "hookstream_ingest_writer_batch_size",
    "Deliveries an ingest writer stored in one transaction",
    buckets=(1, 2, 4, 8, 16, 32, 64, 128, 256),
)
RUNS = Counter(
    "hookstream_runs",
    "Sync runs ended, by outcome (retried: an attempt failed and the run waits to try again)",
    ["outcome"],
)
RECORDS = Counter(
    "hookstream_records_written",
    "Records changed in collections, by what wrote them (sync, webhook) and the change",
    ["via", "change"],
)

# What the stored outcome of an accepted delivery can be; anything else counts as "other".
STORED = frozenset({"applied", "duplicate", "not_json", "failed"})
REFUSED = {401: "rejected", 403: "refused", 404: "refused", 413: "too_large", 503: "unavailable"}
CHANGES = ("inserted", "updated", "deleted", "skipped")
_ingest_children: dict[str, tuple[Counter, Histogram]] = {}


def ingest_outcome(stored: str | None, status: int) -> str:
    """The label of a delivery's answer: what was stored, or why nothing was."""
    if status < 300:
        return stored if stored in STORED else "other"
    return REFUSED.get(status, "error" if status >= 500 else "bad_request")


def ingest_answered(stored: str | None, status: int, seconds: float) -> None:
    """One webhook delivery answered (the web tier's hot path: children looked up once)."""
    outcome = ingest_outcome(stored, status)
    children = _ingest_children.get(outcome)
    if children is None:
        children = _ingest_children[outcome] = (
            INGEST_DELIVERIES.labels(outcome),
            INGEST_SECONDS.labels(outcome),
        )
    children[0].inc()
    children[1].observe(seconds)


def writer_batch(size: int) -> None:
    WRITER_BATCH.observe(size)


class Changes(Protocol):
    """What a batch of upserts did (services.upsert.Outcome)."""

    @property
    def inserted(self) -> int: ...
    @property
    def updated(self) -> int: ...
    @property
    def deleted(self) -> int: ...
    @property
    def skipped(self) -> int: ...


_record_children: dict[tuple[str, str], Counter] = {}


def _records(via: str, change: str) -> Counter:
    child = _record_children.get((via, change))
    if child is None:
        child = _record_children[via, change] = RECORDS.labels(via, change)
    return child


def records_written(via: str, changes: Changes) -> None:
    for change in CHANGES:
        count = getattr(changes, change)
        if count:
            _records(via, change).inc(count)


def webhook_records(outcomes: object) -> None:
    """One delivery's outcomes in each bound collection ({collection id: {"result": …}};
    an event row's column, which its readers do not type)."""
    if not isinstance(outcomes, Mapping):
        return
    for outcome in outcomes.values():
        result = outcome.get("result") if isinstance(outcome, Mapping) else None
        if isinstance(result, str) and result in CHANGES:
            _records("webhook", result).inc()


def run_ended(outcome: str) -> None:
    RUNS.labels(outcome).inc()


class QueueCollector(Collector):
    """Read at each scrape: the jobs waiting in each RQ queue and the live RQ workers, from
    Redis (up 0 and nothing else when it does not answer)."""

    def __init__(self, redis: Redis, queues: Iterable[str]) -> None:
        self.redis, self.queues = redis, tuple(queues)

    def collect(self) -> Iterator[Metric]:
        up = GaugeMetricFamily("hookstream_redis_up", "1 when Redis answered this scrape")
        try:
            depths = {name: Queue(name, connection=self.redis).count for name in self.queues}
            workers = Worker.count(connection=self.redis)
        except RedisError:
            up.add_metric([], 0)
            yield up
            return
        up.add_metric([], 1)
        yield up
        queued = GaugeMetricFamily("hookstream_queue_jobs", "Jobs waiting in each RQ queue", labels=["queue"])
        for name, depth in depths.items():
            queued.add_metric([name], depth)
        yield queued
        live = GaugeMetricFamily("hookstream_workers", "RQ workers registered in Redis")
        live.add_metric([], workers)
        yield live


class _ThisProcess(Collector):
    def collect(self) -> Iterator[Metric]:
        yield from REGISTRY.collect()


def exposition(*live: Collector) -> bytes:
    """The text a scrape gets: every process's counts (or this one's), then `live`."""
    registry = CollectorRegistry(auto_describe=False)
    if os.environ.get(MULTIPROC_ENV):
        MultiProcessCollector(registry)
    else:
        registry.register(_ThisProcess())
    for collector in live:
        registry.register(collector)
    return bytes(generate_latest(registry))
