"""Shared column helpers: prefixed ids, UTC timestamps, dialect-aware inserts."""

from __future__ import annotations

import secrets
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, cast

from sqlalchemy import CursorResult, DateTime, Executable, ForeignKey
from sqlalchemy.orm import Mapped, mapped_column

from ..extensions import Base, db
from ..values.times import utcnow

if TYPE_CHECKING:
    from collections.abc import Callable
    from typing import ClassVar

    from sqlalchemy import Table
    from sqlalchemy.dialects import postgresql, sqlite
    from sqlalchemy.sql.expression import TableClause

    class Model(Base):
        """db.Model as mypy sees it. mypy cannot take an attribute (db.Model) as a base
        class; db.Model is this Base with Flask-SQLAlchemy's table-name and bind mixins and
        its `query` property, which nothing here uses (Event has a column named query)."""

        __abstract__ = True
        __table__: ClassVar[Table]  # each model maps one Table (Base says FromClause)
else:
    Model = db.Model


def upsert_insert(table: TableClause) -> postgresql.Insert | sqlite.Insert:
    """INSERT for `table` in the dialect in use, which both give ON CONFLICT (SQLite's and
    PostgreSQL's constructs differ only by module)."""
    from sqlalchemy.dialects import postgresql, sqlite

    return (postgresql if db.engine.dialect.name == "postgresql" else sqlite).insert(table)


def rows_changed(statement: Executable) -> int:
    """Run an INSERT, UPDATE or DELETE in the session; how many rows it changed. Executing
    DML gives a CursorResult, which Session.execute types as a plain Result."""
    return cast(CursorResult[Any], db.session.execute(statement)).rowcount


def new_id(prefix: str) -> str:
    return f"{prefix}_{secrets.token_hex(16)}"


class EnvScoped:
    """Belongs to exactly one org and environment; every query filters on both."""

    org_id: Mapped[str] = mapped_column(ForeignKey("orgs.id", ondelete="CASCADE"), index=True)
    env_id: Mapped[str] = mapped_column(ForeignKey("environments.id", ondelete="CASCADE"), index=True)


class Timestamps:
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow, index=True)
    updated_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow, onupdate=utcnow)


__all__ = ["EnvScoped", "Model", "Timestamps", "db", "new_id", "rows_changed", "upsert_insert"]


# SQLite's record word index (migration 0007, services/search_index.py) is SQL the ORM
# cannot declare: an FTS5 table and its shadow tables.
UNMODELLED = ("records_fts",)


def include_object_for(dialect_name: str) -> Callable[..., bool]:
    """Alembic `include_object`: skip schema objects declared for another database only
    (e.g. the PostgreSQL GIN index), so autogenerate and the drift test agree on both."""

    def include(obj: object, name: str | None, type_: str, reflected: bool, compare_to: object) -> bool:
        if reflected and compare_to is None and name and name.startswith(UNMODELLED):
            return False
        condition = getattr(obj, "_ddl_if", None)
        return not (condition is not None and condition.dialect and condition.dialect != dialect_name)

    return include


def sqlite_time(value: datetime) -> str:
    # SQLAlchemy's own SQLite DATETIME storage format (naive UTC, always with microseconds),
    # so its reads and string comparisons still work. One isoformat call, its UTC offset cut
    # off, is a third of what replace() and isoformat's keywords cost (per row written).
    if value.utcoffset():
        value = value.astimezone(UTC)
    return value.isoformat(" ", "microseconds")[:26]
