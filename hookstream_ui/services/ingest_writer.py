"""The ingest writer: what one batch of webhook deliveries is written as.

infra/group_commit.py gathers the deliveries waiting in a process (or hands them to the
writer process) and calls `write` with a batch, in one transaction: each delivery's
source is checked to be as it was judged, its dedup key claimed, its document applied to
the collections bound to its source, and its event stored. A delivery that cannot be
applied even alone is stored as `failed` (`store_failed`), so a backfill can replay it.
"""

from __future__ import annotations

import logging
import threading
from typing import Any

from flask import Flask
from sqlalchemy import bindparam, select
from sqlalchemy.orm import lazyload

from ..infra import group_commit, locks
from ..infra.group_commit import Delivery
from ..models import Binding, Collection, Event, SourceConnection, db
from ..values.times import utcnow
from . import dedup, upsert, webhook_sources

log = logging.getLogger(__name__)


def store_failed(delivery: Delivery) -> None:
    if delivery.stale:  # sent back to be received again, not failed
        return
    row = delivery.row
    if row["status"] == "applied":
        log.warning("applying event %s of %s failed", row["id"], row["source_id"], exc_info=True)
        row.update(status="failed", error="could not apply the event; a backfill can replay it", outcomes={})
    try:
        locks.write_lock()
        db.session.execute(Event.__table__.insert(), [row])
        db.session.commit()
    except Exception as exc:
        db.session.rollback()
        log.error("storing event %s failed: %s", row["id"], type(exc).__name__)
        delivery.error = exc


# In id order: concurrent writers then lock the collections' rows in one order. Only the
# collections' and bindings' own columns: nothing else is needed, and nothing is changed
# through the ORM (upsert.apply updates count and last_sync_at in one statement).
BOUND_COLLECTIONS = (
    select(Binding, Collection)
    .join(Collection, Collection.id == Binding.collection_id)
    .options(lazyload("*"))
    .where(
        Binding.source_id.in_(bindparam("source_ids", expanding=True)),
        Collection.status != "PAUSED",
    )
    .order_by(Collection.id, Binding.source_id)
)


_SOURCES = SourceConnection.__table__
# A webhook source is "connected" once a delivery it signed (or one it need not sign) has
# arrived; until then it is "pending", as a pull source is until a test or a run reads it.
# Matches no row once it is connected, so it costs a lookup per batch.
HEARD_FROM = (
    _SOURCES.update()
    .where(
        _SOURCES.c.id.in_(bindparam("source_ids", expanding=True)),
        _SOURCES.c.status != "connected",
    )
    .values(status="connected", last_tested_at=bindparam("now"), last_test_message="Received a delivery")
)


def write(batch: list[Delivery]) -> None:
    locks.write_lock()
    judged = {d.row["source_id"] for d in batch if d.source_version}
    if judged:
        versions = webhook_sources.current_versions(judged)
        for delivery in batch:
            delivery.stale = (
                bool(delivery.source_version)
                and versions.get(delivery.row["source_id"]) != delivery.source_version
            )
        batch = [d for d in batch if not d.stale]
    dedup.claim(batch)
    applying = [d for d in batch if d.document is not None]
    for delivery in applying:
        delivery.row["outcomes"] = {}  # a retry alone starts over
    if applying:
        envs = {d.row["source_id"]: d.row["env_id"] for d in applying}
        bound = db.session.execute(BOUND_COLLECTIONS, {"source_ids": sorted(envs)}).tuples().all()
        # A delivery's own time orders it when the collection has no timestamp path.
        items = {
            id(d): upsert.Incoming(
                d.document,
                event_at=d.row["received_at"],
                source_event_id=d.row["id"],
                sent_type=d.row.get("event_type"),  # a message queued by an older web process has none
            )
            for d in applying
        }
        for binding, collection in bound:
            if envs[binding.source_id] != collection.env_id:
                continue
            mine = [d for d in applying if d.row["source_id"] == binding.source_id]
            # (result, reason) or (result, reason, key), one per delivery, filled in by apply
            results: list[tuple[Any, ...]] = [("skipped", None)] * len(mine)
            upsert.apply(
                collection,
                [items[id(d)] for d in mine],
                results=results,
                synced_at=max(d.row["received_at"] for d in mine),
                history=True,
                mapping=upsert.Mapping.of(collection, binding),
            )
            for delivery, (result, reason, *key) in zip(mine, results, strict=True):
                delivery.row["outcomes"][collection.id] = {
                    "result": result,
                    "reason": reason,
                    **({"key": key[0]} if key else {}),
                }
    # A Core executemany: the ORM's bulk insert spent a third of the writer's time on
    # per-row bookkeeping these plain rows do not need.
    if batch:
        db.session.connection().execute(Event.__table__.insert(), [d.row for d in batch])
        heard = sorted({d.row["source_id"] for d in batch if d.row["verification"] != "failed"})
        if heard:
            db.session.connection().execute(HEARD_FROM, {"source_ids": heard, "now": utcnow()})
    db.session.commit()


WRITER = group_commit.Writer(write=write, store_failed=store_failed)


def submit(delivery: Delivery) -> dict:
    """Store (and apply) one delivery; returns its event row once committed."""
    return group_commit.submit(delivery, WRITER)


def run_writer_process(app: Flask, stop: threading.Event | None = None) -> None:
    """The loop of `flask ingest-writer` (infra/group_commit.run_writer_process)."""
    group_commit.run_writer_process(app, WRITER, stop)
