"""A sync run as its job reports it: the run id on every line logged while it works, one
line when it starts, one when an attempt fails and it will try again, one when it ends
(with its outcome and counts), and the runs metric.

What is logged is the run's own facts: never its error text, which quotes the source (the
run's row keeps it, masked, for the dashboard), only the exception's type.
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Callable
from datetime import datetime
from typing import Concatenate, ParamSpec, Protocol, TypeVar

from . import metrics
from .logs import RUN_ID

log = logging.getLogger("hookstream_ui.runs")
P = ParamSpec("P")
R = TypeVar("R")


class RunFacts(Protocol):
    """The columns of a sync run (models.SyncRun) read here."""

    @property
    def id(self) -> str: ...
    @property
    def status(self) -> str: ...
    @property
    def mode(self) -> str: ...
    @property
    def attempt(self) -> int: ...
    @property
    def records_inserted(self) -> int: ...
    @property
    def records_updated(self) -> int: ...
    @property
    def records_deleted(self) -> int: ...
    @property
    def records_skipped(self) -> int: ...
    @property
    def started_at(self) -> datetime | None: ...
    @property
    def finished_at(self) -> datetime | None: ...


def bound_to_run(job: Callable[Concatenate[str, P], R]) -> Callable[Concatenate[str, P], R]:
    """A job whose first argument is a run id: every line logged while it works names it."""

    @functools.wraps(job)
    def bound(run_id: str, /, *args: P.args, **kwargs: P.kwargs) -> R:
        token = RUN_ID.set(run_id)
        try:
            return job(run_id, *args, **kwargs)
        finally:
            RUN_ID.reset(token)

    return bound


def started(run: RunFacts) -> None:
    log.info("run started: %s, attempt %d", run.mode, (run.attempt or 0) + 1)


def retrying(run: RunFacts, exc: BaseException, delay_seconds: float) -> None:
    log.warning(
        "run attempt %d failed (%s); trying again in %g s", run.attempt, type(exc).__name__, delay_seconds
    )
    metrics.run_ended("retried")


def finished(run: RunFacts) -> None:
    seconds = (
        (run.finished_at - run.started_at).total_seconds() if run.started_at and run.finished_at else 0.0
    )
    log.info(
        "run %s after %.1f s, attempt %d: %d inserted, %d updated, %d deleted, %d skipped",
        run.status,
        seconds,
        (run.attempt or 0) + (run.status != "failed"),
        run.records_inserted or 0,
        run.records_updated or 0,
        run.records_deleted or 0,
        run.records_skipped or 0,
    )
    metrics.run_ended(run.status)
