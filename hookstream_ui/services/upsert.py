"""The upsert engine: every path into a collection (sync runs, ingest, backfill) goes here.

Rules (SPEC §6): the key is `primary_key_path` applied to the record; the newest
`source_event_at` wins and older writes are skipped; a record whose event type means
deletion is removed; a record without a key is skipped and the reason counted. Writes are
bulk statements, and the last-write-wins check is in the SQL itself, so concurrent writers
for one key still end in the newest state. The caller commits (with its checkpoint).
"""
from __future__ import annotations

import json
from collections import Counter
from dataclasses import dataclass, field
from datetime import datetime, timezone

from sqlalchemy import bindparam, delete, or_, select, update
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert

from ..models import Collection, Record, db, new_id, utcnow
from ..models.base import as_utc
from . import jsonpaths

DELETION_TYPES = {"deleted", "delete", "removed", "remove"}
KEY_CHUNK = 500  # keys per IN (...) lookup; well under SQLite's parameter limit


@dataclass
class Incoming:
    data: dict
    event_at: datetime | None = None  # the source's own time for this version, if it has one
    source_event_id: str | None = None
    event_type: str | None = None  # when the source says it (Stripe events), not the record


@dataclass
class Outcome:
    inserted: int = 0
    updated: int = 0
    deleted: int = 0
    skipped: int = 0
    reasons: Counter = field(default_factory=Counter)

    def add(self, other: "Outcome") -> None:
        self.inserted += other.inserted
        self.updated += other.updated
        self.deleted += other.deleted
        self.skipped += other.skipped
        self.reasons.update(other.reasons)

    def skip(self, reason: str, n: int = 1) -> None:
        self.skipped += n
        self.reasons[reason] += n


def parse_time(value) -> datetime | None:
    """Epoch seconds (or milliseconds) or ISO 8601, as an aware UTC datetime; else None."""
    if value is None or isinstance(value, bool):
        return None
    if isinstance(value, datetime):
        return as_utc(value)
    if isinstance(value, str) and value.strip().lstrip("-").replace(".", "", 1).isdigit():
        value = float(value)
    if isinstance(value, (int, float)):
        seconds = value / 1000 if abs(value) > 1e11 else value
        try:
            return datetime.fromtimestamp(seconds, timezone.utc)
        except (OverflowError, OSError, ValueError):
            return None
    if isinstance(value, str):
        try:
            return as_utc(datetime.fromisoformat(value.strip().replace("Z", "+00:00")))
        except ValueError:
            return None
    return None


def is_deletion(event_type) -> bool:
    if not isinstance(event_type, str):
        return False
    lowered = event_type.lower()
    return lowered in DELETION_TYPES or lowered.endswith((".deleted", ".removed"))


def _key_text(value) -> str | None:
    if value is None or isinstance(value, (dict, list)):
        return None
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    text = str(value)
    return text if text and len(text) <= 500 else None


def _insert(dialect: str):
    return pg_insert(Record) if dialect == "postgresql" else sqlite_insert(Record)


