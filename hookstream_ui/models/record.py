"""A record in a collection: one row per (collection, key)."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import JSON, BigInteger, DateTime, ForeignKey, Index, String, Text, UniqueConstraint, text
from sqlalchemy.dialects.postgresql import JSONB, TSVECTOR
from sqlalchemy.orm import Mapped, mapped_column

from ..values.times import utcnow
from .base import Model, Timestamps, new_id


class Record(Timestamps, Model):
    """Every index here is paid on every write of every record, so there are only the ones
    a query needs (measured: the backfill and ingest benchmarks)."""

    __tablename__ = "records"
    __table_args__ = (
        UniqueConstraint("collection_id", "record_key"),
        # The records browser and API list newest first, a page at a time.
        Index("ix_records_collection_updated", "collection_id", "updated_at", "id"),
        Index("ix_records_collection_event_type", "collection_id", "event_type"),
        # PostgreSQL: field filters are JSONB containment, which this index answers.
        Index(
            "ix_records_data_gin", "data", postgresql_using="gin", postgresql_ops={"data": "jsonb_path_ops"}
        ).ddl_if(dialect="postgresql"),
        # PostgreSQL: search (services/search_index.py). SQLite keeps its words in records_fts.
        # Partial: records of collections with the index off (NULL words) cost it nothing.
        Index(
            "ix_records_search",
            "search_words",
            postgresql_using="gin",
            postgresql_where=text("search_words IS NOT NULL"),
        ).ddl_if(dialect="postgresql"),
    )

    id: Mapped[str] = mapped_column(String(40), primary_key=True, default=lambda: new_id("rec"))
    # Records are reached and deleted through their collection (whose deletion cascades
    # here); org and environment are copied from it for scoping, without foreign keys or
    # indexes of their own: both would be checked and updated on every write.
    org_id: Mapped[str] = mapped_column(String(40))
    env_id: Mapped[str] = mapped_column(String(40))
    # Leftmost column of the (collection_id, record_key) unique index, which serves it.
    collection_id: Mapped[str] = mapped_column(ForeignKey("collections.id", ondelete="CASCADE"))
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    record_key: Mapped[str] = mapped_column(String(500))
    data: Mapped[dict] = mapped_column(JSON().with_variant(JSONB(), "postgresql"))
    event_type: Mapped[str | None] = mapped_column(String(200))
    source_event_id: Mapped[str | None] = mapped_column(String(200))
    source_event_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    # Who wrote the current version: the source, and its run (a pull) or source_event_id
    # (an event). A source's full read removes only what that source wrote.
    source_id: Mapped[str | None] = mapped_column(String(40))
    sync_run_id: Mapped[str | None] = mapped_column(String(40))
    # The run that last saw this key on a full read; rows a full read did not see are gone.
    seen_run_id: Mapped[str | None] = mapped_column(String(40))
    # PostgreSQL: the record's words, written by the upsert engine, never read back.
    search_words: Mapped[str | None] = mapped_column(
        Text().with_variant(TSVECTOR(), "postgresql"), deferred=True
    )


class RecordDeletion(Model):
    """A key some source deleted, and the time of its deletion: a version older than that,
    arriving later (an event retried, a pull that read before the delete), would otherwise
    bring the record back, as though it had never been deleted. Kept 30 days (services/retention.py)."""

    __tablename__ = "record_deletions"
    __table_args__ = (Index("ix_record_deletions_deleted_at", "deleted_at"),)  # for the retention pass

    collection_id: Mapped[str] = mapped_column(
        ForeignKey("collections.id", ondelete="CASCADE"), primary_key=True
    )
    record_key: Mapped[str] = mapped_column(String(500), primary_key=True)
    deleted_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))


class RecordChange(Model):
    """One change a collection's records went through (an insert, an update, a delete),
    numbered per collection in the transaction that made it (services/changes.py): the
    collection's change feed, which destinations and `/changes` readers follow. Kept for
    CHANGES_RETENTION_HOURS."""

    __tablename__ = "record_changes"
    # SQLite: one b-tree, the key's, not a rowid table beside it (a fifth of a backfill's
    # write cost, measured).
    __table_args__ = ({"sqlite_with_rowid": False},)

    collection_id: Mapped[str] = mapped_column(
        ForeignKey("collections.id", ondelete="CASCADE"), primary_key=True
    )
    seq: Mapped[int] = mapped_column(BigInteger, primary_key=True, autoincrement=False)
    org_id: Mapped[str] = mapped_column(String(40))
    env_id: Mapped[str] = mapped_column(String(40))
    op: Mapped[str] = mapped_column(String(10))  # insert | update | delete
    record_key: Mapped[str] = mapped_column(String(500))
    data: Mapped[str | None] = mapped_column(Text)  # the record's JSON as written; None: a delete
    event_type: Mapped[str | None] = mapped_column(String(200))
    event_id: Mapped[str | None] = mapped_column(String(200))
    run_id: Mapped[str | None] = mapped_column(String(40))
    source_id: Mapped[str | None] = mapped_column(String(40))
    changed_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
