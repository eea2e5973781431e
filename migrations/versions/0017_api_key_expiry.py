"""API keys can expire

An optional expiry set when a key is made; past it, the key answers 401 like a revoked
one and is listed with the keys that no longer work. Existing keys never expire.

Revision ID: 0017
Revises: 0014
"""
import sqlalchemy as sa
from alembic import op

revision = '0017'
down_revision = '0014'
branch_labels = None
depends_on = None


def upgrade():
    with op.batch_alter_table('api_keys', schema=None) as batch_op:
        batch_op.add_column(sa.Column('expires_at', sa.DateTime(timezone=True), nullable=True))


def downgrade():
    with op.batch_alter_table('api_keys', schema=None) as batch_op:
        batch_op.drop_column('expires_at')
