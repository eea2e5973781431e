"""Records as sources send them, and the values they are stored as: the key a path gives, the
time a version carries, whether its event type means deletion, text both databases can store,
and database or API values as JSON."""

from __future__ import annotations

import base64
import decimal
import re
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from datetime import time as dtime
from json import dumps, loads
from typing import Any

from . import documents, jsonpaths
from .times import as_utc

DELETION_TYPES = frozenset({"deleted", "delete", "removed", "remove"})
MAX_KEY_LENGTH = 500


@dataclass
class Incoming:
    """One version of one record from a source. `data` is usually a JSON object; a source
    may hand over any JSON value, which the upsert engine skips as not an object."""

    data: Any
    event_at: datetime | None = None  # the source's own time for this version, if it has one
    source_event_id: str | None = None
    event_type: str | None = None  # when the source says it (Stripe events), not the record
    # A delivery's type as its sender named it (a header, a body's "type"): what a binding's
    # event types are matched against when no event type field says otherwise.
    sent_type: str | None = None
    # Fast path: the record as JSON text and its key, when the source already has both
    # (PostgreSQL's row_to_json); the text is parsed only if a path needs the document.
    raw: str | None = None
    key: str | None = None
    key_path: str | None = None  # the path `key` was taken from; used only if the collection's matches
    refused: str | None = None  # why the source did not send it whole (too large): skipped, but seen

    def document(self) -> Any:
        """The record, parsed from `raw` the first time it is needed."""
        if self.data is None:
            if self.raw is None:
                raise TypeError("an Incoming needs its data or its JSON text")
            self.data = loads(self.raw)
        return self.data


def parse_time(value: object) -> datetime | None:
    """Epoch seconds (or milliseconds), ISO 8601 or a date, as an aware UTC datetime; else None."""
    if value is None or isinstance(value, bool):
        return None
    if isinstance(value, datetime):
        return as_utc(value)
    if isinstance(value, date):  # a date cursor: its midnight, so a version read again is the same version
        return datetime(value.year, value.month, value.day, tzinfo=UTC)
    if isinstance(value, str) and value.strip().lstrip("-").replace(".", "", 1).isdigit():
        value = float(value)
    if isinstance(value, (int, float)):
        seconds = value / 1000 if abs(value) > 1e11 else value
        try:
            return datetime.fromtimestamp(seconds, UTC)
        except (OverflowError, OSError, ValueError):
            return None
    if isinstance(value, str):
        try:
            return as_utc(datetime.fromisoformat(value.strip().replace("Z", "+00:00")))
        except ValueError:
            return None
    return None


def is_deletion(event_type: object, own: frozenset[str] = frozenset()) -> bool:
    """Built-in deletion types, plus the collection's own list (exact names)."""
    if not isinstance(event_type, str):
        return False
    lowered = event_type.lower()
    return lowered in DELETION_TYPES or lowered.endswith((".deleted", ".removed")) or event_type in own


def takes(event_types: frozenset[str], event_type: object) -> bool:
    """Whether a binding's event types take this one: by name, or under a "prefix.*"."""
    if not isinstance(event_type, str):
        return False
    return event_type in event_types or any(
        t.endswith(".*") and event_type.startswith(t[:-1]) for t in event_types
    )


def key_text(value: object) -> str | None:
    """A value as a record key: scalars only, as text both databases store, at most
    MAX_KEY_LENGTH characters; None if it cannot be one."""
    if value is None or isinstance(value, (dict, list)):
        return None
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    text = storable(str(value))
    return text if text and len(text) <= MAX_KEY_LENGTH else None


def key_at(path: str, document: object) -> str | None:
    """The record key `path` gives in `document`, by the rule every write uses; None if none."""
    return key_text(jsonpaths.getter(path)(document)) if isinstance(document, dict) else None


def storable(value: Any) -> Any:
    """`value` (JSON) with U+0000 and lone surrogates in its text replaced by U+FFFD.
    PostgreSQL stores neither in text or JSONB, and a lone surrogate cannot even be sent to
    SQLite as text; JSON can carry both (as \\u escapes), so both databases keep records
    alike this way."""
    if isinstance(value, str):
        if value.isascii():  # O(1): most text, and no surrogate is ASCII
            return value.replace("\x00", "\ufffd") if "\x00" in value else value
        return documents.UNSTORABLE.sub("\ufffd", value)
    if isinstance(value, dict):
        return {storable(k): storable(v) for k, v in value.items()}
    if isinstance(value, list):
        return [storable(v) for v in value]
    return value


# In JSON text: an escaped NUL, or an escaped surrogate (a valid pair is fine, but is told
# apart only by parsing; paired surrogates become one character when parsed).
_UNSTORABLE_ESCAPE = re.compile(r"\\u(?:0000|[dD][89a-fA-F])")


def record_json(value: Any) -> str:
    """A record's JSON text as stored: characters as written, not \\u escapes, so that
    SQLite's word index and its LIKE see the letters themselves (PostgreSQL's JSONB keeps no
    escapes either); U+0000 and lone surrogates as storable() leaves them."""
    return storable_json(dumps(value, ensure_ascii=False))


def storable_json(text: str) -> str:
    """JSON text as storable() would write it (parsed again only when it has an escape,
    or characters that may be half a surrogate pair)."""
    if ("\\u" in text and _UNSTORABLE_ESCAPE.search(text)) or (
        not text.isascii() and documents.UNSTORABLE.search(text)
    ):
        return dumps(storable(loads(text)), ensure_ascii=False)
    return text


_PLAIN = (str, int, float, bool, type(None))


def json_safe(value: Any) -> Any:
    """Database and API values (datetimes, decimals, UUIDs, bytes) as JSON-able values,
    converted in one pass (this runs once per synced value)."""
    kind = type(value)
    if kind in _PLAIN:
        return value
    if kind is dict:
        return {str(k): (v if type(v) in _PLAIN else json_safe(v)) for k, v in value.items()}
    if kind in (list, tuple):
        return [v if type(v) in _PLAIN else json_safe(v) for v in value]
    return _convert(value)


def _decimal(value: decimal.Decimal) -> int | float:
    return int(value) if value == value.to_integral_value() else float(value)


def _base64(value: bytes | memoryview) -> str:
    return base64.b64encode(value).decode()


_CONVERTERS: dict[type, Callable[[Any], Any]] = {
    datetime: datetime.isoformat,
    date: date.isoformat,
    dtime: dtime.isoformat,
    decimal.Decimal: _decimal,
    uuid.UUID: str,
    timedelta: timedelta.total_seconds,
    bytes: _base64,
    memoryview: _base64,
}


def _convert(value: object) -> Any:
    converter = _CONVERTERS.get(type(value))
    if converter is not None:
        return converter(value)
    if isinstance(value, dict):
        return {str(k): json_safe(v) for k, v in value.items()}
    if isinstance(value, (list, tuple, set)):
        return [json_safe(v) for v in value]
    return str(value)
