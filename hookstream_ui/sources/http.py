"""Outbound HTTP for API sources: every host checked by netguard, every call timed out,
redirects followed only to hosts that pass the same check, and credentials sent only to
the origin they were given for."""
from __future__ import annotations

from urllib.parse import urljoin, urlsplit

import httpx

from .base import SourceError
from .netguard import CONNECT_TIMEOUT, READ_TIMEOUT, resolve

MAX_REDIRECTS = 3
TIMEOUT = httpx.Timeout(READ_TIMEOUT, connect=CONNECT_TIMEOUT)


def check_url(url: str) -> None:
    parts = urlsplit(url)
    resolve(parts.hostname or "", parts.port or (443 if parts.scheme == "https" else 80))


def origin(url: str) -> tuple:
    parts = urlsplit(url)
    return parts.scheme, (parts.hostname or "").lower(), parts.port or (443 if parts.scheme == "https" else 80)


def request(method: str, url: str, **kwargs) -> httpx.Response:
    """One HTTP call, with human errors for the failures a user can fix."""
    with httpx.Client(timeout=TIMEOUT, follow_redirects=False) as client:
        for _ in range(MAX_REDIRECTS + 1):
            check_url(url)
            try:
                response = client.request(method, url, **kwargs)
            except httpx.ConnectTimeout:
                raise SourceError(f"Timed out connecting to {urlsplit(url).netloc} after {CONNECT_TIMEOUT:.0f} s") from None
            except httpx.TimeoutException:
                raise SourceError(f"{urlsplit(url).netloc} did not answer within {READ_TIMEOUT:.0f} s") from None
            except httpx.ConnectError as exc:
                text = str(exc).lower()
                if "certificate" in text or "ssl" in text or "tls" in text:
                    raise SourceError(f"TLS error talking to {urlsplit(url).netloc}: {exc}") from None
                if "refused" in text:
                    raise SourceError(f"Connection refused by {urlsplit(url).netloc}") from None
                if "name or service" in text or "nodename" in text or "resolve" in text:
                    raise SourceError(f"Host not found: {urlsplit(url).hostname}") from None
                raise SourceError(f"Could not connect to {urlsplit(url).netloc}: {exc}") from None
            except httpx.HTTPError as exc:
                raise SourceError(f"HTTP error talking to {urlsplit(url).netloc}: {type(exc).__name__}") from None
            if response.is_redirect and "location" in response.headers:
                target = urljoin(url, response.headers["location"])
                if origin(target) != origin(url):
                    # As browsers do: another host does not get the token, key or password.
                    kwargs = {k: v for k, v in kwargs.items() if k not in ("headers", "auth")}
                url = target
                continue
            return response
    raise SourceError(f"More than {MAX_REDIRECTS} redirects")
