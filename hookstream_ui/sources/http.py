"""Outbound HTTP for API sources: every connection dialled to an address netguard checked,
every call timed out, redirects followed only to hosts that pass the same check, and
credentials sent only to the origin they were given for."""

from __future__ import annotations

import functools
import ssl
import time
from collections.abc import Iterable
from typing import Any
from urllib.parse import parse_qsl, urlencode, urljoin, urlsplit, urlunsplit

import httpcore
import httpx

from ..values import documents
from .base import SourceError
from .fields import MASK
from .netguard import CONNECT_TIMEOUT, READ_TIMEOUT, resolve

MAX_REDIRECTS = 3
# The most one answer may be: a page is held whole while its records are read, and a worker
# is shared by every tenant's runs.
MAX_ANSWER_BYTES = 64 * 1024 * 1024
ANSWER_SECONDS = 60  # the most one answer may take, however slowly its bytes come
_UNREAD = (b"content-encoding", b"content-length", b"transfer-encoding")  # of the bytes as sent
TIMEOUT = httpx.Timeout(READ_TIMEOUT, connect=CONNECT_TIMEOUT)


class GuardedBackend(httpcore.SyncBackend):
    """Resolves, checks and dials in one step, for every connection (each redirect hop
    included): a name that answers a public address to the check and a private one to the
    connect (DNS rebinding) reaches only the address that was checked. TLS and the Host
    header keep the name."""

    def connect_tcp(
        self,
        host: str,
        port: int,
        timeout: float | None = None,
        local_address: str | None = None,
        socket_options: Iterable[Any] | None = None,
    ) -> httpcore.NetworkStream:
        return super().connect_tcp(resolve(host, port)[0], port, timeout, local_address, socket_options)


class GuardedTransport(httpx.HTTPTransport):
    """httpx's own transport on the guarded backend. Nothing from the process's environment:
    no proxy (the target would go unchecked), no .netrc credentials, no certificate bundle
    other than the default."""

    def __init__(self) -> None:
        context = tls_context()
        super().__init__(verify=context, trust_env=False)
        self._pool = httpcore.ConnectionPool(ssl_context=context, network_backend=GuardedBackend())


@functools.cache
def tls_context() -> ssl.SSLContext:
    """One per process: loading the certificate bundle took most of a call's CPU (some 30 ms
    a page), and a context, once made, is safe to share between threads."""
    return httpx.create_ssl_context(trust_env=False)


def host(url: str) -> str:
    """host[:port] of `url` for messages: never its user-info, which can hold a password."""
    parts = urlsplit(url)
    return f"{parts.hostname}:{parts.port}" if parts.port else str(parts.hostname)


def shown(url: str) -> str:
    """`url` for messages: no user-info, no query string (either can hold a key)."""
    parts = urlsplit(url)
    return f"{parts.scheme}://{host(url)}{parts.path}"


def masked_url(url: str) -> str:
    """`url` to show whole but for what can hold a key: its password and every query value
    masked (`https://u:***@host/hook?token=***`). The path is shown: it is what tells one
    endpoint from another."""
    parts = urlsplit(url)
    netloc = parts.netloc
    if parts.password is not None:
        netloc = f"{parts.username}:{MASK}@{netloc.rpartition('@')[2]}"
    query = parts.query
    if query:
        query = urlencode(
            [(k, MASK if v else v) for k, v in parse_qsl(query, keep_blank_values=True)], safe="*"
        )
    return urlunsplit((parts.scheme, netloc, parts.path, query, parts.fragment))


def origin(url: str) -> tuple:
    parts = urlsplit(url)
    return (
        parts.scheme,
        (parts.hostname or "").lower(),
        parts.port or (443 if parts.scheme == "https" else 80),
    )


def may_pass(status: int) -> bool:
    """Whether an HTTP error answer is worth retrying: the server's trouble (5xx), a timeout
    (408), a conflict (409, Stripe's "try again") or a rate limit (429). Any other 4xx says
    the request itself is wrong, and sending it again cannot help."""
    return status >= 500 or status in (408, 409, 429)


def json_of(response: httpx.Response) -> Any:
    """The answer's JSON. Raises ValueError, also for JSON nested past documents.MAX_DEPTH
    (documents.TooDeep), where httpx's own json() let a RecursionError through, which failed
    the run as an unexpected error and retried it with backoff."""
    return documents.loads(response.content)


