"""The ingest ceiling: a bare Flask app on the same server stack that checks the body's
HMAC-SHA256 signature and inserts it into the same database. Run by bench/ingest.py and
bench/servers.py; not part of hookstream."""

from __future__ import annotations

import contextlib
import hashlib
import hmac
import os
from typing import Any

from flask import Flask, abort, request
from sqlalchemy import create_engine, exc, text

SECRET = b"bench-signing-secret"  # bench/ingest.py's
app = Flask(__name__)
engine = create_engine(os.environ["DATABASE_URL"], pool_size=16)
if engine.dialect.name == "sqlite":
    from sqlalchemy import event

    @event.listens_for(engine, "connect")
    def _pragmas(conn: Any, _: object) -> None:
        conn.execute("PRAGMA journal_mode=WAL")
        conn.execute("PRAGMA synchronous=NORMAL")
        conn.execute("PRAGMA busy_timeout=10000")


# Both server processes import this at once, and PostgreSQL's IF NOT EXISTS can still
# collide on the catalog: then the other worker has created the table.
with contextlib.suppress(exc.IntegrityError), engine.begin() as conn:
    conn.execute(
        text(
            "CREATE TABLE IF NOT EXISTS ceiling_events (id INTEGER PRIMARY KEY, body TEXT)"
            if engine.dialect.name == "sqlite"
            else "CREATE TABLE IF NOT EXISTS ceiling_events (id bigserial PRIMARY KEY, body text)"
        )
    )


@app.post("/ingest")
def ingest() -> dict[str, bool]:
    body = request.get_data()
    expected = "sha256=" + hmac.new(SECRET, body, hashlib.sha256).hexdigest()
    if not hmac.compare_digest(expected, request.headers.get("X-Signature", "")):
        abort(401)
    with engine.begin() as conn:
        conn.execute(text("INSERT INTO ceiling_events (body) VALUES (:b)"), {"b": body.decode()})
    return {"ok": True}
