"""Stripe objects through Stripe's list API (`starting_after` pagination)."""

from __future__ import annotations

import time
from types import MappingProxyType

import httpx

from ..values.records import Incoming, parse_time
from ..values.times import utcnow
from . import http
from .base import Batch, Batches, Connection, ReadContext, SourceError, SourceType, TestResult, register
from .fields import Field

STREAMS = (
    "customer",
    "invoice",
    "charge",
    "subscription",
    "product",
    "price",
    "payment_intent",
    "refund",
    "dispute",
    "payout",
    "balance_transaction",
    "coupon",
    "checkout_session",
)
LIST_PATHS = {"checkout_session": "checkout/sessions"}
# The events that carry each stream's objects: Stripe names some after a parent object
# (a subscription's are customer.subscription.*). `type` takes one wildcard; `types[]`
# only exact names.
EVENT_TYPES = {
    "subscription": "customer.subscription.*",
    "dispute": "charge.dispute.*",
    "checkout_session": "checkout.session.*",
}
# An object's own `object` name. A parent's events also carry other objects
# (customer.* has customer.subscription.*, customer.discount.*; charge.* has
# charge.dispute.*): only the stream's own are applied.
OBJECT_NAMES = {"checkout_session": "checkout.session"}
# No events at all: every read lists them all (never deleted; what was read again
# unchanged is not rewritten).
WITHOUT_EVENTS = {"balance_transaction"}


# Stripe keeps events for 30 days; a day's margin for clocks and a run's own length.
EVENTS_KEPT_SECONDS = 29 * 24 * 3600


def list_path(stream: str) -> str:
    return "/v1/" + LIST_PATHS.get(stream, stream + "s")


