"""The upsert engine: every path into a collection (sync runs, ingest, backfill) goes here.

Rules: each source's items map in by its binding (models/binding.py): the record is at its
record path, the key is its key path applied to the record; the newest `source_event_at`
wins whichever source wrote it, and older writes are skipped; a record whose event type
means deletion is removed, and its key remembers when (record_deletions), so that an older
version arriving later stays deleted; a record without a key is skipped and the reason
counted. Each
row says which source (and run) wrote its current version. Writes are
bulk statements, and the last-write-wins check is in the SQL itself, so concurrent writers
for one key still end in the newest state. The caller commits (with its checkpoint).
"""

from __future__ import annotations

import os
import random
import time
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from operator import attrgetter
from typing import Any, NamedTuple, cast

from flask import current_app
from psycopg import errors as pg_errors
from sqlalchemy import CursorResult, DateTime, Delete, bindparam, delete, func, literal, or_, select, update

from ..models import Binding, Collection, Record, RecordDeletion, db
from ..models.base import sqlite_time, upsert_insert
from ..values import documents, jsonpaths
from ..values.records import (
    Incoming,
    is_deletion,
    key_text,
    parse_time,
    record_json,
    storable,
    storable_json,
    takes,
)
from ..values.times import as_utc, utcnow
from . import changes, search_index

_random = random.Random()  # noqa: S311 - record ids are not secrets (see new_record_id)
# RQ forks a work horse per job: each child must not replay its parent's random sequence.
os.register_at_fork(after_in_child=_random.seed)

KEY_CHUNK = 500  # keys per IN (...) lookup; well under SQLite's parameter limit

# What apply() reports for each item, as (result, reason, key).
INSERTED, UPDATED, DELETED, SKIPPED = "inserted", "updated", "deleted", "skipped"
SAME = "unchanged"  # what a write did to a row it wrote as it was stored
ItemResult = tuple[str, str | None] | tuple[str, str | None, str]

# Why a version was skipped, counted by reason in Outcome.reasons.
NOT_AN_OBJECT = "not a JSON object"
TOO_OLD = "older than max_age_days"
OLDER_IN_BATCH = "older than a newer version in the same batch"
SUPERSEDED = "superseded in the same batch"
DELETE_OF_MISSING = "delete of a key that is not stored"
OLDER_THAN_STORED = "older than the stored version"
OLDER_THAN_DELETION = "older than the deletion of its key"
NOT_TAKEN = "an event type this source's binding does not take"
UNCHANGED = "unchanged since it was last written"  # a version written again as it was
TOO_DEEP = str(documents.TooDeep()).removeprefix("is ")


def no_usable_key(path: str) -> str:
    return f"no usable key at {path}"


@dataclass
class Outcome:
    inserted: int = 0
    updated: int = 0
    deleted: int = 0
    skipped: int = 0
    reasons: Counter = field(default_factory=Counter)

    def add(self, other: Outcome) -> None:
        self.inserted += other.inserted
        self.updated += other.updated
        self.deleted += other.deleted
        self.skipped += other.skipped
        self.reasons.update(other.reasons)

    def skip(self, reason: str, n: int = 1) -> None:
        self.skipped += n
        self.reasons[reason] += n


class RecordRow(NamedTuple):
    """A row of the records table as the write step sends it to the driver, in column order."""

    id: str
    org_id: str
    env_id: str
    collection_id: str
    record_key: str
    data: str  # JSON text
    event_type: str | None
    source_event_id: str | None
    source_event_at: datetime
    created_at: datetime
    updated_at: datetime
    seen_run_id: str | None
    source_id: str | None
    sync_run_id: str | None
    search_words: str | None  # PostgreSQL only: the record's words for its word index


