"""Shared column helpers: prefixed ids, UTC timestamps, dialect-aware inserts."""

from __future__ import annotations

import secrets
from datetime import datetime

from sqlalchemy import DateTime, ForeignKey
from sqlalchemy.orm import Mapped, mapped_column

from ..extensions import db
from ..values.times import utcnow


def upsert_insert(table):
    """INSERT for `table` in the dialect in use, which both give ON CONFLICT (SQLite's and
    PostgreSQL's constructs differ only by module)."""
    from sqlalchemy.dialects import postgresql, sqlite

    return (postgresql if db.engine.dialect.name == "postgresql" else sqlite).insert(table)


def new_id(prefix: str) -> str:
    return f"{prefix}_{secrets.token_hex(16)}"


class EnvScoped:
    """Belongs to exactly one org and environment; every query filters on both."""

    org_id: Mapped[str] = mapped_column(ForeignKey("orgs.id", ondelete="CASCADE"), index=True)
    env_id: Mapped[str] = mapped_column(ForeignKey("environments.id", ondelete="CASCADE"), index=True)


class Timestamps:
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow, index=True)
    updated_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow, onupdate=utcnow)


__all__ = ["EnvScoped", "Timestamps", "db", "new_id", "upsert_insert"]


# SQLite's record word index (migration 0007, services/search_index.py) is SQL the ORM
# cannot declare: an FTS5 table and its shadow tables.
UNMODELLED = ("records_fts",)


def include_object_for(dialect_name: str):
    """Alembic `include_object`: skip schema objects declared for another database only
    (e.g. the PostgreSQL GIN index), so autogenerate and the drift test agree on both."""

    def include(obj, name, type_, reflected, compare_to):
        if reflected and compare_to is None and name and name.startswith(UNMODELLED):
            return False
        condition = getattr(obj, "_ddl_if", None)
        return not (condition is not None and condition.dialect and condition.dialect != dialect_name)

    return include
