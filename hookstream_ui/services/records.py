"""Reading and deleting a collection's records, and stored events; all scoped by collection
or environment, which the caller resolved through the principal."""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Iterator, Sequence
from datetime import timedelta
from typing import Any

from flask import abort
from sqlalchemy import (
    Select,
    SQLColumnExpression,
    String,
    Text,
    and_,
    cast,
    func,
    or_,
    select,
)
from sqlalchemy.dialects.postgresql import ARRAY
from sqlalchemy.orm import aliased
from sqlalchemy.orm.util import AliasedClass
from sqlalchemy.sql.elements import ColumnElement

from ..errors import ValidationFailed
from ..models import Collection, Event, Record, RecordEvent, db
from ..models.principal import Principal
from ..values import documents
from ..values.records import parse_time
from ..values.times import isoformat, utcnow
from . import audit, search_index
from .pagination import Page, after_cursor, paginate

SEGMENT = re.compile(r"^[A-Za-z0-9_\-]+$")


def _segments(path: str, field: str) -> list[str]:
    parts = path.strip().removeprefix("$.").removeprefix("$").strip(".").split(".")
    if not parts or not all(SEGMENT.match(p) for p in parts):
        raise ValidationFailed({field: "must be a dot path of field names, like data.status"})
    return parts


def filterable(field: dict) -> bool:
    """A schema field that `filter[<path>]` can match: a scalar at a plain dot path."""
    parts = field["path"].removeprefix("$.").split(".")
    return not set(field["types"]) & {"object", "array"} and all(SEGMENT.match(p) for p in parts)


def json_text(
    segments: list[str], entity: type[Record] | AliasedClass[Record] = Record
) -> ColumnElement[Any]:
    """The value at a path inside records.data, as text, on either database."""
    if db.engine.dialect.name == "postgresql":
        return entity.data.op("#>>")(cast(segments, ARRAY(Text)))
    return cast(func.json_extract(entity.data, "$." + ".".join(f'"{s}"' for s in segments)), String)


def _filter_values(value: str) -> list[Any]:
    """What a filter value matches: the text itself and, when it reads as a JSON scalar
    (42, 4.5, true, null), that value too."""
    try:
        parsed = documents.loads(value)  # 1e999 and NaN are text here: PostgreSQL has no such number
    except ValueError:
        return [value]
    return [value] if isinstance(parsed, (dict, list, str)) else [value, parsed]


def field_equals(
    segments: list[str], value: str, entity: type[Record] | AliasedClass[Record] = Record
) -> ColumnElement[bool]:
    """data.<path> equals `value`, matched as text and, when it reads as JSON, as that value.
    On PostgreSQL this is JSONB containment, which the GIN index on records.data answers."""
    candidates = _filter_values(value)
    if db.engine.dialect.name != "postgresql":
        text = json_text(segments, entity)
        spellings = {value}
        if len(candidates) > 1:
            typed = candidates[1]
            # SQLite's json_extract gives true/false as 1/0, and numbers in their own spelling.
            spellings |= (
                {"1" if typed else "0"} if isinstance(typed, bool) else {json.dumps(typed), str(typed)}
            )
        return or_(*[text == spelling for spelling in sorted(spellings)])
    from sqlalchemy.dialects.postgresql import JSONB

    def nest(leaf: Any) -> Any:
        for segment in reversed(segments):
            leaf = {segment: leaf}
        return leaf

    return or_(*[entity.data.op("@>")(cast(nest(c), JSONB)) for c in candidates])


# A filtered page is first looked for among this many of the newest records (after the
# cursor), walked in index order: a common value fills it at once. Only if they hold less than
# a page is the whole collection asked, through the word index (a rare value), instead of
# collecting every match of a common one through it and sorting them all.
WINDOW = 5000
# A page of records holds at most about this many bytes of them (at least one record): at
# the record size limit, 100 records to a page answered hundreds of megabytes.
PAGE_BYTES = 4 * 1024 * 1024
EXAMPLE_CHARS = 200  # a schema field's example is cut to this


def _filter_spellings(value: str) -> list[str]:
    """How a filter value can be written in a record's JSON text (for the word index)."""
    return [value, json.dumps(value)[1:-1], *(json.dumps(typed) for typed in _filter_values(value)[1:])]


