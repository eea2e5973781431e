"""One run of a source connection's sync: the row, not RQ's job, is the truth."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import JSON, DateTime, ForeignKey, Integer, String, Text
from sqlalchemy.orm import Mapped, mapped_column, relationship

from ..values.times import as_utc
from .base import EnvScoped, Model, Timestamps, new_id
from .source import SourceConnection

ACTIVE_STATUSES = ("pending", "running", "cancelling")
FINAL_STATUSES = ("completed", "failed", "cancelled")
TRIGGERS = ("manual", "schedule", "backfill", "upload")


class SyncRun(EnvScoped, Timestamps, Model):
    __tablename__ = "sync_runs"
    # The cursor's entry for a change feed's stream, beside each collection's checkpoint.
    FEED = "changes"
    # A streaming run's changes per second are counted over windows of about this long.
    RATE_WINDOW_SECONDS = 5.0

    id: Mapped[str] = mapped_column(String(40), primary_key=True, default=lambda: new_id("sync"))
    source_id: Mapped[str] = mapped_column(
        ForeignKey("source_connections.id", ondelete="CASCADE"), index=True
    )
    status: Mapped[str] = mapped_column(String(20), default="pending", index=True)
    trigger: Mapped[str] = mapped_column(String(20), default="manual")
    # full: read everything (and remove what is gone); incremental: only what changed.
    mode: Mapped[str] = mapped_column(String(20), default="incremental")
    records_inserted: Mapped[int] = mapped_column(Integer, default=0)
    records_updated: Mapped[int] = mapped_column(Integer, default=0)
    records_deleted: Mapped[int] = mapped_column(Integer, default=0)
    records_skipped: Mapped[int] = mapped_column(Integer, default=0)
    skip_reasons: Mapped[dict] = mapped_column(JSON, default=dict)
    progress: Mapped[int] = mapped_column(Integer, default=0)
    total: Mapped[int | None] = mapped_column(Integer)
    # Checkpoint: where each collection's read stands, committed with each batch.
    cursor: Mapped[dict] = mapped_column(JSON, default=dict)
    error: Mapped[str | None] = mapped_column(Text)
    attempt: Mapped[int] = mapped_column(Integer, default=0)
    file_id: Mapped[str | None] = mapped_column(ForeignKey("source_files.id", ondelete="SET NULL"))
    started_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    finished_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    heartbeat_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    # Who runs it now: a resumed run gets a new token, and a stale executor that wakes up
    # finds the token changed and stops before writing anything.
    claim_token: Mapped[str | None] = mapped_column(String(32))

    source: Mapped[SourceConnection] = relationship()

    @property
    def active(self) -> bool:
        return self.status in ACTIVE_STATUSES

    @property
    def final(self) -> bool:
        return self.status in FINAL_STATUSES

    @property
    def streaming(self) -> bool:
        """In its last step, streaming a change feed: every snapshot is in."""
        return bool(((self.cursor or {}).get(self.FEED) or {}).get("streaming_since"))

    @property
    def rebound(self) -> bool:
        """Its stream ended because the source's bindings changed."""
        return bool(((self.cursor or {}).get(self.FEED) or {}).get("rebound"))

    @property
    def seconds(self) -> float | None:
        """How long a finished run took."""
        if self.started_at is None or self.finished_at is None:
            return None
        return max((as_utc(self.finished_at) - as_utc(self.started_at)).total_seconds(), 0.0)
