"""Any paginated JSON API over HTTP."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any
from urllib.parse import urljoin

import httpx

from ..values import documents, jsonpaths
from ..values.records import Incoming, parse_time
from . import http
from .base import Batch, Batches, Connection, ReadContext, SourceError, SourceType, TestResult, register
from .fields import HEADER_NAME, HEADER_NAME_RULE, NOT_A_HEADER_NAME, Field

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
class RestApi(SourceType):
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

    def read(  # noqa: C901 -- replaced whole by the connectors work; not split for now
        self,
        conn: Connection,
        stream: str | None,
        state: dict | None,
        checkpoint: dict,
        full: bool,
        ctx: ReadContext,
    ) -> Batches:
        creds, config = conn.credentials, conn.config
        url = endpoint_url(creds, {**config, "path": stream or config.get("path")})
        style = config.get("pagination") or "none"
        page_param, size_param = config.get("page_param"), config.get("page_size_param")
        size = int(config.get("page_size") or 100)
        records_path = config.get("records_path") or "$"
        next_of = jsonpaths.getter(config["next_path"]) if config.get("next_path") else None
        updated_of = jsonpaths.getter(config["updated_at_path"]) if config.get("updated_at_path") else None
        since = None if full else (state or {}).get("since")
        high = checkpoint.get("since_high", since)
        position: Any = checkpoint.get("position")  # page number, offset, cursor or next URL
        if position is None:
            position = {"page": 1, "offset": 0}.get(style)
        numbered = style in ("page", "offset")
        # A numbered page shorter than the longest before it is the last. page_size alone
        # cannot tell: an API may cap it, or ignore it and use its own.
        longest, previous, first = 0, None, True
        pace, paced = _pacer(config.get("requests_per_second")), None
        while True:
            params: dict[Any, Any] = {}  # names from the config
            if size_param:
                params[size_param] = size
            if since and config.get("updated_since_param"):
                params[config["updated_since_param"]] = since
            target = url
            if style in ("page", "offset") or (style == "cursor" and position is not None):
                params[page_param] = position
            if style == "next_link" and position is not None:
                target = urljoin(url, position)
                params = {}
                if http.origin(target) != http.origin(url):
                    # Host and port only: a URL's user-info part can hold a password.
                    raise SourceError(
                        f"The next link leads to another host ({http.host(target)}); "
                        f"credentials are sent only to {http.host(url)}",
                        retry=False,
                    )
            ctx.throttle()
            paced = pace(paced)
            # Past the first page, 404 is how many APIs say "no such page" (Django REST framework).
            body = self._get(target, params, creds, missing_is_end=numbered and not first)
            records = self._records(body, records_path, target) if body is not None else []
            if numbered and records and records == previous:
                records = []  # the last page again, as some APIs answer for any page past it
            first, previous = False, records
            items = []
            for record in records:
                raw = updated_of(record) if updated_of and isinstance(record, dict) else None
                at = parse_time(raw)
                # Keep the API's own spelling of the newest time: it is sent back as `since`.
                if at is not None and (high is None or at > (parse_time(high) or at)):
                    high = raw
                items.append(Incoming(record, at))
            if style in ("page",):
                position = position + 1
            elif style == "offset":
                position = position + len(records)
            elif style in ("cursor", "next_link"):
                following = next_of(body) if next_of else None
                position = None if following == position else following  # the same page again: the end
            finished = (
                style == "none"
                or not records
                or (numbered and len(records) < longest)
                or (style in ("cursor", "next_link") and not position)
            )
            longest = max(longest, len(records))
            yield Batch(
                items,
                {"position": position, "since_high": high, "done": finished or None},
                state={"since": high} if finished and high else None,
            )
            if finished:
                return

    @staticmethod
    def _records(body: object, records_path: str, target: str) -> list:
        matches = jsonpaths.compile_path(records_path).find(body)
        records = matches[0].value if len(matches) == 1 else [m.value for m in matches]
        if records is None:  # `"data": null`, as some APIs say "no records"
            return []
        if not isinstance(records, list):
            raise SourceError(
                f"{records_path} is not a list of records in the response from {http.shown(target)}",
                retry=False,
            )  # the answer's shape: the records path is wrong
        return records

    def _get(
        self, url: str, params: dict, creds: dict, missing_is_end: bool = False
    ) -> httpx.Response | None:
        # No `params` at all for a next-link: httpx would replace the link's own query string.
        extra = {"params": params} if params else {}
        response = http.request("GET", url, **extra, **auth_options(creds))
        if missing_is_end and response.status_code == 404:
            return None
        if response.status_code in (401, 403):
            raise SourceError(f"The API rejected the credentials (HTTP {response.status_code})", retry=False)
        if response.status_code == 429:
            raise SourceError("The API is rate limiting us (HTTP 429); the run will retry")
        if response.status_code >= 400:
            raise SourceError(
                f"The API answered HTTP {response.status_code} for {http.shown(url)}",
                retry=http.may_pass(response.status_code),
            )
        return http.answer_json(response, url, "The API")


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
