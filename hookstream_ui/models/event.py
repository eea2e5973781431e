"""A webhook delivery as received, with its verification, dedup and per-collection outcome."""
from __future__ import annotations

from datetime import datetime

from sqlalchemy import JSON, Boolean, DateTime, ForeignKey, Integer, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from .base import EnvScoped, Timestamps, db, new_id


class Event(EnvScoped, Timestamps, db.Model):
    __tablename__ = "events"

    id: Mapped[str] = mapped_column(String(40), primary_key=True, default=lambda: new_id("evt"))
    source_id: Mapped[str] = mapped_column(ForeignKey("source_connections.id", ondelete="CASCADE"), index=True)
    method: Mapped[str] = mapped_column(String(10))
    headers: Mapped[dict] = mapped_column(JSON, default=dict)
    query: Mapped[dict] = mapped_column(JSON, default=dict)
    body: Mapped[str | None] = mapped_column(Text)  # as received (UTF-8), or base64 when binary
    body_encoding: Mapped[str] = mapped_column(String(10), default="utf-8")
    content_type: Mapped[str | None] = mapped_column(String(200))
    size: Mapped[int] = mapped_column(Integer, default=0)
    source_ip: Mapped[str | None] = mapped_column(String(64))
    received_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), index=True)
    # verified | skipped (verification off) | failed
    verification: Mapped[str] = mapped_column(String(20))
    verification_error: Mapped[str | None] = mapped_column(String(300))
    dedup_key: Mapped[str | None] = mapped_column(String(200))
    duplicate: Mapped[bool] = mapped_column(Boolean, default=False)
    duplicate_of: Mapped[str | None] = mapped_column(String(40))
    # applied | not_json | duplicate | rejected | failed
    status: Mapped[str] = mapped_column(String(20), index=True)
    error: Mapped[str | None] = mapped_column(Text)
    outcomes: Mapped[dict] = mapped_column(JSON, default=dict)
