"""The scheduler: enqueues due runs, resumes runs whose worker died, re-enqueues lost jobs
(sync runs and search index passes).

Exactly one is active at a time (a Redis lease), so it is safe to start one per machine;
`make run` starts one and production runs `flask scheduler`.
"""

from __future__ import annotations

import logging
import os
import secrets
import signal
import time
from datetime import datetime, timedelta

from flask import Flask
from redis.exceptions import RedisError
from rq.exceptions import NoSuchJobError
from rq.job import Job, JobStatus
from sqlalchemy import or_, select

from ..errors import ValidationFailed
from ..extensions import db, get_redis
from ..models import Binding, Collection, Org, SourceConnection, SyncRun
from ..services import changes, retention, runs
from ..values.times import utcnow
from . import alerts, feeds

log = logging.getLogger(__name__)
LEASE_KEY = "hookstream:scheduler:leader"
LEASE_SECONDS = 15
STALE_SECONDS = 30
LOST_JOB_SECONDS = 30
PRUNE_SECONDS = 600
PRUNE_LIMIT = 50_000
_next_prune = [0.0]


def resume_stale(now: datetime | None = None) -> list[str]:
    """Running runs whose heartbeat stopped (worker killed): resume from their checkpoint."""
    from ..services.runs import enqueue_run

    now = now or utcnow()
    stale = db.session.scalars(
        select(SyncRun).where(
            SyncRun.status.in_(("running", "cancelling")),
            or_(
                SyncRun.heartbeat_at.is_(None), SyncRun.heartbeat_at < now - timedelta(seconds=STALE_SECONDS)
            ),
        )
    ).all()
    resumed = []
    for run in stale:
        if run.status == "cancelling":
            run.status, run.finished_at = "cancelled", now
            runs.settle_collections(run)
            continue
        run.status, run.claim_token, run.heartbeat_at = "pending", secrets.token_hex(8), now
        resumed.append(run)
    db.session.commit()
    for run in resumed:
        log.warning("run %s lost its worker; resuming from its checkpoint", run.id)
        enqueue_run(run)
    return [r.id for r in resumed]


def requeue_lost(now: datetime | None = None) -> list[str]:
    """Pending runs whose job is gone from Redis (e.g. Redis was flushed) go back on the queue."""
    from ..services.runs import enqueue_run

    now = now or utcnow()
    pending = db.session.scalars(
        select(SyncRun).where(
            SyncRun.status == "pending", SyncRun.updated_at < now - timedelta(seconds=LOST_JOB_SECONDS)
        )
    ).all()
    lost = [
        run for run in pending if not Job.exists(f"run-{run.id}-{run.claim_token}", connection=get_redis())
    ]
    for run in lost:
        enqueue_run(run)
    return [r.id for r in lost]


def requeue_lost_indexing() -> list[str]:
    """Collections whose word index is still `building` with no pass waiting or running (Redis
    was flushed, the pass failed, or its worker died): a pass goes back on the queue."""
    from ..services import index_jobs

    building = db.session.scalars(select(Collection.id).where(Collection.search_index == "building")).all()
    lost = [collection_id for collection_id in building if not index_jobs.has_live_job(collection_id)]
    for collection_id in lost:
        log.warning("the search index of %s has no job building it; enqueuing one", collection_id)
        index_jobs.enqueue(collection_id)
    return lost


def requeue_lost_backfills(now: datetime | None = None) -> list[str]:
    """Webhook collections whose replay is pending or running with no job waiting or running
    (Redis was down when it was asked for, or was flushed, or its worker died mid-replay):
    the replay goes on the queue, and resumes from its cursor. A dead worker's replay said
    "running" for ever."""
    from ..sources import REGISTRY
    from .backfill import REPLAY_JOB, enqueue_replay

    now = now or utcnow()
    # Only replays: a pull source's backfill is a run (its own sweep resumes it), pending
    # or running just as long, and a replay would mark it completed under the read.
    replayed = [name for name, kind in REGISTRY.items() if kind.push]
    pending = db.session.scalars(
        select(Collection.id)
        .distinct()
        .join(Binding, Binding.collection_id == Collection.id)
        .join(SourceConnection, SourceConnection.id == Binding.source_id)
        .where(
            Collection.backfill_status.in_(("pending", "running")),
            SourceConnection.short_name.in_(replayed),
            Collection.updated_at < now - timedelta(seconds=LOST_JOB_SECONDS),
        )
    ).all()
    lost = [c for c in pending if not _waiting_or_running(f"{REPLAY_JOB}{c}")]
    for collection_id in lost:
        enqueue_replay(collection_id)
    return lost


