"""What is happening to a collection or a source now, decided in one place from the rows as
they are: the collection's status, its backfill, the run reading into it, whether anything
can still change (the dashboard polls only then), and what its buttons can do now and why
not. Every page and partial that shows one of these reads it from here, so the title badge,
the live strip, the backfill card and the lists never disagree."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta

from flask import current_app
from sqlalchemy import Select, func, select

from ..models import ACTIVE_STATUSES, Binding, Collection, SourceConnection, SyncRun, db
from ..sources import REGISTRY, source_type
from ..values.times import as_utc, utcnow

LIVE_BACKFILL = ("pending", "running")
FAILING = ("degraded", "error")  # a source's health while its last runs fail
POLL_SECONDS = 2
# A webhook's collection can change whenever a delivery arrives; while none has for a
# while its strip asks less often (one small query), and at once again after the next.
QUIET_WEBHOOK_AFTER = timedelta(minutes=5)
QUIET_POLL_SECONDS = 5
RUN_IN_PROGRESS = "A run is in progress: wait for it or cancel it first."
# The longest a finished page waits before looking again for a scheduled run.
MAX_RESUME_SECONDS = 6 * 3600


@dataclass(frozen=True)
class Action:
    """A button: whether it can act now, and if not, why (shown next to it)."""

    enabled: bool
    reason: str | None = None


@dataclass(frozen=True)
class Backfill:
    status: str  # pending | running | completed | failed | cancelled | interrupted
    progress: int
    total: int | None
    error: str | None

    @property
    def live(self) -> bool:
        return self.status in LIVE_BACKFILL

    @property
    def percent(self) -> float:
        if self.total:
            return min(self.progress / self.total * 100, 100.0)
        return 100.0 if self.status == "completed" else 0.0

    @property
    def label(self) -> str:
        return {"pending": "waiting to start", "interrupted": "interrupted: Backfill resumes it"}.get(
            self.status, self.status
        )


@dataclass(frozen=True)
class CollectionState:
    status: str  # NEEDS_SOURCE | ACTIVE | PARTIAL_ERROR | SYNCING | PAUSED | ERROR
    run: SyncRun | None  # the active run of one of its sources
    backfill: Backfill | None
    poll_seconds: int | None  # None: nothing can change; the partial answers 286
    resume_in: int | None  # when nothing runs: seconds until the next scheduled run
    run_now: Action
    backfill_action: Action

    @property
    def live(self) -> bool:
        return self.poll_seconds is not None


def change_mark(collection: Collection) -> str:
    """What moves when records land or go: the live strip sends it back (`seen`) to learn
    whether the records table and the schema should reload."""
    stamp = as_utc(collection.last_sync_at).isoformat() if collection.last_sync_at else ""
    return f"{collection.record_count or 0}|{stamp}"


def active_runs(source_ids: Iterable[str | None]) -> dict[str, SyncRun]:
    """The active run of each of these sources (one query for a whole list)."""
    ids = sorted({s for s in source_ids if s})
    if not ids:
        return {}
    runs = db.session.scalars(
        select(SyncRun).where(SyncRun.source_id.in_(ids), SyncRun.status.in_(ACTIVE_STATUSES))
    ).all()
    return {run.source_id: run for run in runs}


def last_runs(source_ids: Iterable[str | None]) -> dict[str, SyncRun]:
    """The newest run of each of these sources (a query each: a page lists a few dozen)."""
    found: dict[str, SyncRun] = {}
    for source_id in sorted({s for s in source_ids if s}):
        run = db.session.scalar(
            select(SyncRun)
            .where(SyncRun.source_id == source_id)
            .order_by(SyncRun.created_at.desc(), SyncRun.id.desc())
            .limit(1)
        )
        if run is not None:
            found[source_id] = run
    return found


def replay_is_stale(collection: Collection) -> bool:
    """A webhook replay marked running whose job has not written for a while: its worker died
    (a new Backfill resumes it from its cursor)."""
    stale = timedelta(seconds=current_app.config.get("BACKFILL_STALE_SECONDS", 30))
    return as_utc(collection.updated_at) <= utcnow() - stale


def _last_full_run(source_id: str | None) -> SyncRun | None:
    return db.session.scalar(
        select(SyncRun)
        .where(SyncRun.source_id == source_id, SyncRun.mode == "full")
        .order_by(SyncRun.created_at.desc(), SyncRun.id.desc())
        .limit(1)
    )


def _pulls(collection: Collection) -> list[SourceConnection]:
    return [b.source for b in collection.bindings if REGISTRY[b.source.short_name].pull]


def _backfill(collection: Collection, run: SyncRun | None) -> Backfill | None:
    status = collection.backfill_status
    if status is None:
        return None
    pulls = _pulls(collection)
    replays = len(pulls) < len(collection.bindings)
    if status in LIVE_BACKFILL:
        if pulls and not replays and run is None:
            # The full reads ended; rows written before a run's end settled its collections
            # still say running. The last run says how it ended.
            last = _last_full_run(pulls[-1].id)
            status = last.status if last is not None and last.final else "interrupted"
        elif replays and status == "running" and replay_is_stale(collection):
            status = "interrupted"
    return Backfill(
        status, collection.backfill_progress or 0, collection.backfill_total, collection.backfill_error
    )


OVERDUE_POLL_SECONDS = 30


def _seconds_until(moment: datetime | None) -> int | None:
    """How long a finished page waits before looking for the scheduled run: until it is due,
    then briefly (the scheduler starts it within a second or so); long overdue (no scheduler
    running?), only now and then."""
    if moment is None:
        return None
    seconds = int((as_utc(moment) - utcnow()).total_seconds()) + 1
    if seconds < -60:
        return OVERDUE_POLL_SECONDS
    return min(max(seconds, POLL_SECONDS), MAX_RESUME_SECONDS)


def _readable_counts(source_ids: Iterable[str | None]) -> dict[str, int]:
    """How many collections of each source a run would read into (not paused)."""
    ids = sorted({s for s in source_ids if s})
    if not ids:
        return {}
    return _counts_by_source(
        select(Binding.source_id, func.count())
        .join(Collection, Collection.id == Binding.collection_id)
        .where(Binding.source_id.in_(ids), Collection.status != "PAUSED")
        .group_by(Binding.source_id)
    )


def _counts_by_source(query: Select[tuple[str, int]]) -> dict[str, int]:
    return {source_id: n for source_id, n in db.session.execute(query).tuples() if source_id is not None}


def collection_states(collections: Iterable[Collection]) -> dict[str, CollectionState]:
    collections = list(collections)
    ids = [b.source_id for c in collections for b in c.bindings]
    running, readable = active_runs(ids), _readable_counts(ids)
    states = {}
    for c in collections:
        # The source its Run now runs: the first pull source (the first source, if none pulls).
        pulls = _pulls(c)
        first = pulls[0] if pulls else c.bindings[0].source if c.bindings else None
        run = next((running[b.source_id] for b in c.bindings if b.source_id in running), None)
        states[c.id] = _state(c, first, run, readable.get(first.id, 0) if first else 0)
    return states


def collection_state(collection: Collection) -> CollectionState:
    return collection_states([collection])[collection.id]


def health_status(sources: list[SourceConnection]) -> str:
    """What its sources' health makes a collection: ERROR when every one is failing,
    PARTIAL_ERROR when some are, else ACTIVE."""
    failing = sum(s.health_status in FAILING for s in sources)
    if failing and failing == len(sources):
        return "ERROR"
    return "PARTIAL_ERROR" if failing else "ACTIVE"


def _state(
    collection: Collection, source: SourceConnection | None, run: SyncRun | None, readable: int
) -> CollectionState:
    backfill = _backfill(collection, run)
    reading = run is not None or (backfill is not None and backfill.live)
    if collection.status == "PAUSED":
        status = "PAUSED"
    elif source is None:
        status = "NEEDS_SOURCE"
    elif reading:
        status = "SYNCING"
    else:  # as its sources are now (a stored SYNCING is left over from a run that ended)
        status = health_status([b.source for b in collection.bindings])

    if reading:
        poll = POLL_SECONDS
    elif len(_pulls(collection)) < len(collection.bindings):  # a push source: deliveries any time
        recent = (
            collection.last_sync_at is not None
            and as_utc(collection.last_sync_at) > utcnow() - QUIET_WEBHOOK_AFTER
        )
        poll = POLL_SECONDS if recent else QUIET_POLL_SECONDS
    else:
        poll = None
    resume_in = None
    if poll is None and source is not None and source.sync_frequency and source.sync_status == "active":
        resume_in = _seconds_until(source.next_run_at)

    if source is None:
        run_now = backfill_action = Action(False, "Connect a source to this collection first.")
    else:
        run_now = source_run_action(source, run, has_collection=True, readable=readable)
        if run is not None:
            backfill_action = Action(False, RUN_IN_PROGRESS)
        elif backfill is not None and backfill.live:
            backfill_action = Action(False, "A backfill is running.")
        elif collection.status == "PAUSED":
            backfill_action = Action(False, "The collection is paused: resume it to backfill.")
        else:
            backfill_action = Action(True)
    return CollectionState(status, run, backfill, poll, resume_in, run_now, backfill_action)


COLLECTIONS_PAUSED = "Every collection of this source is paused: resume one to run it."


def source_run_action(
    source: SourceConnection, run: SyncRun | None, has_collection: bool, readable: int
) -> Action:
    """Whether Run now can start a run of this source now (as runs.start_run decides)."""
    kind = source_type(source.short_name)
    if kind is None or not kind.pull:
        return Action(False, "Webhook sources receive events; there is nothing to run.")
    if not has_collection:
        return Action(False, "No collection is bound to this source: create one first.")
    if not readable:
        return Action(False, COLLECTIONS_PAUSED)
    if run is not None:
        return Action(False, RUN_IN_PROGRESS)
    return Action(True)


@dataclass(frozen=True)
class SourceState:
    run: SyncRun | None  # its active run
    last_run: SyncRun | None
    collections: int
    run_now: Action
    next_run_at: object  # datetime or None: when the scheduler starts its next run

    @property
    def reading(self) -> bool:
        return self.run is not None and self.run.status in ("running", "cancelling")

    @property
    def change(self) -> Action:
        """Edit, upload, clear data, delete: refused while a run reads the source (ensure_idle)."""
        if self.run is not None:
            return Action(False, RUN_IN_PROGRESS)
        return Action(True)


def source_states(sources: Iterable[SourceConnection]) -> dict[str, SourceState]:
    sources = list(sources)
    ids = [s.id for s in sources]
    running = active_runs(ids)
    latest = last_runs(ids)
    counts = (
        _counts_by_source(
            select(Binding.source_id, func.count())
            .where(Binding.source_id.in_(ids))
            .group_by(Binding.source_id)
        )
        if ids
        else {}
    )
    readable = _readable_counts(ids)
    states: dict[str, SourceState] = {}
    for source in sources:
        run = running.get(source.id)
        scheduled = (
            source.sync_frequency and source.sync_status == "active" and REGISTRY[source.short_name].pull
        )
        states[source.id] = SourceState(
            run,
            latest.get(source.id),
            counts.get(source.id, 0),
            source_run_action(source, run, counts.get(source.id, 0) > 0, readable.get(source.id, 0)),
            source.next_run_at if scheduled and run is None else None,
        )
    return states


def source_state(source: SourceConnection) -> SourceState:
    return source_states([source])[source.id]


def run_label(run: SyncRun) -> str:
    """A run's state in words: a pending run is queued, or waiting to retry after a failed
    attempt (it is not "Pending" then: it has run, and will again)."""
    if run.status == "pending":
        return "Retrying" if run.attempt else "Queued"
    return {
        "running": "Running",
        "cancelling": "Cancelling",
        "completed": "Completed",
        "failed": "Failed",
        "cancelled": "Cancelled",
    }.get(run.status, run.status.title())


def attempt_note(run: SyncRun) -> str | None:
    """Which attempt the run is on, or how many it made. `attempt` counts the failed ones: a
    run that failed for good made that many; one still going (or that completed) is on the
    next. A run of one attempt says nothing."""
    failed = run.attempt or 0
    if run.status == "failed":
        return f"{failed} attempts" if failed > 1 else None
    if run.status == "cancelled":
        return f"after {failed} failed attempt{'s' if failed > 1 else ''}" if failed else None
    return f"attempt {failed + 1}" if failed else None


@dataclass(frozen=True)
class SkipCounts:
    unchanged: int  # read again as stored: nothing to write, nothing wrong
    skipped: int  # not written for a reason (no usable key, not an object, …)
    reasons: dict  # those reasons, most frequent first

    @property
    def top_reason(self) -> str | None:
        return next(iter(self.reasons), None)


def skip_counts(run: SyncRun) -> SkipCounts:
    """A run counts as skipped every row it did not write, unchanged ones among them (a
    backfill over 5,000 unchanged rows said "Skipped 5,000"); its reasons tell them apart."""
    from .upsert import UNCHANGED

    reasons = dict(run.skip_reasons or {})
    unchanged = reasons.pop(UNCHANGED, 0)
    ordered = dict(sorted(reasons.items(), key=lambda kv: -kv[1]))
    return SkipCounts(unchanged, max((run.records_skipped or 0) - unchanged, 0), ordered)


def retry_at(run: SyncRun) -> datetime | None:
    """When a run waiting after a failed attempt is tried again (runs.BACKOFF_SECONDS)."""
    from .runs import BACKOFF_SECONDS

    if run.status != "pending" or not run.attempt or run.updated_at is None:
        return None
    return as_utc(run.updated_at) + timedelta(
        seconds=BACKOFF_SECONDS[min(run.attempt, len(BACKOFF_SECONDS)) - 1]
    )


def seconds_from_now(moment: datetime | None) -> int:
    """Whole seconds until `moment` (0 once it has passed)."""
    return max(int((as_utc(moment) - utcnow()).total_seconds() + 0.999), 0) if moment else 0