def apply(collection: Collection, items: list[Incoming], *, seen_run_id: str | None = None,
          received_at: datetime | None = None, not_before: datetime | None = None) -> Outcome:
    """Upsert `items` into `collection`. `not_before` drops versions older than a cutoff
    (max_age_days); `seen_run_id` marks every key a full read saw."""
    outcome = Outcome()
    now = utcnow()
    received_at = received_at or now
    key_of = jsonpaths.getter(collection.primary_key_path)
    type_of = jsonpaths.getter(collection.event_type_field) if collection.event_type_field else None
    time_of = jsonpaths.getter(collection.timestamp_path) if collection.timestamp_path else None

    latest: dict[str, tuple] = {}
    for item in items:
        if not isinstance(item.data, dict):
            outcome.skip("not a JSON object")
            continue
        key = _key_text(key_of(item.data))
        if key is None:
            outcome.skip(f"no usable key at {collection.primary_key_path}")
            continue
        at = (parse_time(time_of(item.data)) if time_of else None) or as_utc(item.event_at) or received_at
        if not_before is not None and at < not_before:
            outcome.skip("older than max_age_days")
            continue
        event_type = item.event_type or (type_of(item.data) if type_of else None)
        previous = latest.get(key)
        if previous is not None:
            if at < previous[0]:
                outcome.skip("older than a newer version in the same batch")
                continue
            outcome.skip("superseded in the same batch")
        latest[key] = (at, item, event_type)
    if not latest:
        return outcome

    existing: dict[str, datetime | None] = {}
    keys = list(latest)
    for start in range(0, len(keys), KEY_CHUNK):
        chunk = keys[start:start + KEY_CHUNK]
        existing.update(db.session.execute(
            select(Record.record_key, Record.source_event_at)
            .where(Record.collection_id == collection.id, Record.record_key.in_(chunk))).all())

    writes, deletes, seen_only = [], [], []
    for key, (at, item, event_type) in latest.items():
        stored = existing.get(key, False)
        stored_at = as_utc(stored) if stored not in (False, None) else None
        newer_stored = stored_at is not None and at < stored_at
        if is_deletion(event_type):
            if stored is False:
                outcome.skip("delete of a key that is not stored")
            elif newer_stored:
                outcome.skip("older than the stored version")
            else:
                deletes.append({"k": key, "at": at})
            continue
        if newer_stored:
            outcome.skip("older than the stored version")
            if seen_run_id:
                seen_only.append(key)
            continue
        if stored is False:
            outcome.inserted += 1
        else:
            outcome.updated += 1
        writes.append({
            "id": new_id("rec"), "org_id": collection.org_id, "env_id": collection.env_id,
            "collection_id": collection.id, "record_key": key, "data": item.data,
            "event_type": str(event_type)[:200] if event_type is not None else None,
            "source_event_id": item.source_event_id, "source_event_at": at,
            "created_at": now, "updated_at": now, "seen_run_id": seen_run_id,
        })

    dialect = db.engine.dialect.name
    if writes:
        stmt = _insert(dialect)
        excluded = stmt.excluded
        stmt = stmt.on_conflict_do_update(
            index_elements=[Record.collection_id, Record.record_key],
            set_={"data": excluded.data, "event_type": excluded.event_type,
                  "source_event_id": excluded.source_event_id, "source_event_at": excluded.source_event_at,
                  "updated_at": excluded.updated_at, "seen_run_id": excluded.seen_run_id},
            where=or_(Record.source_event_at.is_(None), Record.source_event_at <= excluded.source_event_at),
        )
        db.session.execute(stmt, writes)
    if deletes:
        records = Record.__table__  # Core: an executemany DELETE with per-row criteria
        db.session.execute(
            records.delete().where(records.c.collection_id == collection.id, records.c.record_key == bindparam("k"),
                                   or_(records.c.source_event_at.is_(None), records.c.source_event_at <= bindparam("at"))),
            deletes)
        outcome.deleted += len(deletes)
    if seen_only:
        for start in range(0, len(seen_only), KEY_CHUNK):
            db.session.execute(update(Record).where(
                Record.collection_id == collection.id, Record.record_key.in_(seen_only[start:start + KEY_CHUNK]))
                .values(seen_run_id=seen_run_id).execution_options(synchronize_session=False))
    _adjust_count(collection, outcome.inserted - outcome.deleted)
    return outcome


def remove_unseen(collection: Collection, run_id: str) -> int:
    """After a full read: every record that read did not see is gone from the source."""
    deleted = db.session.execute(
        delete(Record).where(Record.collection_id == collection.id,
                             or_(Record.seen_run_id.is_(None), Record.seen_run_id != run_id))
        .execution_options(synchronize_session=False)).rowcount
    _adjust_count(collection, -deleted)
    return deleted


def remove_older_than(collection: Collection, cutoff: datetime) -> int:
    deleted = db.session.execute(
        delete(Record).where(Record.collection_id == collection.id, Record.source_event_at < cutoff)
        .execution_options(synchronize_session=False)).rowcount
    _adjust_count(collection, -deleted)
    return deleted


def _adjust_count(collection: Collection, delta: int) -> None:
    if delta:
        # An expression, not a read-modify-write: concurrent batches cannot lose counts.
        db.session.execute(update(Collection).where(Collection.id == collection.id)
                           .values(record_count=Collection.record_count + delta)
                           .execution_options(synchronize_session=False))


def json_safe(value):
    """Database and API values (datetimes, decimals, UUIDs, bytes) as JSON-able values."""
    return json.loads(json.dumps(value, default=_default))


def _default(value):
    import base64
    import decimal
    import uuid
    from datetime import date, time, timedelta

    if isinstance(value, (datetime, date, time)):
        return value.isoformat()
    if isinstance(value, decimal.Decimal):
        return int(value) if value == value.to_integral_value() else float(value)
    if isinstance(value, uuid.UUID):
        return str(value)
    if isinstance(value, (bytes, bytearray, memoryview)):
        return base64.b64encode(bytes(value)).decode()
    if isinstance(value, timedelta):
        return value.total_seconds()
    return str(value)
