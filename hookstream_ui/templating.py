"""Jinja filters for timestamps."""
from __future__ import annotations

from datetime import datetime, timezone

from .models.base import as_utc, isoformat


def ago(value: datetime | None) -> str:
    value = as_utc(value)
    if value is None:
        return "—"
    seconds = int((datetime.now(timezone.utc) - value).total_seconds())
    if seconds < 0:
        return "just now"
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= size:
            return f"{seconds // size}{unit} ago"
    return "just now" if seconds < 10 else f"{seconds}s ago"


def json_path(document, path: str):
    """The value at `path` in a record, shown compactly in a table cell."""
    import json

    from .services.jsonpaths import getter

    value = getter(path)(document)
    if value is None:
        return "—"
    return value if isinstance(value, (str, int, float)) else json.dumps(value, ensure_ascii=False)


def register_filters(app) -> None:
    app.add_template_filter(isoformat, "iso")
    app.add_template_filter(ago, "ago")
    app.add_template_filter(json_path, "json_path")
