"""The RQ worker process. Jobs take ids only and run inside an app context."""

from __future__ import annotations

import logging

from flask import Flask
from rq import Queue, Worker
from rq.job import Job

from ..extensions import db, get_redis
from ..infra.queues import QUEUES
from ..observability import metrics
from ..process import settle_garbage_collector

log = logging.getLogger(__name__)


class AppWorker(Worker):
    """Pushes the Flask app context around each job, so jobs can use db.session."""

    flask_app: Flask | None = None

    def perform_job(self, job: Job, queue: Queue) -> bool:
        if self.flask_app is None:
            raise RuntimeError("run_worker sets the app before any job")
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