_BY_KEY = attrgetter("record_key")
# PostgreSQL also stores each record's words (search_index.pg_document) for its word index.
PG_COLUMNS = RecordRow._fields
COLUMNS = PG_COLUMNS[:-1]
# A version read again unchanged (re-read windows, full re-reads, a payload sent twice)
# keeps its updated_at: the records list sorts by it, and the run reports it "unchanged".
# Its time alone is no change: a pull is timed by when it read, so every re-read is newer.
_CHANGED = (
    "records.data IS DISTINCT FROM excluded.data OR records.event_type IS DISTINCT FROM excluded.event_type"
)
# Built from constant column names only, never from input.
_UPSERT = (
    "INSERT INTO records ({cols}) VALUES ({marks}) ON CONFLICT (collection_id, record_key) DO UPDATE SET "  # noqa: S608 - constants only
    "data = excluded.data, event_type = excluded.event_type, source_event_id = excluded.source_event_id, "
    "source_event_at = excluded.source_event_at, "
    f"updated_at = CASE WHEN {_CHANGED} THEN excluded.updated_at ELSE records.updated_at END, "
    "seen_run_id = excluded.seen_run_id, source_id = excluded.source_id, "
    "sync_run_id = excluded.sync_run_id{more} "
    "WHERE records.source_event_at IS NULL OR records.source_event_at <= excluded.source_event_at"
)
_CASTS = {"data": "%s::jsonb", "search_words": "%s::tsvector"}
_PG_UPSERT = _UPSERT.replace("{more}", ", search_words = excluded.search_words")
# SQLite spells IS DISTINCT FROM "IS NOT" (the other spelling needs SQLite 3.39).
SQLITE_UPSERT_SQL = (
    _UPSERT.replace("{more}", "")
    .replace("IS DISTINCT FROM", "IS NOT")
    .format(cols=", ".join(COLUMNS), marks=", ".join("?" * len(COLUMNS)))
)
PG_UPSERT_SQL = _PG_UPSERT.format(
    cols=", ".join(PG_COLUMNS), marks=", ".join(_CASTS.get(c, "%s") for c in PG_COLUMNS)
)
UPSERT_SQL = {"sqlite": SQLITE_UPSERT_SQL, "postgresql": PG_UPSERT_SQL}  # by dialect
# PostgreSQL: COPY a batch into a session-local staging table, then one INSERT ... SELECT.
# One statement per batch instead of one per row; keys are unique within a batch (apply()
# keeps the newest version of each), as ON CONFLICT DO UPDATE requires.
PG_STAGE_SQL = (
    "CREATE TEMP TABLE IF NOT EXISTS records_stage AS SELECT {cols} FROM records WITH NO DATA".format(  # noqa: S608 - constants only
        cols=", ".join(PG_COLUMNS)
    )
)
PG_COPY_SQL = "COPY records_stage ({cols}) FROM STDIN".format(cols=", ".join(PG_COLUMNS))
PG_MERGE_SQL = _PG_UPSERT.replace("VALUES ({marks})", "SELECT {cols} FROM records_stage").format(
    cols=", ".join(PG_COLUMNS)
)


@dataclass(frozen=True)
class RecordLimits:
    """What one record may be, from every source alike: at most MAX_RECORD_BYTES of JSON (by
    default the webhook body limit) and MAX_RECORD_FIELDS fields. A larger one is skipped with
    the reason: it would cost every write, index, page and export that meets it."""

    max_bytes: int
    max_fields: int

    @classmethod
    def current(cls) -> RecordLimits:
        config = current_app.config
        return cls(config["MAX_RECORD_BYTES"], config["MAX_RECORD_FIELDS"])

    def refusal(self, json_text: str) -> str | None:
        # Characters first: a text of at most a quarter of the limit in characters is within
        # it in bytes, whatever they are (and needs no encoding to say so). Measured as compact
        # JSON: a webhook body at the body limit is stored with ", " and ": " between fields.
        if (
            len(json_text) * 4 > self.max_bytes
            and len(json_text.encode()) - json_text.count(", ") - json_text.count(": ") > self.max_bytes
        ):
            return f"larger than the record size limit ({self.max_bytes:,} bytes)"
        if documents.fields_over(json_text, self.max_fields):
            return f"more than {self.max_fields:,} fields"
        return None


def new_record_id() -> str:
    """Time-ordered (like ULID/UUIDv7): inserts append to the primary-key index instead of
    landing at random places in it, which keeps large backfills fast. Ids are not secrets
    (every read is scoped to its org), so a fast non-cryptographic suffix is enough."""
    return f"rec_{time.time_ns():016x}{_random.getrandbits(64):016x}"


# Below this many rows (webhook deliveries, small pages) a statement per row that says what
# it did beats a bulk statement and a read-back (PostgreSQL: the staging table's four
# statements cost more than one pipelined INSERT per row).
RETURNING_UNDER = 200
SQLITE_RETURNING = SQLITE_UPSERT_SQL + " RETURNING rowid, id, updated_at"
PG_RETURNING = PG_UPSERT_SQL + " RETURNING record_key, xmax = 0, updated_at"


PG_COPY_NEW_SQL = "COPY records ({cols}) FROM STDIN".format(cols=", ".join(PG_COLUMNS))


# The drivers' own cursors (sqlite3's or psycopg's), reached through SQLAlchemy's DB-API
# wrapper, whose type says nothing of either.
DriverCursor = Any


