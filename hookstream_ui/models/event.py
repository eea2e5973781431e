"""A webhook delivery as received, with its verification, dedup and per-collection outcome."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import JSON, Boolean, DateTime, ForeignKey, Index, Integer, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from ..values.times import utcnow
from .base import Model, Timestamps, new_id


class Event(Timestamps, Model):
    """Lists of events are newest first, a page at a time, in an environment or for a source
    (and by status): each has an index in that order, so a page never sorts the table. Every
    index is paid on every delivery, so there are no others but the time one the admin's
    daily counts read."""

    __tablename__ = "events"
    __table_args__ = (
        Index("ix_events_env_received", "env_id", "received_at", "id"),
        Index("ix_events_env_status_received", "env_id", "status", "received_at", "id"),
        Index("ix_events_source_received", "source_id", "received_at", "id"),
    )

    id: Mapped[str] = mapped_column(String(40), primary_key=True, default=lambda: new_id("evt"))
    # Events go with their source (whose deletion cascades here); org and environment are
    # copied from it for scoping, without foreign keys of their own to check on every insert.
    org_id: Mapped[str] = mapped_column(String(40))
    env_id: Mapped[str] = mapped_column(String(40))
    source_id: Mapped[str] = mapped_column(ForeignKey("source_connections.id", ondelete="CASCADE"))
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
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
    status: Mapped[str] = mapped_column(String(20))
    error: Mapped[str | None] = mapped_column(Text)
    outcomes: Mapped[dict] = mapped_column(JSON, default=dict)
    # What the sender called it (services/ingest.sender_facts); None when it did not say.
    event_type: Mapped[str | None] = mapped_column(String(200))
    sender_event_id: Mapped[str | None] = mapped_column(String(200))


class DedupClaim(Model):
    """A delivery's dedup key, held by the stored event that carried it until the window ends.
    Written in the transaction that stores that event, so a later delivery can only ever be a
    duplicate of an event that is stored."""

    __tablename__ = "dedup_claims"
    __table_args__ = (Index("ix_dedup_claims_expires_at", "expires_at"),)

    source_id: Mapped[str] = mapped_column(
        ForeignKey("source_connections.id", ondelete="CASCADE"), primary_key=True
    )
    key_hash: Mapped[str] = mapped_column(String(64), primary_key=True)
    event_id: Mapped[str] = mapped_column(String(40))
    expires_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))


class RecordEvent(Model):
    """Which stored event touched which record key of a collection, and when: the record page
    looks a record's history up by its key instead of reading event bodies. Rows whose event
    is gone (retention) no longer show, and the retention pass deletes them too."""

    __tablename__ = "record_events"
    __table_args__ = (Index("ix_record_events_received_at", "received_at"),)  # for the retention pass

    collection_id: Mapped[str] = mapped_column(
        ForeignKey("collections.id", ondelete="CASCADE"), primary_key=True
    )
    record_key: Mapped[str] = mapped_column(String(500), primary_key=True)
    received_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), primary_key=True)
    event_id: Mapped[str] = mapped_column(String(40), primary_key=True)
    result: Mapped[str] = mapped_column(String(20))
