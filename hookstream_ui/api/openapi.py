"""Every JSON route is declared through `endpoint()`, which both guards it (auth, role,
session-only) and documents it; /v1/openapi.json is built from those declarations, so a
route cannot exist undocumented without the OpenAPI test noticing.
"""

from __future__ import annotations

import re
from functools import wraps

from flask import Blueprint, current_app, jsonify, request
from pydantic import BaseModel
from pydantic.json_schema import models_json_schema

from ..auth import authenticate_api_request, require_role, require_session
from ..errors import ValidationFailed
from ..request_checks import unstorable_field
from ..values import documents

SAFE_METHODS = {"GET", "HEAD", "OPTIONS"}
# Every cursor-paginated list takes these (services/pagination.py).
PAGE_QUERY = {
    "limit": {"type": "integer", "minimum": 1, "maximum": 100, "default": 20},
    "cursor": {"type": "string", "description": "the `cursor` of the previous page"},
}
DOC_ATTR = "_openapi"


def endpoint(
    bp: Blueprint,
    rule: str,
    method: str,
    *,
    summary: str,
    tag: str,
    responses: dict[int, type[BaseModel] | dict | None],
    body: type[BaseModel] | None = None,
    query: dict[str, dict] | None = None,
    role: str | None = None,
    public: bool = False,
    session_only: str | None = None,
    raw_body: dict | None = None,
):
    """Register a JSON endpoint on `bp`; the wrapped function gets the Principal first.
    `query` maps each parameter to its schema (`style`, `explode` and `description` in it
    go on the parameter); a response may be a ready OpenAPI response object (a body that
    is not JSON), and `raw_body` a ready request body object."""
    role = role or ("viewer" if method in SAFE_METHODS else "member")

    def decorate(fn):
        @wraps(fn)
        def view(**kwargs):
            if public:
                return fn(**kwargs)
            principal = authenticate_api_request()
            if session_only:
                require_session(principal, session_only)
            require_role(principal, role)
            return fn(principal, **kwargs)

        setattr(
            view,
            DOC_ATTR,
            {
                "method": method.lower(),
                "summary": summary,
                "tag": tag,
                "responses": responses,
                "body": body,
                "query": query or {},
                "public": public,
                "role": role,
                "session_only": bool(session_only),
                "raw_body": raw_body,
            },
        )
        bp.add_url_rule(rule, endpoint=fn.__name__, view_func=view, methods=[method])
        return view

    return decorate


def json_body() -> dict:
    """The request's JSON object; `{}` for an empty body so missing fields get named."""
    if not request.get_data(cache=True):
        return {}
    try:
        data = documents.loads(request.get_data(cache=True))
    except documents.TooDeep as exc:
        raise ValidationFailed({"body": str(exc)}) from None
    except documents.NotFinite as exc:
        raise ValidationFailed(
            {exc.path or "body": "must be a finite number (NaN and Infinity are not JSON)"}
        ) from None
    except ValueError:
        data = None
    if data is None:
        raise ValidationFailed(
            {"body": "is not valid JSON"}, code="invalid_json", message="Request body is not valid JSON"
        )
    if not isinstance(data, dict):
        raise ValidationFailed({"body": "must be a JSON object"})
    found = unstorable_field(data)
    if found:
        raise ValidationFailed(dict([found]))
    return data


def _path(rule: str) -> str:
    return re.sub(r"<(?:[^:<>]+:)?([^<>]+)>", r"{\1}", rule)


def _schema_ref(model) -> dict:
    return {"$ref": f"#/components/schemas/{model.__name__}"}


PARAMETER_KEYS = ("style", "explode", "description")
STATUS_TEXT = {
    200: "OK",
    201: "Created",
    202: "Accepted",
    400: "Bad input: `errors` names each offending field and what is wrong with it; nothing changed",
    401: "No valid API key or session (the message says why, e.g. a revoked key)",
    403: "The role is too low, the organization is suspended, or the CSRF token is missing (sessions)",
    404: "Not found (another organization's or project's resource is not found either)",
    409: "Conflict with the current state (the message says with what); nothing changed",
    413: "The request body is larger than the instance's limit (MAX_BODY_BYTES, default 1 MiB)",
    414: "The URL is too long",
    503: "A dependency is unavailable; try again",
}
CSRF_HEADER = {
    "name": "X-CSRFToken",
    "in": "header",
    "required": False,
    "schema": {"type": "string"},
    "description": 'Signed-in sessions only (the cookie): the page\'s <meta name="csrf-token"> value, '
    "required on every unsafe request (403 without it). API keys need none.",
}


def _parameter(name: str, spec: dict) -> dict:
    spec = dict(spec)
    extra = {key: spec.pop(key) for key in PARAMETER_KEYS if key in spec}
    return {"name": name, "in": "query", "required": False, "schema": spec, **extra}


