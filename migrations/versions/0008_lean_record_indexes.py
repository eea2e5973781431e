"""records keep only the indexes a query needs: no foreign keys or indexes on org_id and
env_id (records go with their collection), no index on created_at or collection_id alone

Revision ID: 0008
Revises: 0007
"""

from alembic import op

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None

DROPPED_INDEXES = (
    ("ix_records_created_at", ["created_at"]),
    ("ix_records_org_id", ["org_id"]),
    ("ix_records_env_id", ["env_id"]),
    ("ix_records_collection_id", ["collection_id"]),
)


def upgrade():
    with op.batch_alter_table("records") as batch_op:
        for name, _columns in DROPPED_INDEXES:
            batch_op.drop_index(name)
        batch_op.drop_constraint("fk_records_org_id_orgs", type_="foreignkey")
        batch_op.drop_constraint("fk_records_env_id_environments", type_="foreignkey")
    bind = op.get_bind()
    if bind.dialect.name == "sqlite":
        # SQLite rewrote the table, so rowids may have moved: index the words again.
        from hookstream_ui.services.search_index import rebuild

        rebuild(bind)


def downgrade():
    with op.batch_alter_table("records") as batch_op:
        batch_op.create_foreign_key(
            "fk_records_env_id_environments", "environments", ["env_id"], ["id"], ondelete="CASCADE"
        )
        batch_op.create_foreign_key("fk_records_org_id_orgs", "orgs", ["org_id"], ["id"], ondelete="CASCADE")
        for name, columns in DROPPED_INDEXES:
            batch_op.create_index(name, columns)
    bind = op.get_bind()
    if bind.dialect.name == "sqlite":
        from hookstream_ui.services.search_index import rebuild

        rebuild(bind)
