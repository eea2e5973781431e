"""Any paginated JSON API over HTTP."""
from __future__ import annotations

import httpx

from ..services import jsonpaths
from . import http
from .base import Connection, SourceError, SourceType, TestResult, register
from .fields import Field

AUTH_TYPES = (("none", "None"), ("bearer", "Bearer token"), ("header", "API key header"),
              ("basic", "Basic (username and password)"))
PAGINATION = (("none", "None (one page)"), ("page", "Page number"), ("offset", "Offset"),
              ("cursor", "Cursor from the response"), ("next_link", "Next-page link in the response"))


def auth_options(creds: dict) -> dict:
    kind = creds.get("auth_type") or "none"
    if kind == "bearer":
        return {"headers": {"Authorization": f"Bearer {creds.get('token', '')}"}}
    if kind == "header":
        return {"headers": {creds.get("header_name") or "X-API-Key": creds.get("token", "")}}
    if kind == "basic":
        return {"auth": httpx.BasicAuth(creds.get("username", ""), creds.get("password", ""))}
    return {}


def endpoint_url(creds: dict, config: dict) -> str:
    return creds["base_url"].rstrip("/") + "/" + (config.get("path") or "").lstrip("/")


@register
class RestApi(SourceType):
    short_name = "rest_api"
    name = "REST API"
    description = "Pull records from any paginated JSON API, incrementally when it can filter by update time."
    auth_methods = ("none", "bearer", "header", "basic")
    labels = ("api", "http")
    auth_fields = (
        Field("base_url", "url", "Base URL", required=True, placeholder="https://api.example.com"),
        Field("auth_type", "select", "Authentication", default="none", options=AUTH_TYPES),
        Field("token", "password", "Token or API key", description="For bearer or API-key-header auth."),
        Field("header_name", "string", "API key header", placeholder="X-API-Key"),
        Field("username", "string", "Username", description="For basic auth."),
        Field("password", "password", "Password", description="For basic auth."),
    )
    config_fields = (
        Field("path", "string", "Path", required=True, default="/", placeholder="/v1/orders"),
        Field("records_path", "string", "Records JSONPath", default="$",
              description="Where the list of records is in each response, e.g. $.data."),
        Field("pagination", "select", "Pagination", default="none", options=PAGINATION),
        Field("page_param", "string", "Page / offset / cursor parameter", placeholder="page"),
        Field("page_size_param", "string", "Page size parameter", placeholder="limit"),
        Field("page_size", "number", "Page size", default=100),
        Field("next_path", "string", "Next cursor or link JSONPath", placeholder="$.next",
              description="For cursor and next-link pagination."),
        Field("updated_since_param", "string", "“Updated since” parameter", placeholder="updated_since",
              description="Sent on incremental syncs with the newest timestamp seen so far."),
        Field("updated_at_path", "string", "Record updated-at JSONPath", placeholder="$.updated_at"),
        Field("requests_per_second", "number", "Rate limit (requests per second)", default=5),
    )

    def check(self, credentials, config):
        errors = {}
        kind = credentials.get("auth_type", "none")
        if kind in ("bearer", "header") and not credentials.get("token"):
            errors["token"] = f"is required for {kind} authentication"
        if kind == "basic" and not credentials.get("username"):
            errors["username"] = "is required for basic authentication"
        for name in ("records_path", "next_path", "updated_at_path"):
            if config.get(name):
                try:
                    config[name] = jsonpaths.normalise(config[name])
                except ValueError as exc:
                    errors[name] = str(exc)
        if config.get("pagination") in ("cursor", "next_link") and not config.get("next_path"):
            errors["next_path"] = "is required for cursor and next-link pagination"
        if config.get("pagination") in ("page", "offset", "cursor") and not config.get("page_param"):
            errors["page_param"] = "is required for this pagination"
        size = config.get("page_size")
        if size is not None and not 1 <= size <= 10000:
            errors["page_size"] = "must be from 1 to 10000"
        rate = config.get("requests_per_second")
        if rate is not None and not 0 < rate <= 1000:
            errors["requests_per_second"] = "must be more than 0 and at most 1000"
        return errors

    def test(self, conn: Connection) -> TestResult:
        url = endpoint_url(conn.credentials, conn.config)
        try:
            response = http.request("GET", url, **auth_options(conn.credentials))
        except SourceError as exc:
            return TestResult(False, str(exc))
        if response.status_code in (401, 403):
            return TestResult(False, f"The API rejected the credentials (HTTP {response.status_code})")
        if response.status_code >= 400:
            return TestResult(False, f"The API answered HTTP {response.status_code} for {url}")
        try:
            body = response.json()
        except ValueError:
            return TestResult(False, f"The API did not answer JSON (Content-Type: "
                                     f"{response.headers.get('content-type', 'none')})")
        path = conn.config.get("records_path") or "$"
        records = jsonpaths.compile_path(path).find(body)
        if not records:
            return TestResult(False, f"Connected, but the records path {path} matched nothing in the response")
        value = records[0].value if len(records) == 1 else [m.value for m in records]
        if not isinstance(value, list):
            return TestResult(False, f"Connected, but {path} is not a list of records")
        return TestResult(True, f"Connected: {len(value)} records on the first page")

    def list_streams(self, conn: Connection) -> list[dict]:
        path = conn.config.get("path") or "/"
        return [{"name": path, "label": f"GET {path}"}]
