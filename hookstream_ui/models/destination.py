"""Where a project's collections flow on to: a destination subscribes to collections' change
feeds and receives their changes (sync/deliver.py), each attempt logged."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import JSON, BigInteger, DateTime, ForeignKey, Index, Integer, String, Text, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column, relationship

from .base import EnvScoped, Model, Timestamps, new_id
from .collection import Collection


class Destination(EnvScoped, Timestamps, Model):
    __tablename__ = "destinations"

    id: Mapped[str] = mapped_column(String(40), primary_key=True, default=lambda: new_id("dst"))
    name: Mapped[str] = mapped_column(String(120))
    kind: Mapped[str] = mapped_column(String(40))  # a registered destination type (destinations/)
    status: Mapped[str] = mapped_column(String(20), default="active")  # active | paused
    config: Mapped[dict] = mapped_column(JSON, default=dict)
    # Fernet token of the JSON secrets (a signing secret, a password); never in a response.
    secrets_encrypted: Mapped[str | None] = mapped_column(Text)
    # Which changes it takes: {"ops": [...], "event_types": [...], "where": [{path, op, value}]}.
    filters: Mapped[dict | None] = mapped_column(JSON)
    # The circuit breaker: failures in a row, and until when nothing is sent but a probe.
    consecutive_failures: Mapped[int] = mapped_column(Integer, default=0)
    open_until: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    opened_count: Mapped[int] = mapped_column(Integer, default=0)  # for the probe's backoff
    last_error: Mapped[str | None] = mapped_column(Text)
    last_delivered_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    created_by_id: Mapped[str | None] = mapped_column(ForeignKey("users.id", ondelete="SET NULL"))

    subscriptions: Mapped[list[Subscription]] = relationship(
        back_populates="destination", cascade="all, delete-orphan", order_by="Subscription.collection_id"
    )


class Subscription(Model):
    """A destination's place in one collection's change feed: every change up to `after` is
    settled (delivered, filtered out, or held as a Delivery to retry or dead)."""

    __tablename__ = "destination_subscriptions"

    destination_id: Mapped[str] = mapped_column(
        ForeignKey("destinations.id", ondelete="CASCADE"), primary_key=True
    )
    collection_id: Mapped[str] = mapped_column(
        ForeignKey("collections.id", ondelete="CASCADE"), primary_key=True
    )
    after: Mapped[int] = mapped_column(BigInteger, default=0)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))

    destination: Mapped[Destination] = relationship(back_populates="subscriptions")
    collection: Mapped[Collection] = relationship(lazy="joined")


class Delivery(Model):
    """A change not delivered at its first attempt (or waiting behind one of its key that was
    not): retried on the schedule, then dead until retried by hand."""

    __tablename__ = "deliveries"
    __table_args__ = (
        Index("ix_deliveries_due", "destination_id", "status", "next_attempt_at"),
        Index("ix_deliveries_key", "destination_id", "collection_id", "record_key", "seq"),
        UniqueConstraint("destination_id", "collection_id", "seq", name="uq_deliveries_change"),
    )

    id: Mapped[str] = mapped_column(String(40), primary_key=True, default=lambda: new_id("dlv"))
    destination_id: Mapped[str] = mapped_column(ForeignKey("destinations.id", ondelete="CASCADE"))
    collection_id: Mapped[str] = mapped_column(ForeignKey("collections.id", ondelete="CASCADE"))
    seq: Mapped[int] = mapped_column(BigInteger)
    record_key: Mapped[str] = mapped_column(String(500))
    status: Mapped[str] = mapped_column(String(20))  # retrying | waiting | dead | delivered
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    next_attempt_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    last_error: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    updated_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))


class DeliveryAttempt(Model):
    """One try at sending one change: the request as sent (secrets masked, body bounded) and
    what came back."""

    __tablename__ = "delivery_attempts"
    __table_args__ = (
        Index("ix_delivery_attempts_destination", "destination_id", "id"),
        Index("ix_delivery_attempts_at", "at"),  # for the retention pass
    )

    id: Mapped[int] = mapped_column(
        BigInteger().with_variant(Integer, "sqlite"), primary_key=True, autoincrement=True
    )
    destination_id: Mapped[str] = mapped_column(ForeignKey("destinations.id", ondelete="CASCADE"))
    collection_id: Mapped[str] = mapped_column(String(40))
    seq: Mapped[int] = mapped_column(BigInteger)
    record_key: Mapped[str] = mapped_column(String(500))
    attempt: Mapped[int] = mapped_column(Integer)
    ok: Mapped[bool] = mapped_column()
    status_code: Mapped[int | None] = mapped_column(Integer)
    error: Mapped[str | None] = mapped_column(Text)
    request: Mapped[dict] = mapped_column(JSON)  # {"url", "headers", "body"} as sent, masked and bounded
    response: Mapped[dict | None] = mapped_column(JSON)  # {"headers", "body"}, bounded
    duration_ms: Mapped[int] = mapped_column(Integer)
    at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
