"""The alert rules' evaluation, as a job every ALERT_SECONDS (services/alerts.py): a channel
that is slow to answer must not hold up scheduling."""

from __future__ import annotations

import time

from flask import current_app

from ..infra.queues import enqueue_or_leave, queue
from ..services import alerts

JOB_ID = "alert-evaluation"
_next = [0.0]


def evaluate() -> dict[str, int]:
    return alerts.evaluate()


def when_due() -> bool:
    if time.monotonic() < _next[0]:
        return False
    _next[0] = time.monotonic() + current_app.config["ALERT_SECONDS"]
    enqueue_or_leave(
        lambda: queue("low").enqueue(
            evaluate, job_id=JOB_ID, job_timeout=300, description="alert evaluation"
        ),
        "alert evaluation",
    )
    return True
