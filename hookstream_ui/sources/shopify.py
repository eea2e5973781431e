"""Shopify's Admin REST API for one shop, declared.

Shopify's lists do not report deleted objects: an incremental read (`updated_at_min`) sees
changes only, and a full read (a backfill) removes the records of customers, orders and
products that are gone. A cancelled order is not deleted: it stays, with its `cancelled_at`.
"""

from __future__ import annotations

import re
from types import MappingProxyType

import httpx

from . import http
from .base import register
from .calls import bucket_pause
from .declared import Declared, Stream
from .fields import Field
from .paging import LinkHeader

DEFAULT_VERSION = "2025-07"
# A shop's name, or its whole myshopify.com host: nothing else may reach the URL (a dot, a
# slash, an @ or a port would send the token elsewhere). One DNS label at most.
SHOP = re.compile(r"[A-Za-z0-9][A-Za-z0-9-]*(?:\.myshopify\.com)?")
SHOP_SUFFIX = ".myshopify.com"
# Shopify releases a stable version each quarter, named after its month.
VERSION = re.compile(r"(?:20[0-9]{2}-(?:01|04|07|10)|unstable)")
# `limit` is Shopify's page size, at most 250; the next page's link carries it on, with
# every filter: Shopify refuses other parameters beside its page_info.
PAGE = MappingProxyType({"limit": 250})
CALL_LIMIT = re.compile(r"\s*(\d+)\s*/\s*(\d+)\s*")
# A shop's bucket leaks a twentieth of its size a second: 40 and 2 a second on the standard
# plans, 80 and 4 on Advanced, 400 and 20 on Plus.
LEAK_PER_SIZE = 1 / 20


def _changed(name: str, label: str, params: MappingProxyType = PAGE) -> Stream:
    return Stream(
        name, f"/{name}.json", label=label, records_path=f"$.{name}", paging=LinkHeader(), params=params,
        since_param="updated_at_min", cursor_path="$.updated_at",
    )  # fmt: skip


def shop_host(shop: str) -> str:
    return shop.strip().lower().removesuffix(SHOP_SUFFIX) + SHOP_SUFFIX


@register
class Shopify(Declared):
    short_name = "shopify"
    name = "Shopify"
    description = (
        "Customers, orders and products of a Shopify shop, through its Admin API. Shopify does not "
        "report deletions: a full read removes what is gone."
    )
    name_example = "Shopify (acme)"
    auth_methods = ("token",)
    labels = ("ecommerce", "api")
    speaker = "Shopify"
    check_path = "/shop.json"
    check_name_path = "$.shop.name"
    # Other sync services call the token `secret`.
    credential_aliases = MappingProxyType({"secret": "access_token"})
    # Past the bucket's first 40 calls, its header slows a read to the leak rate anyway; this
    # keeps a sync from spending the whole bucket that the shop's other apps share.
    default_rate_limit = MappingProxyType(
        {"allowed_requests": 4, "interval": 1, "max_concurrent_requests": 0}
    )
    auth_fields = (
        Field(
            "shop",
            "string",
            "Shop",
            required=True,
            placeholder="acme or acme.myshopify.com",
            description="The shop's myshopify.com name, or its whole myshopify.com host.",
            max_length=63,
            rules={"pattern": "^" + SHOP.pattern + "$"},
        ),
        Field(
            "access_token",
            "password",
            "Admin API access token",
            required=True,
            placeholder="shpat_…",
            description="A custom app's Admin API access token with read_customers, read_orders and "
            "read_products (read_all_orders for orders older than 60 days).",
            sent_to=("shop", "base_url"),
        ),
        Field(
            "api_version",
            "string",
            "API version",
            default=DEFAULT_VERSION,
            placeholder=DEFAULT_VERSION,
            description="The Admin API version, YYYY-MM (a quarter's first month), or unstable.",
            max_length=8,
            rules={"pattern": "^" + VERSION.pattern + "$"},
        ),
        Field(
            "base_url",
            "url",
            "Shop URL",
            description="Where the shop's Admin API is, when not at https://SHOP.myshopify.com (a proxy); "
            "/admin/api/VERSION is added.",
        ),
    )
    streams = (
        _changed("customers", "customers"),
        # Without status=any Shopify lists open orders only.
        _changed("orders", "orders", MappingProxyType({**PAGE, "status": "any"})),
        _changed("products", "products"),
    )

    def check(self, credentials: dict, config: dict) -> dict[str, str]:
        errors = {}
        shop = credentials.get("shop")
        if isinstance(shop, str) and shop and not SHOP.fullmatch(shop):
            errors["shop"] = "must be the shop's name (letters, digits and -) or its myshopify.com host"
        version = credentials.get("api_version")
        if isinstance(version, str) and version and not VERSION.fullmatch(version):
            errors["api_version"] = "must be a Shopify API version: YYYY-01, -04, -07 or -10, or unstable"
        return errors

    def base_url(self, credentials: dict) -> str:
        root = str(credentials.get("base_url") or f"https://{shop_host(str(credentials.get('shop', '')))}")
        return f"{root.rstrip('/')}/admin/api/{credentials.get('api_version') or DEFAULT_VERSION}"

    def options(self, credentials: dict) -> dict:
        return {
            "headers": {
                "X-Shopify-Access-Token": credentials.get("access_token", ""),
                "Accept": "application/json",
            }
        }

    def pause_after(self, response: httpx.Response) -> float | None:
        # "32/40": calls in the shop's bucket, and its size.
        said = CALL_LIMIT.fullmatch(response.headers.get("x-shopify-shop-api-call-limit", ""))
        if said is None:
            return None
        used, size = int(said.group(1)), int(said.group(2))
        return bucket_pause(used, size, size * LEAK_PER_SIZE)

    def reason(self, response: httpx.Response) -> str | None:
        # {"errors": "…"}, or per field: {"errors": {"page_info": ["…"]}}
        try:
            errors = http.json_of(response).get("errors")
        except (ValueError, AttributeError):
            return None
        if isinstance(errors, str):
            return errors
        if isinstance(errors, dict) and errors:
            name, said = next(iter(errors.items()))
            said = said[0] if isinstance(said, list) and said else said
            return f"{name} {said}" if isinstance(said, str) else None
        return None
