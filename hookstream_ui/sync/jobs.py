"""The sync job. RQ passes the run id only; the run row holds everything else.

Each batch's upserts, counts and checkpoint commit in one transaction, so a run killed
at any point resumes from its last checkpoint with nothing lost and nothing counted
twice. A heartbeat thread proves the run is alive; the scheduler resumes runs whose
heartbeat stopped. A resumed run gets a new claim token, so an old executor that wakes up
stops before writing.
"""

from __future__ import annotations

import contextvars
import logging
import secrets
import threading
from datetime import timedelta

from flask import current_app
from sqlalchemy import select, update

from ..extensions import db
from ..models import Collection, SyncRun, utcnow
from ..observability import metrics, runs
from ..services import locks, upsert
from ..services.runs import mark_reachable
from ..services.sources import bound_collections, connection_for, credentials_of, said, type_of
from ..sources import SourceError
from ..sources.base import ReadContext
from .ratelimit import RateLimiter
from .worker import queue

log = logging.getLogger(__name__)
HEARTBEAT_SECONDS = 5
MAX_ATTEMPTS = 4
BACKOFF_SECONDS = (5, 30, 120)


_END = object()


def read_ahead(app, batches, depth: int = 2):
    """Iterate `batches` with the next one read in a thread while this one is written.
    Errors in the reader surface in the caller, in order."""
    import queue as queue_mod

    pipe: queue_mod.Queue = queue_mod.Queue(maxsize=depth)
    stop = threading.Event()

    def produce():
        with app.app_context():
            try:
                for batch in batches:
                    while not stop.is_set():
                        try:
                            pipe.put(batch, timeout=0.5)
                            break
                        except queue_mod.Full:
                            continue
                    if stop.is_set():
                        return
                pipe.put(_END)
            except BaseException as exc:  # handed to the consumer, raised there
                pipe.put(exc)
            finally:
                db.session.remove()

    # In the run's context: what the reader logs names the run too.
    thread = threading.Thread(
        target=contextvars.copy_context().run, args=(produce,), daemon=True, name="read-ahead"
    )
    thread.start()
    try:
        while True:
            item = pipe.get()
            if item is _END:
                return
            if isinstance(item, BaseException):
                raise item
            yield item
    finally:
        stop.set()


class Superseded(Exception):
    """Another executor owns this run now (it was resumed elsewhere)."""


class Cancelled(Exception):
    """The run was asked to stop; raised between batches, after the last commit."""


def enqueue_run(run: SyncRun, delay: timedelta | None = None) -> None:
    q = queue("default")
    kwargs = dict(
        job_id=f"run-{run.id}-{run.claim_token}",
        job_timeout=24 * 3600,
        result_ttl=3600,
        failure_ttl=7 * 86400,
        description=f"sync run {run.id}",
    )
    if delay:
        q.enqueue_in(delay, run_sync, run.id, run.claim_token, **kwargs)
    else:
        q.enqueue(run_sync, run.id, run.claim_token, **kwargs)


class Heartbeat(threading.Thread):
    """Touches heartbeat_at every few seconds from its own connection while the run works."""

    def __init__(self, app, run_id: str, token: str):
        super().__init__(daemon=True, name=f"heartbeat-{run_id}")
        self.app, self.run_id, self.token = app, run_id, token
        self.stopped = threading.Event()

    def run(self):
        with self.app.app_context():
            while not self.stopped.wait(HEARTBEAT_SECONDS):
                with db.engine.begin() as conn:
                    conn.execute(
                        update(SyncRun)
                        .where(SyncRun.id == self.run_id, SyncRun.claim_token == self.token)
                        .values(heartbeat_at=utcnow())
                    )

    def stop(self):
        self.stopped.set()


