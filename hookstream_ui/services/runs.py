"""Sync runs: start (one active per connection), list, read, cancel; and health."""

from __future__ import annotations

import secrets
from collections.abc import Sequence
from datetime import datetime, timedelta

from flask import abort
from sqlalchemy import select

from ..errors import ValidationFailed
from ..models import ACTIVE_STATUSES, SourceConnection, SyncRun, db
from ..models.principal import Principal
from ..sources.base import source_type
from ..values.times import as_utc, utcnow

RUN_TIMEOUT_SECONDS = 24 * 3600
FAILURES_FOR_ERROR = 3
FAILURE_BACKOFF = timedelta(seconds=30)
MAX_FAILURE_BACKOFF = timedelta(hours=1)
# A failed attempt of a run is tried again after these many seconds (first, second, third).
BACKOFF_SECONDS = (5, 30, 120)
# The sync job (sync/jobs.py), enqueued by name: RQ imports it in the worker.
RUN_JOB = "hookstream_ui.sync.jobs.run_sync"


def enqueue_run(run: SyncRun, delay: timedelta | None = None) -> None:
    """Put the run's job on the queue (now, or after `delay`); it takes the run's id and
    claim token only."""
    from ..infra.queues import queue

    q = queue("default")
    kwargs = {
        "job_id": f"run-{run.id}-{run.claim_token}",
        "job_timeout": 24 * 3600,
        "result_ttl": 3600,
        "failure_ttl": 7 * 86400,
        "description": f"sync run {run.id}",
    }
    if delay:
        q.enqueue_in(delay, RUN_JOB, run.id, run.claim_token, **kwargs)
    else:
        q.enqueue(RUN_JOB, run.id, run.claim_token, **kwargs)


def active_run(source: SourceConnection) -> SyncRun | None:
    return db.session.scalar(
        select(SyncRun).where(SyncRun.source_id == source.id, SyncRun.status.in_(ACTIVE_STATUSES)).limit(1)
    )


def ensure_idle(source: SourceConnection, *, streaming_ok: bool = False) -> None:
    """409 while a run reads the source; `streaming_ok`, not while it only streams changes
    (a change it can take: it then ends, and the next run starts from what changed)."""
    run = active_run(source)
    if run is not None and not (streaming_ok and run.streaming):
        raise ValidationFailed(
            {"source": "a sync run is in progress"},
            status=409,
            code="sync_in_progress",
            message="A sync is running for this source; wait for it or cancel it first",
        )


def start_run(
    source: SourceConnection, *, trigger: str = "manual", full: bool | None = None, file_id: str | None = None
) -> SyncRun:
    """Create the run row and enqueue its job (ids only). 409 while another run is active."""
    from ..infra.queues import enqueue_or_leave
    from ..sources.base import source_type_or_404

    if not source_type_or_404(source.short_name).pull:
        raise ValidationFailed(
            {"source": "webhook sources receive events; there is nothing to run"}, code="not_runnable"
        )
    from .sources import bound_collections, readable_collections

    if not bound_collections(source):
        # Refused here, not failed later: a run with nothing to read into could only fail.
        raise ValidationFailed(
            {"source": "no collection is bound to this source"},
            status=409,
            code="needs_collection",
            message="No collection is bound to this source: create one from the source's page first",
        )
    if not readable_collections(source):
        # A run skips paused collections, so it would read nothing and report success.
        raise ValidationFailed(
            {"source": "every collection bound to this source is paused"},
            status=409,
            code="collections_paused",
            message="Every collection bound to this source is paused: resume one to run it",
        )
    ensure_idle(source)
    if full is None:
        # The first run of a source is its backfill; later ones are incremental.
        full = source.initial_backfill_completed_at is None
    run = SyncRun(
        org_id=source.org_id,
        env_id=source.env_id,
        source_id=source.id,
        trigger=trigger,
        mode="full" if full else "incremental",
        status="pending",
        cursor={},
        skip_reasons={},
        file_id=file_id,
        claim_token=secrets.token_hex(8),
    )
    db.session.add(run)
    db.session.flush()
    from . import audit

    # By whoever asked (nothing when the scheduler starts it: no one acts).
    audit.note(
        "run.start",
        "run",
        run.id,
        org_id=source.org_id,
        env_id=source.env_id,
        details={"source_id": source.id, "source": source.name, "trigger": trigger, "mode": run.mode},
    )
    db.session.commit()
    enqueue_or_leave(lambda: enqueue_run(run), f"run {run.id}")  # else the scheduler's requeue_lost
    return run


def runs_of(source: SourceConnection, limit: int = 50) -> Sequence[SyncRun]:
    return db.session.scalars(
        select(SyncRun)
        .where(SyncRun.source_id == source.id)
        .order_by(SyncRun.created_at.desc(), SyncRun.id.desc())
        .limit(limit)
    ).all()


def get_run_or_404(principal: Principal, source: SourceConnection, run_id: str) -> SyncRun:
    run = db.session.scalar(
        select(SyncRun).where(
            SyncRun.id == run_id, SyncRun.source_id == source.id, SyncRun.env_id == principal.env.id
        )
    )
    if run is None:
        abort(404, description="Sync run not found")
    return run