def pg_bulk_upsert(cursor: DriverCursor, rows: Sequence[tuple[Any, ...]], keys_are_new: bool = False) -> None:
    """`keys_are_new` (a backfill into a collection that started empty): the rows are
    copied straight into records, a fifth cheaper than staging and merging them; if a key
    is there after all (written meanwhile by another path), that copy is undone and the
    batch merged as usual."""
    if keys_are_new:
        cursor.execute("SAVEPOINT new_keys")
        try:
            with cursor.copy(PG_COPY_NEW_SQL) as copy:
                for row in rows:
                    copy.write_row(row)
        except pg_errors.UniqueViolation:
            cursor.execute("ROLLBACK TO SAVEPOINT new_keys")
        else:
            cursor.execute("RELEASE SAVEPOINT new_keys")
            return
    cursor.execute(PG_STAGE_SQL)
    with cursor.copy(PG_COPY_SQL) as copy:
        for row in rows:
            copy.write_row(row)
    cursor.execute(PG_MERGE_SQL)
    cursor.execute("TRUNCATE records_stage")


def _write(
    rows: list[RecordRow], index_words: bool = False, keys_are_new: bool = False
) -> dict[str, str] | None:
    """One executemany with the driver, inside the session's transaction. SQLAlchemy's
    per-row parameter processing cost more than the insert itself on large batches.
    Where the statement can say what it did (small batches), returns each written key's
    result (INSERTED, UPDATED or SAME); keys the last-write-wins guard kept are absent.
    SQLite then also indexes the written rows' words (`index_words`) from the values in
    hand."""
    dialect = db.engine.dialect.name
    if dialect not in UPSERT_SQL:
        raise RuntimeError(f"no bulk upsert for {dialect}")
    cursor = db.session.connection().connection.cursor()
    try:
        if dialect == "sqlite":
            return _sqlite_write(cursor, rows, index_words)
        if len(rows) < RETURNING_UNDER:
            return _pg_write_returning(cursor, rows)
        pg_bulk_upsert(cursor, rows, keys_are_new)
    finally:
        cursor.close()
    return None


def _sqlite_write(cursor: DriverCursor, rows: list[RecordRow], index_words: bool) -> dict[str, str] | None:
    now = sqlite_time(rows[0].updated_at)  # created_at = updated_at = one `now` per batch
    params = [(*r[:8], sqlite_time(r.source_event_at), now, now, *r[11:14]) for r in rows]
    if len(params) >= RETURNING_UNDER:
        cursor.executemany(SQLITE_UPSERT_SQL, params)
        return None
    # sqlite3's executemany cannot return rows; a row at a time it can, and saves reading
    # them back: an updated row keeps its old id, an inserted one has ours.
    done: dict[str, str] = {}
    words: list[tuple[int, str, str]] = []
    for row, param in zip(rows, params, strict=True):
        written = cursor.execute(SQLITE_RETURNING, param).fetchone()
        if written is not None:
            rowid, record_id, updated_at = written
            done[row.record_key] = INSERTED if record_id == row.id else UPDATED if updated_at == now else SAME
            words.append((rowid, row.record_key, row.data))
    if index_words:
        search_index.index_rows(cursor, words)
    return done


def _pg_write_returning(cursor: DriverCursor, rows: list[RecordRow]) -> dict[str, str]:
    # psycopg pipelines it: one round trip, which also answers what each row did (xmax = 0
    # only on a row this statement inserted), so no read-back is needed.
    cursor.executemany(PG_RETURNING, rows, returning=True)
    done: dict[str, str] = {}
    now = rows[0].updated_at
    while True:
        done.update(
            (key, INSERTED if inserted else UPDATED if as_utc(updated) == now else SAME)
            for key, inserted, updated in cursor.fetchall()
        )
        if not cursor.nextset():
            return done


@dataclass(frozen=True)
class Mapping:
    """How one source's items land in a collection: its binding's paths, each falling back to
    the collection's own, and who writes (the source, and its run)."""

    key_path: str
    record_path: str | None = None
    timestamp_path: str | None = None
    event_type_field: str | None = None
    delete_event_types: frozenset[str] = frozenset()
    event_types: frozenset[str] = frozenset()  # the binding takes only these (empty: all)
    source_id: str | None = None
    run_id: str | None = None

    @classmethod
    def of(cls, collection: Collection, binding: Binding | None = None, run_id: str | None = None) -> Mapping:
        def pick(name: str) -> Any:
            own = getattr(binding, name) if binding is not None else None
            return own if own is not None else getattr(collection, name)

        return cls(
            key_path=pick("primary_key_path"),
            record_path=binding.record_path if binding is not None else None,
            timestamp_path=pick("timestamp_path"),
            event_type_field=pick("event_type_field"),
            delete_event_types=frozenset(pick("delete_event_types") or ()),
            event_types=frozenset((binding.event_types if binding is not None else None) or ()),
            source_id=binding.source_id if binding is not None else None,
            run_id=run_id,
        )


