"""A record in a collection: one row per (collection, key)."""
from __future__ import annotations

from datetime import datetime

from sqlalchemy import JSON, DateTime, ForeignKey, String, UniqueConstraint
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.orm import Mapped, mapped_column

from .base import EnvScoped, Timestamps, db, new_id


class Record(EnvScoped, Timestamps, db.Model):
    __tablename__ = "records"
    __table_args__ = (UniqueConstraint("collection_id", "record_key"),)

    id: Mapped[str] = mapped_column(String(40), primary_key=True, default=lambda: new_id("rec"))
    collection_id: Mapped[str] = mapped_column(ForeignKey("collections.id", ondelete="CASCADE"), index=True)
    record_key: Mapped[str] = mapped_column(String(500))
    data: Mapped[dict] = mapped_column(JSON().with_variant(JSONB(), "postgresql"))
    event_type: Mapped[str | None] = mapped_column(String(200))
    source_event_id: Mapped[str | None] = mapped_column(String(200))
    source_event_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    # The run that last saw this key on a full read; rows a full read did not see are gone.
    seen_run_id: Mapped[str | None] = mapped_column(String(40))
