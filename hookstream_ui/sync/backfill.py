"""Backfill a collection: run each pull source's full read, and replay its push sources'
stored events. The collection's backfill_* fields are the truth; the job takes an id.

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
from ..infra import locks
from ..infra.queues import enqueue_or_leave, queue
from ..models import Binding, Collection, Event
from ..services import audit, backfills, upsert
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


def _split(collection: Collection) -> tuple[list[Binding], list[Binding]]:
    """The collection's pull sources' bindings (a full read each) and push ones (a replay)."""
    from ..sources import REGISTRY

    pull = [b for b in collection.bindings if REGISTRY[b.source.short_name].pull]
    return pull, [b for b in collection.bindings if b not in pull]


def start_backfill(collection: Collection) -> Collection:
    """202 semantics: start each source's part (or resume the replay from its cursor); 409
    while a live one runs, before anything is started."""
    from ..services import runs

    if not collection.bindings:
        raise ValidationFailed(
            {"source_id": "the collection has no source to backfill from"}, status=409, code="needs_source"
        )
    pull, push = _split(collection)
    if push and collection.backfill_status in ("pending", "running") and not replay_is_stale(collection):
        raise ValidationFailed(
            {"backfill": "a backfill is already running"},
            status=409,
            code="backfill_in_progress",
            message="A backfill is already running for this collection",
        )
    for binding in pull:
        runs.ensure_idle(binding.source)
    parts = {
        b.source_id: backfills.part(
            b.source_id, backfills.READ, run_id=runs.start_run(b.source, trigger="backfill", full=True).id
        )
        for b in pull
    }
    collection = db.session.get(Collection, collection.id, populate_existing=True) or collection
    parts.update({b.source_id: backfills.part(b.source_id, backfills.REPLAY) for b in push})
    resuming = bool(push) and collection.backfill_status in ("pending", "running", "failed")
    if not resuming:
        collection.backfill_cursor = None
    # Pending until a part's first batch says running: the card shows the read asked for,
    # not the end of the last one.
    collection.backfill_sources = parts
    collection.backfill_status, collection.backfill_error = "pending", None
    collection.backfill_progress = collection.backfill_progress if resuming else 0
    collection.backfill_total = None
    collection.backfill_started_at, collection.backfill_completed_at = None, None
    if push:
        collection.backfill_total = db.session.scalar(
            select(func.count())
            .select_from(Event)
            .where(Event.source_id.in_([b.source_id for b in push]), Event.status.in_(REPLAYABLE))
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
                "sources": sorted(parts),
            },
        )
    db.session.commit()
    if push:
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
    """Replay the stored events of the collection's push sources, oldest first, each through
    its own source's binding; each batch commits with the cursor and its sources' counts."""
    collection = db.session.get(Collection, collection_id)
    if collection is None or collection.backfill_status not in ("pending", "running"):
        return "skipped"
    push = {b.source_id: b for b in _split(collection)[1]}
    if not push:
        return "skipped"  # a pull source's backfill is its run's, not a replay of events
    collection.backfill_status = "running"
    collection.backfill_started_at = collection.backfill_started_at or utcnow()
    for source_id in push:
        backfills.set_part(collection, source_id, status="running")
    db.session.commit()
    try:
        more = True
        while more:
            more = _replay_batch(collection, push)
        collection = locks.for_update(Collection, collection_id) or collection
        for source_id in push:
            backfills.set_part(collection, source_id, status="completed")
        backfills.settle_whole(collection)
        db.session.commit()
        return "completed"
    except Exception as exc:
        db.session.rollback()
        log.warning("backfill of %s failed with %s", collection_id, type(exc).__name__)
        failed = locks.for_update(Collection, collection_id)
        if failed is not None:  # deleted meanwhile: nothing to mark
            for source_id in push:
                backfills.set_part(failed, source_id, status="failed")
            failed.backfill_status, failed.backfill_error = "failed", f"{type(exc).__name__}"
            db.session.commit()
        return "failed"


def _replay_batch(collection: Collection, push: dict[str, Binding]) -> bool:
    """The next batch of events after the cursor, applied and committed; False when none is left."""
    query = select(Event).where(Event.source_id.in_(list(push)), Event.status.in_(REPLAYABLE))
    after = _parse_cursor(collection.backfill_cursor)
    if after:
        query = query.where(
            or_(Event.received_at > after[0], and_(Event.received_at == after[0], Event.id > after[1]))
        )
    size = current_app.config["SYNC_BATCH_SIZE"]
    events = db.session.scalars(query.order_by(Event.received_at, Event.id).limit(size)).all()
    if not events:
        return False
    items: dict[str, list[upsert.Incoming]] = {source_id: [] for source_id in push}
    for event in events:
        try:
            document = documents.loads(event.body or "")
        except ValueError:
            continue
        items[event.source_id].append(
            upsert.Incoming(
                document, event_at=event.received_at, source_event_id=event.id, sent_type=event.event_type
            )
        )
    outcomes = {
        source_id: upsert.apply(
            collection, mine, history=True, mapping=upsert.Mapping.of(collection, push[source_id])
        )
        for source_id, mine in items.items()
        if mine
    }
    locks.for_update(Collection, collection.id)  # its parts are written by other jobs too
    for source_id, outcome in outcomes.items():
        was = (collection.backfill_sources or {}).get(source_id) or {}
        backfills.set_part(
            collection, source_id, **{k: was.get(k, 0) + getattr(outcome, k) for k in backfills.COUNTS}
        )
    collection.backfill_progress = (collection.backfill_progress or 0) + len(events)
    collection.backfill_cursor = _cursor(events[-1])
    collection.last_sync_at = utcnow()
    db.session.commit()  # records, counts and cursor together
    return True
