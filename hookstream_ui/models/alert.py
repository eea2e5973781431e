"""Alert rules and their incidents: a rule watches one kind of trouble in its project; an
incident is one occurrence of it for one subject (a source, a destination), opened and
notified once, resolved and notified once (services/alerts.py)."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import JSON, Boolean, DateTime, ForeignKey, Index, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from .base import EnvScoped, Model, Timestamps, new_id


class AlertRule(EnvScoped, Timestamps, Model):
    __tablename__ = "alert_rules"

    id: Mapped[str] = mapped_column(String(40), primary_key=True, default=lambda: new_id("alr"))
    name: Mapped[str] = mapped_column(String(120))
    kind: Mapped[str] = mapped_column(String(40))  # services/alerts.KINDS
    params: Mapped[dict] = mapped_column(JSON, default=dict)  # a threshold, by kind
    channel: Mapped[str] = mapped_column(String(20))  # webhook | email
    target: Mapped[str] = mapped_column(String(2000))  # the URL, or the address
    # Fernet token of the webhook channel's signing secret; never in a response after creation.
    secrets_encrypted: Mapped[str | None] = mapped_column(Text)
    enabled: Mapped[bool] = mapped_column(Boolean, default=True)
    created_by_id: Mapped[str | None] = mapped_column(ForeignKey("users.id", ondelete="SET NULL"))


class AlertIncident(EnvScoped, Model):
    __tablename__ = "alert_incidents"
    __table_args__ = (Index("ix_alert_incidents_rule_open", "rule_id", "subject_id", "resolved_at"),)

    id: Mapped[str] = mapped_column(String(40), primary_key=True, default=lambda: new_id("inc"))
    rule_id: Mapped[str] = mapped_column(ForeignKey("alert_rules.id", ondelete="CASCADE"))
    subject_id: Mapped[str] = mapped_column(String(40))
    subject_name: Mapped[str] = mapped_column(String(200))
    message: Mapped[str] = mapped_column(Text)
    opened_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    resolved_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    notified_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    resolved_notified_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    notify_error: Mapped[str | None] = mapped_column(Text)
