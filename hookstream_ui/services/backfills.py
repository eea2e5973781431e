"""A collection's backfill is one part per source: a pull source's full read (its run), a
push source's replay of its stored events. `backfill_sources` holds the parts
({source id: part}); the collection's backfill_status is the whole they make."""

from __future__ import annotations

from typing import Any

from sqlalchemy import select

from ..models import Collection, SourceConnection, SyncRun, db
from ..values.times import utcnow

COUNTS = ("inserted", "updated", "deleted", "skipped")
READ, REPLAY = "read", "replay"


def part(source_id: str, mode: str, **more: Any) -> dict[str, Any]:
    return {"source_id": source_id, "mode": mode, "status": "pending", **dict.fromkeys(COUNTS, 0), **more}


def set_part(collection: Collection, source_id: str, **changes: Any) -> None:
    """Change one source's part (the caller holds the collection's row: several jobs write)."""
    parts = dict(collection.backfill_sources or {})
    parts[source_id] = {**parts.get(source_id, part(source_id, REPLAY)), **changes}
    collection.backfill_sources = parts


def settle(collection: Collection, run: SyncRun) -> None:
    """A full read of one source ended: its part says how, and the whole is settled."""
    set_part(collection, run.source_id, mode=READ, run_id=run.id, status=run.status)
    if run.status == "failed":
        collection.backfill_error = run.error
    settle_whole(collection)


def settle_whole(collection: Collection) -> None:
    """running while a part is; then failed, cancelled or completed, worst first."""
    statuses = {p.get("status") for p in (collection.backfill_sources or {}).values()}
    if not statuses:
        return
    for status in ("running", "pending", "failed", "cancelled"):
        if status in statuses:
            if status == "pending":
                status = "running" if "completed" in statuses else "pending"
            collection.backfill_status = status
            return
    collection.backfill_status, collection.backfill_completed_at = "completed", utcnow()
    collection.backfill_error = None


def report(collection: Collection) -> list[dict[str, Any]]:
    """Each source's part as the API and the page show it: what it is, where it stands and
    what it changed (a read's counts are its run's, in this collection)."""
    parts = collection.backfill_sources or {}
    runs = {
        r.id: r
        for r in db.session.scalars(
            select(SyncRun).where(
                SyncRun.id.in_([p["run_id"] for p in parts.values() if p.get("run_id")]),
                SyncRun.env_id == collection.env_id,
            )
        )
    }
    names = dict(
        db.session.execute(
            select(SourceConnection.id, SourceConnection.name).where(
                SourceConnection.id.in_(list(parts)), SourceConnection.env_id == collection.env_id
            )
        )
        .tuples()
        .all()
    )
    shown = []
    for source_id, p in parts.items():
        entry = {"source_id": source_id, "source_name": names.get(source_id), "mode": p.get("mode")}
        run = runs.get(p.get("run_id") or "")
        if run is not None:
            position = (run.cursor or {}).get(collection.id) or {}
            entry.update(run_id=run.id, status=run.status, **{k: position.get(k, 0) for k in COUNTS})
        else:
            entry.update(run_id=None, status=p.get("status"), **{k: p.get(k, 0) for k in COUNTS})
        shown.append(entry)
    return shown
