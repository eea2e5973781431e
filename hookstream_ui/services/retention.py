"""Event retention: received events older than EVENT_RETENTION_DAYS are deleted.

The event log grows with every delivery, and its search reads it; an instance that keeps
events for N days keeps both bounded. Records are not touched: they hold the state the
events produced, and a sync's own `max_age_days` governs them. Deleted a batch per
transaction, oldest first, so ingest (SQLite's one writer above all) never waits long.
"""
from __future__ import annotations

import logging
from datetime import datetime, timedelta

from flask import current_app
from sqlalchemy import delete, select

from ..models import Event, db, utcnow

log = logging.getLogger(__name__)
BATCH = 5000


def cutoff(now: datetime | None = None) -> datetime | None:
    days = current_app.config.get("EVENT_RETENTION_DAYS")
    return (now or utcnow()) - timedelta(days=days) if days else None


def prune_events(now: datetime | None = None, limit: int = 50_000) -> int:
    """Delete up to `limit` events received before the cutoff; returns how many went (fewer
    than `limit` means none are left to prune)."""
    before = cutoff(now)
    if before is None:
        return 0
    deleted = 0
    while deleted < limit:
        oldest = (select(Event.id).where(Event.received_at < before)
                  .order_by(Event.received_at).limit(min(BATCH, limit - deleted)))
        gone = db.session.execute(delete(Event).where(Event.id.in_(oldest.scalar_subquery()))
                                  .execution_options(synchronize_session=False)).rowcount
        db.session.commit()
        deleted += gone
        if gone < BATCH:
            break
    if deleted:
        log.info("deleted %d events received before %s (EVENT_RETENTION_DAYS)", deleted, before.isoformat())
    return deleted
