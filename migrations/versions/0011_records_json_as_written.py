"""SQLite: records hold their JSON text with characters as written, not \\u escapes

Escaped, a word beyond ASCII could be found only in the case it was stored in ("Москва"
not by "москва"), and each escape began a word of its own ("осква" found it). New writes
store characters as written (upsert.record_json); this rewrites what was stored before,
and the words of those records. PostgreSQL's JSONB keeps no escapes: nothing to do there.

Revision ID: 0011
Revises: 0010
"""

import json

from alembic import op
from sqlalchemy import bindparam, text

revision = "0011"
down_revision = "0010"
branch_labels = None
depends_on = None

BATCH = 5000


def upgrade():
    bind = op.get_bind()
    if bind.dialect.name != "sqlite":
        return
    from hookstream_ui.values.records import record_json

    after = 0
    while True:
        rows = bind.execute(
            text(
                "SELECT rowid, data FROM records WHERE rowid > :after AND instr(data, '\\u') > 0 "
                "ORDER BY rowid LIMIT :n"
            ),
            {"after": after, "n": BATCH},
        ).all()
        if not rows:
            return
        after = rows[-1][0]
        changed = [
            {"r": rowid, "d": new} for rowid, data in rows if (new := record_json(json.loads(data))) != data
        ]
        if not changed:
            continue
        bind.execute(text("UPDATE records SET data = :d WHERE rowid = :r"), changed)
        # Only records that have words (their collection's index is on) get them again.
        bind.execute(
            text(
                "INSERT OR REPLACE INTO records_fts(rowid, body) SELECT rowid, record_key || ' ' || data "
                "FROM records WHERE rowid IN :rowids "
                "AND rowid IN (SELECT rowid FROM records_fts WHERE rowid IN :rowids)"
            ).bindparams(bindparam("rowids", expanding=True)),
            {"rowids": [c["r"] for c in changed]},
        )


def downgrade():
    pass  # escaped or not, the text is the same JSON; older code reads both