def no_record_at(path: str) -> str:
    return f"no JSON object at the record path {path}"


@dataclass(slots=True)
class Version:
    """One item of a batch as the engine sees it: its key (key step), its time and event
    type (time step). After the dedupe step only the newest version of each key is left."""

    index: int  # the item's place in the batch, for its result
    item: Incoming
    key: str
    document: dict[str, Any] | None  # None when the source gave the key and nothing needs the record
    envelope: Any = None  # the item as the source gave it, where its time and type are read
    json: str | None = None  # the record's JSON text, when it is a part of the item (record path)
    at: datetime = datetime.min
    event_type: Any = None


@dataclass
class Plan:
    """What the decide step leaves for the write step."""

    writes: list[RecordRow] = field(default_factory=list)
    deletes: list[dict[str, Any]] = field(default_factory=list)  # {"k": key, "at": its time}
    seen_only: list[str] = field(default_factory=list)  # keys a full read saw but does not write
    deletions: list[dict[str, Any]] = field(default_factory=list)  # to remember: {"k": key, "at": its time}


@dataclass
class _Batch:
    """One call of apply(): its collection, its clock, and where each item's result goes."""

    collection: Collection
    mapping: Mapping
    items: list[Incoming]
    results: list[Any] | None  # of ItemResult, or None before an item has one
    now: datetime
    received_at: datetime
    outcome: Outcome = field(default_factory=lambda: Outcome())
    item_keys: dict[int, str] = field(default_factory=dict)
    noted: list[changes.Noted] = field(default_factory=list)  # for the change feed, in order
    # The items come in the order they happened (a change feed): a version as old as its key's
    # deletion came after it, as an insert after a delete in one transaction does.
    in_order: bool = False

    def note(self, index: int, result: str, reason: str | None = None) -> None:
        if self.results is not None:
            self.results[index] = (result, reason)

    def skip(self, index: int, reason: str) -> None:
        self.outcome.skip(reason)
        if self.results is not None:
            self.results[index] = (SKIPPED, reason)


def apply(
    collection: Collection,
    items: list[Incoming],
    *,
    seen_run_id: str | None = None,
    received_at: datetime | None = None,
    not_before: datetime | None = None,
    keys_are_new: bool = False,
    results: list[Any] | None = None,  # the caller's list: each item's ItemResult is put in it
    synced_at: datetime | None = None,
    history: bool = False,
    mapping: Mapping | None = None,
    in_order: bool = False,
) -> Outcome:
    """Upsert `items` into `collection`. `not_before` drops versions older than a cutoff
    (max_age_days); `seen_run_id` marks every key a full read saw. `keys_are_new` (a
    backfill reading keys in ascending order into a collection that started empty) skips
    the lookup of stored versions; the SQL still guards against overwriting newer data.
    `results`, a list as long as `items`, receives each item's own (result, reason, key),
    for callers that report per delivery (ingest); `synced_at` becomes the collection's
    last_sync_at, in the statement that adjusts its count. `history` (items that are stored
    events: webhooks) notes which event touched which key, for the record page.
    `in_order` (a change feed's items, in commit order): a version exactly as old as its
    key's deletion came after it and is applied.

    In steps, each over the whole batch: key, time, dedupe (the newest version of each
    key), decide (write, delete, or skip with a reason), write, index."""
    if results is None and history:
        results = [None] * len(items)
    now = utcnow()
    batch = _Batch(
        collection,
        mapping or Mapping.of(collection),
        items,
        results,
        now,
        received_at or now,
        in_order=in_order,
    )
    latest = _dedupe(batch, _time_step(batch, _key_step(batch), not_before))
    if latest:
        stored = _stored(batch, latest, seen_run_id, keys_are_new)
        deleted = {} if keys_are_new else _deleted_at(collection, latest)
        plan = _decide(batch, latest, stored, deleted, seen_run_id)
        if plan.writes:
            _write_step(batch, latest, plan.writes, keys_are_new)
        if plan.deletes:
            _delete(batch, plan.deletes)
        if plan.deletions:
            _remember(collection.id, plan.deletions)
        if plan.seen_only:
            _mark_seen(collection, plan.seen_only, seen_run_id)
    delta = batch.outcome.inserted - batch.outcome.deleted
    if batch.noted:
        changes.note(collection, batch.noted, now, delta, synced_at)
    else:
        _adjust_count(collection, delta, synced_at)
    _finish_results(batch, history)
    return batch.outcome


