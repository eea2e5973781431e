"""The upsert engine: every path into a collection (sync runs, ingest, backfill) goes here.

Rules (SPEC §6): the key is `primary_key_path` applied to the record; the newest
`source_event_at` wins and older writes are skipped; a record whose event type means
deletion is removed; a record without a key is skipped and the reason counted. Writes are
bulk statements, and the last-write-wins check is in the SQL itself, so concurrent writers
for one key still end in the newest state. The caller commits (with its checkpoint).
"""

from __future__ import annotations

import os
import random
import time
from collections import Counter
from dataclasses import dataclass, field
from datetime import UTC, datetime

from flask import current_app
from psycopg import errors as pg_errors
from sqlalchemy import bindparam, delete, func, or_, select, update

from ..models import Collection, Record, RecordEvent, db
from ..models.base import upsert_insert
from ..values import documents, jsonpaths
from ..values.records import Incoming, is_deletion, key_text, parse_time, record_json, storable, storable_json
from ..values.times import as_utc, utcnow
from . import search_index

_random = random.Random()
# RQ forks a work horse per job: each child must not replay its parent's random sequence.
os.register_at_fork(after_in_child=_random.seed)

KEY_CHUNK = 500  # keys per IN (...) lookup; well under SQLite's parameter limit
TOO_DEEP = str(documents.TooDeep()).removeprefix("is ")
UNCHANGED = "unchanged since it was last written"  # the skip reason of a version written again as it was


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