@runs.bound_to_run
def run_sync(run_id: str, token: str) -> str:
    run = locks.for_update(SyncRun, run_id)
    if run is None or run.final or run.claim_token != token:
        db.session.rollback()
        return "skipped"
    if run.status == "cancelling":
        _finish(run, "cancelled")
        return "cancelled"
    source = run.source
    run.status, run.heartbeat_at = "running", utcnow()
    run.started_at = run.started_at or utcnow()
    run.error = None
    for collection in bound_collections(source):
        if collection.status != "PAUSED":  # a pause outlasts the runs that pass it by
            collection.status = "SYNCING"
    db.session.commit()
    runs.started(run)
    heartbeat = Heartbeat(current_app._get_current_object(), run.id, token)
    heartbeat.start()
    try:
        _execute(run, token)
        _finish(run, "completed")
        return "completed"
    except Cancelled:
        _finish(run, "cancelled")
        return "cancelled"
    except Superseded:
        db.session.rollback()
        return "superseded"
    except Exception as exc:  # any failure: record it, then retry or give up
        db.session.rollback()
        return _fail(run_id, exc)
    finally:
        heartbeat.stop()


def _execute(run: SyncRun, token: str) -> None:
    source = run.source
    kind = type_of(source)
    conn = connection_for(source)
    limits = source.rate_limit or {}
    limiter = RateLimiter(
        source.id,
        limits.get("allowed_requests"),
        limits.get("interval"),
        limits.get("max_concurrent_requests") or 0,
    )
    not_before = utcnow() - timedelta(days=source.max_age_days) if source.max_age_days else None
    config = current_app.config
    ctx = ReadContext(
        throttle=limiter,
        file_id=run.file_id,
        not_before=not_before,
        batch_size=config["SYNC_BATCH_SIZE"],
        batch_bytes=config["SYNC_BATCH_BYTES"],
        max_record_bytes=config["MAX_RECORD_BYTES"],
    )
    bound = bound_collections(source)
    if not bound:
        raise SourceError(
            "No collection is bound to this source; create one from the source's page", retry=False
        )
    # A paused collection takes nothing, as webhook deliveries skip it; its own position
    # (sync_state) waits, so once resumed it reads on from there.
    collections = sorted((c for c in bound if c.status != "PAUSED"), key=lambda c: c.id)
    if run.mode != "full" and any(kind.state_expired(c.sync_state) for c in collections):
        run.mode = "full"  # what changed since is gone from the source: read it all again
        db.session.commit()
    full = run.mode == "full"
    for collection in collections:
        checkpoint = dict((run.cursor or {}).get(collection.id) or {})
        if checkpoint.get("done") and checkpoint.get("finalised"):
            continue
        if not checkpoint:
            # A backfill into an empty collection reads every key once, in ascending order.
            key_column = f"$.{conn.config.get('primary_key') or 'id'}"
            checkpoint = {
                "started_empty": bool(
                    full
                    and kind.ordered_keys
                    and not collection.record_count
                    and collection.primary_key_path == key_column
                )
            }
        if not checkpoint.get("done"):
            batches = kind.read(conn, collection.stream, collection.sync_state, checkpoint, full, ctx)
            for batch in read_ahead(current_app._get_current_object(), batches):
                _guard(run.id, token)
                outcome = upsert.apply(
                    collection,
                    batch.items,
                    seen_run_id=run.id if full else None,
                    not_before=not_before,
                    keys_are_new=checkpoint.get("started_empty", False),
                )
                for reason in batch.rejected:
                    outcome.skip(f"malformed row: {reason}")
                position = {
                    **batch.checkpoint,
                    "read": checkpoint.get("read", 0) + len(batch.items) + len(batch.rejected),
                    "total": batch.total,
                    "started_empty": checkpoint.get("started_empty", False),
                }
                checkpoint = position
                _count(run, outcome, collection.id, position)
                if batch.state is not None:
                    collection.sync_state = batch.state
                _backfill_progress(collection, run, position)
                mark_reachable(source)  # it answered: the source is connected, not "Pending"
                db.session.commit()  # records, counts and checkpoint: one transaction
                metrics.records_written("sync", outcome)
        _guard(run.id, token)
        removed = upsert.remove_unseen(collection, run.id) if full and kind.short_name != "file" else 0
        if not_before is not None:
            removed += upsert.remove_older_than(collection, not_before)
        run.records_deleted = (run.records_deleted or 0) + removed
        collection.last_sync_at = utcnow()
        run.cursor = {**(run.cursor or {}), collection.id: {**checkpoint, "done": True, "finalised": True}}
        db.session.commit()