def scoped_run_or_404(principal: Principal, run_id: str) -> SyncRun:
    run = db.session.scalar(
        select(SyncRun).where(
            SyncRun.id == run_id, SyncRun.org_id == principal.org.id, SyncRun.env_id == principal.env.id
        )
    )
    if run is None:
        abort(404, description="Sync run not found")
    return run


def cancel_run(run: SyncRun) -> SyncRun:
    """Cooperative: a pending run stops at once, a running one after its current batch.
    Decided on the row as it is now (its worker may be changing it at this moment)."""
    from ..infra import locks
    from . import audit

    locked = locks.for_update(SyncRun, run.id)
    if locked is None:  # deleted with its source meanwhile
        abort(404)
    run = locked
    was = run.status
    if run.status == "pending":
        run.status, run.finished_at = "cancelled", utcnow()
        settle_collections(run)
    elif run.status == "running":
        run.status = "cancelling"
    if run.status != was:
        audit.note(
            "run.cancel",
            "run",
            run.id,
            org_id=run.org_id,
            env_id=run.env_id,
            details={"source_id": run.source_id, "status": {"from": was, "to": run.status}},
        )
    db.session.commit()
    return run


def settle_collections(run: SyncRun) -> None:
    """A run has ended (completed, failed or cancelled, wherever that was decided), and its
    source's health says how: each of its source's collections says so, its status (from
    all its sources) and the backfill a full read is. Every path that ends a run comes here;
    one that did not left "Backfill · running" for ever."""
    from ..infra import locks
    from ..models import Collection
    from . import backfills, bindings

    for binding in bindings.bindings_of(run.source):
        collection = locks.for_update(Collection, binding.collection_id) or binding.collection
        if collection.status != "PAUSED":
            bindings.settle_status(collection)
        if run.mode == "full":
            backfills.settle(collection, run)


def rate_and_eta(run: SyncRun) -> tuple[float | None, float | None]:
    """Records per second so far, and seconds left when the total is known. A streaming run's
    rate is its changes per second of late (sync/stream.py), not since it began."""
    if run.streaming and not run.final:
        return _recent_rate(run), None
    if not run.started_at or not run.progress:
        return None, None
    end = as_utc(run.finished_at) or utcnow()
    elapsed = max((end - as_utc(run.started_at)).total_seconds(), 0.001)
    rate = run.progress / elapsed
    eta = (
        (run.total - run.progress) / rate
        if run.total and run.total > run.progress and not run.final
        else None
    )
    return rate, eta


def _recent_rate(run: SyncRun) -> float:
    feed = (run.cursor or {}).get(SyncRun.FEED) or {}
    measured = feed.get("rate_at")
    # Figures are written with batches: none for twice the window means none came.
    age = (utcnow() - datetime.fromisoformat(measured)).total_seconds() if measured else None
    if age is None or age > 2 * SyncRun.RATE_WINDOW_SECONDS:
        return 0.0
    return float(feed.get("per_second") or 0)


def record_failed_attempt(source: SourceConnection, message: str) -> None:
    """A failed attempt that will be retried already tells on the source's health: it is
    degraded from the first failure, not healthy until every retry has run out (minutes)."""
    source.last_error = message
    if source.health_status in (None, "healthy"):
        source.health_status = "degraded"


def mark_reachable(source: SourceConnection) -> None:
    """A run that read the source has shown it can be reached, whatever an earlier test said
    (or none: "Pending" while a run read it was not true)."""
    if source.status != "connected" and getattr(source_type(source.short_name), "pull", False):
        source.status, source.last_tested_at = "connected", utcnow()
        source.last_test_message = "Read successfully by a sync run"


def record_outcome(source: SourceConnection, run: SyncRun) -> None:
    """Health follows the last runs: healthy, degraded after a failure, error after several."""
    now = utcnow()
    if run.status == "completed":
        source.consecutive_failures = 0
        source.health_status, source.last_error, source.last_success_at = "healthy", None, now
        mark_reachable(source)
        if run.mode == "full" and source.initial_backfill_completed_at is None:
            source.initial_backfill_completed_at = now
    elif run.status == "failed":
        source.consecutive_failures = (source.consecutive_failures or 0) + 1
        source.last_error = run.error
        source.health_status = "error" if source.consecutive_failures >= FAILURES_FOR_ERROR else "degraded"
    if source.sync_frequency and source.sync_status == "active":
        from ..values.schedule import next_run_after

        source.next_run_at = next_run_after(source.sync_frequency, now)
        if (
            run.status == "completed"
            and source.feed_position is not None
            and (source.sync_frequency == "continuous" or run.rebound)
        ):
            # A streaming run ended only to bound its length, or to take a changed binding: go on.
            source.next_run_at = now
        if run.status == "failed" and source.consecutive_failures:
            # A source that keeps failing is tried less and less often (a continuous one
            # failed every 5 s, a run row each time), up to hourly, until a run succeeds.
            wait = min(FAILURE_BACKOFF * 2 ** (source.consecutive_failures - 1), MAX_FAILURE_BACKOFF)
            source.next_run_at = max(source.next_run_at, now + wait)


def stale_before(now: datetime | None = None, seconds: int = 30) -> datetime:
    return (now or utcnow()) - timedelta(seconds=seconds)
