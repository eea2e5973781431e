"""What happened lately in an environment: runs across its sources (the runs page), and
the overview's recent runs, failures and ingest rate. Every query is scoped to the
caller's org and environment."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import timedelta

from sqlalchemy import Select, func, select

from ..errors import ValidationFailed
from ..models import ACTIVE_STATUSES, Event, SourceConnection, SyncRun, db
from ..models.principal import Principal
from ..values.times import utcnow
from .pagination import Page, paginate

# The runs page's filters, failures first: they are what someone opening it looks for.
RUN_FILTERS = (
    ("failed", "Failed"),
    ("active", "Running or queued"),
    ("completed", "Completed"),
    ("cancelled", "Cancelled"),
    ("", "All"),
)
RATE_WINDOW = timedelta(hours=1)
RATE_BUCKETS = 6  # ten minutes each
FAILURE_WINDOW = timedelta(hours=24)


def _runs(principal: Principal) -> Select[tuple[SyncRun]]:
    return select(SyncRun).where(SyncRun.org_id == principal.org.id, SyncRun.env_id == principal.env.id)


def list_runs(
    principal: Principal,
    *,
    status: str | None = None,
    source_id: str | None = None,
    cursor: str | None = None,
    limit: str | int | None = 25,
) -> Page:
    """Runs of every source in the environment, newest first; `status` is one of RUN_FILTERS."""
    query = _runs(principal)
    if status == "active":
        query = query.where(SyncRun.status.in_(ACTIVE_STATUSES))
    elif status:
        if status not in {value for value, _ in RUN_FILTERS}:
            raise ValidationFailed({"status": "must be failed, active, completed or cancelled"})
        query = query.where(SyncRun.status == status)
    if source_id:
        query = query.where(SyncRun.source_id == source_id)
    return paginate(query, SyncRun, cursor, limit)


@dataclass(frozen=True)
class Overview:
    recent_runs: Sequence[SyncRun]
    failed_runs: Sequence[SyncRun]  # the newest failures of the last 24 hours
    failed_run_count: int
    failed_event_count: int  # deliveries not applied (rejected, failed, not JSON, skipped), 24 h
    events_last_hour: int
    buckets: list[tuple[int, int]]  # [(minutes ago it starts, events)], oldest first, RATE_BUCKETS of them

    @property
    def events_per_minute(self) -> float:
        return self.events_last_hour / (RATE_WINDOW.total_seconds() / 60)

    @property
    def busiest(self) -> int:
        return max([n for _, n in self.buckets] + [1])


def recent_runs(principal: Principal, limit: int = 5) -> Sequence[SyncRun]:
    return db.session.scalars(
        _runs(principal).order_by(SyncRun.created_at.desc(), SyncRun.id.desc()).limit(limit)
    ).all()


def overview(principal: Principal) -> Overview:
    now = utcnow()
    since = now - FAILURE_WINDOW
    recent = recent_runs(principal)
    failed = _runs(principal).where(SyncRun.status == "failed", SyncRun.created_at >= since)
    failed_runs = db.session.scalars(
        failed.order_by(SyncRun.created_at.desc(), SyncRun.id.desc()).limit(3)
    ).all()
    failed_count = db.session.scalar(select(func.count()).select_from(failed.subquery())) or 0
    events = (
        select(func.count())
        .select_from(Event)
        .where(Event.org_id == principal.org.id, Event.env_id == principal.env.id)
    )
    from .records import outcome_clause

    # What the events list shows as not applied (its "not_applied" filter, linked from here).
    failed_events = (
        db.session.scalar(events.where(Event.received_at >= since, outcome_clause("not_applied"))) or 0
    )
    step = RATE_WINDOW / RATE_BUCKETS
    buckets: list[tuple[int, int]] = []
    for index in range(RATE_BUCKETS):  # each an index range count (ix_events_env_received)
        start = now - RATE_WINDOW + step * index
        n = db.session.scalar(events.where(Event.received_at >= start, Event.received_at < start + step)) or 0
        buckets.append((int((now - start).total_seconds() // 60), n))
    return Overview(recent, failed_runs, failed_count, failed_events, sum(n for _, n in buckets), buckets)


# While no run is active, the overview's recent runs look again no more often than this,
# and when the soonest scheduled run is due (a source every minute shows each run).
SCHEDULED_POLL_SECONDS = 10


def recent_runs_poll(principal: Principal, runs: Sequence[SyncRun]) -> tuple[str | None, bool]:
    """How the overview's recent runs look again: (htmx trigger, or None to stop; whether
    it is a wait for a scheduled run rather than a run already going)."""
    if any(r.active for r in runs):
        return "every 2s", False
    if principal.org.suspended_at is not None:
        return None, False  # its syncs wait until the org is unsuspended
    from .live import _seconds_until

    scheduled = select(SourceConnection.next_run_at).where(
        SourceConnection.org_id == principal.org.id,
        SourceConnection.env_id == principal.env.id,
        SourceConnection.sync_status == "active",
        SourceConnection.sync_frequency.is_not(None),
    )
    times = db.session.scalars(scheduled).all()
    if not times:
        return None, False
    known = [t for t in times if t is not None]
    soonest = utcnow() if len(known) < len(times) else min(known)  # no next time yet: due now
    wait = _seconds_until(soonest)
    return f"load delay:{max(wait or 0, SCHEDULED_POLL_SECONDS)}s", True
