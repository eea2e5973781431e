"""A collection's change feed: every insert, update and delete of its records, in order.

The upsert engine notes each change in the transaction that makes it, numbered from the
collection's own sequence (collections.change_seq). The number is taken under the
collection row's lock, which the writer holds until it commits, so a collection's numbers
commit in order: a reader that has seen number n has seen every number below it. Unchanged
re-reads change nothing and note nothing.

Readers follow the feed by number (`after`), waiting for the next change if asked to.
Changes older than CHANGES_RETENTION_HOURS are pruned; the collection remembers the last
number pruned, so a reader asking from before it is told that those changes are gone.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, NamedTuple

from flask import current_app
from sqlalchemy import ColumnElement, bindparam, delete, func, insert, literal, null, select

from ..errors import ValidationFailed
from ..models import Collection, Record, RecordChange, db
from ..models.base import rows_changed, sqlite_time
from ..values import documents
from ..values.times import as_utc, utcnow

INSERT, UPDATE, DELETE = "insert", "update", "delete"
OPS = (INSERT, UPDATE, DELETE)
WAIT_MAX, LIMIT_MAX, LIMIT_DEFAULT = 30.0, 1000, 100
POLL_SECONDS = 0.1  # a waiting reader looks this often: changes reach it within this
_COLLECTIONS = Collection.__table__
_CHANGES = RecordChange.__table__
COLUMNS = tuple(c.name for c in _CHANGES.columns)
# Built once: it runs for every batch of every write.
_TAKE = (
    _COLLECTIONS.update()
    .where(_COLLECTIONS.c.id == bindparam("collection_id"))
    .values(change_seq=_COLLECTIONS.c.change_seq + bindparam("n"), updated_at=_COLLECTIONS.c.updated_at)
    .returning(_COLLECTIONS.c.change_seq)
)


class Noted(NamedTuple):
    """One change as the engine hands it over (a tuple: made for every row written)."""

    op: str
    key: str
    data: str | None  # the record's JSON text; None for a delete
    event_type: str | None
    event_id: str | None
    run_id: str | None
    source_id: str | None


# The numbers and the record count in one statement: a batch's one write to its collection
# row, as before the feed.
_TAKE_COUNTED = (
    _COLLECTIONS.update()
    .where(_COLLECTIONS.c.id == bindparam("collection_id"))
    .values(
        change_seq=_COLLECTIONS.c.change_seq + bindparam("n"),
        record_count=_COLLECTIONS.c.record_count + bindparam("delta"),
        last_sync_at=func.coalesce(
            bindparam("synced_at", type_=_COLLECTIONS.c.last_sync_at.type), _COLLECTIONS.c.last_sync_at
        ),
        updated_at=_COLLECTIONS.c.updated_at,
    )
    .returning(_COLLECTIONS.c.change_seq)
)
SQLITE_INSERT = f"INSERT INTO record_changes ({', '.join(COLUMNS)}) VALUES ({', '.join('?' * len(COLUMNS))})"  # noqa: S608 - constants only
_PG_INSERT = f"INSERT INTO record_changes ({', '.join(COLUMNS)}) VALUES ({', '.join(['%s'] * len(COLUMNS))})"  # noqa: S608 - constants only
PG_COPY = f"COPY record_changes ({', '.join(COLUMNS)}) FROM STDIN"


def take(collection_id: str, n: int) -> int:
    """Reserve `n` numbers (0: only lock the row); the last number reserved."""
    return int(db.session.connection().execute(_TAKE, {"collection_id": collection_id, "n": n}).scalar_one())


def note(
    collection: Collection,
    noted: Sequence[Noted],
    at: datetime,
    delta: int = 0,
    synced_at: datetime | None = None,
) -> None:
    """The changes, numbered in the order given, in the caller's transaction; with the
    collection's count moved by `delta` (and its last sync time set) in the same statement."""
    params = {"collection_id": collection.id, "n": len(noted), "delta": delta, "synced_at": synced_at}
    last = int(db.session.connection().execute(_TAKE_COUNTED, params).scalar_one())
    if not noted:
        return
    first = last - len(noted) + 1
    sqlite = db.engine.dialect.name == "sqlite"
    head = (collection.id, collection.org_id, collection.env_id)
    stamp = sqlite_time(at) if sqlite else at
    rows = [(head[0], first + i, head[1], head[2], *c, stamp) for i, c in enumerate(noted)]
    cursor = db.session.connection().connection.cursor()
    try:  # with the driver, as the records are: SQLAlchemy's per-row work costs more
        if sqlite:
            cursor.executemany(SQLITE_INSERT, rows)
        elif len(rows) >= 200:
            with cursor.copy(PG_COPY) as copy:
                for row in rows:
                    copy.write_row(row)
        else:
            cursor.executemany(_PG_INSERT, rows)
    finally:
        cursor.close()


def note_deletes(collection: Collection, criteria: Sequence[ColumnElement[bool]], run_id: str | None) -> None:
    """A delete for every record `criteria` select, before they are deleted in bulk (a full
    read's unseen records, a truncate, an age cutoff, clearing a source's data)."""
    first = take(collection.id, 0) + 1  # locked: no writer commits into it until we do
    numbered = select(
        Record.collection_id,
        literal(first - 1) + func.row_number().over(order_by=Record.record_key),
        Record.org_id,
        Record.env_id,
        literal(DELETE),
        Record.record_key,
        null(),
        null(),
        null(),
        literal(run_id),
        Record.source_id,
        literal(utcnow()),
    ).where(*criteria)
    db.session.execute(insert(RecordChange).from_select(list(COLUMNS), numbered))
    # Counted, not taken from rowcount: psycopg answers -1 for an INSERT ... SELECT here.
    added = db.session.scalar(
        select(func.count()).where(RecordChange.collection_id == collection.id, RecordChange.seq >= first)
    )
    if added:
        take(collection.id, added)


