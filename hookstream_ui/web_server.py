"""The web server: granian's WSGI server, `make run`'s and production's (the tests and the
benches start it through `command`).

Chosen by measurement (bench/servers.py): on two cores, with signed deliveries at p99
under 100 ms, it carried more than gunicorn's gthread, gevent and sync workers, for the bare
Flask app and for hookstream alike. Its HTTP parsing and connections live in Rust, so an
idle keep-alive connection holds no Python thread; the app runs in each worker's blocking
threads, which wait on the ingest writer's answers, hence many of them.

What gunicorn's worker and config did, and where it is now:
- Requests granian cannot parse (a bad request line or header, more than 100 headers, a
  head past its 400 KiB buffer) it refuses itself, with an empty 400, 414 or 431 that quotes
  nothing back. A URL or header that parses but is over our limit reaches the app, which
  answers 414 or 431 in the API's JSON shape (request_checks).
- The access log is the app's (observability/requests): one line per answer, with the
  request id and without the query string, in LOG_FORMAT like every other line.
- Metrics: `make run` names the folder every process counts into; a server started alone
  makes a private one here, removed when it stops.
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile
from typing import Any

from .observability.logs import configure_logging, log_level

STOP_SECONDS = 5  # a request still running then is cut short, as gunicorn's graceful timeout did


def command(host: str, port: int, workers: int, threads: int) -> list[str]:
    """The web server as `make run` starts it."""
    return [
        sys.executable,
        "-m",
        "hookstream_ui.web_server",
        "--host",
        host,
        "--port",
        str(port),
        "--workers",
        str(workers),
        "--threads",
        str(threads),
    ]


def log_config() -> dict[str, Any]:
    """granian's own lines go to the root logger, formatted as every hookstream line is."""
    return {
        "version": 1,
        "disable_existing_loggers": False,
        "formatters": {"hookstream": {"()": "hookstream_ui.observability.logs.formatter"}},
        "handlers": {
            "stderr": {
                "class": "logging.StreamHandler",
                "formatter": "hookstream",
                "stream": "ext://sys.stderr",
            }
        },
        "root": {"handlers": ["stderr"], "level": log_level()},
        "loggers": {"_granian": {"handlers": [], "propagate": True}},
    }


def main(argv: list[str] | None = None) -> int:
    from granian.constants import Interfaces
    from granian.log import LogLevels
    from granian.server import Server

    parser = argparse.ArgumentParser(description="hookstream's web server")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=5000)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--threads", type=int, default=16)
    args = parser.parse_args(argv)
    configure_logging()
    own_folder = None
    if not os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        own_folder = tempfile.mkdtemp(prefix="hookstream-metrics-")
        os.environ["PROMETHEUS_MULTIPROC_DIR"] = own_folder  # the workers inherit it
    try:
        Server(
            "app:app",
            address=args.host,
            port=args.port,
            interface=Interfaces.WSGI,
            workers=args.workers,
            blocking_threads=args.threads,
            websockets=False,
            log_level=LogLevels.warning,
            log_dictconfig=log_config(),
            respawn_failed_workers=True,
            respawn_interval=0.5,
            workers_kill_timeout=STOP_SECONDS,
        ).serve()
    finally:
        if own_folder:
            shutil.rmtree(own_folder, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