def _conditions(
    entity: type[Record] | AliasedClass[Record],
    search: str,
    event_type: str | None,
    filters: dict[str, str],
    segments: dict[str, list[str]],
) -> list[ColumnElement[bool]]:
    found = []
    if search:
        found.append(search_index.contains_words(entity, search))
    if event_type:
        found.append(entity.event_type == event_type)
    for path, value in filters.items():
        found.append(field_equals(segments[path], value, entity))
    return found


def _matching(
    collection: Collection,
    search: str,
    event_type: str | None,
    filters: dict[str, str],
    segments: dict[str, list[str]],
) -> Select[tuple[Record]]:
    """Every record of the collection that matches, narrowed first through the word index."""
    words = [search_index.search_words(search)] if search else []
    if db.engine.dialect.name == "sqlite":  # PostgreSQL's GIN index on data already answers filters
        words += [search_index.value_words(_filter_spellings(v)) for v in filters.values()]
    narrowed = search_index.candidates(words) if collection.search_index == "on" else None
    in_collection = Record.collection_id == collection.id
    if narrowed is not None and db.engine.dialect.name == "sqlite":
        # Left to itself SQLite walks the collection's newest-first index and tests every row
        # against the index's answer; hiding the column from it makes it start from that answer.
        in_collection = Record.collection_id.op("||")("") == collection.id
    return select(Record).where(
        in_collection,
        *_conditions(Record, search, event_type, filters, segments),
        *([narrowed] if narrowed is not None else []),
    )


def list_records(
    collection: Collection,
    *,
    search: str | None = None,
    event_type: str | None = None,
    filters: dict[str, str] | None = None,
    cursor: str | None = None,
    limit: str | int | None = None,
) -> Page:
    search, filters = (search or "").strip(), filters or {}
    segments = {path: _segments(path, f"filter[{path}]") for path in filters}

    if not _conditions(Record, search, event_type, filters, segments):
        return paginate(
            select(Record).where(Record.collection_id == collection.id),
            Record,
            cursor,
            limit,
            by="updated_at",
            weigh=_weight,
            budget=PAGE_BYTES,
        )
    if (collection.record_count or 0) > WINDOW:
        newest = aliased(
            Record,
            after_cursor(
                select(Record).where(Record.collection_id == collection.id), Record, cursor, by="updated_at"
            )
            .order_by(Record.updated_at.desc(), Record.id.desc())
            .limit(WINDOW)
            .subquery(),
        )
        page = paginate(
            select(newest).where(*_conditions(newest, search, event_type, filters, segments)),
            newest,
            cursor,
            limit,
            by="updated_at",
            weigh=_weight,
            budget=PAGE_BYTES,
        )
        if page.has_more:
            return page
    return paginate(
        _matching(collection, search, event_type, filters, segments),
        Record,
        cursor,
        limit,
        by="updated_at",
        weigh=_weight,
        budget=PAGE_BYTES,
    )


COUNT_CAP = 10_000  # a filtered count stops here: "more than 10,000" costs what a page of them does


def count_records(
    collection: Collection,
    *,
    search: str | None = None,
    event_type: str | None = None,
    filters: dict[str, str] | None = None,
    cap: int | None = None,
) -> tuple[int, bool]:
    """How many records match, and whether that is exact. Unfiltered, the collection's own
    count; filtered, counted up to `cap` (past it: `cap`, and not exact)."""
    search, filters = (search or "").strip(), filters or {}
    segments = {path: _segments(path, f"filter[{path}]") for path in filters}
    if not _conditions(Record, search, event_type, filters, segments):
        return collection.record_count or 0, True  # kept in the transaction of every write
    cap = cap or COUNT_CAP
    found = (
        _matching(collection, search, event_type, filters, segments)
        .with_only_columns(Record.id)
        .limit(cap + 1)
    )
    n = db.session.scalar(select(func.count()).select_from(found.subquery())) or 0
    return (cap, False) if n > cap else (n, True)


def _weight(record: Record) -> int:
    return len(documents.dumps(record.data)) + 300


def get_record_or_404(collection: Collection, key: str) -> Record:
    record = db.session.scalar(
        select(Record).where(Record.collection_id == collection.id, Record.record_key == key)
    )
    if record is None:
        abort(404, description="Record not found")
    return record


def delete_record(collection: Collection, record: Record) -> None:
    from .upsert import remove_where

    remove_where(collection, Record.id == record.id)
    audit.note(
        "record.delete",
        "collection",
        collection.id,
        org_id=collection.org_id,
        env_id=collection.env_id,
        details={"name": collection.name, "record_key": record.record_key[:200]},
    )
    db.session.commit()


