"""Reading and deleting a collection's records, and stored events; all scoped by collection
or environment, which the caller resolved through the principal."""
from __future__ import annotations

import re

from flask import abort
from sqlalchemy import String, Text, cast, delete, func, or_, select, update
from sqlalchemy.dialects.postgresql import ARRAY

from ..auth.principal import Principal
from ..errors import ValidationFailed
from ..models import Collection, Event, Record, db
from .pagination import Page, paginate
from .upsert import parse_time

SEGMENT = re.compile(r"^[A-Za-z0-9_\-]+$")


def _segments(path: str, field: str) -> list[str]:
    parts = path.strip().removeprefix("$.").removeprefix("$").strip(".").split(".")
    if not parts or not all(SEGMENT.match(p) for p in parts):
        raise ValidationFailed({field: "must be a dot path of field names, like data.status"})
    return parts


def json_text(segments: list[str]):
    """The value at a path inside records.data, as text, on either database."""
    if db.engine.dialect.name == "postgresql":
        return Record.data.op("#>>")(cast(segments, ARRAY(Text)))
    return cast(func.json_extract(Record.data, "$." + ".".join(f'"{s}"' for s in segments)), String)


def list_records(collection: Collection, *, search=None, event_type=None, filters: dict | None = None,
                 cursor=None, limit=None) -> Page:
    query = select(Record).where(Record.collection_id == collection.id)
    if search:
        like = f"%{search.strip()}%"
        text = cast(Record.data, String)
        query = query.where(or_(Record.record_key.ilike(like), text.ilike(like)))
    if event_type:
        query = query.where(Record.event_type == event_type)
    for path, value in (filters or {}).items():
        query = query.where(json_text(_segments(path, f"filter[{path}]")) == value)
    return paginate(query, Record, cursor, limit, by="updated_at")


def get_record_or_404(collection: Collection, key: str) -> Record:
    record = db.session.scalar(select(Record).where(Record.collection_id == collection.id, Record.record_key == key))
    if record is None:
        abort(404, description="Record not found")
    return record


def delete_record(collection: Collection, record: Record) -> None:
    db.session.execute(delete(Record).where(Record.id == record.id))
    db.session.execute(update(Collection).where(Collection.id == collection.id)
                       .values(record_count=Collection.record_count - 1))
    db.session.commit()


def list_events(principal: Principal, *, source_id=None, status=None, verification=None, duplicate=None,
                since=None, until=None, search=None, cursor=None, limit=None) -> Page:
    query = select(Event).where(Event.org_id == principal.org.id, Event.env_id == principal.env.id)
    if source_id:
        query = query.where(Event.source_id == source_id)
    if status:
        query = query.where(Event.status == status)
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
        query = query.where(Event.body.ilike(f"%{search.strip()}%"))
    return paginate(query, Event, cursor, limit, by="received_at")


def get_event_or_404(principal: Principal, event_id: str) -> Event:
    event = db.session.scalar(select(Event).where(Event.id == event_id, Event.org_id == principal.org.id,
                                                  Event.env_id == principal.env.id))
    if event is None:
        abort(404, description="Event not found")
    return event
