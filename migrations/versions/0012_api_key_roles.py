"""API keys carry a role (member or viewer) and the reason they stopped working

A key acts for its owner inside its environment, never beyond the owner's own role; it ends
when the owner is removed, demoted below it or disabled. Existing keys become member keys:
every admin-only endpoint (team, invitations, projects, audit log) now needs a signed-in
admin, so a key's admin role had nothing left that a member cannot do.

Revision ID: 0012
Revises: 0011
"""

import sqlalchemy as sa
from alembic import op

revision = "0012"
down_revision = "0011"
branch_labels = None
depends_on = None


def upgrade():
    with op.batch_alter_table("api_keys", schema=None) as batch_op:
        batch_op.add_column(sa.Column("role", sa.String(length=20), server_default="member", nullable=False))
        batch_op.add_column(sa.Column("revoked_reason", sa.String(length=200), nullable=True))


def downgrade():
    with op.batch_alter_table("api_keys", schema=None) as batch_op:
        batch_op.drop_column("revoked_reason")
        batch_op.drop_column("role")