# --- reading ------------------------------------------------------------------------------


@dataclass(frozen=True)
class Page:
    changes: list[RecordChange]
    after: int  # where the next page starts
    last_seq: int  # the collection's newest change now


def read(collection: Collection, after: int | None, limit: int, wait: float) -> Page:
    """The changes after `after` (None: from the oldest kept), at most `limit`; with none
    yet, waits up to `wait` seconds for the first. 410 when `after` is before what is kept."""
    cid = collection.id  # not read from the object again: each look below rolls back
    pruned, newest = _bounds(cid)
    start = pruned if after is None else after
    if start < pruned:
        raise ValidationFailed(
            {"after": f"changes up to {pruned} are no longer kept; the oldest kept is {pruned + 1}"},
            status=410,
            code="changes_expired",
            message=f"Changes up to {pruned} are gone (kept for {retention_hours()} hours); read from "
            f"after={pruned}, or read the records again",
        )
    deadline = time.monotonic() + wait
    while newest <= start and time.monotonic() < deadline:
        db.session.rollback()  # a fresh snapshot for the next look, no transaction held open
        time.sleep(POLL_SECONDS)
        pruned, newest = _bounds(cid)
    changes = list(
        db.session.scalars(
            select(RecordChange)
            .where(RecordChange.collection_id == cid, RecordChange.seq > start)
            .order_by(RecordChange.seq)
            .limit(limit)
        )
    )
    return Page(changes, changes[-1].seq if changes else start, newest)


def newest(collection: Collection, limit: int = 20) -> list[RecordChange]:
    """The collection's newest changes, newest first (the dashboard's tail)."""
    return list(
        db.session.scalars(
            select(RecordChange)
            .where(RecordChange.collection_id == collection.id)
            .order_by(RecordChange.seq.desc())
            .limit(limit)
        )
    )


def _bounds(collection_id: str) -> tuple[int, int]:
    row = db.session.execute(
        select(Collection.changes_pruned_seq, Collection.change_seq).where(Collection.id == collection_id)
    ).one()
    return int(row[0] or 0), int(row[1] or 0)


def as_json(change: RecordChange) -> dict[str, Any]:
    return {
        "seq": change.seq,
        "op": change.op,
        "key": change.record_key,
        "record": documents.loads(change.data) if change.data is not None else None,
        "event_type": change.event_type,
        "event_id": change.event_id,
        "run_id": change.run_id,
        "source_id": change.source_id,
        "changed_at": change.changed_at.isoformat(),
    }


def checked_query(args: Any) -> tuple[int | None, int, float]:
    """`after`, `limit` and `wait` from a query string, each refused by name when wrong."""
    problems: dict[str, str] = {}
    after = _number(args, "after", problems, minimum=0)
    limit = _number(args, "limit", problems, minimum=1, maximum=LIMIT_MAX)
    wait = _number(args, "wait", problems, minimum=0, maximum=WAIT_MAX, real=True)
    if problems:
        raise ValidationFailed(problems)
    return (
        None if after is None else int(after),
        LIMIT_DEFAULT if limit is None else int(limit),
        0.0 if wait is None else float(wait),
    )


def _number(
    args: Any,
    name: str,
    problems: dict[str, str],
    minimum: float,
    maximum: float | None = None,
    real: bool = False,
) -> float | None:
    raw = args.get(name)
    if raw is None or raw == "":
        return None
    try:
        value = float(raw) if real else int(raw)
    except ValueError:
        problems[name] = f"must be a {'number' if real else 'whole number'}"
        return None
    if value < minimum or (maximum is not None and value > maximum):
        problems[name] = (
            f"must be from {minimum:g} to {maximum:g}"
            if maximum is not None
            else f"must be {minimum:g} or more"
        )
        return None
    return value


# --- retention ----------------------------------------------------------------------------


def retention_hours() -> int:
    return int(current_app.config["CHANGES_RETENTION_HOURS"])


def prune(now: datetime | None = None, batch: int = 5000) -> int:
    """Changes older than the retention, oldest first, a batch per collection and
    transaction; how many went. Each collection's oldest changes are read in number order
    (its primary key), never scanned by time."""
    before = (now or utcnow()) - timedelta(hours=retention_hours())
    gone = 0
    ids = db.session.scalars(
        select(Collection.id).where(Collection.change_seq > Collection.changes_pruned_seq)
    )
    for collection_id in ids.all():
        while True:
            oldest = db.session.execute(
                select(RecordChange.seq, RecordChange.changed_at)
                .where(RecordChange.collection_id == collection_id)
                .order_by(RecordChange.seq)
                .limit(batch)
            ).all()
            upto = None
            for seq, at in oldest:
                if as_utc(at) >= before:
                    break
                upto = seq
            if upto is None:
                break
            removed = rows_changed(
                delete(RecordChange).where(
                    RecordChange.collection_id == collection_id, RecordChange.seq <= upto
                )
            )
            rows_changed(
                _COLLECTIONS.update()
                .where(_COLLECTIONS.c.id == collection_id, _COLLECTIONS.c.changes_pruned_seq < upto)
                .values(changes_pruned_seq=upto, updated_at=_COLLECTIONS.c.updated_at)
            )
            db.session.commit()
            gone += removed
            if upto != oldest[-1][0]:
                break  # reached a change still kept
    return gone
