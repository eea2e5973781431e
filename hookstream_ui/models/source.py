"""A configured connection to one source type (webhook, postgresql, ...)."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import JSON, DateTime, ForeignKey, Integer, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from .base import EnvScoped, Model, Timestamps, new_id


class SourceConnection(EnvScoped, Timestamps, Model):
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

    # Schedule and health: what /v1/syncs shows and sets of a connection.
    sync_status: Mapped[str] = mapped_column(String(20), default="active")
    sync_frequency: Mapped[str | None] = mapped_column(String(20))
    rate_limit: Mapped[dict | None] = mapped_column(JSON)
    max_age_days: Mapped[int | None] = mapped_column(Integer)
    next_run_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), index=True)
    health_status: Mapped[str] = mapped_column(String(20), default="healthy")
    last_error: Mapped[str | None] = mapped_column(Text)
    last_success_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    consecutive_failures: Mapped[int] = mapped_column(Integer, default=0)
    initial_backfill_completed_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    sync_metadata: Mapped[dict | None] = mapped_column(JSON)
    external_id: Mapped[str | None] = mapped_column(String(200))
    stream_id: Mapped[str | None] = mapped_column(String(200))
    # Non-secret parts of a /v1/syncs credential (kind, name, test, oauth_app_id, metadata).
    credential_meta: Mapped[dict | None] = mapped_column(JSON)
    # A /v1/syncs credential given by `credential_id` is shared, not copied: this names the
    # connection that holds it (None: the connection holds its own), so rotating it once
    # reaches every connection that uses it. No foreign key: adding one on SQLite rebuilds
    # this table, and its DROP cascades into events; delete_source hands the credential on.
    credential_source_id: Mapped[str | None] = mapped_column(String(40), index=True)
    # Where the source's change feed is (a replication slot's LSN), committed with the
    # records applied from it; None without a feed.
    feed_position: Mapped[dict | None] = mapped_column(JSON)
    # What the feed's slot last said of itself (services/feeds.py), apart from any run.
    feed_lag: Mapped[dict | None] = mapped_column(JSON)
    # collection_ids as the caller wrote them (e.g. "stripe:customer"), in order.
    collection_refs: Mapped[list | None] = mapped_column(JSON)
