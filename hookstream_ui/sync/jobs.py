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
from collections.abc import Callable, Iterable, Iterator
from datetime import datetime, timedelta

from flask import Flask, current_app
from sqlalchemy import select, update

from ..extensions import db
from ..infra import locks
from ..models import Binding, Collection, SourceConnection, SyncRun
from ..observability import metrics, runs
from ..services import upsert
from ..services.bindings import bindings_of, mapping_state
from ..services.runs import BACKOFF_SECONDS, enqueue_run, mark_reachable
from ..services.sources import connection_for, credentials_of, said, type_of
from ..sources import Connection, SourceError, SourceType
from ..sources.base import Batch, ChangeFeed, ReadContext
from ..values.times import utcnow
from . import stream
from .ratelimit import RateLimiter

log = logging.getLogger(__name__)
HEARTBEAT_SECONDS = 5
COUNTED = ("inserted", "updated", "deleted", "skipped")  # upsert.Outcome's counts
MAX_ATTEMPTS = 4


_END = object()


def read_ahead(app: Flask, batches: Iterable[Batch], depth: int = 2) -> Iterator[Batch]:
    """Iterate `batches` with the next one read in a thread while this one is written.
    Errors in the reader surface in the caller, in order."""
    import queue as queue_mod

    pipe: queue_mod.Queue = queue_mod.Queue(maxsize=depth)
    stop = threading.Event()

    def produce() -> None:
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


def _this_app() -> Flask:
    """The app itself, for a thread that outlives the context its proxy stands for."""
    return current_app._get_current_object()  # type: ignore[attr-defined]  # a LocalProxy method; flask types current_app as the app


class Superseded(Exception):
    """Another executor owns this run now (it was resumed elsewhere)."""


class Cancelled(Exception):
    """The run was asked to stop; raised between batches, after the last commit."""


class Heartbeat(threading.Thread):
    """Touches heartbeat_at every few seconds from its own connection while the run works."""

    def __init__(self, app: Flask, run_id: str, token: str) -> None:
        super().__init__(daemon=True, name=f"heartbeat-{run_id}")
        self.app, self.run_id, self.token = app, run_id, token
        self.stopped = threading.Event()

    def run(self) -> None:
        with self.app.app_context():
            while not self.stopped.wait(HEARTBEAT_SECONDS):
                with db.engine.begin() as conn:
                    conn.execute(
                        update(SyncRun)
                        .where(SyncRun.id == self.run_id, SyncRun.claim_token == self.token)
                        .values(heartbeat_at=utcnow())
                    )

    def stop(self) -> None:
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
    for binding in bindings_of(source):
        if binding.collection.status != "PAUSED":  # a pause outlasts the runs that pass it by
            binding.collection.status = "SYNCING"
    db.session.commit()
    runs.started(run)
    heartbeat = Heartbeat(_this_app(), run.id, token)
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
    ctx = _read_context(run)
    began = mapping_state(source.id)  # first: a binding changed after it ends the stream
    bound = bindings_of(source)
    if not bound:
        raise SourceError(
            "No collection is bound to this source; create one from the source's page", retry=False
        )
    # A paused collection takes nothing, as webhook deliveries skip it; its own position
    # (sync_state) waits, so once resumed it reads on from there.
    readable = [b for b in bound if b.collection.status != "PAUSED"]
    if run.mode != "full" and any(kind.state_expired(b.sync_state) for b in readable):
        run.mode = "full"  # what changed since is gone from the source: read it all again
        db.session.commit()
    feed = kind.change_feed(conn)
    if feed is not None:
        _prepare_feed(source, feed, bound, readable)
    for binding in readable:
        # With a feed, each stream is read whole once (a snapshot), then only streamed.
        fed = feed is not None and bool((binding.sync_state or {}).get("fed"))
        full = run.mode == "full" or (feed is not None and not fed)
        checkpoint = dict((run.cursor or {}).get(binding.collection_id) or {})
        if (checkpoint.get("done") and checkpoint.get("finalised")) or (fed and run.mode != "full"):
            continue
        mapping = upsert.Mapping.of(binding.collection, binding, run.id)
        if not checkpoint:
            checkpoint = _first_checkpoint(run, kind, conn, binding, mapping, full)
        if not checkpoint.get("done"):
            checkpoint = _read_into(run, token, kind, conn, ctx, binding, checkpoint, full)
        _guard(run.id, token)
        if feed is not None:
            binding.sync_state = {"fed": True}
        _finalise(run, kind, binding.collection, checkpoint, ctx.not_before, full)
    if feed is not None:
        _stream(run, token, feed, ctx, readable, began)


