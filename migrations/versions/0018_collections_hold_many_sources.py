"""A collection holds any number of sources, each with how its records map in

`collection_sources` binds a source to a collection with its own stream, record path, key
path, timestamp path, event type field and delete types (None: the collection's own), and
its incremental position, which moves here from the collection. Every collection fed by a
source gets one binding with that source's stream and position, so it reads and writes as
before. Records say which source and run wrote their current version; existing ones were
all written by their collection's one source.

Revision ID: 0018
Revises: 0017
"""

import sqlalchemy as sa
from alembic import op

revision = "0018"
down_revision = "0017"
branch_labels = None
depends_on = None


def upgrade():
    op.create_table(
        "collection_sources",
        sa.Column("id", sa.String(length=40), nullable=False),
        sa.Column("org_id", sa.String(length=40), nullable=False),
        sa.Column("env_id", sa.String(length=40), nullable=False),
        sa.Column("collection_id", sa.String(length=40), nullable=False),
        sa.Column("source_id", sa.String(length=40), nullable=False),
        sa.Column("position", sa.Integer(), nullable=False),
        sa.Column("stream", sa.String(length=200), nullable=True),
        sa.Column("record_path", sa.String(length=500), nullable=True),
        sa.Column("primary_key_path", sa.String(length=500), nullable=True),
        sa.Column("timestamp_path", sa.String(length=500), nullable=True),
        sa.Column("event_type_field", sa.String(length=500), nullable=True),
        sa.Column("delete_event_types", sa.JSON(), nullable=True),
        sa.Column("sync_state", sa.JSON(), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["collection_id"],
            ["collections.id"],
            name=op.f("fk_collection_sources_collection_id_collections"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["source_id"],
            ["source_connections.id"],
            name=op.f("fk_collection_sources_source_id_source_connections"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_collection_sources")),
        sa.UniqueConstraint("collection_id", "source_id", name=op.f("uq_collection_sources_collection_id")),
    )
    op.create_index(
        op.f("ix_collection_sources_source_id"), "collection_sources", ["source_id"], unique=False
    )
    # One binding per fed collection, id derived from the collection's (unique, stable).
    op.execute(
        "INSERT INTO collection_sources (id, org_id, env_id, collection_id, source_id, position, "
        "stream, sync_state, created_at) "
        "SELECT 'bind_' || substr(id, 5), org_id, env_id, id, source_id, 0, stream, sync_state, "
        "created_at FROM collections WHERE source_id IS NOT NULL"
    )
    # Plain columns: both databases drop them in place (SQLite since 3.35), with no rebuild
    # of the table (whose DROP would cascade into records on SQLite).
    op.execute("ALTER TABLE collections DROP COLUMN stream")
    op.execute("ALTER TABLE collections DROP COLUMN sync_state")
    op.add_column("collections", sa.Column("backfill_sources", sa.JSON(), nullable=True))
    op.add_column("records", sa.Column("source_id", sa.String(length=40), nullable=True))
    op.add_column("records", sa.Column("sync_run_id", sa.String(length=40), nullable=True))
    op.execute(
        "UPDATE records SET source_id = (SELECT source_id FROM collections "
        "WHERE collections.id = records.collection_id)"
    )


def downgrade():
    op.drop_column("records", "sync_run_id")
    op.drop_column("records", "source_id")
    op.drop_column("collections", "backfill_sources")
    op.add_column("collections", sa.Column("sync_state", sa.JSON(), nullable=True))
    op.add_column("collections", sa.Column("stream", sa.String(length=200), nullable=True))
    op.execute(
        "UPDATE collections SET stream = (SELECT stream FROM collection_sources b "
        "WHERE b.collection_id = collections.id AND b.source_id = collections.source_id), "
        "sync_state = (SELECT sync_state FROM collection_sources b "
        "WHERE b.collection_id = collections.id AND b.source_id = collections.source_id)"
    )
    op.drop_index(op.f("ix_collection_sources_source_id"), table_name="collection_sources")
    op.drop_table("collection_sources")
