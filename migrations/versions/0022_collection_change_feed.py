"""Every collection's change feed: each insert, update and delete of its records, numbered

The upsert engine writes a change row in the transaction that changes the record, with the
next number of the collection's own sequence (collections.change_seq, allocated under the
collection row's lock, so numbers commit in order). Readers follow it by number
(`/v1/collections/<id>/changes?after=`); a pass prunes changes past their retention and
moves changes_pruned_seq, so a reader asking for a pruned one is told so.

Revision ID: 0022
Revises: 0021
"""

import sqlalchemy as sa
from alembic import op

revision = "0022"
down_revision = "0021"
branch_labels = None
depends_on = None


def upgrade():
    op.create_table(
        "record_changes",
        sa.Column("collection_id", sa.String(length=40), nullable=False),
        sa.Column("seq", sa.BigInteger(), autoincrement=False, nullable=False),
        sa.Column("org_id", sa.String(length=40), nullable=False),
        sa.Column("env_id", sa.String(length=40), nullable=False),
        sa.Column("op", sa.String(length=10), nullable=False),
        sa.Column("record_key", sa.String(length=500), nullable=False),
        sa.Column("data", sa.Text(), nullable=True),
        sa.Column("event_type", sa.String(length=200), nullable=True),
        sa.Column("event_id", sa.String(length=200), nullable=True),
        sa.Column("run_id", sa.String(length=40), nullable=True),
        sa.Column("source_id", sa.String(length=40), nullable=True),
        sa.Column("changed_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(["collection_id"], ["collections.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("collection_id", "seq"),
        sqlite_with_rowid=False,  # one b-tree, the key's: a row per change written
    )
    with op.batch_alter_table("collections", schema=None) as batch_op:
        batch_op.add_column(sa.Column("change_seq", sa.BigInteger(), server_default="0", nullable=False))
        batch_op.add_column(
            sa.Column("changes_pruned_seq", sa.BigInteger(), server_default="0", nullable=False)
        )


def downgrade():
    # Not in batch mode: on SQLite that rebuilds the table, and dropping the old one would
    # cascade into every record (SQLite 3.35 and later drop a column in place).
    op.drop_column("collections", "changes_pruned_seq")
    op.drop_column("collections", "change_seq")
    op.drop_table("record_changes")
