"""A configured connection to one source type (webhook, postgresql, ...)."""
from __future__ import annotations

from datetime import datetime

from sqlalchemy import JSON, DateTime, ForeignKey, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from .base import EnvScoped, Timestamps, db, new_id


class SourceConnection(EnvScoped, Timestamps, db.Model):
    __tablename__ = "source_connections"

    id: Mapped[str] = mapped_column(String(40), primary_key=True, default=lambda: new_id("sc"))
    short_name: Mapped[str] = mapped_column(String(40))
    name: Mapped[str] = mapped_column(String(120))
    status: Mapped[str] = mapped_column(String(20), default="pending")
    # Fernet token of the JSON credentials; never decrypted into a response.
    credentials_encrypted: Mapped[str | None] = mapped_column(Text)
    config: Mapped[dict] = mapped_column(JSON, default=dict)
    last_tested_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    last_test_message: Mapped[str | None] = mapped_column(Text)
    created_by_id: Mapped[str | None] = mapped_column(ForeignKey("users.id", ondelete="SET NULL"))
