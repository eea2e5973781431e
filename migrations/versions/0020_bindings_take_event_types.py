"""A binding can take only some of its push source's event types

One webhook endpoint (Stripe's, above all) carries events of many kinds of object; a
`customers` collection takes the customer ones. None (every existing binding) takes all.

Revision ID: 0020
Revises: 0019
"""

import sqlalchemy as sa
from alembic import op

revision = "0020"
down_revision = "0019"
branch_labels = None
depends_on = None


def upgrade():
    with op.batch_alter_table("collection_sources", schema=None) as batch_op:
        batch_op.add_column(sa.Column("event_types", sa.JSON(), nullable=True))


def downgrade():
    with op.batch_alter_table("collection_sources", schema=None) as batch_op:
        batch_op.drop_column("event_types")
