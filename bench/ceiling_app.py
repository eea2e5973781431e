"""The ingest ceiling: a bare Flask app on the same server stack that only inserts the raw
body into the same database. Run by bench/ingest.py; not part of hookstream."""

from __future__ import annotations

import contextlib
import os
from typing import Any

from flask import Flask, request
from sqlalchemy import create_engine, exc, text

app = Flask(__name__)
engine = create_engine(os.environ["DATABASE_URL"], pool_size=16)
if engine.dialect.name == "sqlite":
    from sqlalchemy import event

    @event.listens_for(engine, "connect")
    def _pragmas(conn: Any, _: object) -> None:
        conn.execute("PRAGMA journal_mode=WAL")
        conn.execute("PRAGMA synchronous=NORMAL")
        conn.execute("PRAGMA busy_timeout=10000")


# Both gunicorn workers import this at once, and PostgreSQL's IF NOT EXISTS can still
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
    with engine.begin() as conn:
        conn.execute(
            text("INSERT INTO ceiling_events (body) VALUES (:b)"), {"b": request.get_data(as_text=True)}
        )
    return {"ok": True}