def answer_json(response: httpx.Response, url: str, speaker: str) -> Any:
    """The answer's JSON, or a SourceError saying what `speaker` ("The API", "Stripe") sent
    instead. A successful answer that is not JSON (not UTF-8, not JSON, nested too deep) is
    what this endpoint answers, and will be the same next time: none is retried. (An error
    status is judged before this, by may_pass.)"""
    try:
        return json_of(response)
    except documents.Refused as exc:
        raise SourceError(f"{speaker}'s answer for {shown(url)} {exc}", retry=False) from None
    except UnicodeDecodeError:
        raise SourceError(
            f"{speaker}'s answer for {shown(url)} is not UTF-8 text, so it is not JSON", retry=False
        ) from None
    except ValueError:
        raise SourceError(f"{speaker} did not answer JSON for {shown(url)}", retry=False) from None


def _fetch(client: httpx.Client, method: str, url: str, kwargs: dict) -> httpx.Response | None:
    """The answer, read up to MAX_ANSWER_BYTES (decoded); None when it is larger."""
    options = dict(kwargs)
    auth = options.pop("auth", None)
    response = client.send(client.build_request(method, url, **options), auth=auth, stream=True)
    try:
        declared = response.headers.get("content-length", "")
        if declared.isdigit() and int(declared) > MAX_ANSWER_BYTES:
            return None
        chunks, size, deadline = [], 0, time.monotonic() + ANSWER_SECONDS
        for chunk in response.iter_bytes():
            size += len(chunk)
            if size > MAX_ANSWER_BYTES:
                return None
            if time.monotonic() > deadline:
                raise httpx.ReadTimeout(f"the answer took more than {ANSWER_SECONDS} s")
            chunks.append(chunk)
        return httpx.Response(
            response.status_code,
            request=response.request,
            content=b"".join(chunks),
            headers=[(k, v) for k, v in response.headers.raw if k.lower() not in _UNREAD],
        )
    finally:
        response.close()


def _failure(exc: httpx.HTTPError, url: str) -> SourceError:
    """A failed call, in the terms of what the user can fix."""
    if isinstance(exc, httpx.ConnectTimeout):
        return SourceError(f"Timed out connecting to {host(url)} after {CONNECT_TIMEOUT:.0f} s")
    if isinstance(exc, httpx.TimeoutException):
        return SourceError(f"{host(url)} did not answer within {READ_TIMEOUT:.0f} s")
    if isinstance(exc, httpx.ConnectError):
        text = str(exc).lower()
        if "certificate" in text or "ssl" in text or "tls" in text:
            return SourceError(f"TLS error talking to {host(url)}: {exc}")
        if "refused" in text:
            return SourceError(f"Connection refused by {host(url)}")
        if "name or service" in text or "nodename" in text or "resolve" in text:
            return SourceError(f"Host not found: {urlsplit(url).hostname}")
        return SourceError(f"Could not connect to {host(url)}: {exc}")
    return SourceError(f"HTTP error talking to {host(url)}: {type(exc).__name__}")


def request(method: str, url: str, **kwargs: Any) -> httpx.Response:
    """One HTTP call, with human errors for the failures a user can fix."""
    with httpx.Client(
        timeout=TIMEOUT, follow_redirects=False, transport=GuardedTransport(), trust_env=False
    ) as client:
        for _ in range(MAX_REDIRECTS + 1):
            try:
                response = _fetch(client, method, url, kwargs)
            except httpx.HTTPError as exc:
                raise _failure(exc, url) from None
            if response is None:
                raise SourceError(
                    f"{host(url)} answered more than {MAX_ANSWER_BYTES:,} bytes for {shown(url)}; "
                    "ask for smaller pages",
                    retry=False,
                )
            if response.is_redirect and "location" in response.headers:
                target = urljoin(url, response.headers["location"])
                if origin(target) != origin(url):
                    # As browsers do: another host does not get the token, key or password.
                    kwargs = {k: v for k, v in kwargs.items() if k not in ("headers", "auth")}
                url = target
                continue
            return response
    raise SourceError(f"More than {MAX_REDIRECTS} redirects")
