"""A source connection bound to a collection, and how that source's records map into it."""

from __future__ import annotations

from datetime import datetime
from typing import TYPE_CHECKING

from sqlalchemy import JSON, DateTime, ForeignKey, Integer, String, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column, relationship

from ..values.times import utcnow
from .base import Model, new_id
from .source import SourceConnection

if TYPE_CHECKING:
    from .collection import Collection


class Binding(Model):
    """Each path is optional: None takes the collection's own. The key path is read in the
    record (what `record_path` finds in the item: a Stripe event's object); the timestamp
    path and event type field in the item as the source gave it (the event), where an
    event's own time and type are."""

    __tablename__ = "collection_sources"
    __table_args__ = (UniqueConstraint("collection_id", "source_id"),)

    id: Mapped[str] = mapped_column(String(40), primary_key=True, default=lambda: new_id("bind"))
    # Copied from the collection for scoping, as records do: no foreign keys of their own.
    org_id: Mapped[str] = mapped_column(String(40))
    env_id: Mapped[str] = mapped_column(String(40))
    collection_id: Mapped[str] = mapped_column(ForeignKey("collections.id", ondelete="CASCADE"))
    source_id: Mapped[str] = mapped_column(
        ForeignKey("source_connections.id", ondelete="CASCADE"), index=True
    )
    # Order bound: the first is the collection's source_id (the seeds' single source).
    position: Mapped[int] = mapped_column(Integer, default=0)
    stream: Mapped[str | None] = mapped_column(String(200))
    record_path: Mapped[str | None] = mapped_column(String(500))
    primary_key_path: Mapped[str | None] = mapped_column(String(500))
    timestamp_path: Mapped[str | None] = mapped_column(String(500))
    event_type_field: Mapped[str | None] = mapped_column(String(500))
    delete_event_types: Mapped[list | None] = mapped_column(JSON)
    # A push source's events this binding takes, by type ("customer.*": each type under it);
    # None takes every one. One webhook endpoint often carries many kinds of object.
    event_types: Mapped[list | None] = mapped_column(JSON)
    # Incremental position of this source's read into the collection (e.g. max updated_at).
    sync_state: Mapped[dict | None] = mapped_column(JSON)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)

    source: Mapped[SourceConnection] = relationship(lazy="joined")
    collection: Mapped[Collection] = relationship(back_populates="bindings")
