"""events are listed through indexes in list order: (environment | environment and status |
source, received_at, id); no foreign keys or single-column indexes on org_id, env_id,
status, created_at or source_id (events go with their source)

Revision ID: 0009
Revises: 0008
"""

from alembic import op

revision = "0009"
down_revision = "0008"
branch_labels = None
depends_on = None

DROPPED_INDEXES = (
    ("ix_events_org_id", ["org_id"]),
    ("ix_events_env_id", ["env_id"]),
    ("ix_events_created_at", ["created_at"]),
    ("ix_events_status", ["status"]),
    ("ix_events_source_id", ["source_id"]),
)
CREATED_INDEXES = (
    ("ix_events_env_received", ["env_id", "received_at", "id"]),
    ("ix_events_env_status_received", ["env_id", "status", "received_at", "id"]),
    ("ix_events_source_received", ["source_id", "received_at", "id"]),
)


def upgrade():
    if op.get_bind().dialect.name == "postgresql":
        # Built while ingest goes on: a plain CREATE INDEX would hold every delivery until a
        # large log is indexed. (Outside the migration's transaction, as CONCURRENTLY must be.)
        with op.get_context().autocommit_block():
            for name, columns in CREATED_INDEXES:
                op.create_index(name, "events", columns, postgresql_concurrently=True, if_not_exists=True)
        created = ()
    else:
        created = CREATED_INDEXES
    with op.batch_alter_table("events") as batch_op:
        for name, _columns in DROPPED_INDEXES:
            batch_op.drop_index(name)
        batch_op.drop_constraint("fk_events_org_id_orgs", type_="foreignkey")
        batch_op.drop_constraint("fk_events_env_id_environments", type_="foreignkey")
        for name, columns in created:
            batch_op.create_index(name, columns)


def downgrade():
    with op.batch_alter_table("events") as batch_op:
        for name, _columns in CREATED_INDEXES:
            batch_op.drop_index(name)
        batch_op.create_foreign_key(
            "fk_events_env_id_environments", "environments", ["env_id"], ["id"], ondelete="CASCADE"
        )
        batch_op.create_foreign_key("fk_events_org_id_orgs", "orgs", ["org_id"], ["id"], ondelete="CASCADE")
        for name, columns in DROPPED_INDEXES:
            batch_op.create_index(name, columns)
