"""A word index over every record (its key and its JSON text), so that a search or a field
filter matching a few records in a large collection does not read the whole collection.

Search matches where a word starts: `cus_0042`, `user42@`, `example.com` and `Customer 4`
find "cus_00420001" / "user42@example.com" / "Customer 42", but `ustomer` finds nothing. The
index can answer exactly that (a word index cannot find the inside of a word), and every path
applies the same rule, so an answer never depends on which path found it.

SQLite: an FTS5 table keyed by the records' rowid, written by the upsert engine one statement
per batch (FTS5 in triggers flushes per row and costs several times more). A record's entry is
replaced whenever the record is written, so an entry left behind by a deleted record can only
add a candidate, which the exact check drops; bulk deletions still remove their entries.
PostgreSQL: a GIN index on records.search_words, the same words, which the upsert engine
writes with every record.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from typing import Any

from sqlalchemy import Text, cast, column, delete, event, func, literal_column, or_, select, table, text
from sqlalchemy.dialects.postgresql import TSQUERY
from sqlalchemy.engine import Connection, Result
from sqlalchemy.orm import Mapper
from sqlalchemy.orm.util import AliasedClass
from sqlalchemy.sql.elements import ColumnElement

from ..models import Collection, Record, db
from ..models.tenancy import Environment, Org

SQLITE_TABLE = "records_fts"
# What one record may cost the index is bounded: SQLite indexes the first SQLITE_INDEXED
# characters of its text, PostgreSQL its first MAX_WORDS distinct words. A record with more
# is marked (SQLITE_OVERFLOW, OVERFLOW) and is a candidate of every search, which the exact
# check then decides: a word past the bound is still found, only more slowly.
SQLITE_INDEXED = 65536
SQLITE_OVERFLOW = "zzhsoverflowzz"
SQLITE_FILL = (
    f"INSERT OR REPLACE INTO {SQLITE_TABLE}(rowid, body) "  # noqa: S608 - constants only, values are bound
    f"SELECT rowid, record_key || ' ' || CASE WHEN length(data) > {SQLITE_INDEXED} "
    f"THEN substr(data, 1, {SQLITE_INDEXED}) || ' {SQLITE_OVERFLOW}' ELSE data END FROM records"
)
# PostgreSQL: the upsert engine stores each record's words (pg_document) in
# records.search_words, which a GIN index answers. Split in Python, a write cost about half
# of what PostgreSQL's regexp_replace + to_tsvector in an index expression added (measured
# on 200,000 rows; at a million, maintaining the GIN index dominates either way).
# Words are split at ASCII punctuation and at whitespace; every other character is part of
# a word. The exact check's regex (the same on any server locale) counts only ASCII
# characters as word boundaries, which can make it stricter than the index, never looser.
MAX_WORD = 200  # longer words are kept (and asked for) as their first 200 characters
WORD_BUDGET = 400_000  # bytes of words per record; a tsvector must stay under 1 MB
MAX_WORDS = 4000  # distinct words per record: each is an entry of the GIN index
OVERFLOW = "~all"  # marks a record with more words than that: always a candidate
_SQLITE_WORD = re.compile(r"[^\W_]+")  # FTS5's unicode61: letters and digits
_PG_WORD = re.compile(r"[^\s\x00-\x2f\x3a-\x40\x5b-\x60\x7b-\x7f]+")
_PG_WORD_START = r"(^|[^a-zA-Z0-9\u0080-\U0010FFFF])"
_PG_REGEX_SPECIAL = re.compile(r"([!-/:-@\[-`{-~])")
KEY_CHUNK = 500
_FTS = table(SQLITE_TABLE, column("rowid"))


def _dialect() -> str:
    return db.engine.dialect.name


# --- keeping the SQLite index -------------------------------------------------------------


def last_rowid() -> int | None:
    """SQLite: the newest record's rowid, taken before a write of new keys (see refresh)."""
    if _dialect() != "sqlite":
        return None
    return db.session.execute(text("SELECT coalesce(max(rowid), 0) FROM records")).scalar()


def index_rows(cursor: Any, rows: list[tuple[int, str, str]]) -> None:
    """SQLite: index records just written, as (rowid, key, JSON text) from the values in
    hand; the same text SQLITE_FILL reads from the stored rows."""
    cursor.executemany(
        f"INSERT OR REPLACE INTO {SQLITE_TABLE}(rowid, body) VALUES (?, ?)",  # noqa: S608 - constants only, values are bound
        [(rowid, f"{key} {_indexed(data)}") for rowid, key, data in rows],
    )


def _indexed(data: str) -> str:
    return data if len(data) <= SQLITE_INDEXED else f"{data[:SQLITE_INDEXED]} {SQLITE_OVERFLOW}"