def _key_step(batch: _Batch) -> list[Version]:
    """Each item's record (at the record path) and key: the source's own when it was taken
    from this key path, else the path applied to the record. Items without one are skipped."""
    mapping = batch.mapping
    path, record_path = mapping.key_path, mapping.record_path
    key_of = jsonpaths.getter(path)
    record_of = jsonpaths.getter(record_path) if record_path else None
    needs_document = bool(mapping.event_type_field or mapping.timestamp_path)
    keyed = []
    for index, item in enumerate(batch.items):
        known_key = item.key is not None and item.key_path == path and record_of is None
        if item.refused is not None and not known_key:  # no document to find its key in
            batch.skip(index, item.refused)
            continue
        envelope = json = None
        if known_key and (not needs_document or item.refused is not None):
            key, doc = key_text(item.key), None
        else:
            doc = envelope = item.document()
            if record_of is not None and isinstance(envelope, dict):
                doc = record_of(envelope)
                if not isinstance(doc, dict):
                    batch.skip(index, no_record_at(record_path or ""))
                    continue
                json = record_json(doc)
            if not isinstance(doc, dict):
                batch.skip(index, NOT_AN_OBJECT)
                continue
            key = key_text(item.key) if known_key else key_text(key_of(doc))
        if key is None:
            batch.skip(index, no_usable_key(path))
            continue
        batch.item_keys[index] = key
        keyed.append(Version(index, item, key, doc, envelope, json))
    return keyed


def _time_step(batch: _Batch, versions: list[Version], not_before: datetime | None) -> list[Version]:
    """Each version's time (the record's timestamp path, else the source's event time,
    else when it was received) and event type; versions older than `not_before`, and of
    event types the binding does not take, are skipped."""
    mapping = batch.mapping
    type_of = jsonpaths.getter(mapping.event_type_field) if mapping.event_type_field else None
    time_of = jsonpaths.getter(mapping.timestamp_path) if mapping.timestamp_path else None
    received_at = batch.received_at
    timed = []
    for version in versions:
        item = version.item
        at = (
            (parse_time(time_of(version.envelope)) if time_of else None)
            or as_utc(item.event_at)
            or received_at
        )
        if not_before is not None and at < not_before:
            batch.skip(version.index, TOO_OLD)
            continue
        version.at = at
        version.event_type = item.event_type or (type_of(version.envelope) if type_of else None)
        if mapping.event_types and not takes(mapping.event_types, version.event_type or item.sent_type):
            batch.skip(version.index, NOT_TAKEN)
            continue
        timed.append(version)
    return timed


def _dedupe(batch: _Batch, versions: list[Version]) -> dict[str, Version]:
    """The newest version of each key (the later one of equal times); the rest are skipped."""
    latest: dict[str, Version] = {}
    for version in versions:
        previous = latest.get(version.key)
        if previous is not None:
            if version.at < previous.at:
                batch.skip(version.index, OLDER_IN_BATCH)
                continue
            batch.skip(previous.index, SUPERSEDED)
        latest[version.key] = version
    return latest


def _stored(
    batch: _Batch, latest: dict[str, Version], seen_run_id: str | None, keys_are_new: bool
) -> dict[str, datetime | None]:
    """The stored time of the keys whose stored version matters: deletions (delete only
    what exists, and not a newer version) and, on a full read, every key (for its seen
    mark). Writes are guarded by the SQL itself, and what they did is read back after."""
    if keys_are_new:
        return {}
    collection, own_deletes = batch.collection, batch.mapping.delete_event_types
    if seen_run_id:
        keys = list(latest)
    else:
        keys = [k for k, v in latest.items() if is_deletion(v.event_type, own_deletes)]
    existing: dict[str, datetime | None] = {}
    for start in range(0, len(keys), KEY_CHUNK):
        chunk = keys[start : start + KEY_CHUNK]
        existing.update(
            db.session.execute(
                select(Record.record_key, Record.source_event_at).where(
                    Record.collection_id == collection.id, Record.record_key.in_(chunk)
                )
            )
            .tuples()
            .all()
        )
    return existing


# Built once, run through the connection: this runs for every batch of every delivery, and
# building the statement and going through the ORM cost more than the indexed lookup.
_DELETED_AT = select(RecordDeletion.record_key, RecordDeletion.deleted_at).where(
    RecordDeletion.collection_id == bindparam("collection_id"),
    RecordDeletion.record_key.in_(bindparam("keys", expanding=True)),
)


