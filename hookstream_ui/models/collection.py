"""A queryable table of records keyed by a JSONPath primary key."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import (
    JSON,
    BigInteger,
    Connection,
    DateTime,
    ForeignKey,
    Index,
    Integer,
    String,
    Text,
    UniqueConstraint,
    event,
    inspect,
)
from sqlalchemy.orm import Mapped, Mapper, mapped_column, relationship
from sqlalchemy.orm.attributes import flag_modified

from .base import EnvScoped, Model, Timestamps, new_id
from .binding import Binding
from .source import SourceConnection
from .user import User

STATUSES = ("NEEDS_SOURCE", "ACTIVE", "PARTIAL_ERROR", "SYNCING", "PAUSED", "ERROR")


class Collection(EnvScoped, Timestamps, Model):
    __tablename__ = "collections"
    __table_args__ = (
        UniqueConstraint("env_id", "slug"),
        # Lists read it in list order, newest first: without it each page sorted every
        # collection of its environment (5x the query's time at 3,000).
        Index("ix_collections_env_created", "env_id", "created_at", "id"),
    )

    id: Mapped[str] = mapped_column(String(40), primary_key=True, default=lambda: new_id("col"))
    name: Mapped[str] = mapped_column(String(64))
    slug: Mapped[str] = mapped_column(String(80))
    # The first source bound (the seeds' one source), kept by services/bindings.py; every
    # source bound, with how its records map in, is in `bindings`.
    source_id: Mapped[str | None] = mapped_column(
        ForeignKey("source_connections.id", ondelete="SET NULL"), index=True
    )
    primary_key_path: Mapped[str] = mapped_column(String(500))
    timestamp_path: Mapped[str | None] = mapped_column(String(500))
    event_type_field: Mapped[str | None] = mapped_column(String(500))
    # Event types that delete the record, besides the built-in ones (`*.deleted`, `delete`…).
    delete_event_types: Mapped[list | None] = mapped_column(JSON)
    description: Mapped[str | None] = mapped_column(Text)
    status: Mapped[str] = mapped_column(String(20), default="NEEDS_SOURCE")
    record_count: Mapped[int] = mapped_column(Integer, default=0)
    # The change feed (models/record.py RecordChange): the last number given, and the last
    # one pruned (every change up to it is gone).
    change_seq: Mapped[int] = mapped_column(BigInteger, default=0, server_default="0")
    changes_pruned_seq: Mapped[int] = mapped_column(BigInteger, default=0, server_default="0")
    # The word index (services/search_index.py): "on", "off", or "building" (records are
    # written to it, but searches scan until the job that indexes the older ones is done).
    search_index: Mapped[str] = mapped_column(String(10), default="on", server_default="on")
    last_sync_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    backfill_status: Mapped[str | None] = mapped_column(String(20))
    backfill_progress: Mapped[int | None] = mapped_column(Integer)
    backfill_total: Mapped[int | None] = mapped_column(Integer)
    backfill_cursor: Mapped[str | None] = mapped_column(Text)
    backfill_started_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    backfill_completed_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    backfill_error: Mapped[str | None] = mapped_column(Text)
    # Each source's part of the backfill (services/backfills.py): {source id: part}.
    backfill_sources: Mapped[dict | None] = mapped_column(JSON)
    created_by_id: Mapped[str | None] = mapped_column(ForeignKey("users.id", ondelete="SET NULL"))
    modified_by_id: Mapped[str | None] = mapped_column(ForeignKey("users.id", ondelete="SET NULL"))

    source: Mapped[SourceConnection | None] = relationship(lazy="joined")
    created_by: Mapped[User | None] = relationship(foreign_keys=[created_by_id], lazy="joined")
    modified_by: Mapped[User | None] = relationship(foreign_keys=[modified_by_id], lazy="joined")
    bindings: Mapped[list[Binding]] = relationship(
        back_populates="collection",
        order_by=Binding.position,
        cascade="all, delete-orphan",
        passive_deletes=True,
        lazy="selectin",
    )

    @property
    def stream(self) -> str | None:
        """The first source's stream (the seeds' `stream`)."""
        return self.bindings[0].stream if self.bindings else None


# What a run or a delivery writes, not what a person set: `updated_at` is the settings'
# modified time (the Settings card's "Modified", the API's updated_at), so these alone keep it.
RUN_STATE = frozenset({"record_count", "last_sync_at", "status", "change_seq", "changes_pruned_seq"})


@event.listens_for(Collection, "before_update")
def _keep_modified_time_for_run_state(
    mapper: Mapper[Collection], connection: Connection, target: Collection
) -> None:
    state = inspect(target)
    changed = {a.key for a in state.attrs if a.history.has_changes()}
    if changed and changed <= RUN_STATE and "updated_at" in state.dict:
        flag_modified(target, "updated_at")  # written as it was, so onupdate does not move it
