"""Contract checking: every API response a test sees must be documented in
/v1/openapi.json under its path, method and status, and match that schema."""

from __future__ import annotations

import contextvars

from flask.testing import FlaskClient
from jsonschema import Draft202012Validator

API_PREFIXES = ("/v1/", "/api/")


class ContractViolation(AssertionError):
    """A response that /v1/openapi.json does not describe."""


def _matches(template: str, path: str, slashes: bool = False) -> bool:
    """`slashes`: the template's last parameter may hold slashes (a record key)."""
    want, got = template.strip("/").split("/"), path.strip("/").split("/")
    if slashes and len(got) > len(want):
        got = [*got[: len(want) - 1], "/".join(got[len(want) - 1 :])]
    return len(want) == len(got) and all(
        w == g or (w.startswith("{") and w.endswith("}")) for w, g in zip(want, got, strict=False)
    )


def _operation(doc: dict, method: str, path: str) -> dict | None:
    # Literal templates first, so /v1/collections/stats-like paths beat /{ident}.
    candidates = sorted(doc["paths"].items(), key=lambda item: item[0].count("{"))
    for template, item in candidates:
        operation = item.get(method.lower())
        slashes = any(p.get("x-slashes") for p in (operation or {}).get("parameters", []))
        if operation and _matches(template, path, slashes):
            return operation
    return None


def check_response(doc: dict, method: str, path: str, status: int, body) -> None:
    operation = _operation(doc, method, path)
    if operation is None:
        if status in (404, 405):
            return  # no such route: answered by the generic JSON error handler
        raise ContractViolation(f"{method} {path} is not in /v1/openapi.json")
    documented = operation["responses"].get(str(status))
    if documented is None:
        raise ContractViolation(f"{method} {path} answered {status}, which is not documented")
    schema = documented.get("content", {}).get("application/json", {}).get("schema")
    if schema is None:
        return
    validator = Draft202012Validator({**schema, "components": doc["components"]})
    errors = sorted(validator.iter_errors(body), key=lambda e: list(e.path))
    if errors:
        details = "; ".join(f"{'/'.join(map(str, e.path)) or '<root>'}: {e.message}" for e in errors[:5])
        raise ContractViolation(f"{method} {path} {status} does not match its schema: {details}")


class ContractClient(FlaskClient):
    def open(self, *args, **kwargs):
        # Run each request in an empty context, as a real server would: otherwise a test's
        # own app context would be reused and `g` (CSRF token, principal, user) shared
        # between requests.
        # buffered: a streamed body is consumed inside that context too, as a server would.
        kwargs.setdefault("buffered", True)
        response = contextvars.Context().run(super().open, *args, **kwargs)
        request = response.request
        path = request.path
        if path.startswith(API_PREFIXES) and response.is_json and path != "/v1/openapi.json":
            from hookstream_ui.api.openapi import openapi_document

            with self.application.app_context():
                doc = openapi_document()
            check_response(doc, request.method, path, response.status_code, response.get_json())
        return response
