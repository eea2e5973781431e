"""collections are listed through an index in list order: (environment, created_at, id)

Revision ID: 0025
Revises: 0024
"""

from alembic import op

revision = "0025"
down_revision = "0024"
branch_labels = None
depends_on = None


def upgrade():
    op.create_index("ix_collections_env_created", "collections", ["env_id", "created_at", "id"])


def downgrade():
    op.drop_index("ix_collections_env_created", table_name="collections")
