"""The RQ worker process. Jobs take ids only and run inside an app context."""

from __future__ import annotations

import logging

from flask import Flask
from redis.exceptions import RedisError
from rq import Queue, Worker

from ..extensions import db, get_redis
from ..observability import metrics
from ..process import settle_garbage_collector

QUEUES = ("high", "default", "low")
log = logging.getLogger(__name__)


def queue(name: str = "default") -> Queue:
    return Queue(name, connection=get_redis())


def enqueue_or_leave(enqueue, what: str) -> bool:
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


class AppWorker(Worker):
    """Pushes the Flask app context around each job, so jobs can use db.session."""

    flask_app: Flask | None = None

    def perform_job(self, job, queue):
        with self.flask_app.app_context():
            # RQ runs each job in a forked work horse: never share the parent's sockets.
            db.engine.dispose(close=False)
            settle_garbage_collector()  # again: what the worker built after startup is the horse's too
            metrics.in_work_horse()
            return super().perform_job(job, queue)


def run_worker(app: Flask, burst: bool = False) -> None:
    with app.app_context():
        connection = get_redis()
        AppWorker.flask_app = app
        worker = AppWorker([Queue(q, connection=connection) for q in QUEUES], connection=connection)
        # with_scheduler: RQ moves delayed jobs (retry backoff) onto the queue when due.
        worker.work(burst=burst, with_scheduler=True)
