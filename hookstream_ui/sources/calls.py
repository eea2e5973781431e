"""One HTTP API's calls as a declared source makes them: through the network guard
(sources/http.py), under the sync's rate limit, at the pace the API announces, retried
while the API says to wait, and its refusals said in the user's terms."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from email.utils import parsedate_to_datetime
from typing import Any

import httpx

from . import http
from .base import SourceError

# Waits before each retry of an answer that says "later" without saying when (5xx, or a
# 429 without Retry-After): short, because the run itself is retried with a longer backoff.
BACKOFF = (0.5, 1.0, 2.0)
# The longest a read waits for a rate limit to lift, holding its worker; a longer wait fails
# the attempt (retried later) instead.
MAX_WAIT = 300.0
# A reset is waited out a little past its second: the API's clock and ours differ.
RESET_MARGIN = 0.5
# The lateness of a paced call the next one may make up (seconds): enough for a thread's
# wake-up. Calls spaced at 98% of a window's budget then still never fit more than the
# budget into any window of half a second or more: a span of them falls short of its pauses
# by this at most, and the pauses are 2% longer than the window.
PACE_SLACK = 0.010
# How long a rate limit said without a time is waited out (GitHub: "at least one minute").
LIMIT_PAUSE = 60.0


def _number(value: str | None) -> float | None:
    try:
        return float(value) if value is not None else None
    except ValueError:
        return None


class PositionExpired(SourceError):
    """The API no longer knows the page position asked for (a cursor kept past its life)."""


def _never(response: httpx.Response) -> bool:
    return False


def _no_pause(response: httpx.Response) -> float | None:
    return None


def bucket_pause(used: float, size: float, leak_per_second: float, full_enough: float = 0.8) -> float | None:
    """How long to let a leaky bucket drain before the next call, given what an answer said
    of it: nothing while it is below `full_enough` of its size, then until it is back there,
    so that a read settles at the leak rate instead of running into the bucket's 429s (and
    other clients sharing the bucket keep some room)."""
    if size <= 0 or leak_per_second <= 0:
        return None
    over = used + 1 - full_enough * size
    return over / leak_per_second if over > 0 else None


def retry_after(response: httpx.Response) -> float | None:
    """Retry-After in seconds: it may be a number of seconds or an HTTP date."""
    value = response.headers.get("retry-after")
    seconds = _number(value)
    if seconds is not None or not value:
        return seconds
    try:
        return parsedate_to_datetime(value).timestamp() - time.time()
    except (TypeError, ValueError):
        return None


def spent_until(response: httpx.Response) -> float | None:
    """When the API's announced budget comes back (epoch seconds), if this answer spent it:
    X-RateLimit-Remaining 0 with X-RateLimit-Reset, as GitHub and many others send. A reset
    is epoch seconds, epoch milliseconds, or (small) seconds from now, as APIs differ."""
    if response.headers.get("x-ratelimit-remaining", "").strip() != "0":
        return None
    reset = _number(response.headers.get("x-ratelimit-reset"))
    if reset is None:
        return None
    if reset > 1e11:
        reset /= 1000
    elif reset < 1e9:
        reset += time.time()
    return reset + RESET_MARGIN


def limited(response: httpx.Response, said: Callable[[httpx.Response], bool] = _never) -> bool:
    """A 429, a 403 that carries Retry-After or a spent budget (how GitHub says its
    secondary and primary limits: a 403 without either is a refusal), or an answer the
    provider's declaration recognises as its own way of saying so (`said`)."""
    status = response.status_code
    return (
        status == 429
        or (status == 403 and ("retry-after" in response.headers or spent_until(response) is not None))
        or said(response)
    )


def wait_asked(
    response: httpx.Response,
    attempt: int,
    said: Callable[[httpx.Response], bool] = _never,
    spent: Callable[[httpx.Response], float | None] = spent_until,
    pause: float = LIMIT_PAUSE,
) -> float | None:
    """How long to wait before sending the same request again; None when it must not be.
    A rate limit waits as told (`pause` when the provider said so without a time); a
    5xx, or a 429 that names no time, waits by BACKOFF. `spent` reads when a spent budget
    comes back, in the provider's own headers if it has them."""
    is_limit = limited(response, said)
    if not is_limit and response.status_code < 500:
        return None
    if attempt >= len(BACKOFF):
        return None
    after = retry_after(response)
    if is_limit and after is not None:
        return max(after, 0.0)
    reset = spent(response)
    if is_limit and reset is not None:
        return max(reset - time.time(), 0.0)
    if is_limit and said(response):
        return pause
    return BACKOFF[attempt]


