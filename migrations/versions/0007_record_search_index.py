"""record search index: FTS5 table (SQLite), GIN tsvector index (PostgreSQL)

Revision ID: 0007
Revises: 0006
"""
from alembic import op

# As in hookstream_ui/services/search_index.py when this was written (a migration stays as it ran).
PG_DOCUMENT = ("to_tsvector('simple'::regconfig, regexp_replace(((record_key)::text || ' ' || (data)::text), "
               "'[^a-zA-Z0-9]+'::text, ' '::text, 'g'::text))")
SQLITE_TABLE = "records_fts"

revision = '0007'
down_revision = '0006'
branch_labels = None
depends_on = None


def upgrade():
    if op.get_bind().dialect.name == 'postgresql':
        op.execute(f"CREATE INDEX ix_records_search ON records USING gin ({PG_DOCUMENT})")
    else:
        op.execute(f"CREATE VIRTUAL TABLE {SQLITE_TABLE} USING fts5(body, detail=none, columnsize=0)")
        op.execute(f"INSERT INTO {SQLITE_TABLE}(rowid, body) SELECT rowid, record_key || ' ' || data FROM records")


def downgrade():
    if op.get_bind().dialect.name == 'postgresql':
        op.drop_index('ix_records_search', table_name='records')
    else:
        op.execute(f"DROP TABLE IF EXISTS {SQLITE_TABLE}")
