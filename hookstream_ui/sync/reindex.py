"""The job that turns a collection's word index on: index what is stored, then let searches
use it. Takes an id; the collection's search_index field is the state."""

from __future__ import annotations

import secrets

from sqlalchemy import update

from ..extensions import db
from ..models import Collection
from ..services import search_index


def enqueue(collection_id: str) -> None:
    """Every switch to on enqueues a pass (a pass already running may have missed records
    written while the index was off); each is idempotent."""
    from .worker import enqueue_or_leave, queue

    enqueue_or_leave(
        lambda: queue("default").enqueue(
            "hookstream_ui.sync.reindex.reindex_collection",
            collection_id,
            job_id=f"{_job_prefix(collection_id)}{secrets.token_hex(4)}",
            job_timeout=24 * 3600,
            description=f"search index {collection_id}",
        ),
        f"search index of {collection_id}",
    )


def has_live_job(collection_id: str) -> bool:
    """Whether a pass for the collection waits or runs. A pass whose worker died leaves the
    started registry once its heartbeat lapses (RQ's cleanup, run as the ids are read)."""
    from rq.registry import StartedJobRegistry

    from .worker import queue

    default = queue("default")
    prefix = _job_prefix(collection_id)
    return any(
        job_id.startswith(prefix)
        for job_id in (*default.get_job_ids(), *StartedJobRegistry(queue=default).get_job_ids())
    )


def _job_prefix(collection_id: str) -> str:
    return f"reindex-{collection_id}-"


def reindex_collection(collection_id: str) -> str:
    collection = db.session.get(Collection, collection_id)
    if collection is None or collection.search_index != "building":
        return "skipped"
    count = search_index.index_collection(collection_id)
    # Only if nobody switched it off meanwhile.
    db.session.execute(
        update(Collection)
        .where(Collection.id == collection_id, Collection.search_index == "building")
        .values(search_index="on")
    )
    db.session.commit()
    from ..templating import counted

    return f"indexed {counted(count, 'record')}"
