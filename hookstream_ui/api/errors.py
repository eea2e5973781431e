"""JSON errors for both API families, decided by path in one place.

`/v1`: {"error": <message>, "code", "status", "request_id"} (schemas.Error).
`/api/v1`: {"success": false, "error": <code>, "message"} (schemas.SourcesError).
Either adds `errors`, each offending field with what is wrong with it, for bad input.
"""

from __future__ import annotations

import logging

from flask import Flask, Response, g, jsonify, render_template, request
from flask.typing import ResponseReturnValue
from flask_login import current_user
from flask_wtf.csrf import CSRFError
from pydantic import BaseModel
from werkzeug.exceptions import HTTPException, MethodNotAllowed
from werkzeug.http import HTTP_STATUS_CODES

from ..auth import is_api_request
from ..auth.access import htmx_page_url, htmx_whole_page, is_htmx_request
from ..errors import ValidationFailed
from ..extensions import login_manager
from . import schemas
from .openapi import answer_json

log = logging.getLogger(__name__)

CODES = {
    400: "bad_request",
    401: "unauthorized",
    403: "forbidden",
    404: "not_found",
    405: "method_not_allowed",
    409: "conflict",
    413: "payload_too_large",
    414: "uri_too_long",
    415: "unsupported_media_type",
    429: "rate_limited",
    431: "header_fields_too_large",
    500: "internal_error",
    503: "unavailable",
}


def json_error(
    status: int, message: str, code: str | None = None, errors: dict[str, str] | None = None
) -> tuple[Response, int]:
    code = code or CODES.get(status, "error")
    given = {"errors": errors} if errors else {}  # named only when there are some
    body: BaseModel
    if request.path.startswith("/api/"):
        body = schemas.SourcesError(success=False, error=code, message=message, **given)
    else:
        body = schemas.Error(error=message, code=code, status=status, request_id=g.get("request_id"), **given)
    return jsonify(answer_json(body)), status


def page_message(exc: HTTPException) -> str:
    """What an error page says: the app's own reason when one was given; for a refusal with
    only Werkzeug's stock text (no such route, a GET to a form's target), a sentence of
    ours naming the address."""
    if exc.description and exc.description != type(exc).description:
        return exc.description
    if exc.code == 404:
        return f"There is no page at {request.path}. Check the address, or go back and follow a link."
    if exc.code == 405:
        return (
            f"{request.path} is where a form's button sends its change; it is not a page to open. "
            "Go back and use the button."
        )
    return ""


def error_page(exc: HTTPException, message: str | None = None) -> tuple[str, int]:
    """The app's error page for `exc`, with a way back to where the address belongs."""
    admin = request.path.startswith("/admin")
    return render_template(
        "errors/error.html",
        code=exc.code,
        title=exc.name,
        message=page_message(exc) if message is None else message,
        back=("/admin/", "Back to instance admin") if admin else ("/", "Back to the dashboard"),
    ), exc.code or 500


def _http_error(exc: HTTPException) -> ResponseReturnValue | HTTPException:
    if not is_api_request():
        if exc.code is None or exc.code < 400 or exc.response is not None:
            return exc
        if is_htmx_request() and isinstance(exc, CSRFError) and not current_user.is_authenticated:
            return login_manager.unauthorized()  # the session ended along with its CSRF token
        if is_htmx_request() and exc.code in (401, 403, 404):
            # Refused or gone (the collection was deleted, the role taken away): htmx would
            # leave the fragment as it was, still polling and still showing what is no
            # longer true. The page it is on is loaded again and tells the truth whole.
            return htmx_whole_page(htmx_page_url() or "/", exc.code)
        return error_page(exc, None if exc.code in (403, 404, 405) else "")
    message = exc.description if exc.description and exc.code != 405 else exc.name
    if exc.code == 404 and message.startswith("The requested URL"):
        message = "No such endpoint"
    if exc.code == 413:
        message = f"Request body is larger than the limit of {request.max_content_length} bytes"
    response, status = json_error(exc.code or 500, message)
    if isinstance(exc, MethodNotAllowed) and exc.valid_methods:
        response.headers["Allow"] = ", ".join(exc.valid_methods)
    return response, status


def _validation_error(exc: ValidationFailed) -> ResponseReturnValue:
    # Forms show their own errors beside their fields; this is what reaches a page
    # otherwise (a field refused before any view ran, for one).
    if not is_api_request():
        return render_template(
            "errors/error.html",
            code=exc.status,
            title=HTTP_STATUS_CODES.get(exc.status, "Error"),
            message=exc.message,
        ), exc.status
    return json_error(exc.status, exc.message, exc.code, exc.errors)


def _unexpected(exc: Exception) -> ResponseReturnValue | HTTPException:
    if isinstance(exc, HTTPException):
        return _http_error(exc)
    # Log the type and request id only: exception text may quote secrets or payloads.
    log.error(
        "unhandled %s on %s %s (request %s)",
        type(exc).__name__,
        request.method,
        request.path,
        g.get("request_id"),
        exc_info=not is_api_request(),
    )
    if not is_api_request():
        raise exc
    return json_error(500, "Internal error; quote the request_id when reporting it")


def register_error_handlers(app: Flask) -> None:
    app.register_error_handler(HTTPException, _http_error)
    app.register_error_handler(ValidationFailed, _validation_error)
    app.register_error_handler(Exception, _unexpected)