def export(
    collection: Collection,
    fmt: str,
    *,
    search: str | None = None,
    event_type: str | None = None,
    filters: dict[str, str] | None = None,
    columns: list[str] | None = None,
) -> Iterator[str]:
    """The export's chunks, once it is on the record who took a copy of the data (only an
    export that goes ahead: its filters are checked first)."""
    chunks = iter_export(
        collection.id, fmt, search=search, event_type=event_type, filters=filters, columns=columns
    )
    details: dict[str, object] = {"name": collection.name, "format": fmt}
    if search or event_type or filters:
        # How many match is known only once the stream has run (after this answer is
        # committed), so the entry says which records were taken rather than a count.
        details.update({k: v for k, v in (("search", search), ("event_type", event_type)) if v})
        details.update({f"filter {path}": value for path, value in (filters or {}).items()})
    else:
        details["records"] = collection.record_count
    if columns is not None and fmt == "csv":
        details["columns"] = columns
    audit.note(
        "collection.export",
        "collection",
        collection.id,
        org_id=collection.org_id,
        env_id=collection.env_id,
        details=details,
    )
    db.session.commit()
    return chunks


def _has_result(*results: str) -> ColumnElement[bool]:
    """The event's outcomes name one of these results for some collection (as JSON text:
    both backends write `"result": "…"`; the compact form is matched too)."""
    text = cast(Event.outcomes, Text)
    return or_(*(text.like(f'%"result":{space}"{r}"%') for r in results for space in (" ", "")))


WRITTEN_RESULTS = ("inserted", "updated", "unchanged", "deleted")
FAILED_STATUSES = ("not_json", "rejected", "failed")
# The events list's outcome filter, in the words of its Outcome column (event_outcome):
# what each value lists, as one SQL condition, so the overview counts what the list shows.
# Each filter: its label, and its condition (none for "not_applied", which outcome_clause
# builds from the others).
OUTCOME_FILTERS: dict[str, tuple[str, Callable[[], ColumnElement[bool]] | None]] = {
    "not_applied": ("not applied (any reason)", None),
    "applied": ("applied", lambda: and_(Event.status == "applied", _has_result(*WRITTEN_RESULTS))),
    "skipped": (
        "skipped (no usable key, …)",
        lambda: and_(Event.status == "applied", _has_result("skipped"), ~_has_result(*WRITTEN_RESULTS)),
    ),
    "stored": (
        "stored (no collection)",
        lambda: and_(Event.status == "applied", cast(Event.outcomes, Text).in_(("{}", "null"))),
    ),
    "duplicate": ("duplicate", lambda: Event.status == "duplicate"),
    "not_json": ("not JSON", lambda: Event.status == "not_json"),
    "rejected": ("rejected", lambda: Event.status == "rejected"),
    "failed": ("failed", lambda: Event.status == "failed"),
}


def outcome_clause(outcome: str) -> ColumnElement[bool]:
    """The condition for one of OUTCOME_FILTERS; "not_applied" is what the overview counts
    as a failure: rejected, failed, not JSON, or skipped by every collection."""
    if outcome == "not_applied":
        return or_(Event.status.in_(FAILED_STATUSES), _outcome_condition("skipped"))
    if outcome not in OUTCOME_FILTERS:
        raise ValidationFailed(
            {"status": "must be one of: " + ", ".join(label for label, _ in OUTCOME_FILTERS.values())}
        )
    return _outcome_condition(outcome)


def _outcome_condition(outcome: str) -> ColumnElement[bool]:
    condition = OUTCOME_FILTERS[outcome][1]
    if condition is None:
        raise ValueError(f"{outcome} has no condition of its own")
    return condition()


def list_events(
    principal: Principal,
    *,
    source_id: str | None = None,
    status: str | None = None,
    outcome: str | None = None,
    verification: str | None = None,
    duplicate: bool | None = None,
    since: str | None = None,
    until: str | None = None,
    search: str | None = None,
    cursor: str | None = None,
    limit: str | int | None = None,
) -> Page:
    """`status` is the stored status (the API's filter); `outcome` one of OUTCOME_FILTERS
    (the dashboard's, which tells skipped and stored-only events from applied ones)."""
    query = select(Event).where(Event.org_id == principal.org.id, Event.env_id == principal.env.id)
    if source_id:
        query = query.where(Event.source_id == source_id)
    if status:
        query = query.where(Event.status == status)
    if outcome:
        query = query.where(outcome_clause(outcome))
    if verification:
        query = query.where(Event.verification == verification)
    if duplicate is not None:
        query = query.where(Event.duplicate.is_(duplicate))
    for name, value, op in (("since", since, "ge"), ("until", until, "le")):
        if value:
            moment = parse_time(value)
            if moment is None:
                raise ValidationFailed({name: "must be an ISO 8601 time or epoch seconds"})
            query = query.where(Event.received_at >= moment if op == "ge" else Event.received_at <= moment)
    if search:
        query = query.where(_contains_text(Event.body, search.strip()))
    return paginate(query, Event, cursor, limit, by="received_at")