def _deleted_at(collection: Collection, latest: dict[str, Version]) -> dict[str, datetime]:
    """When each of these keys was last deleted, for the keys that were."""
    keys, connection = list(latest), db.session.connection()
    found: dict[str, datetime] = {}
    for start in range(0, len(keys), KEY_CHUNK):
        rows = connection.execute(
            _DELETED_AT, {"collection_id": collection.id, "keys": keys[start : start + KEY_CHUNK]}
        )
        found.update((key, as_utc(at)) for key, at in rows)
    return found


def _decide(
    batch: _Batch,
    latest: dict[str, Version],
    stored: dict[str, datetime | None],
    deleted: dict[str, datetime],
    seen_run_id: str | None,
) -> Plan:
    """Each newest version: a delete, a row to write, or a skip with its reason. A version
    a full read saw but does not write is still in the source: it is marked seen, so that
    an older stored version is not deleted as gone. A deletion is remembered even of a key
    not stored (it came before the record's creation, out of order); a version no newer
    than its key's deletion is skipped."""
    collection, mapping = batch.collection, batch.mapping
    own_deletes = mapping.delete_event_types
    limits = RecordLimits.current()
    pg_words = (
        search_index.pg_document
        if collection.search_index != "off" and db.engine.dialect.name == "postgresql"
        else None
    )
    now, plan = batch.now, Plan()
    for key, version in latest.items():
        at = version.at
        stored_at = as_utc(stored[key]) if key in stored else None
        newer_stored = stored_at is not None and at < stored_at
        if is_deletion(version.event_type, own_deletes):
            if newer_stored:
                batch.skip(version.index, OLDER_THAN_STORED)
                continue
            plan.deletions.append({"k": key, "at": at})
            if key not in stored:
                batch.skip(version.index, DELETE_OF_MISSING)
            else:
                plan.deletes.append({"k": key, "at": at})
                batch.note(version.index, DELETED)
                batch.noted.append(
                    changes.Noted(
                        changes.DELETE,
                        key,
                        None,
                        storable(str(version.event_type))[:200] if version.event_type is not None else None,
                        version.item.source_event_id,
                        mapping.run_id,
                        mapping.source_id,
                    )
                )
            continue
        if key in deleted and _outdated(batch, at, deleted[key]):
            batch.skip(version.index, OLDER_THAN_DELETION)
            if seen_run_id:
                plan.seen_only.append(key)
            continue
        reason = OLDER_THAN_STORED if newer_stored else _refusal(version.item)
        if reason is None:
            json_text = version.json if version.json is not None else _json_text(version.item)
            reason = limits.refusal(json_text)
        if reason is not None:
            batch.skip(version.index, reason)
            if seen_run_id:
                plan.seen_only.append(key)
            continue
        event_type = version.event_type
        plan.writes.append(
            RecordRow(
                new_record_id(),
                collection.org_id,
                collection.env_id,
                collection.id,
                key,
                json_text,
                storable(str(event_type))[:200] if event_type is not None else None,
                version.item.source_event_id,
                at,
                now,
                now,
                seen_run_id,
                mapping.source_id,
                mapping.run_id,
                pg_words(key, json_text) if pg_words else None,
            )
        )
    return plan


def _outdated(batch: _Batch, at: datetime, deleted_at: datetime) -> bool:
    """Whether a version is no newer than its key's deletion, so from before it."""
    return at < deleted_at if batch.in_order else at <= deleted_at


def _refusal(item: Incoming) -> str | None:
    """Why `item` cannot be stored whatever its size, or None."""
    if item.refused is not None:
        return item.refused
    if item.raw is not None and documents.too_deep(item.raw):
        # Stored, it would answer every read of the collection with a RecursionError.
        return TOO_DEEP
    return None


def _json_text(item: Incoming) -> str:
    """The item's JSON text as stored; kept on the item, which may be applied to several
    collections, so that it is serialised once."""
    item.raw = record_json(item.data) if item.raw is None else storable_json(item.raw)
    return item.raw


def _write_step(
    batch: _Batch, latest: dict[str, Version], writes: list[RecordRow], keys_are_new: bool
) -> None:
    """Write the rows in one statement (or one COPY), index them, and count what each did."""
    collection, outcome = batch.collection, batch.outcome
    writes.sort(key=_BY_KEY)  # concurrent writers lock rows in one order, never a cycle
    indexed = collection.search_index != "off"
    fresh_after = search_index.last_rowid() if keys_are_new and indexed else None
    done = _write(writes, index_words=indexed, keys_are_new=keys_are_new)
    if indexed and done is None:
        _index_step(collection, writes, fresh_after)
    if keys_are_new:
        outcome.inserted += len(writes)
        batch.noted.extend(_noted(changes.INSERT, row) for row in writes)
        if batch.results is not None:
            for row in writes:
                batch.note(latest[row.record_key].index, INSERTED)
        return
    if done is None:
        done = _read_back(collection, writes, batch.now)
    for row in writes:
        index = latest[row.record_key].index
        result = done.get(row.record_key)
        if result == INSERTED:
            outcome.inserted += 1
            batch.note(index, INSERTED)
            batch.noted.append(_noted(changes.INSERT, row))
        elif result == UPDATED:
            outcome.updated += 1
            batch.note(index, UPDATED)
            batch.noted.append(_noted(changes.UPDATE, row))
        else:
            batch.skip(index, UNCHANGED if result == SAME else OLDER_THAN_STORED)