def _guard(run_id: str, token: str) -> None:
    """Between batches: stop if the run was cancelled or taken over."""
    status, current = db.session.execute(
        select(SyncRun.status, SyncRun.claim_token).where(SyncRun.id == run_id)
    ).one()
    if current != token:
        raise Superseded()
    if status == "cancelling":
        raise Cancelled()


def _count(run: SyncRun, outcome: upsert.Outcome, collection_id: str, position: dict) -> None:
    run.records_inserted = (run.records_inserted or 0) + outcome.inserted
    run.records_updated = (run.records_updated or 0) + outcome.updated
    run.records_deleted = (run.records_deleted or 0) + outcome.deleted
    run.records_skipped = (run.records_skipped or 0) + outcome.skipped
    if outcome.reasons:
        reasons = dict(run.skip_reasons or {})
        for reason, n in outcome.reasons.items():
            reasons[reason] = reasons.get(reason, 0) + n
        run.skip_reasons = dict(sorted(reasons.items(), key=lambda kv: -kv[1])[:50])
    cursor = {**(run.cursor or {}), collection_id: position}
    run.cursor = cursor
    run.progress = sum(c.get("read", 0) for c in cursor.values())
    totals = [c.get("total") for c in cursor.values()]
    run.total = sum(totals) if totals and all(t is not None for t in totals) else None
    run.heartbeat_at = utcnow()


def _backfill_progress(collection: Collection, run: SyncRun, position: dict) -> None:
    if run.mode != "full":
        return
    collection.backfill_status = "running"
    collection.backfill_started_at = collection.backfill_started_at or run.started_at
    collection.backfill_progress = position.get("read")
    collection.backfill_total = position.get("total")
    collection.backfill_cursor = None
    collection.backfill_error = None


def _finish(run: SyncRun, status: str) -> None:
    """The run's final state, decided on its row as it is now: a cancel asked for meanwhile
    wins over completing."""
    from ..services.runs import record_outcome, settle_collections

    run = locks.for_update(SyncRun, run.id)
    if run.status == "cancelling":
        status = "cancelled"
    run.status, run.finished_at = status, utcnow()
    source = run.source
    settle_collections(run)
    record_outcome(source, run)
    db.session.commit()
    runs.finished(run)


def _fail(run_id: str, exc: Exception) -> str:
    """Retry, or give up; decided on the run's row as it is now. A run being cancelled is
    cancelled: a failure (a request that timed out while the cancel waited) never sends it
    back to pending."""
    from ..services.runs import record_failed_attempt, record_outcome, settle_collections

    run = locks.for_update(SyncRun, run_id)
    if run.status in ("cancelling", "cancelled"):
        _finish(run, "cancelled")
        return "cancelled"
    source = run.source
    message = str(exc) if isinstance(exc, SourceError) else f"Unexpected error: {type(exc).__name__}"
    message = said(type_of(source), credentials_of(source), message)
    if not isinstance(exc, SourceError):
        log.warning("run %s failed with %s", run.id, type(exc).__name__, exc_info=True)
    run.attempt = (run.attempt or 0) + 1
    run.error = message
    if run.attempt < MAX_ATTEMPTS and not isinstance(exc, Cancelled) and getattr(exc, "retry", True):
        run.status = "pending"
        run.claim_token = secrets.token_hex(8)
        record_failed_attempt(source, message)
        db.session.commit()
        delay = BACKOFF_SECONDS[min(run.attempt, len(BACKOFF_SECONDS)) - 1]
        enqueue_run(run, timedelta(seconds=delay))
        runs.retrying(run, exc, delay)
        return "failed"
    run.status, run.finished_at = "failed", utcnow()
    settle_collections(run)
    record_outcome(source, run)
    db.session.commit()
    runs.finished(run)
    return "failed"
