"""Slot hygiene: what every change feed keeps at its source, checked apart from any run.

A replication slot nobody reads makes PostgreSQL keep every WAL segment since it was last
read, until the disk is full. So each feed is asked, every minute, how much WAL it holds
and how far behind its reader is; past FEED_DEGRADED_* the source's health is degraded,
past FEED_ERROR_* error, each saying what to do. Bytes or seconds, whichever is worse."""

from __future__ import annotations

import logging
from datetime import datetime

from flask import current_app
from sqlalchemy import select

from ..extensions import db
from ..infra.queues import enqueue_or_leave, queue
from ..models import SourceConnection
from ..services.sources import connection_for, type_of
from ..values.times import utcnow

JOB_ID = "feed-check"
log = logging.getLogger(__name__)


def enqueue() -> None:
    enqueue_or_leave(
        lambda: queue("low").enqueue(check_all, job_id=JOB_ID, job_timeout=600, description="feed check"),
        "feed check",
    )


def check_all() -> int:
    """Every feed's lag, stored on its source, with the health it makes; the sources checked."""
    ids = db.session.scalars(
        select(SourceConnection.id).where(SourceConnection.feed_position.is_not(None))
    ).all()
    for source_id in ids:
        source = db.session.get(SourceConnection, source_id)
        if source is not None:
            check(source)
    return len(ids)


def check(source: SourceConnection, now: datetime | None = None) -> dict | None:
    now = now or utcnow()
    feed = type_of(source).change_feed(connection_for(source))
    if feed is None:
        return None
    try:
        lag = feed.lag()
    except Exception as exc:  # the source's own failure: said, not raised
        lag = {"error": f"could not ask the source ({type(exc).__name__})"}
    if lag is not None and "error" not in lag:
        moved = (source.feed_position or {}).get("at")
        since = (now - datetime.fromisoformat(moved)).total_seconds() if moved else None
        lag["behind_seconds"] = round(since) if since is not None and lag.get("behind_bytes") else 0
    source.feed_lag = {**(lag or {}), "checked_at": now.isoformat()}
    _health(source, lag or {})
    db.session.commit()
    return source.feed_lag


def _health(source: SourceConnection, lag: dict) -> None:
    config = current_app.config
    kept, behind = lag.get("retained_bytes") or 0, lag.get("behind_seconds") or 0
    slot = lag.get("slot", "its slot")
    level = None
    if kept >= config["FEED_ERROR_BYTES"] or behind >= config["FEED_ERROR_SECONDS"]:
        level = "error"
    elif kept >= config["FEED_DEGRADED_BYTES"] or behind >= config["FEED_DEGRADED_SECONDS"]:
        level = "degraded"
    if level is None:
        if source.health_status != "healthy" and (source.last_error or "").startswith("The replication slot"):
            source.health_status, source.last_error = "healthy", None
        return
    source.health_status = level
    source.last_error = (
        f"The replication slot {slot} keeps {_size(kept)} of WAL and its reader last moved "
        f"{behind // 60} min ago: PostgreSQL keeps that WAL until the slot is read or dropped. "
        "Check that a worker is running and this source's runs succeed; if it is no longer "
        "needed, turn logical replication off or delete the source (either drops the slot)."
    )
    log.warning("source %s: %s", source.id, source.last_error)


def _size(n: int) -> str:
    size = float(n)
    for unit in ("bytes", "KB", "MB"):
        if size < 1024:
            return f"{size:,.0f} {unit}" if unit == "bytes" else f"{size:,.1f} {unit}"
        size /= 1024
    return f"{size:,.1f} GB"