def _prepare_feed(
    source: SourceConnection, feed: ChangeFeed, bound: list[Binding], readable: list[Binding]
) -> None:
    """The feed covering the readable streams, and where it starts for a new source."""
    for binding in bound:
        if binding not in readable:
            # Its changes are passed by while it is paused: read whole again once resumed.
            binding.sync_state = None
    start = feed.prepare([b.stream or "" for b in readable])
    if source.feed_position is None:
        source.feed_position = start  # a snapshot taken from now on misses nothing after it
    db.session.commit()


def _stream(
    run: SyncRun, token: str, feed: ChangeFeed, ctx: ReadContext, bound: list[Binding], began: frozenset
) -> None:
    def counted(outcome: upsert.Outcome, read: int) -> None:
        position = dict((run.cursor or {}).get(stream.FEED) or {})
        position["read"] = position.get("read", 0) + read
        for name in COUNTED:
            position[name] = position.get(name, 0) + getattr(outcome, name)
        _count(run, outcome, stream.FEED, position)
        metrics.records_written("sync", outcome)

    # A plain id: the reader thread asks too, and must not touch the writer's ORM objects.
    source_id = run.source_id
    # From here on the run only streams: a binding may change under it (it then ends).
    fed = dict((run.cursor or {}).get(stream.FEED) or {})
    fed.setdefault("streaming_since", utcnow().isoformat())
    run.cursor = {**(run.cursor or {}), stream.FEED: fed}
    db.session.commit()
    stream.stream_into(
        _this_app(),
        run,
        feed,
        ctx,
        bound,
        lambda: _guard(run.id, token),
        counted,
        read_ahead,
        rebound=lambda: mapping_state(source_id) != began,
    )


def _read_context(run: SyncRun) -> ReadContext:
    """The source's rate limit and age cutoff, the run's file, and the configured sizes."""
    source = run.source
    limits = source.rate_limit or {}
    limiter = RateLimiter(
        source.id,
        limits.get("allowed_requests"),
        limits.get("interval"),
        limits.get("max_concurrent_requests") or 0,
        budget=source.credential_source_id or source.id,
    )
    config = current_app.config
    return ReadContext(
        throttle=limiter,
        spent_until=limiter.spent_until,
        budget_back_at=limiter.budget_back_at,
        file_id=run.file_id,
        not_before=utcnow() - timedelta(days=source.max_age_days) if source.max_age_days else None,
        batch_size=config["SYNC_BATCH_SIZE"],
        batch_bytes=config["SYNC_BATCH_BYTES"],
        max_record_bytes=config["MAX_RECORD_BYTES"],
        stream_seconds=config["SYNC_STREAM_SECONDS"],
        stopping=_stopping(run.id),
    )


def _stopping(run_id: str) -> Callable[[], bool]:
    """Whether the run is being cancelled, read on a connection of its own (the reader runs
    in a thread beside the writer's session)."""

    def stopping() -> bool:
        with db.engine.connect() as conn:
            status = conn.execute(select(SyncRun.status).where(SyncRun.id == run_id)).scalar()
        return status == "cancelling"

    return stopping


def _first_checkpoint(
    run: SyncRun, kind: SourceType, conn: Connection, binding: Binding, mapping: upsert.Mapping, full: bool
) -> dict:
    """A backfill into an empty collection keyed by the type's key column reads every key
    once, in ascending order, when the type says so (`ordered_keys`): no key is looked up."""
    collection = binding.collection
    key_column = f"$.{kind.key_column(conn.config, binding.stream)}"
    return {
        "started_empty": bool(
            full
            and kind.ordered_keys
            and not collection.record_count
            and mapping.key_path == key_column
            and mapping.record_path is None
        )
    }


