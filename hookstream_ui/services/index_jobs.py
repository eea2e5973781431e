"""Enqueueing the job that builds a collection's word index (sync/reindex.py runs it, by
name), and telling whether one waits or runs. The collection's search_index field is the
state; the job takes its id only."""

from __future__ import annotations

import secrets

from ..infra.queues import enqueue_or_leave, queue

REINDEX_JOB = "hookstream_ui.sync.reindex.reindex_collection"


def enqueue(collection_id: str) -> None:
    """Every switch to on enqueues a pass (a pass already running may have missed records
    written while the index was off); each is idempotent."""
    enqueue_or_leave(
        lambda: queue("default").enqueue(
            REINDEX_JOB,
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

    default = queue("default")
    prefix = _job_prefix(collection_id)
    return any(
        job_id.startswith(prefix)
        for job_id in (*default.get_job_ids(), *StartedJobRegistry(queue=default).get_job_ids())
    )


def _job_prefix(collection_id: str) -> str:
    return f"reindex-{collection_id}-"
