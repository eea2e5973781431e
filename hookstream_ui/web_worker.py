"""The gunicorn worker `make run` serves with: gthread, whose own error answers (a URL too
long, a malformed request line or header, headers too large) are the API's JSON error
shape instead of gunicorn's HTML page. Those requests never reach the app, so its error
handlers cannot answer them.
"""

from __future__ import annotations

import json
import threading
from socket import socket
from typing import Any

from gunicorn import util
from gunicorn.http.errors import (
    InvalidHeader,
    InvalidHeaderName,
    InvalidHTTPVersion,
    InvalidRequestLine,
    InvalidRequestMethod,
    LimitRequestHeaders,
    LimitRequestLine,
)
from gunicorn.workers.gthread import ThreadWorker

# (logs, not requests: this is imported by gunicorn's master, which must not load the metrics)
from .observability.logs import REQUEST_ID_HEADER as HEADER
from .observability.logs import new_request_id

# The same codes as api/errors.py, for the statuses only gunicorn answers.
CODES = {
    400: "bad_request",
    403: "forbidden",
    414: "uri_too_long",
    417: "expectation_failed",
    431: "header_fields_too_large",
    500: "internal_error",
    501: "not_implemented",
}
_current = threading.local()


def _message(exc: BaseException, cfg: Any) -> str | None:
    """What went wrong, without quoting the request (its URL or a header may hold a secret)."""
    if isinstance(exc, LimitRequestLine):
        return f"The URL is too long: the request line may be at most {cfg.limit_request_line} bytes"
    if isinstance(exc, LimitRequestHeaders):
        return (
            f"The request headers are too large: at most {cfg.limit_request_fields} headers of at most "
            f"{cfg.limit_request_field_size} bytes each"
        )
    if isinstance(exc, (InvalidHeader, InvalidHeaderName)):
        return "A request header is not valid HTTP"
    if isinstance(exc, (InvalidRequestLine, InvalidRequestMethod, InvalidHTTPVersion)):
        return "The request line is not valid HTTP"
    return None


def write_json_error(sock: socket, status_int: int, reason: str, mesg: str) -> None:
    """gunicorn's util.write_error, answering the /v1 error shape. (Not the Sources API's for
    /api/ paths: these requests fail before their path, or even their request line, is read.)"""
    message = getattr(_current, "message", None) or reason
    request_id = new_request_id()
    body = {
        "error": message,
        "code": CODES.get(status_int, "error"),
        "status": status_int,
        "request_id": request_id,
    }
    data = json.dumps(body).encode()
    head = (
        f"HTTP/1.1 {status_int} {reason}\r\nConnection: close\r\nContent-Type: application/json\r\n"
        f"{HEADER}: {request_id}\r\nContent-Length: {len(data)}\r\n\r\n"
    ).encode("latin-1")
    util.write_nonblock(sock, head + data)


class JsonErrorWorker(ThreadWorker):
    def handle_error(self, req: Any, client: socket, addr: Any, exc: BaseException) -> None:
        _current.message = _message(exc, self.cfg)
        try:
            super().handle_error(req, client, addr, exc)
        finally:
            _current.message = None


# gunicorn's handle_error writes through util.write_error; in this worker it writes JSON.
util.write_error = write_json_error
