"""A source's change feed position (a replication slot's LSN), and its lag

A source that streams changes (PostgreSQL with logical replication) reads every bound
table's changes from one position, committed with the records it applies. None: the
source reads no feed, or has not started one. The lag is what the slot last said of itself
(WAL kept, bytes behind), checked apart from any run.

Revision ID: 0021
Revises: 0020
"""

import sqlalchemy as sa
from alembic import op

revision = "0021"
down_revision = "0020"
branch_labels = None
depends_on = None


def upgrade():
    with op.batch_alter_table("source_connections", schema=None) as batch_op:
        batch_op.add_column(sa.Column("feed_position", sa.JSON(), nullable=True))
        batch_op.add_column(sa.Column("feed_lag", sa.JSON(), nullable=True))


def downgrade():
    # Not in batch mode: on SQLite that rebuilds the table, and dropping the old one would
    # cascade into every event of every source (SQLite 3.35 and later drop a column in place).
    op.drop_column("source_connections", "feed_lag")
    op.drop_column("source_connections", "feed_position")
