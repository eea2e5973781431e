"""Shared sync credentials

source_connections.credential_source_id: a sync created with `credential_id` (seed 004)
uses that credential instead of a copy of it, so rotating it reaches every sync using it.

Revision ID: 0015
Revises: 0014
"""
import sqlalchemy as sa
from alembic import op

revision = '0015'
down_revision = '0014'
branch_labels = None
depends_on = None


def upgrade():
    with op.batch_alter_table('source_connections', schema=None) as batch_op:
        batch_op.add_column(sa.Column('credential_source_id', sa.String(length=40), nullable=True))
        batch_op.create_index('ix_source_connections_credential_source_id', ['credential_source_id'], unique=False)
        batch_op.create_foreign_key(op.f('fk_source_connections_credential_source_id_source_connections'),
                                    'source_connections', ['credential_source_id'], ['id'], ondelete='SET NULL')


def downgrade():
    with op.batch_alter_table('source_connections', schema=None) as batch_op:
        batch_op.drop_constraint(op.f('fk_source_connections_credential_source_id_source_connections'),
                                 type_='foreignkey')
        batch_op.drop_index('ix_source_connections_credential_source_id')
        batch_op.drop_column('credential_source_id')