def refresh(collection_id: str, keys: list[str], inserted_after: int | None = None) -> None:
    """Index these records as they are now (called after every write of them). When the
    write was meant to insert them all (`inserted_after`: last_rowid() before it) and did,
    they are exactly the rows after that rowid (one writer at a time on SQLite), and are
    read by range instead of looked up key by key."""
    if _dialect() != "sqlite" or not keys:
        return
    cursor = db.session.connection().connection.cursor()
    try:
        if inserted_after is not None and cursor.execute(
            "SELECT count(*) FROM records WHERE rowid > ?", (inserted_after,)
        ).fetchone()[0] == len(keys):
            cursor.execute(f"{SQLITE_FILL} WHERE rowid > ?", (inserted_after,))
            return
        for start in range(0, len(keys), KEY_CHUNK):
            chunk = keys[start : start + KEY_CHUNK]
            cursor.execute(
                f"{SQLITE_FILL} WHERE collection_id = ? AND record_key IN ({','.join('?' * len(chunk))})",
                [collection_id, *chunk],
            )
    finally:
        cursor.close()


def forget(
    *criteria: ColumnElement[bool],
    connection: Connection | None = None,
    params: list[dict[str, Any]] | None = None,
) -> None:
    """Drop the entries of the records `criteria` select; call just before deleting them
    (`params`: a list of parameter sets, as for an executemany DELETE)."""
    if (connection.dialect if connection is not None else db.engine.dialect).name != "sqlite":
        return
    statement = delete(_FTS).where(
        _FTS.c.rowid.in_(
            select(literal_column("records.rowid")).select_from(Record.__table__).where(*criteria)
        )
    )
    (connection if connection is not None else db.session).execute(statement, params)


def rebuild(connection: Connection) -> int:
    """Index every record again from what is stored (migration 0007, and `flask
    rebuild-search-index` after records were changed by anything but hookstream)."""
    if connection.dialect.name == "sqlite":
        connection.execute(text(f"DELETE FROM {SQLITE_TABLE}"))  # noqa: S608 - constants only, values are bound
        return connection.execute(text(SQLITE_FILL)).rowcount
    return _pg_write_words(connection.execute)


def index_collection(collection_id: str, batch: int = 5000) -> int:
    """Index a collection's stored records, a committed batch at a time (the job that turns
    a collection's index on). Writes that land meanwhile index themselves."""
    if _dialect() != "sqlite":
        return _pg_write_words(db.session.execute, collection_id, batch, after_batch=db.session.commit)
    done, after = 0, 0
    forget(Record.collection_id == collection_id)
    db.session.commit()
    while True:
        ids = (
            db.session.execute(
                text(
                    "SELECT rowid FROM records WHERE collection_id = :c AND rowid > :after "
                    "ORDER BY rowid LIMIT :n"
                ),
                {"c": collection_id, "after": after, "n": batch},
            )
            .scalars()
            .all()
        )
        if not ids:
            return done
        db.session.execute(
            text(f"{SQLITE_FILL} WHERE collection_id = :c AND rowid BETWEEN :a AND :b"),
            {"c": collection_id, "a": ids[0], "b": ids[-1]},
        )
        db.session.commit()
        done, after = done + len(ids), ids[-1]


def _pg_write_words(
    execute: Callable[..., Result[Any]],
    collection_id: str | None = None,
    batch: int = 5000,
    after_batch: Callable[[], None] | None = None,
) -> int:
    """PostgreSQL: store the words of stored records (of one collection, or all), in id order.
    A record changed between this reading and writing it keeps the words its own write gave."""
    scope = "AND collection_id = :c " if collection_id else ""
    done, after = 0, ""
    while True:
        rows = execute(
            text(
                f"SELECT id, record_key, data::text, updated_at FROM records WHERE id > :after {scope}"  # noqa: S608 - constants only, values are bound
                "ORDER BY id LIMIT :n"
            ),
            {"after": after, "c": collection_id, "n": batch},
        ).all()
        if not rows:
            return done
        execute(
            text(
                "UPDATE records SET search_words = CAST(:words AS tsvector) WHERE id = :id AND updated_at = :seen"
            ),
            [{"id": i, "words": pg_document(k, d), "seen": u} for i, k, d, u in rows],
        )
        if after_batch:
            after_batch()
        done, after = done + len(rows), rows[-1][0]


@event.listens_for(Collection, "before_delete")
def _collection_deleted(_mapper: Mapper[Collection], connection: Connection, collection: Collection) -> None:
    forget(Record.__table__.c.collection_id == collection.id, connection=connection)


# The ORM deletes an org's environments before the org itself, and the database takes
# their collections (and records) with them: each level forgets its records first.
@event.listens_for(Environment, "before_delete")
@event.listens_for(Org, "before_delete")
def _scope_deleted(_mapper: Mapper[Any], connection: Connection, scope: Environment | Org) -> None:
    owner = Collection.env_id if isinstance(scope, Environment) else Collection.org_id
    forget(
        Record.__table__.c.collection_id.in_(select(Collection.id).where(owner == scope.id)),
        connection=connection,
    )