NOT_APPLIED = {"not_json": "not JSON", "duplicate": "duplicate", "rejected": "rejected", "failed": "failed"}


def event_outcome(event: Event) -> tuple[str, str | None]:
    """What became of an event, in a word and a reason: its status says it was received and
    handed to its collections (`applied`), its outcomes say what each did with it. An event
    every collection skipped ("no usable key at $.id") was listed as applied."""
    if event.status != "applied":
        return NOT_APPLIED.get(event.status, event.status), event.error
    outcomes = list((event.outcomes or {}).values())
    if not outcomes:
        return "stored", "no collection is bound to its source"
    skipped = [o for o in outcomes if o.get("result") == "skipped"]
    reason = next((o.get("reason") for o in skipped if o.get("reason")), None)
    if len(skipped) == len(outcomes):
        return "skipped", reason
    if skipped:
        return "partly applied", f"{len(skipped)} of {len(outcomes)} collections skipped it: {reason}"
    return "applied", None


# ASCII without letters: characters every casing of a text spells alike.
_CASELESS_RUN = re.compile(r"[\x20-\x40\x5b-\x60\x7b-\x7e]{3,}")


def _contains_text(column: SQLColumnExpression[Any], term: str) -> ColumnElement[bool]:
    """`term` anywhere in `column`, in any case; % and _ are text. Case-insensitive matching
    reads every row several times slower than a plain LIKE (five times on PostgreSQL), so the
    longest run of the term's caseless characters (the digits of an id, an @, a date) is
    first looked for with a plain LIKE: the match implies it, and the slow check then reads
    only the rows it lets through."""
    runs = _CASELESS_RUN.findall(term)
    plain = [column.contains(max(runs, key=len), autoescape=True)] if runs else []
    return and_(*plain, column.icontains(term, autoescape=True))


def get_event_or_404(principal: Principal, event_id: str) -> Event:
    event = db.session.scalar(
        select(Event).where(
            Event.id == event_id, Event.org_id == principal.org.id, Event.env_id == principal.env.id
        )
    )
    if event is None:
        abort(404, description="Event not found")
    return event


def _kind(value: object) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int):
        return "integer"
    if isinstance(value, float):
        return "number"
    if isinstance(value, str):
        return "string"
    return "array" if isinstance(value, list) else "object"


def _sample_size(sample: str | float | None) -> int:
    """How many records a schema is inferred from: 200 unless asked, at most 500."""
    if sample in (None, ""):
        return 200
    try:
        size = int(sample)
    except (TypeError, ValueError):
        raise ValidationFailed({"sample": "must be an integer from 1 to 500"}) from None
    if not 1 <= size <= 500:
        raise ValidationFailed({"sample": "must be an integer from 1 to 500"})
    return size


def _example(value: Any) -> Any:
    """A field's example as shown: a long string as its beginning."""
    return value[:EXAMPLE_CHARS] + "…" if isinstance(value, str) and len(value) > EXAMPLE_CHARS else value


def infer_schema(collection: Collection, sample: str | float | None = None) -> dict[str, Any]:
    """Paths, types, how often present and an example, from up to 500 recent records."""
    rows = db.session.scalars(
        select(Record.data)
        .where(Record.collection_id == collection.id)
        .order_by(Record.updated_at.desc())
        .limit(_sample_size(sample))
    ).all()
    fields: dict[str, dict[str, Any]] = {}
    seen: set[str] = set()  # paths met in the current record: presence counts records, not items

    def walk(value: Any, path: str) -> None:
        entry = fields.setdefault(path, {"path": path, "types": set(), "count": 0, "example": None})
        entry["types"].add(_kind(value))
        if path not in seen:
            seen.add(path)
            entry["count"] += 1
        if entry["example"] in (None, "") and value is not None and not isinstance(value, (dict, list)):
            entry["example"] = _example(value)  # an empty string only until a value says more
        if isinstance(value, dict):
            for key, child in value.items():
                walk(child, f"{path}.{key}" if path else key)
        elif isinstance(value, list):
            for child in value[:20]:
                walk(child, f"{path}[*]")

    for data in rows:
        seen.clear()
        for key, value in (data or {}).items():
            walk(value, f"$.{key}")
    n = len(rows)
    out = [
        {
            "path": f["path"],
            "types": sorted(f["types"]),
            "presence": round(f["count"] / n, 4) if n else 0,
            "example": f["example"],
        }
        for f in fields.values()
    ]
    return {"sampled": n, "fields": sorted(out, key=lambda f: f["path"])}


