"""Shopify's Admin REST API as documented, served by the fixture HTTP server under
/shopify/admin/api/VERSION: the X-Shopify-Access-Token header, `limit` with `page_info`
Link pages (and nothing beside page_info but limit), `updated_at_min`, orders' `status`,
the shop's leaky bucket (X-Shopify-Shop-Api-Call-Limit, 429 with Retry-After once it is
full) and Shopify's error bodies."""

from __future__ import annotations

import base64
import json
import time
from datetime import datetime, timedelta, timezone
from urllib.parse import urlencode

SHOPIFY_TOKEN = "shpat_canaryShopifyToken42"
PREFIX = "/shopify"
VERSION = "2025-07"
API = f"{PREFIX}/admin/api/{VERSION}"
BAD_TOKEN = "[API] Invalid API key or access token (unrecognized login or wrong password)"
TOO_FAST = "Exceeded 2 calls per second for api client. Reduce request rates to resume uninterrupted service."
EASTERN = timezone(timedelta(hours=-5))  # Shopify writes times in the shop's own zone


def stamp(second: int) -> str:
    moment = datetime(2026, 1, 1, tzinfo=EASTERN) + timedelta(seconds=second)
    return moment.isoformat()


class ShopifyState:
    """What the fixture shop holds, and what it was asked."""

    def __init__(self):
        self.reset()

    def reset(self) -> None:
        self.lists: dict[str, list[dict]] = {"customers": [], "orders": [], "products": []}
        self.requests: list[dict] = []  # {at, path, query, token}
        self.bucket_size = 40
        self.leak_per_second = 2.0
        self.used = 0.0  # calls in the bucket (as of `leaked_at`)
        self.leaked_at = time.time()
        self.too_many = 0  # 429s served for a full bucket
        self.too_fast: list[str] = []  # Retry-After of the next answers' 429s, one each
        # How full other clients have made the bucket when our first call comes (however long
        # a worker took to start, and so to let it leak).
        self.full_at_first_call: int | None = None

    def add(self, what: str, count: int, first_second: int = 0) -> list[dict]:
        start = len(self.lists[what]) + 1
        made = [self.thing(what, start + i, first_second + i) for i in range(count)]
        self.lists[what] += made
        return made

    @staticmethod
    def thing(what: str, n: int, second: int) -> dict:
        record = {"id": 7_000_000_000 + n, "created_at": stamp(second), "updated_at": stamp(second)}
        if what == "customers":
            record.update(email=f"customer{n}@example.com", first_name=f"Customer {n}")
        elif what == "orders":
            record.update(name=f"#{1000 + n}", cancelled_at=None, closed_at=None, total_price="10.00")
        else:
            record.update(title=f"Product {n}", status="active")
        return record

    def take_from_bucket(self) -> bool:
        """One call into the shop's bucket; False when it is full (the call is refused)."""
        now = time.time()
        if self.full_at_first_call is not None:
            self.used, self.leaked_at, self.full_at_first_call = float(self.full_at_first_call), now, None
        self.used = max(0.0, self.used - (now - self.leaked_at) * self.leak_per_second)
        self.leaked_at = now
        if self.used + 1 > self.bucket_size:
            return False
        self.used += 1
        return True


SHOPIFY = ShopifyState()


def _token(state: dict) -> str:
    return base64.urlsafe_b64encode(json.dumps(state).encode()).decode().rstrip("=")


def _untoken(token: str) -> dict:
    return json.loads(base64.urlsafe_b64decode(token + "=" * (-len(token) % 4)))


def _filtered(what: str, filters: dict) -> list[dict]:
    items = SHOPIFY.lists[what]
    if what == "orders" and filters.get("status", "open") == "open":
        items = [o for o in items if not o["cancelled_at"] and not o["closed_at"]]
    if "updated_at_min" in filters:
        since = datetime.fromisoformat(filters["updated_at_min"].replace("Z", "+00:00"))
        items = [i for i in items if datetime.fromisoformat(i["updated_at"]) >= since]
    return sorted(items, key=lambda i: i["id"])


def _list(handler, path: str, what: str, query: dict) -> None:
    """A list as Shopify pages it: `limit` (50 by default, at most 250), the first page's
    filters, then each page's Link to the next (and previous) with only `limit` and an
    opaque `page_info` that carries the filters on."""
    limit = int(query.get("limit", "50"))
    if limit > 250:
        return shopify_json(handler, 400, {"errors": {"limit": ["must be less than or equal to 250"]}})
    if "page_info" in query:
        others = set(query) - {"page_info", "limit", "fields"}
        if others:
            return shopify_json(handler, 400, {"errors": {"page_info": ["Invalid value."]}})
        at = _untoken(query["page_info"])
        offset, filters = at["offset"], at["filters"]
    else:
        offset, filters = 0, {k: v for k, v in query.items() if k != "limit"}
    items = _filtered(what, filters)
    base = f"http://{handler.headers['Host']}{path}"

    def link(to: int, rel: str) -> str:
        page_info = _token({"offset": to, "filters": filters})
        return f'<{base}?{urlencode({"limit": limit, "page_info": page_info})}>; rel="{rel}"'

    links = []
    if offset > 0:
        links.append(link(max(0, offset - limit), "previous"))
    if offset + limit < len(items):
        links.append(link(offset + limit, "next"))
    return shopify_json(handler, 200, {what: items[offset : offset + limit]}, links)


def shopify_get(handler, path: str, query: dict) -> None:
    state = SHOPIFY
    token = handler.headers.get("X-Shopify-Access-Token", "")
    flat = {k: v[0] for k, v in query.items()}
    state.requests.append({"at": time.time(), "path": path, "query": flat, "token": token})
    if token != SHOPIFY_TOKEN:
        return shopify_json(handler, 401, {"errors": BAD_TOKEN}, bucket=False)
    if state.too_fast:
        return shopify_json(handler, 429, {"errors": TOO_FAST}, extra={"Retry-After": state.too_fast.pop(0)})
    if not state.take_from_bucket():
        state.too_many += 1
        wait = max((state.used + 1 - state.bucket_size) / state.leak_per_second, 0.1)
        return shopify_json(handler, 429, {"errors": TOO_FAST}, extra={"Retry-After": f"{wait:.1f}"})
    rest = path.removeprefix(API)
    if not path.startswith(API + "/"):
        return shopify_json(handler, 404, {"errors": "Not Found"})
    if rest == "/shop.json":
        return shopify_json(
            handler, 200, {"shop": {"id": 1, "name": "Acme Store", "myshopify_domain": "acme.myshopify.com"}}
        )
    what = rest.removeprefix("/").removesuffix(".json")
    if what in state.lists:
        return _list(handler, path, what, flat)
    return shopify_json(handler, 404, {"errors": "Not Found"})


def shopify_json(handler, status: int, body, links: list[str] | None = None, extra: dict | None = None,
                 bucket: bool = True) -> None:  # fmt: skip
    """An answer with Shopify's headers: how full the shop's bucket is."""
    data = json.dumps(body).encode()
    handler.send_response(status)
    handler.send_header("Content-Type", "application/json; charset=utf-8")
    handler.send_header("Content-Length", str(len(data)))
    if bucket:
        used = min(int(SHOPIFY.used), SHOPIFY.bucket_size)
        handler.send_header("X-Shopify-Shop-Api-Call-Limit", f"{used}/{SHOPIFY.bucket_size}")
    if links:
        handler.send_header("Link", ", ".join(links))
    for name, value in (extra or {}).items():
        handler.send_header(name, value)
    handler.end_headers()
    handler.wfile.write(data)