def _read_into(
    run: SyncRun,
    token: str,
    kind: SourceType,
    conn: Connection,
    ctx: ReadContext,
    binding: Binding,
    checkpoint: dict,
    full: bool,
) -> dict:
    """Read the binding's stream from `checkpoint` into its collection, committing each
    batch's records, counts and checkpoint together; the last checkpoint."""
    collection = binding.collection
    mapping = upsert.Mapping.of(collection, binding, run.id)
    batches = kind.read(conn, binding.stream, binding.sync_state, checkpoint, full, ctx)
    for batch in read_ahead(_this_app(), batches):
        _guard(run.id, token)
        outcome = upsert.apply(
            collection,
            batch.items,
            seen_run_id=run.id if full else None,
            not_before=ctx.not_before,
            keys_are_new=checkpoint.get("started_empty", False),
            received_at=batch.read_at,  # pulled state is as new as its read
            mapping=mapping,
        )
        for reason in batch.rejected:
            outcome.skip(f"malformed row: {reason}")
        checkpoint = {
            **batch.checkpoint,
            "read": checkpoint.get("read", 0) + len(batch.items) + len(batch.rejected),
            "total": batch.total,
            "started_empty": checkpoint.get("started_empty", False),
            # What this run changed in this collection (the run's own counts are of all).
            **{name: checkpoint.get(name, 0) + getattr(outcome, name) for name in COUNTED},
        }
        _count(run, outcome, collection.id, checkpoint)
        if batch.state is not None:
            binding.sync_state = batch.state
        _backfill_progress(collection, run, checkpoint)
        mark_reachable(run.source)  # it answered: the source is connected, not "Pending"
        db.session.commit()  # records, counts and checkpoint: one transaction
        metrics.records_written("sync", outcome)
    return checkpoint


def _finalise(
    run: SyncRun,
    kind: SourceType,
    collection: Collection,
    checkpoint: dict,
    not_before: datetime | None,
    full: bool,
) -> None:
    """The collection is read: a full read of everything the source holds removes the
    records it did not see, and the age cutoff removes those older than it."""
    # A backfill that started into an empty collection wrote every record its source has
    # there (one run of a source at a time): none can be unseen, and the scan for them read
    # every record again (5% of a million-row backfill).
    removed = (
        upsert.remove_unseen(collection, run.id, run.source_id, run.started_at or utcnow())
        if full and kind.full_read_complete and not checkpoint.get("started_empty")
        else 0
    )
    if not_before is not None:
        removed += upsert.remove_older_than(collection, not_before, run.source_id, run.id)
    run.records_deleted = (run.records_deleted or 0) + removed
    checkpoint = {**checkpoint, "deleted": checkpoint.get("deleted", 0) + removed}
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


def _locked(run_id: str) -> SyncRun:
    """The run's row, locked. Deleted meanwhile only with its source, mid-run: then there is
    nothing left to settle, and the job fails saying so."""
    run = locks.for_update(SyncRun, run_id)
    if run is None:
        raise LookupError(f"sync run {run_id} was deleted while it ran")
    return run


def _finish(run: SyncRun, status: str) -> None:
    """The run's final state, decided on its row as it is now: a cancel asked for meanwhile
    wins over completing."""
    from ..services.runs import record_outcome, settle_collections

    run = _locked(run.id)
    if run.status == "cancelling":
        status = "cancelled"
    run.status, run.finished_at = status, utcnow()
    source = run.source
    record_outcome(source, run)  # first: the collections' status follows their sources' health
    settle_collections(run)
    db.session.commit()
    runs.finished(run)


def _fail(run_id: str, exc: Exception) -> str:
    """Retry, or give up; decided on the run's row as it is now. A run being cancelled is
    cancelled: a failure (a request that timed out while the cancel waited) never sends it
    back to pending."""
    from ..services.runs import record_failed_attempt, record_outcome, settle_collections

    run = _locked(run_id)
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
    record_outcome(source, run)  # first: the collections' status follows their sources' health
    if getattr(exc, "reconnect", False):
        source.health_status = "error"
    settle_collections(run)
    db.session.commit()
    runs.finished(run)
    return "failed"
