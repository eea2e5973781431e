"""Backfill a collection: replay its webhook source's stored events, or run the pull
source's full read. The collection's backfill_* fields are the truth; the job takes an id.

A replay commits each batch together with its cursor (received_at|event_id), so a second
POST after a crash resumes where the last committed batch ended. Replaying is idempotent:
an event applied twice leaves the same record.
"""

from __future__ import annotations

import logging
from datetime import datetime

from flask import current_app
from sqlalchemy import and_, func, or_, select

from ..errors import ValidationFailed
from ..extensions import db
from ..infra.queues import enqueue_or_leave, queue
from ..models import Collection, Event
from ..services import audit, upsert
from ..services.live import replay_is_stale
from ..values import documents
from ..values.times import as_utc, utcnow

log = logging.getLogger(__name__)
REPLAYABLE = ("applied", "failed")
REPLAY_JOB = "backfill-"  # + collection id: the scheduler finds a pending replay without its job


def _cursor(event: Event) -> str:
    received = as_utc(event.received_at)
    if received is None:  # the column is NOT NULL
        raise ValueError(f"event {event.id} has no received_at")
    return f"{received.isoformat()}|{event.id}"


def _parse_cursor(cursor: str | None) -> tuple[datetime | None, str] | None:
    if not cursor:
        return None
    stamp, _, event_id = cursor.partition("|")
    return upsert.parse_time(stamp), event_id


def start_backfill(collection: Collection) -> Collection:
    """202 semantics: start, or resume from the cursor; 409 while a live one runs."""
    from ..services import runs
    from ..sources import REGISTRY

    if collection.source is None:
        raise ValidationFailed(
            {"source_id": "the collection has no source to backfill from"}, status=409, code="needs_source"
        )
    if REGISTRY[collection.source.short_name].pull:
        runs.start_run(collection.source, trigger="backfill", full=True)
        db.session.refresh(collection)
        # Pending until the run's first batch says running: the card shows the read asked for,
        # not the end of the last one.
        collection.backfill_status, collection.backfill_error = "pending", None
        collection.backfill_progress, collection.backfill_total = 0, None
        collection.backfill_started_at, collection.backfill_completed_at = None, None
        db.session.commit()
        return collection
    if collection.backfill_status in ("pending", "running") and not replay_is_stale(collection):
        raise ValidationFailed(
            {"backfill": "a backfill is already running"},
            status=409,
            code="backfill_in_progress",
            message="A backfill is already running for this collection",
        )
    if collection.backfill_status in ("completed", "cancelled") or collection.backfill_status is None:
        collection.backfill_cursor, collection.backfill_progress = None, 0
        collection.backfill_started_at, collection.backfill_completed_at = None, None
    collection.backfill_status, collection.backfill_error = "pending", None
    collection.backfill_total = db.session.scalar(
        select(func.count())
        .select_from(Event)
        .where(Event.source_id == collection.source_id, Event.status.in_(REPLAYABLE))
    )
    audit.note(
        "collection.backfill",
        "collection",
        collection.id,
        org_id=collection.org_id,
        env_id=collection.env_id,
        details={
            "name": collection.name,
            "events": collection.backfill_total,
            "resumed": bool(collection.backfill_cursor),
        },
    )
    db.session.commit()
    enqueue_replay(collection.id)
    return collection


def enqueue_replay(collection_id: str) -> None:
    enqueue_or_leave(
        lambda: queue("default").enqueue(
            replay_events,
            collection_id,
            job_id=f"{REPLAY_JOB}{collection_id}",
            job_timeout=24 * 3600,
            description=f"backfill {collection_id}",
        ),
        f"backfill of {collection_id}",
    )


def replay_events(collection_id: str) -> str:
    from ..sources import REGISTRY

    collection = db.session.get(Collection, collection_id)
    if collection is None or collection.backfill_status not in ("pending", "running"):
        return "skipped"
    if collection.source is not None and REGISTRY[collection.source.short_name].pull:
        return "skipped"  # a pull source's backfill is its run's, not a replay of events
    collection.backfill_status = "running"
    collection.backfill_started_at = collection.backfill_started_at or utcnow()
    db.session.commit()
    try:
        while True:
            query = select(Event).where(Event.source_id == collection.source_id, Event.status.in_(REPLAYABLE))
            after = _parse_cursor(collection.backfill_cursor)
            if after:
                query = query.where(
                    or_(
                        Event.received_at > after[0], and_(Event.received_at == after[0], Event.id > after[1])
                    )
                )
            size = current_app.config["SYNC_BATCH_SIZE"]
            events = db.session.scalars(query.order_by(Event.received_at, Event.id).limit(size)).all()
            if not events:
                break
            items = []
            for event in events:
                try:
                    document = documents.loads(event.body or "")
                except ValueError:
                    continue
                items.append(upsert.Incoming(document, event_at=event.received_at, source_event_id=event.id))
            upsert.apply(collection, items, history=True)
            collection.backfill_progress = (collection.backfill_progress or 0) + len(events)
            collection.backfill_cursor = _cursor(events[-1])
            collection.last_sync_at = utcnow()
            db.session.commit()  # records and cursor together
        collection.backfill_status, collection.backfill_completed_at = "completed", utcnow()
        db.session.commit()
        return "completed"
    except Exception as exc:
        db.session.rollback()
        log.warning("backfill of %s failed with %s", collection_id, type(exc).__name__)
        collection = db.session.get(Collection, collection_id)
        if collection is not None:  # deleted meanwhile: nothing to mark
            collection.backfill_status, collection.backfill_error = "failed", f"{type(exc).__name__}"
            db.session.commit()
        return "failed"
