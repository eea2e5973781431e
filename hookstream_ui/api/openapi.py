"""Every JSON route is declared through `endpoint()`, which guards it (auth, role,
session-only), documents it, and answers with the documented model its handler returns;
/v1/openapi.json is built from those declarations, so a route cannot exist undocumented
without the OpenAPI test noticing, nor answer a shape its document does not show.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from functools import wraps
from typing import Any, TypedDict

from flask import Blueprint, Flask, current_app, jsonify, request
from flask.typing import ResponseReturnValue
from pydantic import BaseModel
from pydantic.json_schema import JsonSchemaMode, models_json_schema
from werkzeug.routing import Rule
from werkzeug.wrappers import Response

from ..auth import authenticate_api_request, require_role, require_session
from ..errors import ValidationFailed
from ..request_checks import unstorable_field
from ..values import documents
from .schemas import Error, SourcesError

SAFE_METHODS = {"GET", "HEAD", "OPTIONS"}
# Every cursor-paginated list takes these (services/pagination.py).
PAGE_QUERY: dict[str, dict[str, Any]] = {
    "limit": {"type": "integer", "minimum": 1, "maximum": 100, "default": 20},
    "cursor": {"type": "string", "description": "the `cursor` of the previous page"},
}
DOC_ATTR = "_openapi"

# What a handler gives back: one of the shapes its endpoint documents, which is turned into
# the JSON answer here, or a ready response (a body that is not JSON).
Answer = BaseModel | Response
# A documented response: the model of a JSON body, a ready OpenAPI response object (a body
# that is not JSON), or None (JSON described nowhere else, such as this document).
Documented = type[BaseModel] | dict[str, Any] | None


class EndpointDoc(TypedDict):
    method: str
    summary: str
    tag: str
    responses: dict[int, Documented]
    body: type[BaseModel] | None
    query: dict[str, dict[str, Any]]
    public: bool
    role: str
    session_only: bool
    raw_body: dict[str, Any] | None


def answer_json(answer: BaseModel) -> dict[str, Any]:
    """The JSON object of an answer. A field with a default appears only where the builder set
    it (an ingest answer names `duplicate` only for a duplicate): that is what the schema's
    `required` says, since pydantic leaves such fields out of it. Python mode: the values are
    JSON's already, and the app's JSON writer is the one that turns NaN into null."""
    return answer.model_dump(by_alias=True, exclude_unset=True)


def success_statuses(responses: dict[int, Documented]) -> dict[type[BaseModel], int]:
    """The status each documented success model is answered with; a model documented for two
    success statuses would leave the status to guess, so it is refused."""
    statuses: dict[type[BaseModel], int] = {}
    for status, model in responses.items():
        if status < 400 and isinstance(model, type):
            if model in statuses:
                raise TypeError(f"{model.__name__} is documented for both {statuses[model]} and {status}")
            statuses[model] = status
    return statuses


def respond(name: str, answer: Answer, statuses: dict[type[BaseModel], int]) -> ResponseReturnValue:
    """The response for a handler's answer: a documented model, with the status it is
    documented under. An undocumented model is a bug in the handler, not the caller's fault."""
    if isinstance(answer, Response):
        return answer
    status = statuses.get(type(answer))
    if status is None:
        raise TypeError(f"{name} answered {type(answer).__name__}, which its endpoint() does not document")
    return jsonify(answer_json(answer)), status


def endpoint(
    bp: Blueprint,
    rule: str,
    method: str,
    *,
    summary: str,
    tag: str,
    responses: dict[int, Documented],
    body: type[BaseModel] | None = None,
    query: dict[str, dict[str, Any]] | None = None,
    role: str | None = None,
    public: bool = False,
    session_only: str | None = None,
    raw_body: dict[str, Any] | None = None,
) -> Callable[[Callable[..., Answer]], Callable[..., ResponseReturnValue]]:
    """Register a JSON endpoint on `bp`; the wrapped function gets the Principal first (none
    when `public`) and returns one of the models in `responses`, answered with its status.
    `query` maps each parameter to its schema (`style`, `explode` and `description` in it
    go on the parameter); a response may be a ready OpenAPI response object (a body that
    is not JSON), and `raw_body` a ready request body object."""
    needed = role or ("viewer" if method in SAFE_METHODS else "member")
    statuses = success_statuses(responses)

    def decorate(fn: Callable[..., Answer]) -> Callable[..., ResponseReturnValue]:
        @wraps(fn)
        def view(**kwargs: str) -> ResponseReturnValue:
            if public:
                return respond(fn.__name__, fn(**kwargs), statuses)
            principal = authenticate_api_request()
            if session_only:
                require_session(principal, session_only)
            require_role(principal, needed)
            return respond(fn.__name__, fn(principal, **kwargs), statuses)

        doc: EndpointDoc = {
            "method": method.lower(),
            "summary": summary,
            "tag": tag,
            "responses": responses,
            "body": body,
            "query": query or {},
            "public": public,
            "role": needed,
            "session_only": bool(session_only),
            "raw_body": raw_body,
        }
        setattr(view, DOC_ATTR, doc)
        bp.add_url_rule(rule, endpoint=fn.__name__, view_func=view, methods=[method])
        return view

    return decorate


