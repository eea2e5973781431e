"""An event's type and the sender's own id for it

events.event_type and events.sender_event_id: read from the delivery when it is received
(the sender's headers, or an event envelope's `type` and `id`), so the events list shows
what was sent, not only hookstream's internal ids. Older events have neither.

Revision ID: 0016
Revises: 0015
"""

import sqlalchemy as sa
from alembic import op

revision = "0016"
down_revision = "0015"
branch_labels = None
depends_on = None


def upgrade():
    with op.batch_alter_table("events") as batch_op:
        batch_op.add_column(sa.Column("event_type", sa.String(length=200), nullable=True))
        batch_op.add_column(sa.Column("sender_event_id", sa.String(length=200), nullable=True))


def downgrade():
    with op.batch_alter_table("events") as batch_op:
        batch_op.drop_column("sender_event_id")
        batch_op.drop_column("event_type")