def pg_document(key: str, json_text: str) -> str:
    """The words of a record as a tsvector literal, from the same text the exact check reads
    (PostgreSQL prints jsonb with \\u escapes decoded, so those are decoded here too)."""
    if "\\u" in json_text or "\\/" in json_text:
        json_text = json.dumps(json.loads(json_text), ensure_ascii=False)
    words: set[str] = set()
    size = 0
    for word in _PG_WORD.findall(f"{key} {json_text}".lower()):
        word = word[:MAX_WORD]
        if word not in words:
            size += len(word.encode()) + 2
            if size > WORD_BUDGET or len(words) >= MAX_WORDS:
                words.add(OVERFLOW)
                break
            words.add(word)
    return " ".join(words)


# --- asking ---------------------------------------------------------------------------------


def _spellings(term: str) -> set[str]:
    """`term` as it can appear in the indexed text, in lower case: as typed (keys, and text
    without quotes or backslashes) and as JSON writes it inside a string. Records hold their
    characters as written, not \\u escapes, on both databases (values.records.record_json)."""
    return {spelling.lower() for spelling in (term, json.dumps(term, ensure_ascii=False)[1:-1])}


def _words(spelling: str, prefix_last: bool) -> list[str]:
    """The words a match must hold: every word whole, except that the last one may go on
    (as a prefix) when the spelling ends inside it."""
    pattern = _SQLITE_WORD if _dialect() == "sqlite" else _PG_WORD
    found = list(pattern.finditer(spelling.lower()))
    words = []
    for i, match in enumerate(found):
        open_ended = prefix_last and i == len(found) - 1 and match.end() == len(spelling)
        if _dialect() == "sqlite":
            words.append(f'"{match.group()}"' + ("*" if open_ended else ""))
        else:
            word = match.group()
            open_ended = open_ended or len(word) > MAX_WORD
            words.append(word[:MAX_WORD] + (":*" if open_ended else ""))
    return words


def _any_of(alternatives: list[list[str]]) -> str | None:
    """OR of ANDs, or None when some alternative has no word (the index cannot narrow it)."""
    if not alternatives or not all(alternatives):
        return None
    both, either = (" AND ", " OR ") if _dialect() == "sqlite" else (" & ", " | ")
    return either.join("(" + both.join(words) + ")" for words in sorted(alternatives))


def search_words(term: str) -> str | None:
    return _any_of([_words(s, prefix_last=True) for s in _spellings(term)])


def value_words(spellings: list[str]) -> str | None:
    """A field filter's value, in each JSON spelling it may have: whole words only."""
    return _any_of([_words(s, prefix_last=False) for s in spellings])


def candidates(parts: list[str | None]) -> ColumnElement[bool] | None:
    """A condition on Record narrowing to rows holding the words of every part (each from
    search_words / value_words); None when no part can narrow."""
    words = [p for p in parts if p]
    if not words:
        return None
    if _dialect() == "sqlite":
        query = "(" + " AND ".join(f"({p})" for p in words) + f") OR {SQLITE_OVERFLOW}"
        return literal_column("records.rowid").in_(
            select(_FTS.c.rowid).where(literal_column(SQLITE_TABLE).op("MATCH")(query))
        )
    query = " & ".join(f"({p})" for p in words)
    return Record.search_words.op("@@")(cast(f"({query}) | '{OVERFLOW}'", TSQUERY))


def word_start(text_value: object, needle: str) -> int:
    """SQLite function hs_word_start: `needle` (lower case) occurs in `text_value` where a
    word starts, or anywhere when the needle itself starts with a non-word character."""
    if text_value is None:
        return 0
    haystack = str(text_value).lower()
    anywhere = not needle[:1].isalnum()
    at = haystack.find(needle)
    while at >= 0:
        if anywhere or at == 0 or not haystack[at - 1].isalnum():
            return 1
        at = haystack.find(needle, at + 1)
    return 0


def contains_words(entity: type[Record] | AliasedClass[Record], term: str) -> ColumnElement[bool]:
    """The exact rule: `term` occurs in the key or the JSON text where a word starts."""
    data = cast(entity.data, Text)
    checks = []
    for spelling, column_ in [(term, entity.record_key)] + [(s, data) for s in sorted(_spellings(term))]:
        spelling = spelling.lower()
        if _dialect() == "sqlite":
            # LIKE first (C, and already blind to ASCII case; its wildcards only widen it),
            # but only for ASCII: it cannot fold the case of other letters.
            word_start_ = func.hs_word_start(column_, spelling) == 1
            checks.append(column_.like(f"%{spelling}%") & word_start_ if spelling.isascii() else word_start_)
            continue
        like = column_.icontains(spelling, autoescape=True)  # % and _ are text here, not wildcards
        if _PG_WORD.match(spelling[:1]):
            checks.append(like & column_.op("~*")(_PG_WORD_START + _PG_REGEX_SPECIAL.sub(r"\\\1", spelling)))
        else:
            checks.append(like)
    return or_(*checks)