COLUMNS = (
    "id",
    "org_id",
    "env_id",
    "collection_id",
    "record_key",
    "data",
    "event_type",
    "source_event_id",
    "source_event_at",
    "created_at",
    "updated_at",
    "seen_run_id",
)
# PostgreSQL also stores each record's words (search_index.pg_document) for its word index.
PG_COLUMNS = (*COLUMNS, "search_words")
# A version read again unchanged (re-read windows, full re-reads, a payload sent twice)
# keeps its updated_at: the records list sorts by it, and the run reports it "unchanged".
_CHANGED = (
    "records.data IS DISTINCT FROM excluded.data OR records.event_type IS DISTINCT FROM excluded.event_type "
    "OR records.source_event_at IS DISTINCT FROM excluded.source_event_at"
)
_UPSERT = (
    "INSERT INTO records ({cols}) VALUES ({marks}) ON CONFLICT (collection_id, record_key) DO UPDATE SET "
    "data = excluded.data, event_type = excluded.event_type, source_event_id = excluded.source_event_id, "
    "source_event_at = excluded.source_event_at, "
    f"updated_at = CASE WHEN {_CHANGED} THEN excluded.updated_at ELSE records.updated_at END, "
    "seen_run_id = excluded.seen_run_id{more} "
    "WHERE records.source_event_at IS NULL OR records.source_event_at <= excluded.source_event_at"
)
_CASTS = {"data": "%s::jsonb", "search_words": "%s::tsvector"}
_PG_UPSERT = _UPSERT.replace("{more}", ", search_words = excluded.search_words")
UPSERT_SQL = {
    # SQLite spells IS DISTINCT FROM "IS NOT" (the other spelling needs SQLite 3.39).
    "sqlite": _UPSERT.replace("{more}", "")
    .replace("IS DISTINCT FROM", "IS NOT")
    .format(cols=", ".join(COLUMNS), marks=", ".join("?" * len(COLUMNS))),
    "postgresql": _PG_UPSERT.format(
        cols=", ".join(PG_COLUMNS), marks=", ".join(_CASTS.get(c, "%s") for c in PG_COLUMNS)
    ),
}
# PostgreSQL: COPY a batch into a session-local staging table, then one INSERT ... SELECT.
# One statement per batch instead of one per row; keys are unique within a batch (apply()
# keeps the newest version of each), as ON CONFLICT DO UPDATE requires.
PG_STAGE_SQL = (
    "CREATE TEMP TABLE IF NOT EXISTS records_stage AS SELECT {cols} FROM records WITH NO DATA".format(
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
SQLITE_RETURNING = UPSERT_SQL["sqlite"] + " RETURNING rowid, id, updated_at"


PG_COPY_NEW_SQL = "COPY records ({cols}) FROM STDIN".format(cols=", ".join(PG_COLUMNS))


def pg_bulk_upsert(cursor, rows: list[tuple], keys_are_new: bool = False) -> None:
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


def _sqlite_time(value: datetime) -> str:
    # SQLAlchemy's own SQLite DATETIME storage format (naive UTC, always with microseconds),
    # so its reads and string comparisons still work. One isoformat call, its UTC offset cut
    # off, is a third of what replace() and isoformat's keywords cost (per row written).
    if value.utcoffset():
        value = value.astimezone(UTC)
    return value.isoformat(" ", "microseconds")[:26]


def _write(rows: list[tuple], index_words: bool = False, keys_are_new: bool = False) -> dict[str, str] | None:
    """One executemany with the driver, inside the session's transaction. SQLAlchemy's
    per-row parameter processing cost more than the insert itself on large batches.
    Where the statement can say what it did (small batches), returns each written key's
    result (inserted, updated or unchanged); keys the last-write-wins guard kept are
    absent. SQLite then also indexes the written rows' words (`index_words`) from the
    values in hand."""
    dialect = db.engine.dialect.name
    if dialect not in UPSERT_SQL:
        raise RuntimeError(f"no bulk upsert for {dialect}")
    cursor = db.session.connection().connection.cursor()
    try:
        if dialect == "sqlite":
            now = _sqlite_time(rows[0][9])  # created_at = updated_at = one `now` per batch
            rows = [(*r[:8], _sqlite_time(r[8]), now, now, r[11]) for r in rows]
            if len(rows) >= RETURNING_UNDER:
                cursor.executemany(UPSERT_SQL[dialect], rows)
                return None
            # sqlite3's executemany cannot return rows; a row at a time it can, and saves
            # reading them back: an updated row keeps its old id, an inserted one has ours.
            done, words = {}, []
            for row in rows:
                written = cursor.execute(SQLITE_RETURNING, row).fetchone()
                if written is not None:
                    done[row[4]] = (
                        "inserted"
                        if written[1] == row[0]
                        else "updated"
                        if written[2] == now
                        else "unchanged"
                    )
                    words.append((written[0], row[4], row[5]))
            if index_words:
                search_index.index_rows(cursor, words)
            return done
        if len(rows) < RETURNING_UNDER:
            # psycopg pipelines it: one round trip, which also answers what each row did
            # (xmax = 0 only on a row this statement inserted), so no read-back is needed.
            cursor.executemany(
                UPSERT_SQL[dialect] + " RETURNING record_key, xmax = 0, updated_at", rows, returning=True
            )
            done, now = {}, rows[0][10]
            while True:
                done.update(
                    (key, "inserted" if inserted else "updated" if as_utc(updated) == now else "unchanged")
                    for key, inserted, updated in cursor.fetchall()
                )
                if not cursor.nextset():
                    return done
        pg_bulk_upsert(cursor, rows, keys_are_new)
    finally:
        cursor.close()
    return None


def apply(
    collection: Collection,
    items: list[Incoming],
    *,
    seen_run_id: str | None = None,
    received_at: datetime | None = None,
    not_before: datetime | None = None,
    keys_are_new: bool = False,
    results: list | None = None,
    synced_at: datetime | None = None,
    history: bool = False,
) -> Outcome:
    """Upsert `items` into `collection`. `not_before` drops versions older than a cutoff
    (max_age_days); `seen_run_id` marks every key a full read saw. `keys_are_new` (a
    backfill reading keys in ascending order into a collection that started empty) skips
    the lookup of stored versions; the SQL still guards against overwriting newer data.
    `results`, a list as long as `items`, receives each item's own (result, reason, key),
    for callers that report per delivery (ingest); `synced_at` becomes the collection's
    last_sync_at, in the statement that adjusts its count. `history` (items that are stored
    events: webhooks) notes which event touched which key, for the record page."""
    outcome = Outcome()
    if results is None and history:
        results = [None] * len(items)
    note = results.__setitem__ if results is not None else (lambda i, value: None)
    item_keys: dict[int, str] = {}
    now = utcnow()
    received_at = received_at or now
    key_of = jsonpaths.getter(collection.primary_key_path)
    type_of = jsonpaths.getter(collection.event_type_field) if collection.event_type_field else None
    time_of = jsonpaths.getter(collection.timestamp_path) if collection.timestamp_path else None

    latest: dict[str, tuple] = {}
    needs_document = bool(type_of or time_of)
    for index, item in enumerate(items):
        known_key = item.key is not None and item.key_path == collection.primary_key_path
        if item.refused is not None and not known_key:  # no document to find its key in
            outcome.skip(item.refused)
            note(index, ("skipped", item.refused))
            continue
        if known_key and (not needs_document or item.refused is not None):
            key, doc = key_text(item.key), None
        else:
            doc = item.document()
            if not isinstance(doc, dict):
                outcome.skip("not a JSON object")
                note(index, ("skipped", "not a JSON object"))
                continue
            key = key_text(item.key) if known_key else key_text(key_of(doc))
        if key is None:
            outcome.skip(f"no usable key at {collection.primary_key_path}")
            note(index, ("skipped", f"no usable key at {collection.primary_key_path}"))
            continue
        item_keys[index] = key
        at = (parse_time(time_of(doc)) if time_of else None) or as_utc(item.event_at) or received_at
        if not_before is not None and at < not_before:
            outcome.skip("older than max_age_days")
            note(index, ("skipped", "older than max_age_days"))
            continue
        event_type = item.event_type or (type_of(doc) if type_of else None)
        previous = latest.get(key)
        if previous is not None:
            if at < previous[0]:
                outcome.skip("older than a newer version in the same batch")
                note(index, ("skipped", "older than a newer version in the same batch"))
                continue
            outcome.skip("superseded in the same batch")
            note(previous[3], ("skipped", "superseded in the same batch"))
        latest[key] = (at, item, event_type, index)
    if not latest:
        _adjust_count(collection, 0, synced_at)
        _keyed(collection, items, results, item_keys, received_at, history)
        return outcome

    own_deletes = frozenset(collection.delete_event_types or ())
    limits = RecordLimits.current()
    # What is stored matters only to deletions (delete only what exists, and not a newer
    # version) and to a full read's seen-marks; writes are guarded by the SQL itself, and
    # what they did is read back afterwards.
    existing: dict[str, datetime | None] = {}
    if keys_are_new:
        keys = []
    elif seen_run_id:
        keys = list(latest)
    else:
        keys = [k for k, (_, _, event_type, _) in latest.items() if is_deletion(event_type, own_deletes)]
    for start in range(0, len(keys), KEY_CHUNK):
        chunk = keys[start : start + KEY_CHUNK]
        existing.update(
            db.session.execute(
                select(Record.record_key, Record.source_event_at).where(
                    Record.collection_id == collection.id, Record.record_key.in_(chunk)
                )
            ).all()
        )

    writes, deletes, seen_only = [], [], []
    indexed = collection.search_index != "off"
    document = search_index.pg_document if indexed and db.engine.dialect.name == "postgresql" else None
    for key, (at, item, event_type, index) in latest.items():
        stored = existing.get(key, False)
        stored_at = as_utc(stored) if stored not in (False, None) else None
        newer_stored = stored_at is not None and at < stored_at
        if is_deletion(event_type, own_deletes):
            if stored is False:
                outcome.skip("delete of a key that is not stored")
                note(index, ("skipped", "delete of a key that is not stored"))
            elif newer_stored:
                outcome.skip("older than the stored version")
                note(index, ("skipped", "older than the stored version"))
            else:
                deletes.append({"k": key, "at": at})
                note(index, ("deleted", None))
            continue
        if newer_stored:
            outcome.skip("older than the stored version")
            note(index, ("skipped", "older than the stored version"))
            if seen_run_id:
                seen_only.append(key)
            continue
        if item.refused is not None:
            outcome.skip(item.refused)
            note(index, ("skipped", item.refused))
            if seen_run_id:
                seen_only.append(key)
            continue
        if item.raw is not None and documents.too_deep(item.raw):
            # Stored, it would answer every read of the collection with a RecursionError.
            outcome.skip(TOO_DEEP)
            note(index, ("skipped", TOO_DEEP))
            if seen_run_id:
                seen_only.append(key)
            continue
        # Kept: an item applied to several collections is serialised once.
        json_text = item.raw = record_json(item.data) if item.raw is None else storable_json(item.raw)
        too_big = limits.refusal(json_text)
        if too_big:
            outcome.skip(too_big)
            note(index, ("skipped", too_big))
            if seen_run_id:
                seen_only.append(key)  # still in the source: an older stored version is not deleted
            continue
        writes.append(
            (
                new_record_id(),
                collection.org_id,
                collection.env_id,
                collection.id,
                key,
                json_text,
                storable(str(event_type))[:200] if event_type is not None else None,
                item.source_event_id,
                at,
                now,
                now,
                seen_run_id,
                document(key, json_text) if document else None,
            )
        )

    if writes:
        writes.sort(key=lambda w: w[4])  # by key: concurrent writers lock rows in one order, never a cycle
        fresh_after = search_index.last_rowid() if keys_are_new and indexed else None
        done = _write(writes, index_words=indexed, keys_are_new=keys_are_new)
        if indexed and done is None:
            search_index.refresh(collection.id, [w[4] for w in writes], inserted_after=fresh_after)
        if keys_are_new:
            outcome.inserted += len(writes)
            if results is not None:
                for w in writes:
                    note(latest[w[4]][3], ("inserted", None))
        else:
            indexes = {key: latest[key][3] for key in (w[4] for w in writes)}
            _count_writes(
                collection, writes, now, outcome, lambda key, value: note(indexes[key], value), done
            )
    if deletes:
        records = Record.__table__  # Core: an executemany DELETE with per-row criteria
        criteria = (
            records.c.collection_id == collection.id,
            records.c.record_key == bindparam("k"),
            or_(records.c.source_event_at.is_(None), records.c.source_event_at <= bindparam("at")),
        )
        search_index.forget(*criteria, params=deletes)
        db.session.execute(records.delete().where(*criteria), deletes)
        outcome.deleted += len(deletes)
    if seen_only:
        for start in range(0, len(seen_only), KEY_CHUNK):
            db.session.execute(
                update(Record)
                .where(
                    Record.collection_id == collection.id,
                    Record.record_key.in_(seen_only[start : start + KEY_CHUNK]),
                )
                .values(seen_run_id=seen_run_id)
                .execution_options(synchronize_session=False)
            )
    _adjust_count(collection, outcome.inserted - outcome.deleted, synced_at)
    _keyed(collection, items, results, item_keys, received_at, history)
    return outcome


def _keyed(
    collection: Collection,
    items: list[Incoming],
    results: list | None,
    item_keys: dict,
    received_at: datetime,
    history: bool,
) -> None:
    """Each result with its key; and, for stored events, which event touched which key."""
    if results is None:
        return
    for index, key in item_keys.items():
        if results[index] is not None:
            results[index] = (*results[index][:2], key)
    touched = [
        {
            "collection_id": collection.id,
            "record_key": key,
            "event_id": items[index].source_event_id,
            "received_at": as_utc(items[index].event_at) or received_at,
            "result": results[index][0],
        }
        for index, key in item_keys.items()
        if history and results[index] and items[index].source_event_id
    ]
    if touched:
        db.session.execute(upsert_insert(RecordEvent.__table__).on_conflict_do_nothing(), touched)


def _count_writes(
    collection: Collection,
    writes: list[tuple],
    now: datetime,
    outcome: Outcome,
    note,
    done: dict[str, str] | None = None,
) -> None:
    """What the upsert really did: as the statement reported it (`done`), or read back in the
    same transaction. Rows it inserted carry this batch's created_at, rows it changed its
    updated_at; a row it wrote unchanged keeps its old updated_at but holds our version's
    time; a row the last-write-wins guard kept (a concurrent writer stored something newer
    first) holds a later one. Exact even when concurrent deliveries race for one key, which
    a lookup before the write is not."""
    keys = [w[4] for w in writes]
    if done is None:
        done, ours = {}, {w[4]: w[8] for w in writes}
        for start in range(0, len(keys), KEY_CHUNK):
            for key, created, updated, at in db.session.execute(
                select(Record.record_key, Record.created_at, Record.updated_at, Record.source_event_at).where(
                    Record.collection_id == collection.id,
                    Record.record_key.in_(keys[start : start + KEY_CHUNK]),
                )
            ):
                if as_utc(created) == now:
                    done[key] = "inserted"
                elif as_utc(updated) == now:
                    done[key] = "updated"
                elif at is not None and as_utc(at) == as_utc(ours[key]):
                    done[key] = "unchanged"
    for key in keys:
        result = done.get(key)
        if result == "inserted":
            outcome.inserted += 1
            note(key, ("inserted", None))
        elif result == "updated":
            outcome.updated += 1
            note(key, ("updated", None))
        elif result == "unchanged":
            outcome.skip(UNCHANGED)
            note(key, ("skipped", UNCHANGED))
        else:
            outcome.skip("older than the stored version")
            note(key, ("skipped", "older than the stored version"))


def remove_unseen(collection: Collection, run_id: str) -> int:
    """After a full read: every record that read did not see is gone from the source."""
    criteria = (
        Record.collection_id == collection.id,
        or_(Record.seen_run_id.is_(None), Record.seen_run_id != run_id),
    )
    search_index.forget(*criteria)
    deleted = db.session.execute(
        delete(Record).where(*criteria).execution_options(synchronize_session=False)
    ).rowcount
    _adjust_count(collection, -deleted)
    return deleted


def remove_older_than(collection: Collection, cutoff: datetime) -> int:
    criteria = (Record.collection_id == collection.id, Record.source_event_at < cutoff)
    search_index.forget(*criteria)
    deleted = db.session.execute(
        delete(Record).where(*criteria).execution_options(synchronize_session=False)
    ).rowcount
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
