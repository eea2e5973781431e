"""Jinja filters for timestamps, durations and record cells."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from flask import Flask

from .values import documents
from .values.times import as_utc, isoformat


def ago(value: datetime | None, now: datetime | None = None) -> str:
    """How long ago `value` was ("3h ago"), or how long until it is ("in 7 days"): an
    invitation that expires in a week does not expire "just now"."""
    value = as_utc(value)
    if value is None:
        return "—"
    seconds = ((now or datetime.now(UTC)) - value).total_seconds()
    if abs(seconds) < 10:
        return "just now"  # either side: clocks of two machines differ by that much
    if seconds < 0:
        return _ahead(-seconds)
    seconds = int(seconds)
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= size:
            return f"{seconds // size}{unit} ago"
    return f"{seconds}s ago"


def _ahead(seconds: float) -> str:
    # Rounded, not truncated: a 7-day link made a moment ago has 6.99999 days left. Days
    # from two days on, hours from two hours on (36 hours, not "2 days").
    for unit, size in (("day", 86400), ("hour", 3600)):
        if seconds >= 2 * size - 30:
            count = round(seconds / size)
            return f"in {count} {unit}s"
    if seconds < 45:
        return "in under a minute"
    minutes = round(seconds / 60)
    return f"in {minutes} minute{'s' if minutes != 1 else ''}"


def duration(seconds: float) -> str:
    """1.4 s, 12 s, 3 min 5 s, 2 h 10 min."""
    if seconds < 10:
        return f"{seconds:.1f} s"
    whole = round(seconds)
    if whole < 60:
        return f"{whole} s"
    if whole < 3600:
        return f"{whole // 60} min {whole % 60} s"
    return f"{whole // 3600} h {whole % 3600 // 60} min"


def compact_json(value: Any) -> str:
    """JSON as people read it: text as written, not escaped to ASCII (the page escapes HTML)."""
    return documents.dumps(value, ensure_ascii=False)


def json_path(document: Any, path: str) -> str | int | float:
    """The value at `path` in a record, shown compactly in a table cell."""
    from .values.jsonpaths import getter

    value = getter(path)(document)
    if value is None:
        return "—"
    return value if isinstance(value, (str, int, float)) else compact_json(value)


def counted(count: int, noun: str, plural: str | None = None) -> str:
    """ "1 collection", "3 collections": a count with its noun in the right number, never
    "collection(s)"."""
    return f"{count:,} {noun if count == 1 else plural or noun + 's'}"


def with_article(noun: str) -> str:
    """ "an event", "a collection": the article English gives the noun's first sound (by its
    first letter, which is right for the nouns this product names)."""
    return f"{'an' if noun[:1].lower() in 'aeiou' else 'a'} {noun}"


def register_filters(app: Flask) -> None:
    app.add_template_filter(counted, "counted")
    app.add_template_filter(with_article, "with_article")
    app.add_template_filter(isoformat, "iso")
    app.add_template_filter(ago, "ago")
    app.add_template_filter(duration, "duration")
    app.add_template_filter(json_path, "json_path")
    app.add_template_filter(compact_json, "compact_json")
    from .services.audit import readable_details

    app.add_template_filter(readable_details, "audit_details")
