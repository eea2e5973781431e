"""HTTP API sources as declarations: a provider names its streams (path, where the records
are, their key, pagination, the "changed since" parameter, a parent stream) and how it
authenticates; this engine reads any of them the same way."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from types import MappingProxyType
from typing import Any, ClassVar
from urllib.parse import quote

import httpx

from ..values import jsonpaths
from ..values.records import Incoming, parse_time
from . import calls, http, oauth_app
from .base import Batch, Batches, Connection, ReadContext, SourceError, SourceType, TestResult
from .calls import LIMIT_PAUSE, Api, PositionExpired
from .oauth import RefreshGrant, Tokens, expires_in, expiry_text
from .paging import Ending, Page, Paging


@dataclass(frozen=True)
class Parent:
    """A stream read once per record of another (a repository's issues): each parent
    record's value at `key` fills the path's `{into}`, unless the config already does."""

    stream: Stream
    key: str
    into: str


@dataclass(frozen=True)
class Stream:
    name: str
    # Relative to the base URL; {name} is a config field (URL-quoted) or a variable the
    # declaration computes (already quoted).
    path: str
    label: str = ""
    records_path: str = "$"
    primary_key: str = "id"
    paging: Paging = field(default_factory=Paging)
    params: Mapping[str, Any] = field(default_factory=lambda: MappingProxyType({}))
    # Query parameters taken from config fields ({parameter: field}), sent when it is set.
    config_params: Mapping[str, str] = field(default_factory=lambda: MappingProxyType({}))
    # The server-side "changed since" filter, sent on incremental reads with the newest
    # time at `cursor_path` seen so far, in the API's own spelling.
    since_param: str | None = None
    cursor_path: str | None = None
    parent: Parent | None = None
    shape: Callable[[Any], Any] | None = None  # what the record gains as it is read
    deleted: Callable[[Any], bool] | None = None  # the API reports this record deleted
    # The JSON a read POSTs, made from the "changed since" (a search API's filter); the
    # paging style's own keys (its cursor) are added to it.
    payload: Callable[[str | None], dict] | None = None
    # The query parameters made from the "changed since" (a query language's filter, such
    # as SOQL's), for an API that takes its filter inside a parameter of its own.
    since_query: Callable[[str | None], dict] | None = None
    # Read instead of this one on an incremental read (a search API that filters on the
    # last-modified time where the list cannot).
    changes: Stream | None = None
    # Read after this one on every read: what it lists is gone (an archived list), each a
    # deletion at its time at `cursor_path`.
    removed: Stream | None = None

    def body(self, since: str | None, paged: dict | None) -> dict | None:
        if self.payload is None:
            return paged
        return {**self.payload(since), **(paged or {})}

    def query(self, since: str | None, config: Mapping[str, Any]) -> dict:
        params = dict(self.params)
        params.update(
            {p: config[f] for p, f in self.config_params.items() if config.get(f) not in (None, "")}
        )
        if since and self.since_param:
            params[self.since_param] = since
        if self.since_query is not None:
            params.update(self.since_query(since))
        return params

    def items(self, records: list, high: str | None) -> tuple[list, str | None]:
        """The records as Incoming, and the newest cursor seen with them."""
        cursor_of = jsonpaths.getter(self.cursor_path) if self.cursor_path else None
        items = []
        for record in records:
            raw = cursor_of(record) if cursor_of and isinstance(record, dict) else None
            at = parse_time(raw)
            if at is not None and (high is None or at > (parse_time(high) or at)):
                high = raw
            shaped = self.shape(record) if self.shape and isinstance(record, dict) else record
            gone = bool(self.deleted and isinstance(record, dict) and self.deleted(record))
            items.append(Incoming(shaped, at, event_type="deleted" if gone else None))
        return items, high


def since_text(moment: datetime | None) -> str | None:
    """A time as a "changed since" parameter: ISO 8601 in UTC, as APIs take it."""
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ") if moment is not None else None


def fill(path: str, values: Mapping[str, Any]) -> str:
    """A declared path with its values in; a value the config lacks is the config's to give."""
    try:
        return path.format_map(values)
    except KeyError as exc:
        raise SourceError(f"Set {exc.args[0]} to read {path}", retry=False) from None


def records_of(body: object, records_path: str, url: str) -> list:
    matches = jsonpaths.compile_path(records_path).find(body)
    records = matches[0].value if len(matches) == 1 else [m.value for m in matches]
    if records is None:  # `"data": null`, as some APIs say "no records"
        return []
    if not isinstance(records, list):
        raise SourceError(
            f"{records_path} is not a list of records in the response from {http.shown(url)}",
            retry=False,
        )  # the answer's shape: the records path is wrong
    return records


def read_pages(
    api: Api,
    url: str,
    stream: Stream,
    since: str | None,
    checkpoint: dict,
    config: Mapping[str, Any],
    missing_ok: bool = False,
) -> Batches:
    """One stream at one URL, a batch per page, resuming at the checkpoint's position. The
    stream's new position (`{"since": newest}`) comes with its last batch. `missing_ok`: a
    URL that is not there (404, 410) has no records."""
    paging = stream.paging
    position = checkpoint.get("position")
    if position is None:
        position = paging.first()
    asked = since
    since = checkpoint.get("since_from", since)
    high = checkpoint.get("since_high", since)
    ending, first = Ending(paging.numbered), True
    while True:
        target, params = paging.request(url, stream.query(since, config), position)
        try:
            # Past the first page, 404 is how many APIs say "no such page" (Django REST framework).
            response = api.get(
                target,
                params,
                stream.label or stream.name,
                missing_is_end=missing_ok or (paging.numbered and not first),
                body=stream.body(since, paging.body(position)),
            )
        except PositionExpired:
            if position == paging.first():
                raise
            # A position kept too long (a read resumed after a while): the query is asked
            # again from the newest cursor read, in the order it reads.
            since, position = high or since, paging.first()
            continue
        body = api.json(response, target) if response is not None else None
        records = ending.fresh(records_of(body, stream.records_path, target) if response is not None else [])
        first = False
        items, high = stream.items(records, high)
        position = paging.following(position, Page(response, body, records))
        finished = ending.finished(records, position)
        if not finished and paging.capped(position):
            since, position = asked_again(api, stream, since, high), paging.first()
        mark = {"position": position, "since_high": high, "done": finished or None}
        yield Batch(
            items,
            mark if since == asked else {**mark, "since_from": since},
            state={"since": high} if finished and high else None,
        )
        if finished:
            return


def asked_again(api: Api, stream: Stream, since: str | None, high: str | None) -> str:
    """Where a query that can page no further starts again: at the newest cursor it read,
    since it reads in that order. Records changed at that very moment are read again."""
    newest, before = parse_time(high), parse_time(since)
    if high is None or newest is None or (before is not None and newest <= before):
        raise SourceError(
            f"More {stream.label or stream.name} changed at {since} than one query to "
            f"{api.speaker} can page through; a full read reads them all",
            retry=False,
        )
    return high


def read_then_removed(
    main: Iterable[Batch],
    removed: Callable[[dict], Batches],
    state: dict | None,
    checkpoint: dict,
    full: bool,
) -> Batches:
    """A stream's records, then what its `removed` list says is gone, as deletions. That
    list has no "changed since": what an earlier read found gone already is passed over by
    its time. Both positions are kept in the one state."""
    current = dict(state or {})
    if "removed" not in checkpoint:
        for batch in main:
            if batch.state is not None:
                current.update(batch.state)
            mark = {**batch.checkpoint, "done": None}
            if batch.checkpoint.get("done"):
                mark = {"removed": {}}
            yield Batch(
                batch.items,
                mark,
                state=dict(current) if batch.state is not None else None,
                read_at=batch.read_at,
            )
        checkpoint = {"removed": {}}
    seen = None if full else parse_time(current.get("removed_since"))
    for batch in removed(checkpoint["removed"]):
        items = [i for i in batch.items if seen is None or i.event_at is None or i.event_at >= seen]
        if batch.state is not None:
            current["removed_since"] = batch.state["since"]
        yield Batch(
            items,
            {"removed": batch.checkpoint, "done": batch.checkpoint.get("done")},
            state=dict(current) if batch.state is not None else None,
            read_at=batch.read_at,
        )


def parent_values(api: Api, base: str, parent: Parent, variables: dict) -> list[str]:
    """Every parent record's value at `parent.key`, in the order the API lists them."""
    getter, found = jsonpaths.getter(parent.key), []
    url = base + fill(parent.stream.path, variables)
    for batch in read_pages(api, url, parent.stream, None, {}, {}):
        found += [v for v in (getter(item.data) for item in batch.items) if isinstance(v, str | int)]
    return [str(v) for v in dict.fromkeys(found)]


def read_children(
    api: Api,
    base: str,
    stream: Stream,
    parent: Parent,
    config: dict,
    variables: dict,
    state: dict | None,
    checkpoint: dict,
    full: bool,
    floor: str | None = None,
) -> Batches:
    """The stream once per parent record. The parents are listed once per read and kept in
    the checkpoint, so a resumed read goes on where it was; each parent's own incremental
    position is kept under its value."""
    into = parent.into
    parents = checkpoint.get("parents")
    if parents is None:
        parents = parent_values(api, base, parent, variables)
    positions = dict((state or {}).get("of") or {})
    at, inner = checkpoint.get("at", 0), checkpoint.get("inner") or {}
    if at >= len(parents):
        yield Batch([], {"parents": parents, "at": at, "done": True})
        return
    for index in range(at, len(parents)):
        value = parents[index]
        since = (None if full else (positions.get(value) or {}).get("since")) or floor
        url = base + fill(stream.path, {**variables, into: quote(value, safe="/")})
        # A parent listed a moment ago may be gone, or have this stream turned off (GitHub
        # answers 410 for a repository's issues then): it has none, the others are read.
        for batch in read_pages(api, url, stream, since, inner, config, missing_ok=True):
            over = bool(batch.checkpoint.get("done"))
            if batch.state is not None:
                positions[value] = batch.state
            yield Batch(
                batch.items,
                {
                    "parents": parents,
                    "at": index + 1 if over else index,
                    "inner": {} if over else batch.checkpoint,
                    "done": (over and index == len(parents) - 1) or None,
                },
                state={"of": dict(positions)} if batch.state is not None else None,
                read_at=batch.read_at,
            )
        inner = {}


class Declared(SourceType):
    """A source type that is its declaration: subclass, fill these in, @register."""

    streams: ClassVar[tuple[Stream, ...]] = ()
    speaker: ClassVar[str] = "The API"  # who answered, in messages
    base_url_field: ClassVar[str] = "base_url"
    default_base_url: ClassVar[str] = ""
    # What the connection test reads, and where its answer names who is connected.
    check_path: ClassVar[str] = "/"
    check_name_path: ClassVar[str | None] = None
    # Set when the API takes OAuth access tokens renewed with a refresh token; `options`
    # then reads the current access token from the credentials it is given.
    oauth: ClassVar[RefreshGrant | None] = None
    # How long a rate limit the API says without a time (`limit_said`) is waited out.
    limit_pause: ClassVar[float] = LIMIT_PAUSE
    dials_out = True

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        if cls.streams and not cls.fixed_streams:
            cls.fixed_streams = tuple(s.name for s in cls.streams)

    # -- what a declaration may override -------------------------------------------

    def options(self, credentials: dict) -> dict:
        """Headers and auth for every call (httpx keyword arguments)."""
        return {}

    def variables(self, config: dict) -> dict:
        """Path values computed from the config, already URL-quoted."""
        return {}

    def reason(self, response: httpx.Response) -> str | None:
        """The API's own message in an error answer."""
        return None

    def limit_said(self, response: httpx.Response) -> bool:
        """Whether an answer is the API's own way of saying "rate limited" (beyond 429 and
        the Retry-After and X-RateLimit-* headers, which every declaration gets)."""
        return False

    def pace(self, config: dict) -> Callable[[float | None], float] | None:
        return None

    def pause_after(self, response: httpx.Response) -> float | None:
        """Seconds to wait before the next call, as the API's own rate-limit headers ask
        beyond X-RateLimit-* (a leaky bucket's fill level, say); None: no wait."""
        return None

    def expired(self, response: httpx.Response) -> bool:
        """Whether an error answer says the page position sent has expired (a query locator
        past its lifetime), so that asking the query again is what helps."""
        return False

    def spent_until(self, response: httpx.Response) -> float | None:
        """When the API's spent budget comes back (epoch seconds), if this answer spent it;
        X-RateLimit-Remaining and -Reset unless the API says it in headers of its own."""
        return calls.spent_until(response)

    def stream(self, name: str | None, config: dict) -> Stream:
        for stream in self.streams:
            if stream.name == (name or self.streams[0].name):
                return stream
        raise SourceError(
            f"Unknown {self.name} stream {name!r}; one of {', '.join(self.fixed_streams)}", retry=False
        )

    # -- the engine ----------------------------------------------------------------

    def key_column(self, config: Mapping[str, Any], stream: str | None = None) -> str:
        try:
            return self.stream(stream, dict(config)).primary_key
        except SourceError:
            return "id"

    def base_url(self, credentials: dict) -> str:
        return str(credentials.get(self.base_url_field) or self.default_base_url).rstrip("/")

    def api(self, conn: Connection, ctx: ReadContext | None, retries: bool = True) -> Api:
        tokens = None
        # A connection may hold a plain token instead (HubSpot's private app): nothing to renew.
        if self.oauth is not None and conn.credentials.get(self.oauth.refresh_token_field):
            borrowed = None
            if not conn.credentials.get(self.oauth.client_secret_field):
                borrowed = oauth_app.instance_secret(self.short_name, self.authorization, conn.credentials)
            tokens = Tokens(self.oauth, conn, self.speaker, self.name, self.options, borrowed)
        return Api(
            self.speaker,
            self.options(conn.credentials),
            throttle=ctx.throttle if ctx else (lambda: None),
            tell_spent=ctx.spent_until if ctx else (lambda epoch: None),
            budget_back_at=ctx.budget_back_at if ctx else (lambda: 0.0),
            pace=self.pace(conn.config),
            reason=self.reason,
            limit_said=self.limit_said,
            pause_after=self.pause_after,
            retries=retries,
            stopping=ctx.stopping if ctx else (lambda: False),
            spent=self.spent_until,
            expired=self.expired,
            limit_pause=self.limit_pause,
            authorize=tokens.authorize if tokens is not None else None,
        )

    def authorized(self, answer: dict, client: oauth_app.Client) -> dict:
        """Credentials for `oauth`'s fields from an authorization code's tokens: renewed at
        the app's token endpoint, with the app's client id (its secret stays the instance's)."""
        grant = self.oauth
        if grant is None:
            return super().authorized(answer, client)
        lifetime = expires_in(answer.get("expires_in")) or grant.lifetime
        return {
            **({self.base_url_field: client.api_url} if client.api_url else {}),
            grant.client_id_field: client.client_id,
            grant.token_url_field: client.token_url,
            grant.refresh_token_field: answer["refresh_token"],
            grant.access_token_field: answer["access_token"],
            grant.expires_field: expiry_text(time.time() + lifetime),
        }

    def path_values(self, config: dict) -> dict:
        quoted = {
            k: quote(str(v), safe="") for k, v in config.items() if isinstance(v, str | int) and v != ""
        }
        return {**quoted, **self.variables(config)}

    def read(
        self,
        conn: Connection,
        stream: str | None,
        state: dict | None,
        checkpoint: dict,
        full: bool,
        ctx: ReadContext,
    ) -> Batches:
        declared = self.stream(stream, conn.config)
        api, base = self.api(conn, ctx), self.base_url(conn.credentials)
        values = self.path_values(conn.config)
        parent = declared.parent
        # Records older than the sync's max_age_days are not kept: not asked for either.
        floor = since_text(ctx.not_before) if declared.since_param or declared.changes else None
        if parent is not None and not values.get(parent.into):
            yield from read_children(
                api, base, declared, parent, conn.config, values, state, checkpoint, full, floor
            )
            return
        since = (None if full else (state or {}).get("since")) or floor
        chosen = declared.changes if since and declared.changes else declared
        gone = declared.removed
        if gone is None:
            yield from read_pages(
                api, base + fill(chosen.path, values), chosen, since, checkpoint, conn.config
            )
            return
        # Lazy: a read resumed among the removed never asks for the stream's own pages.
        main = read_pages(api, base + fill(chosen.path, values), chosen, since, checkpoint, conn.config)
        yield from read_then_removed(
            main,
            lambda mark: read_pages(api, base + fill(gone.path, values), gone, None, mark, conn.config),
            state,
            checkpoint,
            full,
        )

    def test(self, conn: Connection) -> TestResult:
        api = self.api(conn, None, retries=False)
        try:
            url = self.base_url(conn.credentials) + fill(self.check_path, self.path_values(conn.config))
            response = api.get(url, {}, "connection test")
            body = api.json(response, url) if response is not None else None
        except SourceError as exc:
            return TestResult(False, str(exc))
        who = jsonpaths.getter(self.check_name_path)(body) if self.check_name_path else None
        return TestResult(True, f"Connected to {self.name}" + (f" as {who}" if who else ""))
