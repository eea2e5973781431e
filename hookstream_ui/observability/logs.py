"""Logging for every hookstream process, configured once by its entry point (`app.py` for
the web server's workers and every `flask` command, `runner.py`, `web_server.py`), never
by the app factory: an app built in a test or a script logs wherever its host says.

Every line says which request (`request_id`) or which sync run (`run_id`) it was logged
for, from context variables set around each request and each run. `LOG_FORMAT=json` writes
one JSON object per line for log shippers; `LOG_LEVEL` sets the level (INFO).

JSON lines are made by the standard library rather than python-json-logger: the fields are
a fixed few, and a formatter that copied every `extra` attribute of a record onto the line
would be one more way for a secret to reach the log.
"""

from __future__ import annotations

import json
import logging
import os
import secrets
import sys
from contextvars import ContextVar
from datetime import UTC, datetime
from typing import TextIO

REQUEST_ID: ContextVar[str | None] = ContextVar("request_id", default=None)
RUN_ID: ContextVar[str | None] = ContextVar("run_id", default=None)
REQUEST_ID_HEADER = "X-Request-ID"
FORMATS = ("text", "json")
TEXT_FORMAT = "%(asctime)s %(levelname)s %(name)s%(context)s: %(message)s"

# httpx logs every URL at INFO, and a user's URL may carry a token in its query string. A
# rule about what may be logged at all, so it holds in every process that imports this,
# whatever handlers it has.
logging.getLogger("httpx").setLevel(logging.WARNING)


def new_request_id() -> str:
    return f"req_{secrets.token_hex(8)}"


def context() -> dict[str, str]:
    """The ids the line being logged belongs to, as far as they are set."""
    found = {}
    request_id, run_id = REQUEST_ID.get(), RUN_ID.get()
    if request_id:
        found["request_id"] = request_id
    if run_id:
        found["run_id"] = run_id
    return found


class TextFormatter(logging.Formatter):
    """`time LEVEL logger [request_id=… run_id=…]: message`."""

    def __init__(self) -> None:
        super().__init__(TEXT_FORMAT)

    def format(self, record: logging.LogRecord) -> str:
        ids = context()
        record.context = (" [" + " ".join(f"{k}={v}" for k, v in ids.items()) + "]") if ids else ""
        return super().format(record)


class JsonFormatter(logging.Formatter):
    """One JSON object a line: time, level, logger, pid, message, the ids, a traceback."""

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, object] = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
            "pid": record.process,
            "message": record.getMessage(),
            **context(),
        }
        if record.exc_info:
            entry["exc_info"] = self.formatException(record.exc_info)
        if record.stack_info:
            entry["stack_info"] = self.formatStack(record.stack_info)
        return json.dumps(entry, ensure_ascii=False, default=str)


def log_format() -> str:
    """LOG_FORMAT, checked: a misspelt value stops the start rather than being ignored."""
    value = os.environ.get("LOG_FORMAT", "text").strip().lower() or "text"
    if value not in FORMATS:
        raise SystemExit(f"LOG_FORMAT must be one of {', '.join(FORMATS)} (got {value!r})")
    return value


def formatter() -> logging.Formatter:
    return JsonFormatter() if log_format() == "json" else TextFormatter()


def log_level() -> int:
    name = os.environ.get("LOG_LEVEL", "INFO").strip().upper() or "INFO"
    level = logging.getLevelNamesMapping().get(name)
    if level is None:
        raise SystemExit(f"LOG_LEVEL must be a logging level such as INFO or DEBUG (got {name!r})")
    return level


_configured = False


def configure_logging(stream: TextIO | None = None) -> None:
    """The process's one log handler, on the root logger (stderr by default). A second call
    does nothing, so an entry point that imports another calls it safely."""
    global _configured
    if _configured:
        return
    handler = logging.StreamHandler(stream or sys.stderr)
    handler.setFormatter(formatter())
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(log_level())
    _configured = True
