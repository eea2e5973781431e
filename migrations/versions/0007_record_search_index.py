"""record word index: FTS5 table (SQLite), records.search_words with a GIN index (PostgreSQL)

Revision ID: 0007
Revises: 0006
"""

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None

SQLITE_TABLE = "records_fts"


def upgrade():
    op.add_column(
        "records",
        sa.Column("search_words", sa.Text().with_variant(postgresql.TSVECTOR(), "postgresql"), nullable=True),
    )
    op.add_column(
        "collections", sa.Column("search_index", sa.String(length=10), server_default="on", nullable=False)
    )
    bind = op.get_bind()
    # The words must be split exactly as queries split them, so the app's own code does it.
    from hookstream_ui.services.search_index import rebuild

    if bind.dialect.name == "postgresql":
        rebuild(bind)
        op.create_index(
            "ix_records_search",
            "records",
            ["search_words"],
            postgresql_using="gin",
            postgresql_where=sa.text("search_words IS NOT NULL"),
        )
    else:
        op.execute(f"CREATE VIRTUAL TABLE {SQLITE_TABLE} USING fts5(body, detail=none, columnsize=0)")
        rebuild(bind)


def downgrade():
    if op.get_bind().dialect.name == "postgresql":
        op.drop_index("ix_records_search", table_name="records")
    else:
        op.execute(f"DROP TABLE IF EXISTS {SQLITE_TABLE}")
    op.drop_column("records", "search_words")
    op.drop_column("collections", "search_index")
