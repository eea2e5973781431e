"""gunicorn's settings for hookstream, loaded with `-c python:hookstream_ui.gunicorn_config`
(runner.gunicorn_command: `make run`, the tests and the benches start it so).

Metrics: every worker counts into files in PROMETHEUS_MULTIPROC_DIR, so that a scrape
answered by one worker reports them all. `make run` sets that folder for all its
processes; a gunicorn started alone gets a private one of its own, removed at its exit. A
worker that exits is marked dead, so its live gauges leave the answer.

Logging: gunicorn's own lines (its errors and the access log) take LOG_FORMAT=json too.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from typing import Any

from gunicorn import glogging

from hookstream_ui.observability.logs import JsonFormatter, log_format

logger_class = "hookstream_ui.gunicorn_config.Logger"
_own_folder: str | None = None


def on_starting(server: Any) -> None:
    """In the master, before any worker is forked (and imports prometheus_client)."""
    global _own_folder
    folder = os.environ.get("PROMETHEUS_MULTIPROC_DIR")
    if folder:
        os.makedirs(folder, mode=0o700, exist_ok=True)
    else:
        _own_folder = tempfile.mkdtemp(prefix="hookstream-metrics-")
        os.environ["PROMETHEUS_MULTIPROC_DIR"] = _own_folder


def child_exit(server: Any, worker: Any) -> None:
    from prometheus_client import multiprocess

    multiprocess.mark_process_dead(worker.pid)


def on_exit(server: Any) -> None:
    if _own_folder:
        shutil.rmtree(_own_folder, ignore_errors=True)


class Logger(glogging.Logger):
    """gunicorn's logger, its lines one JSON object each under LOG_FORMAT=json."""

    def setup(self, cfg: Any) -> None:
        super().setup(cfg)
        if log_format() != "json":
            return
        for log in (self.error_log, self.access_log):
            for handler in log.handlers:
                handler.setFormatter(JsonFormatter())
