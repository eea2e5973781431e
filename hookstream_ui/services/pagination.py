"""Keyset (cursor) pagination, newest first, on (created_at, id)."""

from __future__ import annotations

import base64
import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import Select, and_, or_

from ..errors import ValidationFailed
from ..models.base import db
from ..values.times import as_utc

DEFAULT_LIMIT = 20
MAX_LIMIT = 100


@dataclass
class Page:
    items: Sequence[Any]
    cursor: str | None
    has_more: bool


def parse_limit(value: str | int | None, default: int = DEFAULT_LIMIT) -> int:
    if value in (None, ""):
        return default
    try:
        limit = int(value)
    except (TypeError, ValueError):
        raise ValidationFailed({"limit": f"must be an integer from 1 to {MAX_LIMIT}"}) from None
    if not 1 <= limit <= MAX_LIMIT:
        raise ValidationFailed({"limit": f"must be an integer from 1 to {MAX_LIMIT}"})
    return limit


def _encode(created_at: datetime, ident: str) -> str:
    raw = json.dumps([as_utc(created_at).isoformat(), ident]).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def _decode(cursor: str) -> tuple[datetime, str]:
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4))
        stamp, ident = json.loads(raw)
        return datetime.fromisoformat(stamp), str(ident)
    except Exception:
        raise ValidationFailed({"cursor": "is not a cursor this API returned"}) from None


def paginate(
    query: Select[Any],
    model: Any,  # a model class with an id and a `by` column
    cursor: str | None,
    limit: str | int | None,
    by: str = "created_at",
    weigh: Callable[[Any], int] | None = None,
    budget: int = 0,
) -> Page:
    """Newest first by `by` (a timestamp column), ties broken by id; the cursor is the last row's pair.
    With `weigh` (row -> bytes), a page ends early once its rows pass `budget` bytes (the
    first row always comes): a page of large rows stays small, and the cursor goes on."""
    limit = parse_limit(limit)
    column = getattr(model, by)
    query = after_cursor(query, model, cursor, by)
    rows = db.session.scalars(query.order_by(column.desc(), model.id.desc()).limit(limit + 1)).all()
    has_more = len(rows) > limit
    rows = rows[:limit]
    if weigh is not None:
        total = 0
        for count, row in enumerate(rows):
            total += weigh(row)
            if total > budget and count:
                rows, has_more = rows[:count], True
                break
    next_cursor = _encode(getattr(rows[-1], by), rows[-1].id) if has_more else None
    return Page(rows, next_cursor, has_more)


def after_cursor(query: Select[Any], model: Any, cursor: str | None, by: str = "created_at") -> Select[Any]:
    """`query` narrowed to the rows after `cursor` in newest-first order."""
    if not cursor:
        return query
    column = getattr(model, by)
    stamp, ident = _decode(cursor)
    return query.where(or_(column < stamp, and_(column == stamp, model.id < ident)))
