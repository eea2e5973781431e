"""Times as hookstream keeps them: aware, in UTC, written as ISO 8601 with milliseconds and Z."""

from __future__ import annotations

from datetime import UTC, datetime


def utcnow() -> datetime:
    return datetime.now(UTC)


def as_utc(value: datetime | None) -> datetime | None:
    # SQLite hands timestamps back naive; they were written as UTC.
    if value is None:
        return None
    return value if value.tzinfo else value.replace(tzinfo=UTC)


def isoformat(value: datetime | None) -> str | None:
    value = as_utc(value)
    if value is None:
        return None
    return value.astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")
