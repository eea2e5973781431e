"""Remember deleted keys, so an older version arriving later does not bring one back

With several sources feeding one collection, a delete from one (customer.deleted) can be
followed by an older version from another (a pull that read before the delete, a retried
event). Each deleted key keeps its deletion's time; a version older than it is skipped.

Revision ID: 0019
Revises: 0018
"""

import sqlalchemy as sa
from alembic import op

revision = "0019"
down_revision = "0018"
branch_labels = None
depends_on = None


def upgrade():
    op.create_table(
        "record_deletions",
        sa.Column("collection_id", sa.String(length=40), nullable=False),
        sa.Column("record_key", sa.String(length=500), nullable=False),
        sa.Column("deleted_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(["collection_id"], ["collections.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("collection_id", "record_key"),
    )
    op.create_index("ix_record_deletions_deleted_at", "record_deletions", ["deleted_at"])


def downgrade():
    op.drop_index("ix_record_deletions_deleted_at", table_name="record_deletions")
    op.drop_table("record_deletions")
