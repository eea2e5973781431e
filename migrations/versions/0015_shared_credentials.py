"""Shared sync credentials

source_connections.credential_source_id: a sync created with `credential_id` (an existing
sync's credential, in the same project) uses that credential instead of a copy of it, so
rotating it reaches every sync using it.
No foreign key: on SQLite adding one rebuilds source_connections, and dropping the old
table under foreign_keys=ON would cascade into events and collections.

Revision ID: 0015
Revises: 0014
"""

import sqlalchemy as sa
from alembic import op

revision = "0015"
down_revision = "0014"
branch_labels = None
depends_on = None


def upgrade():
    op.add_column(
        "source_connections", sa.Column("credential_source_id", sa.String(length=40), nullable=True)
    )
    op.create_index(
        "ix_source_connections_credential_source_id",
        "source_connections",
        ["credential_source_id"],
        unique=False,
    )


def downgrade():
    op.drop_index("ix_source_connections_credential_source_id", table_name="source_connections")
    op.drop_column("source_connections", "credential_source_id")