def _responses(doc: dict, error_model, statuses: dict, models: dict) -> dict:
    out = {}
    for status, model in sorted(statuses.items()):
        text = STATUS_TEXT.get(status, str(status))
        if status == 403 and doc["session_only"]:
            text = "API keys get 403: this needs a signed-in session. " + text
        if isinstance(model, dict):  # a body that is not JSON, described as it is
            out[str(status)] = {"description": text, **model}
            continue
        entry = {"description": text}
        if model is not None:
            models[model] = "serialization"
            entry["content"] = {"application/json": {"schema": _schema_ref(model)}}
        out[str(status)] = entry
    return out


def build_openapi(app) -> dict:
    from .schemas import Error, SourcesError

    paths: dict[str, dict] = {}
    # Request bodies are documented as they validate, responses as they serialize.
    models: dict = {Error: "serialization", SourcesError: "serialization"}
    for rule in app.url_map.iter_rules():
        doc = getattr(app.view_functions[rule.endpoint], DOC_ATTR, None)
        if doc is None:
            continue
        error_model = SourcesError if rule.rule.startswith("/api/") else Error
        operation = {
            "operationId": rule.endpoint.replace(".", "_"),
            "summary": doc["summary"],
            "tags": [doc["tag"]],
            "parameters": [
                {
                    "name": arg,
                    "in": "path",
                    "required": True,
                    "schema": {"type": "string"},
                    **(
                        {"description": "may hold /, written %2F", "x-slashes": True}
                        if f"<record_key:{arg}>" in rule.rule
                        else {}
                    ),
                }
                for arg in rule.arguments
            ]
            + [_parameter(name, spec) for name, spec in doc["query"].items()],
            "responses": {},
        }
        unsafe = doc["method"].upper() not in SAFE_METHODS
        if unsafe and not doc["public"]:
            operation["parameters"].append(CSRF_HEADER)
        if doc["public"]:
            operation["security"] = []
        elif doc["role"] != "viewer" or doc["session_only"]:
            operation["description"] = " ".join(
                filter(
                    None,
                    (
                        f"Needs the `{doc['role']}` role or higher." if doc["role"] != "viewer" else "",
                        "A signed-in session only: API keys get 403." if doc["session_only"] else "",
                    ),
                )
            )
            if doc["session_only"]:
                operation["security"] = [{"session": []}]
                operation["x-session-only"] = True
        if doc["body"] is not None:
            models[doc["body"]] = "validation"
            operation["requestBody"] = {
                "required": True,
                "content": {"application/json": {"schema": _schema_ref(doc["body"])}},
            }
        if doc["raw_body"] is not None:
            operation["requestBody"] = doc["raw_body"]
        statuses = dict(doc["responses"])
        if not doc["public"]:
            statuses.setdefault(401, error_model)
            statuses.setdefault(403, error_model)
        statuses.setdefault(400, error_model)
        if unsafe:  # every request body is capped, however it is sent
            statuses.setdefault(413, error_model)
        operation["responses"] = _responses(doc, error_model, statuses, models)
        paths.setdefault(_path(rule.rule), {})[doc["method"]] = operation

    _, top = models_json_schema(
        [(m, mode) for m, mode in sorted(models.items(), key=lambda item: item[0].__name__)],
        ref_template="#/components/schemas/{model}",
    )
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "hookstream API",
            "version": "1.0.0",
            "description": "Collections, sources, syncs and ingest of a hookstream instance. On every "
            "route: a string holding a NUL character, a half surrogate pair, NaN or "
            "Infinity, or JSON nested past 100 levels is refused (400, naming the "
            "field); a request body over MAX_BODY_BYTES (default 1 MiB) is a 413, "
            "and a URL or header line too long for the server a 414 or 400, all "
            "with the JSON error shape. Names, slugs, paths and ids in bodies are "
            "trimmed of surrounding spaces before their rules apply.",
        },
        "servers": [{"url": "/"}],
        "paths": dict(sorted(paths.items())),
        "components": {
            "schemas": top.get("$defs", {}),
            "securitySchemes": {
                "apiKey": {
                    "type": "apiKey",
                    "in": "header",
                    "name": "X-API-Key",
                    "description": "An API key (hs_live_…, made in Settings → API keys): what scripts and "
                    'curl send, as -H "X-API-Key: hs_live_…". It acts in its own '
                    "project, as its owner with its role; no CSRF header is needed.",
                },
                "bearer": {"type": "http", "scheme": "bearer"},
                "session": {
                    "type": "apiKey",
                    "in": "cookie",
                    "name": "session",
                    "description": "The dashboard's signed-in session; unsafe requests also need "
                    "the X-CSRFToken header",
                },
            },
        },
        "security": [{"apiKey": []}, {"bearer": []}, {"session": []}],
    }


def openapi_document():
    app = current_app._get_current_object()
    doc = app.extensions.get("hookstream_openapi")
    if doc is None:
        doc = app.extensions["hookstream_openapi"] = build_openapi(app)
    return doc


def register_openapi_route(bp: Blueprint) -> None:
    @endpoint(
        bp,
        "/openapi.json",
        "GET",
        summary="This OpenAPI 3.1 document",
        tag="meta",
        responses={200: None},
        public=True,
    )
    def openapi_json():
        return jsonify(openapi_document())