@register
class Stripe(SourceType):
    short_name = "stripe"
    name = "Stripe"
    description = "Customers, invoices, charges, subscriptions and more, kept current from Stripe's events."
    name_example = "Stripe (live)"
    auth_methods = ("api_key",)
    labels = ("payments", "api")
    dials_out = True
    supports_continuous = True
    fixed_streams = STREAMS
    # Other sync services call the key `secret`.
    credential_aliases = MappingProxyType({"secret": "secret_key"})
    default_rate_limit = MappingProxyType(
        {"allowed_requests": 50, "interval": 1, "max_concurrent_requests": 0}
    )
    auth_fields = (
        Field(
            "secret_key",
            "password",
            "Secret key",
            required=True,
            placeholder="sk_live_…",
            description="A secret (sk_…) or restricted (rk_…) key with read access.",
            sent_to=("api_base",),
            rules={"pattern": "^(sk_|rk_)"},
        ),
        Field(
            "api_base",
            "url",
            "API base URL",
            default="https://api.stripe.com",
            description="Change only for a Stripe-compatible mock or proxy.",
        ),
    )

    def check(self, credentials: dict, config: dict) -> dict[str, str]:
        key = credentials.get("secret_key", "")
        if key and not key.startswith(("sk_", "rk_")):
            return {"secret_key": "must be a Stripe secret (sk_…) or restricted (rk_…) key"}
        return {}

    def test(self, conn: Connection) -> TestResult:
        base = conn.credentials.get("api_base", "https://api.stripe.com").rstrip("/")
        url = f"{base}/v1/customers"
        try:
            response = http.request(
                "GET",
                url,
                params={"limit": 1},
                headers={"Authorization": f"Bearer {conn.credentials.get('secret_key', '')}"},
            )
        except SourceError as exc:
            return TestResult(False, str(exc))
        if response.status_code == 200:
            try:
                data = _list_page(response, url)["data"]
            except SourceError as exc:
                return TestResult(False, str(exc))
            first = data[0] if data else None
            livemode = first.get("livemode") if isinstance(first, dict) else None
            mode = (
                {True: " (live mode)", False: " (test mode)"}.get(livemode, "")
                if isinstance(livemode, bool)
                else ""
            )
            return TestResult(True, f"Connected to Stripe{mode}")
        reason = _reason(response)
        if response.status_code == 401:
            return TestResult(False, f"Stripe rejected the key: {reason}")
        if response.status_code == 403:
            return TestResult(False, f"The key may not list customers: {reason}")
        return TestResult(False, f"Stripe answered HTTP {response.status_code}: {reason}")

    def read(
        self,
        conn: Connection,
        stream: str | None,
        state: dict | None,
        checkpoint: dict,
        full: bool,
        ctx: ReadContext,
    ) -> Batches:
        stream = stream or "customer"
        if stream not in STREAMS:
            raise SourceError(f"Unknown Stripe stream {stream!r}; one of {', '.join(STREAMS)}", retry=False)
        base = conn.credentials.get("api_base", "https://api.stripe.com").rstrip("/")
        headers = {"Authorization": f"Bearer {conn.credentials.get('secret_key', '')}"}
        if full or not state or "events_since" not in state or stream in WITHOUT_EVENTS:
            yield from self._list(base, headers, stream, checkpoint, ctx)
        else:
            yield from self._events(base, headers, stream, state, checkpoint, ctx)

    def state_expired(self, state: dict | None) -> bool:
        since = (state or {}).get("events_since")
        return since is not None and time.time() - since > EVENTS_KEPT_SECONDS

    def _get(self, url: str, headers: dict, params: dict, ctx: ReadContext) -> dict:
        ctx.throttle()
        response = http.request("GET", url, params=params, headers=headers)
        if response.status_code != 200:
            raise SourceError(
                f"Stripe answered HTTP {response.status_code}: {_reason(response)}",
                retry=http.may_pass(response.status_code),
            )
        return _list_page(response, url)

    def _list(self, base: str, headers: dict, stream: str, checkpoint: dict, ctx: ReadContext) -> Batches:
        """Every object, newest first, `starting_after` the last id of the previous page."""
        # Changes made while the backfill runs are caught by the events read that follows.
        events_since = checkpoint.get("events_since") or int(time.time()) - 5
        after = checkpoint.get("starting_after")
        while True:
            params = {"limit": 100}
            if after:
                params["starting_after"] = after
            if ctx.not_before is not None:
                params["created[gte]"] = int(ctx.not_before.timestamp())
            # A listed object is its state when it was read: as new as the request (`created`
            # is when the object was made, older than any change a webhook reports).
            read_at = utcnow()
            page = self._get(base + list_path(stream), headers, params, ctx)
            data = page.get("data") or []
            items = [Incoming(obj) for obj in data]
            if data:
                after = data[-1]["id"]
            done = not page.get("has_more") or not data
            yield Batch(
                items,
                {"starting_after": after, "events_since": events_since, "done": done or None},
                state={"events_since": events_since} if done else None,
                read_at=read_at,
            )
            if done:
                return

    def _events(
        self, base: str, headers: dict, stream: str, state: dict, checkpoint: dict, ctx: ReadContext
    ) -> Batches:
        """Events since the last position, applied oldest first; `*.deleted` removes.
        `created` has whole seconds: events of the last second read are asked for again
        (more may have come in that second) and the ones already applied are left out."""
        since = state["events_since"]
        seen = set(state.get("events_seen") or ())
        # Only each object's newest event is kept: it holds the object's final state (or its
        # deletion), and memory grows with the objects changed, not with their events.
        newest_of: dict = {}
        kind = OBJECT_NAMES.get(stream, stream)
        last_second: set[str] = set()
        newest, after = since, None
        while True:
            params = {"limit": 100, "created[gte]": since, "type": EVENT_TYPES.get(stream, f"{stream}.*")}
            if after:
                params["starting_after"] = after
            page = self._get(base + "/v1/events", headers, params, ctx)
            data = page.get("data") or []
            for event in data:
                obj = (event.get("data") or {}).get("object") if isinstance(event.get("data"), dict) else None
                if event.get("id") in seen or not isinstance(obj, dict) or obj.get("object", kind) != kind:
                    continue
                created = event.get("created", since)
                if created > newest:
                    newest, last_second = created, set()
                if created == newest:
                    last_second.add(event["id"])
                order = (created, event.get("id", ""))
                if obj.get("id") not in newest_of or order > newest_of[obj.get("id")][0]:
                    newest_of[obj.get("id")] = (order, event)
            if not page.get("has_more") or not data:
                break
            after = data[-1]["id"]
        events = [event for _, event in sorted(newest_of.values(), key=lambda pair: pair[0])]
        items = [
            Incoming(
                e["data"]["object"],
                parse_time(e.get("created")),
                source_event_id=e.get("id"),
                event_type=e.get("type"),
            )
            for e in events
        ]
        if newest == since:
            last_second |= seen
        yield Batch(items, {"done": True}, state={"events_since": newest, "events_seen": sorted(last_second)})


def _list_page(response: httpx.Response, url: str) -> dict:
    """A 200 answer as the list object every endpoint read here answers with."""
    page = http.answer_json(response, url, "Stripe")
    if not isinstance(page, dict) or not isinstance(page.get("data"), list):
        raise SourceError(
            f"Stripe answered {http.shown(url)} with JSON that is not a list object", retry=False
        )
    return page


def _reason(response: httpx.Response) -> str:
    """Stripe's own message for an error answer, else its status."""
    try:
        return http.json_of(response)["error"]["message"]
    except (ValueError, KeyError, TypeError):
        return f"HTTP {response.status_code}"
