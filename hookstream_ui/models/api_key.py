"""Environment-scoped API keys; only the SHA-256 of the key is stored."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import DateTime, ForeignKey, Integer, String
from sqlalchemy.orm import Mapped, mapped_column, relationship

from ..values.times import as_utc, utcnow
from .base import EnvScoped, Model, Timestamps, new_id
from .tenancy import Environment
from .user import User

# What a key may do inside its environment: a member's powers, or a viewer's (read only).
# Team and org administration needs a signed-in admin, never a key.
KEY_ROLES = ("member", "viewer")


class ApiKey(EnvScoped, Timestamps, Model):
    """A key acts for its owner (created_by), at most with its own role, and only while the
    owner is an active member of the key's org with at least that role."""

    __tablename__ = "api_keys"

    id: Mapped[str] = mapped_column(String(40), primary_key=True, default=lambda: new_id("key"))
    name: Mapped[str] = mapped_column(String(100))
    prefix: Mapped[str] = mapped_column(String(24))
    key_hash: Mapped[str] = mapped_column(String(64), unique=True)
    created_by_id: Mapped[str | None] = mapped_column(ForeignKey("users.id", ondelete="SET NULL"))
    last_used_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    request_count: Mapped[int] = mapped_column(Integer, default=0)
    revoked_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    role: Mapped[str] = mapped_column(String(20), default="member", server_default="member")
    revoked_reason: Mapped[str | None] = mapped_column(String(200))  # why it stopped working
    expires_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))  # None: never

    def expired(self, now: datetime) -> bool:
        return self.expires_at is not None and as_utc(self.expires_at) <= now

    @property
    def status(self) -> str:
        """active, revoked, or expired (a revoked key stays revoked past its expiry)."""
        if self.revoked_at is not None:
            return "revoked"
        return "expired" if self.expired(utcnow()) else "active"

    environment: Mapped[Environment] = relationship()
    created_by: Mapped[User | None] = relationship(lazy="joined")
