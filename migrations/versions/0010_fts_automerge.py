"""SQLite: the records word index merges its segments sixteen at a time instead of four

FTS5 keeps its index as segments and merges them as writes go; at its default (4) a large
backfill spent about a tenth of its time merging the same entries again and again. Queries
read a few more segments: search p95 stays far under its 100 ms goal (bench/records.py).

Revision ID: 0010
Revises: 0009
"""

from alembic import op
from sqlalchemy import text

revision = "0010"
down_revision = "0009"
branch_labels = None
depends_on = None


def _automerge(segments: int) -> None:
    if op.get_bind().dialect.name == "sqlite":
        op.execute(
            text("INSERT INTO records_fts(records_fts, rank) VALUES ('automerge', :segments)").bindparams(
                segments=segments
            )
        )


def upgrade():
    _automerge(16)


def downgrade():
    _automerge(4)
