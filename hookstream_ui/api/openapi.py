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
from ..services import documents

SAFE_METHODS = {"GET", "HEAD", "OPTIONS"}
# Every cursor-paginated list takes these (services/pagination.py).
PAGE_QUERY = {
    "limit": {"type": "integer", "minimum": 1, "maximum": 100, "default": 20},
    "cursor": {"type": "string", "description": "the `cursor` of the previous page"},
}
DOC_ATTR = "_openapi"


def endpoint(bp: Blueprint, rule: str, method: str, *, summary: str, tag: str,
             responses: dict[int, type[BaseModel] | None], body: type[BaseModel] | None = None,
             query: dict[str, dict] | None = None, role: str | None = None,
             public: bool = False, session_only: str | None = None):
    """Register a JSON endpoint on `bp`; the wrapped function gets the Principal first."""
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

        setattr(view, DOC_ATTR, {
            "method": method.lower(), "summary": summary, "tag": tag, "responses": responses,
            "body": body, "query": query or {}, "public": public, "role": role, "session_only": bool(session_only),
        })
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
        raise ValidationFailed({exc.path or "body": "must be a finite number (NaN and Infinity are not JSON)"}) from None
    except ValueError:
        data = None
    if data is None:
        raise ValidationFailed({"body": "is not valid JSON"}, code="invalid_json",
                               message="Request body is not valid JSON")
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
                {"name": arg, "in": "path", "required": True, "schema": {"type": "string"},
                 **({"description": "may hold /, written %2F", "x-slashes": True}
                    if f"<record_key:{arg}>" in rule.rule else {})}
                for arg in rule.arguments
            ] + [
                {"name": name, "in": "query", "required": False, "schema": spec}
                for name, spec in doc["query"].items()
            ],
            "responses": {},
        }
        if doc["public"]:
            operation["security"] = []
        elif doc["role"] != "viewer" or doc["session_only"]:
            operation["description"] = " ".join(filter(None, (
                f"Needs the `{doc['role']}` role or higher." if doc["role"] != "viewer" else "",
                "A signed-in session only: API keys get 403." if doc["session_only"] else "")))
            if doc["session_only"]:
                operation["security"] = [{"session": []}]
        if doc["body"] is not None:
            models[doc["body"]] = "validation"
            operation["requestBody"] = {
                "required": True,
                "content": {"application/json": {"schema": _schema_ref(doc["body"])}},
            }
        statuses = dict(doc["responses"])
        if not doc["public"]:
            statuses.setdefault(401, error_model)
            statuses.setdefault(403, error_model)
        statuses.setdefault(400, error_model)
        for status, model in sorted(statuses.items()):
            entry = {"description": str(status)}
            if model is not None:
                models[model] = "serialization"
                entry["content"] = {"application/json": {"schema": _schema_ref(model)}}
            operation["responses"][str(status)] = entry
        paths.setdefault(_path(rule.rule), {})[doc["method"]] = operation

    _, top = models_json_schema(
        [(m, mode) for m, mode in sorted(models.items(), key=lambda item: item[0].__name__)],
        ref_template="#/components/schemas/{model}",
    )
    return {
        "openapi": "3.1.0",
        "info": {"title": "hookstream API", "version": "1.0.0",
                 "description": "Collections, sources, syncs and ingest of a hookstream instance."},
        "servers": [{"url": "/"}],
        "paths": dict(sorted(paths.items())),
        "components": {
            "schemas": top.get("$defs", {}),
            "securitySchemes": {
                "apiKey": {"type": "apiKey", "in": "header", "name": "X-API-Key"},
                "bearer": {"type": "http", "scheme": "bearer"},
                "session": {"type": "apiKey", "in": "cookie", "name": "session"},
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
    @endpoint(bp, "/openapi.json", "GET", summary="This OpenAPI 3.1 document", tag="meta",
              responses={200: None}, public=True)
    def openapi_json():
        return jsonify(openapi_document())