def _noted(op: str, row: RecordRow) -> changes.Noted:
    return changes.Noted(
        op, row.record_key, row.data, row.event_type, row.source_event_id, row.sync_run_id, row.source_id
    )


def _index_step(collection: Collection, writes: list[RecordRow], fresh_after: int | None) -> None:
    """SQLite's word index, for rows written in bulk (PostgreSQL's words are in each row,
    and SQLite's small batches are indexed as they are written)."""
    search_index.refresh(collection.id, [row.record_key for row in writes], inserted_after=fresh_after)


def _read_back(collection: Collection, writes: list[RecordRow], now: datetime) -> dict[str, str]:
    """What a bulk upsert did, read back in the same transaction. Rows it inserted carry this
    batch's created_at, rows it changed its updated_at; a row it wrote unchanged keeps its
    old updated_at but holds our version's time; a row the last-write-wins guard kept (a
    concurrent writer stored something newer first) holds a later one and is absent here.
    Exact even when concurrent deliveries race for one key, which a lookup before the write
    is not."""
    keys = [row.record_key for row in writes]
    ours = {row.record_key: row.source_event_at for row in writes}
    done: dict[str, str] = {}
    for start in range(0, len(keys), KEY_CHUNK):
        for key, created, updated, at in db.session.execute(
            select(Record.record_key, Record.created_at, Record.updated_at, Record.source_event_at).where(
                Record.collection_id == collection.id,
                Record.record_key.in_(keys[start : start + KEY_CHUNK]),
            )
        ):
            if as_utc(created) == now:
                done[key] = INSERTED
            elif as_utc(updated) == now:
                done[key] = UPDATED
            elif at is not None and as_utc(at) == as_utc(ours[key]):
                done[key] = SAME
    return done


def _delete(batch: _Batch, deletes: list[dict[str, Any]]) -> None:
    """Delete the keys, each only if what is stored is not newer than the deletion."""
    records = Record.__table__  # Core: an executemany DELETE with per-row criteria
    criteria = (
        records.c.collection_id == batch.collection.id,
        records.c.record_key == bindparam("k"),
        or_(records.c.source_event_at.is_(None), records.c.source_event_at <= bindparam("at")),
    )
    search_index.forget(*criteria, params=deletes)
    db.session.execute(records.delete().where(*criteria), deletes)
    batch.outcome.deleted += len(deletes)


def _remember_statement() -> Any:
    """Upsert a key's deletion time, keeping the later of two."""
    table = RecordDeletion.__table__
    insert = upsert_insert(table)
    return insert.on_conflict_do_update(
        index_elements=[table.c.collection_id, table.c.record_key],
        set_={"deleted_at": insert.excluded.deleted_at},
        where=insert.excluded.deleted_at > table.c.deleted_at,
    )


def _remember(collection_id: str, deletions: list[dict[str, Any]]) -> None:
    db.session.execute(
        _remember_statement(),
        [{"collection_id": collection_id, "record_key": d["k"], "deleted_at": d["at"]} for d in deletions],
    )


def _mark_seen(collection: Collection, keys: list[str], seen_run_id: str | None) -> None:
    for start in range(0, len(keys), KEY_CHUNK):
        db.session.execute(
            update(Record)
            .where(
                Record.collection_id == collection.id, Record.record_key.in_(keys[start : start + KEY_CHUNK])
            )
            .values(seen_run_id=seen_run_id)
            .execution_options(synchronize_session=False)
        )


def _finish_results(batch: _Batch, history: bool) -> None:
    """Each result with its key; and, for stored events, which event touched which key."""
    results = batch.results
    if results is None:
        return
    for index, key in batch.item_keys.items():
        result = results[index]
        if result is not None:
            results[index] = (result[0], result[1], key)
    sqlite = db.engine.dialect.name == "sqlite"
    touched = [
        (
            batch.collection.id,
            key,
            batch.items[index].source_event_id,
            _driver_time(as_utc(batch.items[index].event_at) or batch.received_at, sqlite),
            result[0],
        )
        for index, key in batch.item_keys.items()
        if history and (result := results[index]) and batch.items[index].source_event_id
    ]
    if touched:
        cursor = db.session.connection().connection.cursor()
        try:  # the driver's: SQLAlchemy compiles an ON CONFLICT insert anew on every run
            cursor.executemany(HISTORY_SQL["sqlite" if sqlite else "postgresql"], touched)
        finally:
            cursor.close()