def collection_stats(collection: Collection) -> dict:
    since = utcnow() - timedelta(hours=24)
    base = select(func.count()).select_from(Record).where(Record.collection_id == collection.id)
    by_type = db.session.execute(
        select(Record.event_type, func.count())
        .where(Record.collection_id == collection.id)
        .group_by(Record.event_type)
        .order_by(func.count().desc())
        .limit(10)
    ).all()
    newest, oldest = db.session.execute(
        select(func.max(Record.updated_at), func.min(Record.updated_at)).where(
            Record.collection_id == collection.id
        )
    ).one()
    events_24h = 0
    if collection.bindings:
        events_24h = (
            db.session.scalar(
                select(func.count())
                .select_from(Event)
                .where(
                    Event.source_id.in_([b.source_id for b in collection.bindings]),
                    Event.received_at >= since,
                )
            )
            or 0
        )
    return {
        "collection_id": collection.id,
        "record_count": db.session.scalar(base),
        "records_updated_24h": db.session.scalar(base.where(Record.updated_at >= since)),
        "events_received_24h": events_24h,
        "by_event_type": [{"event_type": t, "count": n} for t, n in by_type],
        "newest_update_at": isoformat(newest),
        "oldest_update_at": isoformat(oldest),
        "last_sync_at": isoformat(collection.last_sync_at),
    }


EXPORT_CHUNK = 200  # records in memory at once: at the record size limit, a fifth of a gigabyte
CSV_COLUMNS = ("record_key", "event_type", "source_event_id", "source_event_at", "created_at", "updated_at")
CSV_DATA_COLUMNS = 2000  # flattened data columns at most; fields past them go into `other_fields`
CSV_OTHER = "other_fields"


FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")


def _cell(text: str) -> str:
    """A CSV cell a spreadsheet shows as text: one starting like a formula (=HYPERLINK(…),
    +, -, @) is written after an apostrophe, as OWASP advises, so opening an export never
    runs what a sender put into a key."""
    return "'" + text if text.startswith(FORMULA_STARTS) else text


def flatten(data: Any, prefix: str = "") -> dict[str, Any]:
    """A record's data as one level, named as the records page names its columns (the path
    without `$.`: customer.email); arrays stay one cell, as JSON text."""
    flat: dict[str, Any] = {}

    def walk(value: Any, path: str) -> None:
        if isinstance(value, dict) and value:
            for key, child in value.items():
                walk(child, f"{path}.{key}" if path else key)
        else:
            flat[path] = value

    walk(data if isinstance(data, dict) else {"value": data}, prefix)
    return flat


def _flat_cell(value: object) -> str:
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return documents.dumps(value)  # a number is no formula, -5 included
    if isinstance(value, str):
        return _cell(value)
    return _cell(documents.dumps(value, separators=(",", ":"), ensure_ascii=False))


def _chunks(collection_id: str, where: tuple[ColumnElement[bool], ...] = ()) -> Iterator[Sequence[Record]]:
    """The collection's records (those matching `where`) in key order, a chunk at a time."""
    after = None
    while True:
        query = (
            select(Record).where(Record.collection_id == collection_id, *where).order_by(Record.record_key)
        )
        if after is not None:
            query = query.where(Record.record_key > after)
        rows = db.session.scalars(query.limit(EXPORT_CHUNK)).all()
        if not rows:
            return
        yield rows
        after = rows[-1].record_key
        db.session.expunge_all()  # keep the identity map from growing with the export


def _at(data: Any, path: str) -> Any:
    """The value at a dot path in a record's data (an object as it is: one JSON cell)."""
    for part in path.split("."):
        if not isinstance(data, dict):
            return None
        data = data.get(part)
    return data


def csv_name(path: str) -> str:
    """A data column's header: its path as the records page shows it, except where that is
    a name of the record's own columns (a data field `created_at`): then its $-path, so
    the two are told apart without prefixing every other field."""
    return f"$.{path}" if path in CSV_COLUMNS or path == CSV_OTHER else path


