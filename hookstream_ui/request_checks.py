"""Checks every request passes before its view runs.

U+0000 has no use in any field, and PostgreSQL cannot store it in text: refused here, by
name, so that no view or service meets one (JSON bodies, which can also escape half a
surrogate pair: api.openapi.json_body). A path parameter holding one names nothing (404).
A webhook delivery is exempt: it is stored as received.

A body over its limit is a 413 however it is framed: with no Content-Length (chunked),
werkzeug stops reading at the limit and hands on what it read as if it were the whole body;
CappedInput reads one byte past the limit to tell.

A URL or header over the limits of HTTP servers' usual defaults is refused here, in the
API's JSON shape (the web server parses up to its buffer, and refuses past that with an
empty answer).

A request's environ holds the request alone. granian, as CGI did, copies the process's
environment into every one, and that holds the secret key and the database's password:
they are taken out before anything can read, log or show them.
"""

from __future__ import annotations

import io
import os
from collections.abc import Callable, Iterable
from typing import IO, TYPE_CHECKING, Any, TypeVar

from flask import Flask, abort, current_app, has_request_context, request
from werkzeug.exceptions import RequestEntityTooLarge, RequestHeaderFieldsTooLarge, RequestURITooLarge

from .errors import ValidationFailed
from .values.documents import UNSTORABLE

if TYPE_CHECKING:
    from _typeshed import WriteableBuffer
    from _typeshed.wsgi import StartResponse, WSGIApplication, WSGIEnvironment

View = TypeVar("View", bound=Callable[..., Any])

NUL = "\x00"
PAYLOAD_ATTR = "request_is_payload"


def request_is_payload(view: View) -> View:
    """Mark a view whose request is the payload (a webhook delivery): stored as received."""
    setattr(view, PAYLOAD_ATTR, True)
    return view


def unstorable_field(value: Any, path: str = "") -> tuple[str, str] | None:
    """The first field of `value` (a JSON document) holding U+0000 or half a surrogate pair
    (JSON can escape one; no database stores it), as (name, what is wrong); else None."""
    if isinstance(value, str):
        problem = _unstorable(value)
        return (path or "body", problem) if problem else None
    items = value.items() if isinstance(value, dict) else enumerate(value) if isinstance(value, list) else ()
    for key, item in items:
        here = f"{path}[{key}]" if isinstance(key, int) else f"{path}.{key}" if path else key
        problem = _unstorable(key) if isinstance(key, str) else None
        found = (_printable(here), problem) if problem else unstorable_field(item, here)
        if found:
            return found
    return None


def _unstorable(text: str) -> str | None:
    if NUL in text:
        return "must not contain NUL characters"
    if not text.isascii() and UNSTORABLE.search(text):  # no NUL, so half a surrogate pair
        return "must not contain unpaired surrogates (\\ud800-\\udfff)"
    return None


def _printable(name: str) -> str:
    return UNSTORABLE.sub("\ufffd", name.replace(NUL, "\\0"))


CGI_KEYS = frozenset(
    [
        "REQUEST_METHOD",
        "SCRIPT_NAME",
        "PATH_INFO",
        "QUERY_STRING",
        "CONTENT_TYPE",
        "CONTENT_LENGTH",
        "SERVER_NAME",
        "SERVER_PORT",
        "SERVER_PROTOCOL",
        "REMOTE_ADDR",
        "REMOTE_HOST",
        "REMOTE_PORT",
        "GATEWAY_INTERFACE",
        "SERVER_SOFTWARE",
        "REQUEST_URI",
        "RAW_URI",
        "HTTPS",
    ]
)
MAX_URL_BYTES = 4094
MAX_HEADER_BYTES = 8190


def _refuse_oversized() -> None:
    """What is refused is described, never quoted: a URL or header may hold a secret."""
    environ = request.environ
    if len(environ.get("PATH_INFO", "")) + len(environ.get("QUERY_STRING", "")) + 1 > MAX_URL_BYTES:
        raise RequestURITooLarge(f"The URL is too long: at most {MAX_URL_BYTES} bytes")
    # (More than 100 headers the server refuses itself.)
    if any(len(str(v)) > MAX_HEADER_BYTES for k, v in environ.items() if k.startswith("HTTP_")):
        raise RequestHeaderFieldsTooLarge(
            f"A request header is too large: at most {MAX_HEADER_BYTES} bytes each"
        )


def _refuse_nul() -> None:
    if any(NUL in str(v) for v in (request.view_args or {}).values()):
        abort(404, description="Not found: no id or name holds a NUL character")
    view = current_app.view_functions.get(request.endpoint) if request.endpoint else None
    if getattr(view, PAYLOAD_ATTR, False):
        return
    # Multipart bodies are uploads, read by their view once it has raised the body limit.
    fields = [request.args]
    if request.mimetype == "application/x-www-form-urlencoded":
        fields.append(request.form)
    for multi in fields:
        for name, value in multi.items(multi=True):
            if NUL in name or NUL in value:
                raise ValidationFailed({_printable(name): "must not contain NUL characters"})


class CappedInput(io.RawIOBase):
    """A request body of unknown length (chunked): reading it past the request's limit, or
    up to the limit with more behind it, raises RequestEntityTooLarge (413)."""

    def __init__(self, stream: IO[bytes], default_limit: int | None) -> None:
        self._stream, self._default, self._read = stream, default_limit, 0

    def readable(self) -> bool:
        return True

    def _limit(self) -> int | None:
        return request.max_content_length if has_request_context() else self._default

    def readinto(self, buffer: WriteableBuffer) -> int:
        view = memoryview(buffer).cast("B")
        data = self._stream.read(len(view))
        self._read += len(data)
        limit = self._limit()
        if limit is not None and self._read >= limit and (self._read > limit or self._stream.read(1)):
            raise RequestEntityTooLarge()
        view[: len(data)] = data
        return len(data)


def capped(app: Flask) -> WSGIApplication:
    """WSGI middleware: the process's environment out of the request's, and chunked bodies
    read through CappedInput, from the first reader on (CSRF's form parsing runs before any
    view)."""
    inner = app.wsgi_app
    # What the process was started with; what a request carries is CGI's and HTTP_*.
    process_env = [k for k in os.environ if not k.startswith("HTTP_") and k not in CGI_KEYS]

    def wsgi(environ: WSGIEnvironment, start_response: StartResponse) -> Iterable[bytes]:
        for name in process_env:
            environ.pop(name, None)
        if "wsgi.input_terminated" in environ and not environ.get("CONTENT_LENGTH"):
            environ["wsgi.input"] = CappedInput(environ["wsgi.input"], app.config.get("MAX_CONTENT_LENGTH"))
        return inner(environ, start_response)

    return wsgi


def register(app: Flask) -> None:
    app.before_request(_refuse_oversized)
    app.before_request(_refuse_nul)
    # Flask's documented way to wrap its WSGI app; mypy sees a method replaced.
    app.wsgi_app = capped(app)  # type: ignore[method-assign,assignment]
