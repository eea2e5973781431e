"""record indexes: newest-first listing, event type, JSONB containment (PostgreSQL)

Revision ID: 0005
Revises: 0004
"""

from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


def upgrade():
    op.create_index("ix_records_collection_updated", "records", ["collection_id", "updated_at", "id"])
    op.create_index("ix_records_collection_event_type", "records", ["collection_id", "event_type"])
    if op.get_bind().dialect.name == "postgresql":
        op.create_index(
            "ix_records_data_gin",
            "records",
            ["data"],
            postgresql_using="gin",
            postgresql_ops={"data": "jsonb_path_ops"},
        )


def downgrade():
    if op.get_bind().dialect.name == "postgresql":
        op.drop_index("ix_records_data_gin", table_name="records")
    op.drop_index("ix_records_collection_event_type", table_name="records")
    op.drop_index("ix_records_collection_updated", table_name="records")