def _waiting_or_running(job_id: str) -> bool:
    """A job that is queued, scheduled or running (a finished one keeps its id for a while)."""
    try:
        status = Job.fetch(job_id, connection=get_redis()).get_status()
    except NoSuchJobError:
        return False
    return status in (JobStatus.QUEUED, JobStatus.SCHEDULED, JobStatus.STARTED, JobStatus.DEFERRED)


def enqueue_due(now: datetime | None = None) -> list[str]:
    now = now or utcnow()
    # A suspended org's syncs wait (nothing is deleted; they resume when it is unsuspended).
    due = db.session.scalars(
        select(SourceConnection)
        .join(Org, Org.id == SourceConnection.org_id)
        .where(
            SourceConnection.sync_status == "active",
            SourceConnection.sync_frequency.is_not(None),
            Org.suspended_at.is_(None),
            or_(SourceConnection.next_run_at.is_(None), SourceConnection.next_run_at <= now),
        )
    ).all()
    started = []
    for source in due:
        if runs.active_run(source) is not None:
            continue
        try:
            run = runs.start_run(source, trigger="schedule")
        except ValidationFailed:
            # Nothing it could read into: asked again at its next time, not at every tick.
            from ..values.schedule import next_run_after

            source.next_run_at = next_run_after(source.sync_frequency, now) if source.sync_frequency else None
            db.session.commit()
            continue
        # Until this run finishes and sets the real next time, do not pick it again.
        source.next_run_at = now + timedelta(days=3650)
        db.session.commit()
        started.append(run.id)
    return started


def prune_when_due() -> dict:
    """Every ten minutes, what is past its retention goes (services/retention.py), a bounded
    number per tick (so a large first prune does not hold up scheduling); while some
    remain, the next tick goes on."""
    if time.monotonic() < _next_prune[0]:
        return {"events": 0, "runs": 0}
    pruned = {
        "events": retention.prune_events(limit=PRUNE_LIMIT),
        "runs": retention.prune_idle_runs(limit=PRUNE_LIMIT),
    }
    _next_prune[0] = time.monotonic() + (0 if max(pruned.values()) >= PRUNE_LIMIT else PRUNE_SECONDS)
    retention.prune_sign_in_state()
    retention.prune_dedup_claims()
    retention.prune_deletions()
    changes.prune()
    retention.prune_delivery_log()
    retention.prune_incidents()
    return pruned


FEED_CHECK_SECONDS = 60
_next_feed_check = [0.0]


def feeds_when_due() -> bool:
    """Every minute, the change feeds' slots are checked (sync/feeds.py), in a job: a source
    that does not answer must not hold up scheduling."""
    if time.monotonic() < _next_feed_check[0]:
        return False
    _next_feed_check[0] = time.monotonic() + FEED_CHECK_SECONDS
    feeds.enqueue()
    return True


def tick() -> dict:
    return {
        "feeds": feeds_when_due(),
        "alerts": alerts.when_due(),
        "resumed": resume_stale(),
        "requeued": requeue_lost(),
        "started": enqueue_due(),
        "reindexing": requeue_lost_indexing(),
        "backfills": requeue_lost_backfills(),
        "pruned": prune_when_due(),
    }


def run_forever(app: Flask, interval: float = 1.0) -> None:
    me = f"{os.uname().nodename}:{os.getpid()}"
    stopping = []
    signal.signal(signal.SIGTERM, lambda *_: stopping.append(True))
    signal.signal(signal.SIGINT, lambda *_: stopping.append(True))
    with app.app_context():
        redis = get_redis()
        log.info("scheduler %s started", me)
        while not stopping:
            try:
                leader = (
                    redis.set(LEASE_KEY, me, nx=True, ex=LEASE_SECONDS) or redis.get(LEASE_KEY) == me.encode()
                )
            except RedisError:  # waits for Redis (runs, backfills and index passes wait in their rows)
                log.warning("scheduler: Redis is unreachable; waiting for it")
                time.sleep(max(interval, 1.0))
                continue
            if leader:
                redis.expire(LEASE_KEY, LEASE_SECONDS)
                try:
                    tick()
                except Exception:  # keep scheduling; the next tick tries again
                    db.session.rollback()
                    log.exception("scheduler tick failed")
                finally:
                    db.session.remove()
            time.sleep(interval)
        if redis.get(LEASE_KEY) == me.encode():
            redis.delete(LEASE_KEY)
