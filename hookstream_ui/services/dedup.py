"""Dedup of webhook deliveries, decided in the transaction that stores them.

A delivery whose dedup key (an Idempotency-Key or webhook-id header, the configured header
or body path, else the payload's hash) is held by a stored event of its source, within the
source's window, is a duplicate of that event: stored as such, never applied. The claim is
a row written with the event it names, so a duplicate is only ever a duplicate of a stored
event: a delivery that was not stored (a 503, a writer or web process that died) holds
nothing, and the sender's retry is applied. A claim whose window has passed, or whose event
is gone, is taken over by the next delivery of its key.
"""

from __future__ import annotations

from datetime import timedelta
from typing import TYPE_CHECKING

from sqlalchemy import exists, literal_column, or_, select, tuple_

from ..models import DedupClaim, Event, db
from ..models.base import upsert_insert
from ..values.times import utcnow

if TYPE_CHECKING:
    from ..infra.group_commit import Delivery

DEDUPED = ("applied", "not_json")  # what a duplicate can be; a delivery refused by its signature is not


def claim(deliveries: list[Delivery]) -> None:
    """Claim each delivery's key for its event (group_commit.Delivery, with `dedup` set to
    (key hash, window seconds)), or mark it a duplicate of the stored event holding it. A
    delivery marked by an earlier attempt at its transaction is judged afresh."""
    for delivery in deliveries:
        if delivery.judged is not None:
            status, error, document = delivery.judged
            delivery.row.update(duplicate=False, duplicate_of=None, status=status, error=error)
            delivery.document, delivery.judged = document, None
    first: dict[tuple[str, str], Delivery] = {}
    later: list[tuple[tuple[str, str], Delivery]] = []
    windows: dict[tuple[str, str], int] = {}  # seconds, by key
    for delivery in deliveries:
        if not delivery.dedup or delivery.row["status"] not in DEDUPED:
            continue
        key = (delivery.row["source_id"], delivery.dedup[0])
        if key in first:
            later.append((key, delivery))
        else:
            first[key], windows[key] = delivery, delivery.dedup[1]
    if not first:
        return
    claims = DedupClaim.__table__
    insert = upsert_insert(claims)
    statement = (
        insert.values(
            [
                {
                    "source_id": source_id,
                    "key_hash": key_hash,
                    "event_id": d.row["id"],
                    "expires_at": d.row["received_at"] + timedelta(seconds=windows[(source_id, key_hash)]),
                }
                for (source_id, key_hash), d in first.items()
            ]
        )
        .on_conflict_do_update(
            index_elements=[claims.c.source_id, claims.c.key_hash],
            set_={"event_id": insert.excluded.event_id, "expires_at": insert.excluded.expires_at},
            # Taken over only from a claim that has lapsed or whose event is gone. (A concurrent
            # writer's claim on PostgreSQL: this waits for its transaction, then reads it.)
            # (The conflicting row by name: SQLAlchemy would not correlate the subquery with it.)
            where=or_(
                claims.c.expires_at <= utcnow(),
                ~exists().where(Event.__table__.c.id == literal_column("dedup_claims.event_id")),
            ),
        )
        .returning(claims.c.source_id, claims.c.key_hash, claims.c.event_id)
    )
    won = {(row.source_id, row.key_hash): row.event_id for row in db.session.execute(statement)}
    lost = [key for key, d in first.items() if won.get(key) != d.row["id"]]
    holders = dict(won)
    if lost:
        holders.update(
            {
                (row.source_id, row.key_hash): row.event_id
                for row in db.session.execute(
                    select(claims.c.source_id, claims.c.key_hash, claims.c.event_id).where(
                        tuple_(claims.c.source_id, claims.c.key_hash).in_(lost)
                    )
                )
            }
        )
    for key in lost:
        _duplicate(first[key], holders.get(key))
    for key, delivery in later:
        _duplicate(delivery, holders.get(key))


def _duplicate(delivery: Delivery, holder: str | None) -> None:
    delivery.judged = (delivery.row["status"], delivery.row["error"], delivery.document)
    delivery.row.update(duplicate=True, status="duplicate", duplicate_of=holder, error=None)
    delivery.document = None