@dataclass
class Api:
    """The calls of one read (or one connection test)."""

    speaker: str  # who answered, in messages: "The API", "GitHub"
    options: dict  # headers and auth for every call (httpx keyword arguments)
    throttle: Callable[[], object] = lambda: None  # the sync's rate limit
    # The provider's spent budget as every read with these credentials found it (ReadContext).
    tell_spent: Callable[[float], None] = lambda epoch: None
    budget_back_at: Callable[[], float] = lambda: 0.0
    pace: Callable[[float | None], float] | None = None  # the source's own requests per second
    reason: Callable[[httpx.Response], str | None] = lambda response: None  # its error message
    limit_said: Callable[[httpx.Response], bool] = _never  # its own way of saying "rate limited"
    # The pause its own headers ask for before the next call (a leaky bucket filling up).
    pause_after: Callable[[httpx.Response], float | None] = _no_pause
    retries: bool = True
    stopping: Callable[[], bool] = lambda: False  # the run was asked to stop
    spent: Callable[[httpx.Response], float | None] = spent_until  # when its spent budget is back
    expired: Callable[[httpx.Response], bool] = _never  # its way of saying a page position expired
    # How long a limit the provider says without a time is waited out: one longer than
    # MAX_WAIT fails the attempt at once, to be retried later, instead of holding a worker.
    limit_pause: float = LIMIT_PAUSE
    # For an OAuth access token (sources/oauth.py): the options to send with, asked before
    # each call (False: renewed only when about to expire) and once more after a 401 (True:
    # renewed whatever its expiry says, as the API may end a session early).
    authorize: Callable[[bool], dict] | None = None
    _paced: float | None = field(default=None, repr=False)
    _resume_at: float = field(default=0.0, repr=False)
    _due: float = field(default=0.0, repr=False)  # when the last paced call was due to go

    def get(
        self,
        url: str,
        params: dict,
        stream: str,
        missing_is_end: bool = False,
        body: dict | None = None,
    ) -> httpx.Response | None:
        """A successful answer; None for a 404 or 410 when `missing_is_end`; else a SourceError.
        With `body`, a POST of it as JSON (a read all the same: GraphQL's)."""
        attempt, renewed = 0, False
        while True:
            response = self._send(url, params, body)
            if response.status_code == 401 and self.authorize is not None and not renewed:
                self.authorize(True)
                renewed = True
                continue
            delay = (
                wait_asked(response, attempt, self.limit_said, self.spent, self.limit_pause)
                if self.retries
                else None
            )
            if delay is None:
                break
            self._sleep(delay)
            attempt += 1
        if response.status_code < 400:
            return response
        if missing_is_end and response.status_code in (404, 410):
            return None
        raise self.failure(response, url, stream)

    def json(self, response: httpx.Response, url: str) -> Any:
        return http.answer_json(response, url, self.speaker)

    def _send(self, url: str, params: dict, body: dict | None) -> httpx.Response:
        resume_at = max(self._resume_at, self.budget_back_at())
        if resume_at > time.time():
            self._sleep(resume_at - time.time())
        self.throttle()
        if self.pace is not None:
            self._paced = self.pace(self._paced)
        # No `params` at all for a next link: httpx would replace the link's own query string.
        extra: dict[str, Any] = {"params": params} if params else {}
        if body is not None:
            extra["json"] = body
        options = self.authorize(False) if self.authorize is not None else self.options
        sent_at = time.time()
        response = http.request("GET" if body is None else "POST", url, **extra, **options)
        self._resume_at = self._next_call_at(response, sent_at)
        return response

    def _next_call_at(self, response: httpx.Response, sent_at: float) -> float:
        """When the next call may go: once a spent budget is back, and after the pause the
        provider's headers ask for, whichever is later. A pause counts from when this call
        was due to go, not from when it went: a wake-up a few ms late (the writer holding
        the GIL) would otherwise add up call after call, and a read spaced at 98% of a budget
        reached 94%. No more than PACE_SLACK of lateness is made up, so however late calls
        go, no span of them is shorter than their pauses less that."""
        spent = self.spent(response) or 0.0
        if spent:
            self.tell_spent(spent)
        pause = self.pause_after(response)
        if not pause:
            self._due = 0.0
            return spent
        self._due = max((self._due or sent_at) + pause, sent_at + pause - PACE_SLACK)
        return max(spent, self._due)

    def _sleep(self, seconds: float) -> None:
        if seconds > MAX_WAIT:
            raise SourceError(
                f"{self.speaker}'s rate limit asks us to wait {seconds:.0f} s; the run will retry",
            )
        # In slices: a run cancelled while it waits stops within a second or so.
        until = time.monotonic() + seconds
        while (left := until - time.monotonic()) > 0:
            if self.stopping():
                raise SourceError(f"Stopped while waiting for {self.speaker}'s rate limit")
            time.sleep(min(left, 1.0))

    def failure(self, response: httpx.Response, url: str, stream: str) -> SourceError:
        """An error answer as a SourceError, retried only when trying again can help."""
        status, reason = response.status_code, self.reason(response)
        said = f": {reason}" if reason else ""
        if self.expired(response):
            return PositionExpired(f"{self.speaker} no longer has the page asked for{said}")
        if limited(response, self.limit_said):
            return SourceError(f"{self.speaker} is rate limiting us (HTTP {status}); the run will retry")
        if status in (401, 403):
            return SourceError(f"{self.speaker} rejected the credentials (HTTP {status}){said}", retry=False)
        if status == 404:
            return SourceError(
                f"{self.speaker} answered HTTP 404 (not found) for the {stream} stream at "
                f"{http.shown(url)}{said}",
                retry=False,
            )
        return SourceError(
            f"{self.speaker} answered HTTP {status} for {http.shown(url)}{said}",
            retry=http.may_pass(status),
        )
