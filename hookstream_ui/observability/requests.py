"""The request id, and the ingest metrics read off each webhook delivery's answer.

Every request gets an id: the caller's `X-Request-Id` when it is a plausible one (a proxy
or a client tracing its calls), else a new one. It is on every line logged for the
request, in the `X-Request-Id` header of every answer, in the /v1 JSON error body and on
the HTML error page, so a user quoting it leads to the lines.

The access log is the app's, not the server's: one line per answer on the
`hookstream_ui.access` logger, carrying the request id like every line of the request, in
the process's LOG_FORMAT. It names the path without the query string, and no referrer:
either can carry a secret (an invitation token, a token a webhook sender put in its URL).
"""

from __future__ import annotations

import logging
import re
import time

from flask import Flask, Response, g, request

from . import metrics
from .logs import REQUEST_ID, new_request_id
from .logs import REQUEST_ID_HEADER as HEADER

REQUEST_ID_RE = re.compile(r"^[A-Za-z0-9_.-]{1,64}$")
INGEST_PREFIX = "/v1/ingest/"
access_log = logging.getLogger("hookstream_ui.access")


def _begin() -> None:
    given = request.headers.get(HEADER, "")
    g.request_id = given if REQUEST_ID_RE.match(given) else new_request_id()
    g.request_started = time.perf_counter()
    REQUEST_ID.set(g.request_id)


def _answer(response: Response) -> Response:
    response.headers[HEADER] = g.get("request_id") or ""
    if "request_started" not in g:
        return response
    seconds = time.perf_counter() - g.request_started
    if request.path.startswith(INGEST_PREFIX):
        # The view names what it stored (g.ingest_outcome); a refusal is read off the status.
        metrics.ingest_answered(g.get("ingest_outcome"), response.status_code, seconds)
    if access_log.isEnabledFor(logging.INFO):
        access_log.info(
            '%s "%s %s %s" %s %s "%s" %.1fms',
            request.remote_addr or "-",
            request.method,
            request.path,
            request.environ.get("SERVER_PROTOCOL", "-"),
            response.status_code,
            "-" if response.content_length is None else response.content_length,
            (request.user_agent.string or "-").replace('"', "'")[:200],
            seconds * 1000,
        )
    return response


def _end(_exc: BaseException | None) -> None:
    # Set, not reset to a token: the thread serves its next request from here.
    REQUEST_ID.set(None)


def register(app: Flask) -> None:
    """Before every other hook, so that a request refused by one already has its id."""
    app.before_request(_begin)
    app.after_request(_answer)
    app.teardown_request(_end)
