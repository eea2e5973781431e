"""The job queues (RQ on Redis). Jobs are enqueued by their dotted name and take ids only,
so what enqueues a job need not import the module that runs it."""

from __future__ import annotations

import logging
from collections.abc import Callable

from redis.exceptions import RedisError
from rq import Queue

from ..extensions import get_redis

QUEUES = ("high", "default", "low")
log = logging.getLogger(__name__)


def queue(name: str = "default") -> Queue:
    return Queue(name, connection=get_redis())


def enqueue_or_leave(enqueue: Callable[[], object], what: str) -> bool:
    """Enqueue a job whose state is a database row (a pending run, a backfill or an index
    pass waiting): with Redis unreachable the request still succeeds, the row stays waiting,
    and the scheduler enqueues it once Redis is back. False when it was left."""
    try:
        enqueue()
        return True
    except RedisError as exc:
        log.warning(
            "%s: the job queue is unreachable (%s); it is enqueued when it is back", what, type(exc).__name__
        )
        return False