def json_body() -> dict[str, Any]:
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


def _schema_ref(model: type[BaseModel]) -> dict[str, str]:
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
    414: "The URL is longer than 4,094 bytes",
    431: "A request header is longer than 8,190 bytes, or there are more than 100",
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
# The models whose schemas the document holds, each as it is used: request bodies as they
# validate, responses as they serialize.
Models = dict[type[BaseModel], JsonSchemaMode]


def _parameter(name: str, spec: dict[str, Any]) -> dict[str, Any]:
    spec = dict(spec)
    extra = {key: spec.pop(key) for key in PARAMETER_KEYS if key in spec}
    return {"name": name, "in": "query", "required": False, "schema": spec, **extra}


def _path_parameter(rule: Rule, arg: str) -> dict[str, Any]:
    parameter: dict[str, Any] = {"name": arg, "in": "path", "required": True, "schema": {"type": "string"}}
    if f"<record_key:{arg}>" in rule.rule:
        parameter.update(description="may hold /, written %2F", **{"x-slashes": True})
    return parameter


def _responses(doc: EndpointDoc, statuses: dict[int, Documented], models: Models) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for status, model in sorted(statuses.items()):
        text = STATUS_TEXT.get(status, str(status))
        if status == 403 and doc["session_only"]:
            text = "API keys get 403: this needs a signed-in session. " + text
        if isinstance(model, dict):  # a body that is not JSON, described as it is
            out[str(status)] = {"description": text, **model}
            continue
        entry: dict[str, Any] = {"description": text}
        if model is not None:
            models[model] = "serialization"
            entry["content"] = {"application/json": {"schema": _schema_ref(model)}}
        out[str(status)] = entry
    return out


def _access(doc: EndpointDoc) -> dict[str, Any]:
    """Who may call: public, or the role needed and whether it takes a signed-in session."""
    if doc["public"]:
        return {"security": []}
    if doc["role"] == "viewer" and not doc["session_only"]:
        return {}
    needs = []
    if doc["role"] != "viewer":
        needs.append(f"Needs the `{doc['role']}` role or higher.")
    if doc["session_only"]:
        needs.append("A signed-in session only: API keys get 403.")
    access: dict[str, Any] = {"description": " ".join(needs)}
    if doc["session_only"]:
        access.update(security=[{"session": []}], **{"x-session-only": True})
    return access


def _request_body(doc: EndpointDoc, models: Models) -> dict[str, Any]:
    if doc["raw_body"] is not None:
        return {"requestBody": doc["raw_body"]}
    if doc["body"] is None:
        return {}
    models[doc["body"]] = "validation"
    return {
        "requestBody": {
            "required": True,
            "content": {"application/json": {"schema": _schema_ref(doc["body"])}},
        }
    }


def _operation(rule: Rule, doc: EndpointDoc, models: Models) -> dict[str, Any]:
    error_model = SourcesError if rule.rule.startswith("/api/") else Error
    unsafe = doc["method"].upper() not in SAFE_METHODS
    parameters = [_path_parameter(rule, arg) for arg in rule.arguments]
    parameters += [_parameter(name, spec) for name, spec in doc["query"].items()]
    if unsafe and not doc["public"]:
        parameters.append(CSRF_HEADER)
    # Every route can refuse its input, and a URL or header over the limits; a route behind
    # a key its caller; and every request body is capped, however it is sent.
    statuses = dict(doc["responses"])
    if not doc["public"]:
        statuses.setdefault(401, error_model)
        statuses.setdefault(403, error_model)
    statuses.setdefault(400, error_model)
    statuses.setdefault(414, error_model)
    statuses.setdefault(431, error_model)
    if unsafe:
        statuses.setdefault(413, error_model)
    return {
        "operationId": str(rule.endpoint).replace(".", "_"),
        "summary": doc["summary"],
        "tags": [doc["tag"]],
        "parameters": parameters,
        "responses": _responses(doc, statuses, models),
        **_access(doc),
        **_request_body(doc, models),
    }


def documented_routes(app: Flask) -> list[tuple[Rule, EndpointDoc]]:
    """Every route declared through `endpoint()`, with its declaration."""
    found = []
    for rule in app.url_map.iter_rules():
        doc: EndpointDoc | None = getattr(app.view_functions[rule.endpoint], DOC_ATTR, None)
        if doc is not None:
            found.append((rule, doc))
    return found


def build_openapi(app: Flask) -> dict[str, Any]:
    paths: dict[str, dict[str, Any]] = {}
    models: Models = {Error: "serialization", SourcesError: "serialization"}
    for rule, doc in documented_routes(app):
        paths.setdefault(_path(rule.rule), {})[doc["method"]] = _operation(rule, doc, models)
    _, top = models_json_schema(
        sorted(models.items(), key=lambda item: item[0].__name__),
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


def openapi_document() -> dict[str, Any]:
    app = current_app
    doc: dict[str, Any] | None = app.extensions.get("hookstream_openapi")
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
    def openapi_json() -> Response:
        return jsonify(openapi_document())
