"""Stripe objects through Stripe's list API (`starting_after` pagination)."""
from __future__ import annotations

from . import http
from .base import Connection, SourceError, SourceType, TestResult, register
from .fields import Field

STREAMS = ("customer", "invoice", "charge", "subscription", "product", "price", "payment_intent",
           "refund", "dispute", "payout", "balance_transaction", "coupon", "checkout_session")
LIST_PATHS = {"checkout_session": "checkout/sessions"}


def list_path(stream: str) -> str:
    return "/v1/" + LIST_PATHS.get(stream, stream + "s")


@register
class Stripe(SourceType):
    short_name = "stripe"
    name = "Stripe"
    description = "Customers, invoices, charges, subscriptions and more, kept current from Stripe's events."
    auth_methods = ("api_key",)
    labels = ("payments", "api")
    supports_continuous = True
    auth_fields = (
        Field("secret_key", "password", "Secret key", required=True, placeholder="sk_live_…",
              description="A secret (sk_…) or restricted (rk_…) key with read access."),
        Field("api_base", "url", "API base URL", default="https://api.stripe.com",
              description="Change only for a Stripe-compatible mock or proxy."),
    )

    def check(self, credentials, config):
        key = credentials.get("secret_key", "")
        if key and not key.startswith(("sk_", "rk_")):
            return {"secret_key": "must be a Stripe secret (sk_…) or restricted (rk_…) key"}
        return {}

    def test(self, conn: Connection) -> TestResult:
        base = conn.credentials.get("api_base", "https://api.stripe.com").rstrip("/")
        try:
            response = http.request("GET", f"{base}/v1/customers", params={"limit": 1},
                                    headers={"Authorization": f"Bearer {conn.credentials.get('secret_key', '')}"})
        except SourceError as exc:
            return TestResult(False, str(exc))
        if response.status_code == 200:
            livemode = response.json().get("data", [{}])[0].get("livemode") if response.json().get("data") else None
            mode = {True: " (live mode)", False: " (test mode)"}.get(livemode, "")
            return TestResult(True, f"Connected to Stripe{mode}")
        try:
            reason = response.json()["error"]["message"]
        except (ValueError, KeyError, TypeError):
            reason = f"HTTP {response.status_code}"
        if response.status_code == 401:
            return TestResult(False, f"Stripe rejected the key: {reason}")
        if response.status_code == 403:
            return TestResult(False, f"The key may not list customers: {reason}")
        return TestResult(False, f"Stripe answered HTTP {response.status_code}: {reason}")

    def list_streams(self, conn: Connection) -> list[dict]:
        return [{"name": s, "label": s.replace("_", " ").title()} for s in STREAMS]
