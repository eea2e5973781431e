"""Dedup claims and record history in the database

dedup_claims: a delivery's dedup key, held by its stored event until the window ends. The
claim was taken in Redis before the event was stored and never released, so a sender's
retry after a failed answer was called a duplicate of an event that did not exist, and
lost. It is now written in the transaction that stores the event.

record_events: which event touched which record key, so the record page finds a record's
events by key (it parsed the bodies of the source's 500 newest events per view).

Revision ID: 0014
Revises: 0013
"""

import sqlalchemy as sa
from alembic import op

revision = "0014"
down_revision = "0013"
branch_labels = None
depends_on = None


def upgrade():
    op.create_table(
        "dedup_claims",
        sa.Column("source_id", sa.String(length=40), nullable=False),
        sa.Column("key_hash", sa.String(length=64), nullable=False),
        sa.Column("event_id", sa.String(length=40), nullable=False),
        sa.Column("expires_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["source_id"],
            ["source_connections.id"],
            name=op.f("fk_dedup_claims_source_id_source_connections"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("source_id", "key_hash", name=op.f("pk_dedup_claims")),
    )
    with op.batch_alter_table("dedup_claims", schema=None) as batch_op:
        batch_op.create_index("ix_dedup_claims_expires_at", ["expires_at"], unique=False)
    op.create_table(
        "record_events",
        sa.Column("collection_id", sa.String(length=40), nullable=False),
        sa.Column("record_key", sa.String(length=500), nullable=False),
        sa.Column("received_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("event_id", sa.String(length=40), nullable=False),
        sa.Column("result", sa.String(length=20), nullable=False),
        sa.ForeignKeyConstraint(
            ["collection_id"],
            ["collections.id"],
            name=op.f("fk_record_events_collection_id_collections"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint(
            "collection_id", "record_key", "received_at", "event_id", name=op.f("pk_record_events")
        ),
    )
    with op.batch_alter_table("record_events", schema=None) as batch_op:
        batch_op.create_index("ix_record_events_received_at", ["received_at"], unique=False)


def downgrade():
    op.drop_table("record_events")
    op.drop_table("dedup_claims")