HISTORY_COLUMNS = ("collection_id", "record_key", "event_id", "received_at", "result")
HISTORY_SQL = {
    dialect: f"INSERT INTO record_events ({', '.join(HISTORY_COLUMNS)}) "  # noqa: S608 - constants only
    f"VALUES ({', '.join([mark] * len(HISTORY_COLUMNS))}) ON CONFLICT DO NOTHING"
    for dialect, mark in (("sqlite", "?"), ("postgresql", "%s"))
}


def _driver_time(value: datetime, sqlite: bool) -> datetime | str:
    return sqlite_time(value) if sqlite else value


def _deleted(statement: Delete) -> int:
    """Run a bulk DELETE (its rows' word-index entries already forgotten); how many it removed."""
    result = db.session.execute(statement.execution_options(synchronize_session=False))
    return cast(CursorResult[Any], result).rowcount  # a DELETE's result is a cursor's


def remove_unseen(collection: Collection, run_id: str, source_id: str, read_from: datetime) -> int:
    """After a full read of a source: every record whose current version that source wrote,
    and that the read did not see, is gone from it. Records another source wrote last stay,
    seen or not: only that source can say they are gone. Each is remembered as deleted when
    the read began (`read_from`): a version older than that cannot bring it back."""
    unseen = or_(Record.seen_run_id.is_(None), Record.seen_run_id != run_id)
    return remove_where(
        collection, Record.source_id == source_id, unseen, remembered_at=read_from, run_id=run_id
    )


def remove_all_of(collection: Collection, source_id: str, at: datetime, run_id: str | None = None) -> int:
    """A source emptied its table (a truncate): every record it wrote last is gone, remembered
    as deleted `at` the truncate's commit, so a change from before it cannot bring one back."""
    return remove_where(collection, Record.source_id == source_id, remembered_at=at, run_id=run_id)


def remove_older_than(
    collection: Collection, cutoff: datetime, source_id: str | None = None, run_id: str | None = None
) -> int:
    """A source's age cutoff (max_age_days) removes what that source wrote, not other sources'."""
    criteria: tuple[Any, ...] = (Record.source_event_at < cutoff,)
    if source_id is not None:
        criteria = (*criteria, Record.source_id == source_id)
    return remove_where(collection, *criteria, run_id=run_id)


def remove_where(
    collection: Collection, *where: Any, remembered_at: datetime | None = None, run_id: str | None = None
) -> int:
    """Every bulk delete of records: those of the collection that `where` selects, each noted
    in its change feed and, `remembered_at`, remembered as deleted then (an older version
    arriving later cannot bring it back); how many went."""
    criteria = (Record.collection_id == collection.id, *where)
    if remembered_at is not None:
        db.session.execute(
            _remember_statement().from_select(
                ["collection_id", "record_key", "deleted_at"],
                select(
                    Record.collection_id, Record.record_key, literal(remembered_at, DateTime(timezone=True))
                ).where(*criteria),
            )
        )
    changes.note_deletes(collection, criteria, run_id)
    search_index.forget(*criteria)
    deleted = _deleted(delete(Record).where(*criteria))
    _adjust_count(collection, -deleted)
    return deleted


_COLLECTIONS = Collection.__table__
# Built once (its cache key is memoized on the object): this runs for every batch of every
# delivery. The count is an expression, not a read-modify-write: concurrent batches cannot
# lose counts.
_ADJUST = (
    _COLLECTIONS.update()
    .where(_COLLECTIONS.c.id == bindparam("collection_id"))
    .values(
        record_count=_COLLECTIONS.c.record_count + bindparam("delta"),
        last_sync_at=func.coalesce(
            bindparam("synced_at", type_=_COLLECTIONS.c.last_sync_at.type), _COLLECTIONS.c.last_sync_at
        ),
        updated_at=_COLLECTIONS.c.updated_at,
    )
)  # data arriving is no settings change (models/collection.py)


def _adjust_count(collection: Collection, delta: int, synced_at: datetime | None = None) -> None:
    if delta or synced_at is not None:
        db.session.connection().execute(
            _ADJUST, {"collection_id": collection.id, "delta": delta, "synced_at": synced_at}
        )