def _data_columns(collection_id: str, where: tuple = ()) -> list[str]:
    """Every flattened data column the records have, in the order they first appear. A
    CSV's header comes before its rows, so this is a pass of its own, a chunk at a time."""
    seen: dict[str, None] = {}
    for rows in _chunks(collection_id, where):
        for r in rows:
            for name in flatten(r.data):
                if len(seen) < CSV_DATA_COLUMNS:
                    seen.setdefault(name, None)
    return list(seen)


def export_columns(raw: str | None) -> list[str] | None:
    """The data columns a CSV export is asked for (`columns=status,customer.email`), as
    dot paths the records page shows; none asked: every field."""
    if not raw or not raw.strip():
        return None
    chosen: list[str] = []
    for part in raw.split(","):
        path = ".".join(_segments(part, "columns"))
        if path not in chosen:
            chosen.append(path)
    return chosen


def iter_export(
    collection_id: str,
    fmt: str,
    *,
    search: str | None = None,
    event_type: str | None = None,
    filters: dict[str, str] | None = None,
    columns: list[str] | None = None,
) -> Iterator[str]:
    """The collection's records (all, or those matching the records list's search, event
    type and filters), in key order, a chunk at a time: memory stays flat at any size. CSV
    has a column per flattened data field, named as the records page names it
    (`customer.email`), after the record's own columns, or only the `columns` asked for;
    NDJSON has each record whole. Bad filters raise here, before anything streams."""
    search, filters = (search or "").strip(), filters or {}
    segments = {path: _segments(path, f"filter[{path}]") for path in filters}
    where = tuple(_conditions(Record, search, event_type, filters, segments))
    return _export(collection_id, fmt, where, columns)


def _export(
    collection_id: str, fmt: str, where: tuple[ColumnElement[bool], ...], chosen: list[str] | None = None
) -> Iterator[str]:
    import csv
    import io

    columns: list[str] = []
    if fmt == "csv":
        columns = chosen if chosen is not None else _data_columns(collection_id, where)
        known = set(columns)
        overflow = chosen is None and len(columns) >= CSV_DATA_COLUMNS
        buffer = io.StringIO()
        writer = csv.writer(buffer)
        writer.writerow([*CSV_COLUMNS, *map(csv_name, columns), *([CSV_OTHER] if overflow else [])])
        yield buffer.getvalue()
    for rows in _chunks(collection_id, where):
        if fmt == "ndjson":
            yield "".join(
                documents.dumps(
                    {
                        "record_key": r.record_key,
                        "data": r.data,
                        "event_type": r.event_type,
                        "source_event_id": r.source_event_id,
                        "source_event_at": isoformat(r.source_event_at),
                        "created_at": isoformat(r.created_at),
                        "updated_at": isoformat(r.updated_at),
                    },
                    separators=(",", ":"),
                )
                + "\n"
                for r in rows
            )
            continue
        buffer = io.StringIO()
        writer = csv.writer(buffer)
        for r in rows:
            flat = flatten(r.data) if chosen is None else {name: _at(r.data, name) for name in columns}
            cells = [_flat_cell(flat.get(name)) for name in columns]
            if overflow:
                rest = {k: v for k, v in flat.items() if k not in known}
                cells.append(_flat_cell(rest) if rest else "")
            writer.writerow(
                [
                    _cell(r.record_key),
                    _cell(r.event_type or ""),
                    _cell(r.source_event_id or ""),
                    isoformat(r.source_event_at) or "",
                    isoformat(r.created_at),
                    isoformat(r.updated_at),
                    *cells,
                ]
            )
        yield buffer.getvalue()


def events_for_record(collection: Collection, record: Record, limit: int = 20) -> list[Event]:
    """The stored events that touched this record's key in this collection, newest first:
    looked up by the key (record_events), never by reading event bodies."""
    return list(
        db.session.scalars(
            select(Event)
            .join(RecordEvent, RecordEvent.event_id == Event.id)
            .where(
                RecordEvent.collection_id == collection.id,
                RecordEvent.record_key == record.record_key,
                Event.env_id == collection.env_id,
            )
            .order_by(RecordEvent.received_at.desc())
            .limit(limit)
        )
    )


def collections_by_id(ids: list[str]) -> dict:
    if not ids:
        return {}
    return {c.id: c for c in db.session.scalars(select(Collection).where(Collection.id.in_(ids)))}
