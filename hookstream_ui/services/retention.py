"""Retention: what the instance stops keeping, deleted by the scheduler a batch at a time.

- Received events older than EVENT_RETENTION_DAYS (unset: kept). The event log grows with
  every delivery and its search reads it; records are not touched: they hold the state the
  events produced, and a sync's own `max_age_days` governs them.
- Scheduled runs that changed nothing, an hour after they finished: a continuous sync makes
  one every few seconds, and the history is what happened. The newest run of each source
  stays, whatever it did.
- With the events, the record history that names them (record_events).
- Dedup claims whose window has passed: the next delivery of their key takes them over.
- Deleted keys' deletion times after DELETIONS_KEPT (30 days): longer than a sender retries
  an event (Stripe: 3 days) or a pull runs, so no older version is still on its way.
- Delivery attempts, and deliveries delivered in the end, after CHANGES_RETENTION_HOURS,
  as the change feed they came from.
- Alert incidents DELETIONS_KEPT (30 days) after they were resolved: the Alerts page lists
  the open ones and the latest resolved; a month answers "did this happen before?".
- Signed-in sessions a day after they ended or expired, and failed sign-ins whose window
  has passed: they no longer let anyone in or keep anyone out.

Deleted a batch per transaction, oldest first, so ingest (SQLite's one writer above all)
never waits long.
"""

from __future__ import annotations

import logging
from datetime import datetime, timedelta
from typing import Any

from flask import current_app
from sqlalchemy import ColumnElement, Select, delete, exists, func, or_, select, tuple_
from sqlalchemy.orm import aliased

from ..models import (
    AlertIncident,
    DedupClaim,
    Delivery,
    DeliveryAttempt,
    Event,
    RecordDeletion,
    RecordEvent,
    SignInFailure,
    SyncRun,
    UserSession,
    db,
)
from ..models.base import Model, rows_changed
from ..values.times import as_utc, utcnow

log = logging.getLogger(__name__)
BATCH = 5000
IDLE_RUNS_KEPT = timedelta(hours=1)
DELETIONS_KEPT = timedelta(days=30)


def cutoff(now: datetime | None = None) -> datetime | None:
    days = current_app.config.get("EVENT_RETENTION_DAYS")
    return (now or utcnow()) - timedelta(days=days) if days else None


def prune_events(now: datetime | None = None, limit: int = 50_000) -> int:
    """Delete up to `limit` events received before the cutoff; returns how many went (fewer
    than `limit` means none are left to prune)."""
    before = cutoff(now)
    if before is None:
        return 0
    deleted = _delete_in_batches(
        Event, select(Event.id).where(Event.received_at < before).order_by(Event.received_at), limit
    )
    # The history of the events that went (not of older ones left for the next pass).
    oldest = db.session.scalar(select(func.min(Event.received_at)))
    _delete_keyed(RecordEvent, RecordEvent.received_at < min(before, as_utc(oldest) or before))
    if deleted:
        log.info("deleted %d events received before %s (EVENT_RETENTION_DAYS)", deleted, before.isoformat())
    return deleted


def prune_idle_runs(now: datetime | None = None, limit: int = 50_000) -> int:
    """Delete up to `limit` scheduled runs that inserted, updated, deleted and skipped
    nothing, finished over an hour ago, each with a newer run of its source."""
    newer = aliased(SyncRun)
    idle = (
        select(SyncRun.id)
        .where(
            SyncRun.trigger == "schedule",
            SyncRun.status == "completed",
            SyncRun.finished_at < (now or utcnow()) - IDLE_RUNS_KEPT,
            *(
                func.coalesce(count, 0) == 0
                for count in (
                    SyncRun.records_inserted,
                    SyncRun.records_updated,
                    SyncRun.records_deleted,
                    SyncRun.records_skipped,
                )
            ),
            exists().where(newer.source_id == SyncRun.source_id, newer.created_at > SyncRun.created_at),
        )
        .order_by(SyncRun.created_at)
    )
    return _delete_in_batches(SyncRun, idle, limit)


def prune_dedup_claims(now: datetime | None = None) -> int:
    return _delete_keyed(DedupClaim, DedupClaim.expires_at < (now or utcnow()))


def prune_deletions(now: datetime | None = None) -> int:
    return _delete_keyed(RecordDeletion, RecordDeletion.deleted_at < (now or utcnow()) - DELETIONS_KEPT)


def prune_delivery_log(now: datetime | None = None) -> int:
    """Delivery attempts, and deliveries that were delivered in the end, as old as the
    change feed keeps: the log of what a destination was sent is kept as long as what could
    be sent again."""
    before = (now or utcnow()) - timedelta(hours=current_app.config["CHANGES_RETENTION_HOURS"])
    gone = _delete_keyed(DeliveryAttempt, DeliveryAttempt.at < before)
    return gone + _delete_keyed(Delivery, (Delivery.status == "delivered") & (Delivery.updated_at < before))


def prune_incidents(now: datetime | None = None) -> int:
    return _delete_keyed(AlertIncident, AlertIncident.resolved_at < (now or utcnow()) - DELETIONS_KEPT)


def _delete_keyed(model: type[Model], condition: ColumnElement[bool]) -> int:
    """Delete the rows `condition` selects, a batch per transaction (tables keyed by several
    columns: the batch is chosen by key)."""
    key = tuple_(*model.__table__.primary_key.columns)
    deleted = 0
    while True:
        batch = select(*model.__table__.primary_key.columns).where(condition).limit(BATCH)
        gone = rows_changed(delete(model).where(key.in_(batch)).execution_options(synchronize_session=False))
        db.session.commit()
        deleted += gone
        if gone < BATCH:
            return deleted


def prune_sign_in_state(now: datetime | None = None) -> int:
    from .accounts import SIGN_IN_WINDOW

    now = now or utcnow()
    gone = rows_changed(
        delete(UserSession).where(
            or_(
                UserSession.expires_at < now - timedelta(days=1),
                UserSession.ended_at < now - timedelta(days=1),
            )
        )
    )
    gone += rows_changed(
        delete(SignInFailure).where(SignInFailure.last_failure_at < now - timedelta(seconds=SIGN_IN_WINDOW))
    )
    db.session.commit()
    return gone


def _delete_in_batches(model: Any, oldest_first: Select[Any], limit: int) -> int:  # model: with an id
    deleted = 0
    while deleted < limit:
        ids = oldest_first.limit(min(BATCH, limit - deleted)).scalar_subquery()
        gone = rows_changed(
            delete(model).where(model.id.in_(ids)).execution_options(synchronize_session=False)
        )
        db.session.commit()
        deleted += gone
        if gone < BATCH:
            break
    return deleted
