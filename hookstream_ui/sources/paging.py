"""How the pages of one stream follow each other: each style of pagination, once.

A style says where the first page is (`first`), how a page's request is made from its
position (`request`, and `body` for a POST such as GraphQL's) and where the next page is
once a page is read (`following`, None at the end). Numbered styles (page number, offset) cannot be told their last page by the API:
`Ending` decides it the same way for both."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urljoin

import httpx

from ..values import jsonpaths
from . import http
from .base import SourceError


@dataclass
class Page:
    """One answer as a style needs it to find the next page."""

    response: httpx.Response | None
    body: Any
    records: list


class Paging:
    """One page, no pagination."""

    numbered = False

    def first(self) -> Any:
        return None

    def request(self, url: str, params: dict, position: Any) -> tuple[str, dict]:
        return url, params

    def body(self, position: Any) -> dict | None:
        """The JSON a page's request sends (it is then a POST); None for a GET."""
        return None

    def following(self, position: Any, page: Page) -> Any:
        return None

    def capped(self, position: Any) -> bool:
        """Whether the query can page no further to `position` though the API has more: the
        read then asks again from the newest cursor it has seen."""
        return False


@dataclass(frozen=True)
class PageNumber(Paging):
    param: str
    start: int = 1
    numbered = True

    def first(self) -> Any:
        return self.start

    def request(self, url: str, params: dict, position: Any) -> tuple[str, dict]:
        return url, {**params, self.param: position}

    def following(self, position: Any, page: Page) -> Any:
        return position + 1


@dataclass(frozen=True)
class Offset(Paging):
    param: str
    numbered = True

    def first(self) -> Any:
        return 0

    def request(self, url: str, params: dict, position: Any) -> tuple[str, dict]:
        return url, {**params, self.param: position}

    def following(self, position: Any, page: Page) -> Any:
        return position + len(page.records)


def _unless_same(position: Any, following: Any) -> Any:
    # An API that names the page just read as the next one has no next one: reading on
    # would loop forever.
    return None if following == position or following in ("", None) else following


@dataclass(frozen=True)
class BodyCursor(Paging):
    """The next page's cursor is in the body, sent back as a query parameter."""

    param: str
    path: str

    def request(self, url: str, params: dict, position: Any) -> tuple[str, dict]:
        return url, params if position is None else {**params, self.param: position}

    def following(self, position: Any, page: Page) -> Any:
        return _unless_same(position, jsonpaths.getter(self.path)(page.body))


@dataclass(frozen=True)
class PostedCursor(Paging):
    """The next page's cursor is in the body and goes back in the next request's JSON body,
    as a search API read by POST takes it. `cap`: how far one query can page, when the
    cursor counts the results before it (a search API's result limit)."""

    param: str
    path: str
    cap: int | None = None

    def body(self, position: Any) -> dict | None:
        return {} if position is None else {self.param: position}

    def following(self, position: Any, page: Page) -> Any:
        return _unless_same(position, jsonpaths.getter(self.path)(page.body))

    def capped(self, position: Any) -> bool:
        try:
            return self.cap is not None and position is not None and int(position) >= self.cap
        except (TypeError, ValueError):  # a cursor that is not a count cannot reach the cap
            return False


def _link(url: str, params: dict, position: Any) -> tuple[str, dict]:
    """The next page's own URL, whole: its query string already holds every parameter (httpx
    would replace it with `params`), and credentials go only to the origin they were given for."""
    if position is None:
        return url, params
    target = urljoin(url, position)
    if http.origin(target) != http.origin(url):
        # Host and port only: a URL's user-info part can hold a password.
        raise SourceError(
            f"The next link leads to another host ({http.host(target)}); "
            f"credentials are sent only to {http.host(url)}",
            retry=False,
        )
    return target, {}


@dataclass(frozen=True)
class BodyNextUrl(Paging):
    """The next page's URL is in the body."""

    path: str

    def request(self, url: str, params: dict, position: Any) -> tuple[str, dict]:
        return _link(url, params, position)

    def following(self, position: Any, page: Page) -> Any:
        return _unless_same(position, jsonpaths.getter(self.path)(page.body))


@dataclass(frozen=True)
class LinkHeader(Paging):
    """The next page's URL is the answer's `Link` header with rel="next" (RFC 8288)."""

    def request(self, url: str, params: dict, position: Any) -> tuple[str, dict]:
        return _link(url, params, position)

    def following(self, position: Any, page: Page) -> Any:
        if page.response is None:
            return None
        return _unless_same(position, (page.response.links.get("next") or {}).get("url"))


@dataclass
class Ending:
    """When a read is over. Any style ends at an empty page or without a next position. A
    numbered page shorter than the longest before it is the last (page_size alone cannot
    tell: an API may cap it, or ignore it and use its own), and the previous page served
    again is past the end, as some APIs answer for any page number past it."""

    numbered: bool
    longest: int = 0
    previous: list | None = field(default=None, repr=False)

    def fresh(self, records: list) -> list:
        """`records`, or none when they are the numbered page before served again."""
        repeated = self.numbered and records and records == self.previous
        self.previous = records
        return [] if repeated else records

    def finished(self, records: list, following: Any) -> bool:
        short = self.numbered and len(records) < self.longest
        self.longest = max(self.longest, len(records))
        return not records or following is None or short


@dataclass(frozen=True)
class GraphQLCursor(Paging):
    """A GraphQL connection (the Relay convention): each page POSTs `query` with the last
    page's `endCursor` as the `$after` variable while `hasNextPage` says there is more.
    `page_info` is the JSONPath of the connection's pageInfo in the answer."""

    query: str
    page_info: str
    variables: tuple[tuple[str, Any], ...] = ()

    def body(self, position: Any) -> dict | None:
        return {"query": self.query, "variables": {**dict(self.variables), "after": position}}

    def following(self, position: Any, page: Page) -> Any:
        errors = page.body.get("errors") if isinstance(page.body, dict) else None
        if errors:
            # A GraphQL error comes with HTTP 200: the query or its variables are wrong, and
            # asking again gets the same answer.
            first = errors[0].get("message") if isinstance(errors[0], dict) else errors[0]
            raise SourceError(f"The GraphQL API refused the query: {first}", retry=False)
        info = jsonpaths.getter(self.page_info)(page.body)
        if not isinstance(info, dict) or not info.get("hasNextPage"):
            return None
        return _unless_same(position, info.get("endCursor"))
