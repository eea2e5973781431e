"""Any paginated JSON API over HTTP."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import httpx

from ..values import documents, jsonpaths
from . import http
from .base import Batches, Connection, ReadContext, SourceError, TestResult, register
from .declared import Declared, Stream, read_pages
from .fields import HEADER_NAME, HEADER_NAME_RULE, NOT_A_HEADER_NAME, Field
from .paging import BodyCursor, BodyNextUrl, Offset, PageNumber, Paging

AUTH_TYPES = (
    ("none", "None"),
    ("bearer", "Bearer token"),
    ("header", "API key header"),
    ("basic", "Basic (username and password)"),
)
PAGINATION = (
    ("none", "None (one page)"),
    ("page", "Page number"),
    ("offset", "Offset"),
    ("cursor", "Cursor from the response"),
    ("next_link", "Next-page link in the response"),
)


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


def _pacer(per_second: Any) -> Callable[[float | None], float]:
    """The configured requests per second, held within a run: each request waits until
    1/rate s after the one before (it was validated but never applied)."""
    try:
        gap = 1 / float(per_second) if per_second else 0.0
    except (TypeError, ValueError, ZeroDivisionError):
        gap = 0.0

    def pace(last: float | None) -> float:
        if gap and last is not None:
            wait = last + gap - time.monotonic()
            if wait > 0:
                time.sleep(wait)
        return time.monotonic()

    return pace


@register
class RestApi(Declared):
    short_name = "rest_api"
    name = "REST API"
    description = "Pull records from any paginated JSON API, incrementally when it can filter by update time."
    name_example = "Billing API"
    auth_methods = ("none", "bearer", "header", "basic")
    labels = ("api", "http")
    dials_out = True
    auth_fields = (
        Field("base_url", "url", "Base URL", required=True, placeholder="https://api.example.com"),
        Field("auth_type", "select", "Authentication", default="none", options=AUTH_TYPES),
        Field(
            "token",
            "password",
            "Token or API key",
            description="For bearer or API-key-header auth.",
            shown_when=("auth_type", ("bearer", "header")),
            sent_to=("base_url", "auth_type", "header_name"),
        ),
        Field(
            "header_name",
            "string",
            "API key header",
            placeholder="X-API-Key",
            shown_when=("auth_type", ("header",)),
            rules=HEADER_NAME_RULE,
        ),
        Field(
            "username",
            "string",
            "Username",
            description="For basic auth.",
            shown_when=("auth_type", ("basic",)),
        ),
        Field(
            "password",
            "password",
            "Password",
            description="For basic auth.",
            shown_when=("auth_type", ("basic",)),
            sent_to=("base_url", "auth_type"),
        ),
    )
    config_fields = (
        Field("path", "string", "Path", required=True, default="/", placeholder="/v1/orders"),
        Field(
            "records_path",
            "string",
            "Records JSONPath",
            default="$",
            description="Where the list of records is in each response, e.g. $.data.",
        ),
        Field("pagination", "select", "Pagination", default="none", options=PAGINATION),
        Field(
            "page_param",
            "string",
            "Page / offset / cursor parameter",
            placeholder="page",
            shown_when=("pagination", ("page", "offset", "cursor")),
        ),
        Field(
            "page_size_param",
            "string",
            "Page size parameter",
            placeholder="limit",
            shown_when=("pagination", ("page", "offset", "cursor", "next_link")),
        ),
        Field(
            "page_size",
            "number",
            "Page size",
            default=100,
            description="Sent as the page size parameter. Reading ends at an empty page or one shorter "
            "than those before it, so an API that caps or ignores it is still read whole.",
            shown_when=("pagination", ("page", "offset", "cursor", "next_link")),
        ),
        Field(
            "next_path",
            "string",
            "Next cursor or link JSONPath",
            placeholder="$.next",
            description="For cursor and next-link pagination.",
            shown_when=("pagination", ("cursor", "next_link")),
        ),
        Field(
            "updated_since_param",
            "string",
            "“Updated since” parameter",
            placeholder="updated_since",
            description="Sent on incremental syncs with the newest timestamp seen so far.",
        ),
        Field("updated_at_path", "string", "Record updated-at JSONPath", placeholder="$.updated_at"),
        Field(
            "requests_per_second",
            "number",
            "Rate limit (requests per second)",
            default=5,
            description="How fast one run requests pages. The schedule's “Requests allowed / per "
            "interval” is a limit across all of this source's runs and tests; both apply, "
            "and the stricter one sets the pace.",
        ),
    )

    def check(self, credentials: dict, config: dict) -> dict[str, str]:
        return {**_auth_errors(credentials), **_config_errors(config)}

    def test(self, conn: Connection) -> TestResult:
        url = endpoint_url(conn.credentials, conn.config)
        try:
            response = http.request("GET", url, **auth_options(conn.credentials))
        except SourceError as exc:
            return TestResult(False, str(exc))
        if response.status_code in (401, 403):
            return TestResult(False, f"The API rejected the credentials (HTTP {response.status_code})")
        if response.status_code >= 400:
            return TestResult(False, f"The API answered HTTP {response.status_code} for {http.shown(url)}")
        try:
            body = http.json_of(response)
        except documents.Refused as exc:
            return TestResult(False, f"The API's answer {exc}")
        except ValueError:
            return TestResult(
                False,
                f"The API did not answer JSON (Content-Type: {response.headers.get('content-type', 'none')})",
            )
        path = conn.config.get("records_path") or "$"
        records = jsonpaths.compile_path(path).find(body)
        if not records:
            return TestResult(
                False, f"Connected, but the records path {path} matched nothing in the response"
            )
        value = records[0].value if len(records) == 1 else [m.value for m in records]
        if not isinstance(value, list) and value is not None:
            return TestResult(False, f"Connected, but {path} is not a list of records")
        return TestResult(True, f"Connected: {len(value or [])} records on the first page")

    def list_streams(self, conn: Connection) -> list[dict]:
        path = conn.config.get("path") or "/"
        return [{"name": path, "label": f"GET {path}"}]

    def options(self, credentials: dict) -> dict:
        return auth_options(credentials)

    def pace(self, config: dict) -> Callable[[float | None], float]:
        return _pacer(config.get("requests_per_second"))

    def stream(self, name: str | None, config: dict) -> Stream:
        """The one stream the form describes (its name is its path)."""
        path = name or config.get("path") or "/"
        params = {}
        if config.get("page_size_param"):
            params[config["page_size_param"]] = int(config.get("page_size") or 100)
        return Stream(
            name=path,
            path="/" + path.lstrip("/"),
            label=path,
            records_path=config.get("records_path") or "$",
            paging=_paging(config),
            params=params,
            since_param=config.get("updated_since_param") or None,
            cursor_path=config.get("updated_at_path") or None,
        )

    def read(
        self,
        conn: Connection,
        stream: str | None,
        state: dict | None,
        checkpoint: dict,
        full: bool,
        ctx: ReadContext,
    ) -> Batches:
        # The path is the user's, not a template: it is sent as written.
        declared = self.stream(stream, conn.config)
        url = endpoint_url(conn.credentials, {"path": declared.path})
        since = None if full else (state or {}).get("since")
        yield from read_pages(self.api(conn, ctx), url, declared, since, checkpoint, conn.config)


def _paging(config: dict) -> Paging:
    # check() has made sure the chosen style's fields are given.
    style = config.get("pagination") or "none"
    param, next_path = str(config.get("page_param") or ""), str(config.get("next_path") or "$.next")
    if style == "page":
        return PageNumber(param)
    if style == "offset":
        return Offset(param)
    if style == "cursor":
        return BodyCursor(param, next_path)
    if style == "next_link":
        return BodyNextUrl(next_path)
    return Paging()


def _auth_errors(credentials: dict) -> dict[str, str]:
    """What the chosen authentication needs of the other credential fields."""
    errors = {}
    kind = credentials.get("auth_type", "none")
    if kind in ("bearer", "header") and not credentials.get("token"):
        errors["token"] = f"is required for {kind} authentication"
    if kind == "basic" and not credentials.get("username"):
        errors["username"] = "is required for basic authentication"
    if (
        kind == "header"
        and credentials.get("header_name")
        and not HEADER_NAME.fullmatch(credentials["header_name"])
    ):
        errors["header_name"] = NOT_A_HEADER_NAME
    return errors


def _config_errors(config: dict) -> dict[str, str]:
    """Paths normalised (in `config`), and what the chosen pagination needs."""
    errors = {}
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
