"""Inbound webhooks: events pushed to /v1/ingest/<source_id>."""

from __future__ import annotations

import ipaddress
import secrets

from ..values import jsonpaths
from ..values.times import utcnow
from .base import Connection, SourceType, TestResult, register
from .fields import HEADER_NAME, HEADER_NAME_RULE, NOT_A_HEADER_NAME, Field

# Where a signing scheme's events keep their object, their time and their type: Stripe's
# event (data.object, created, type) and Standard Webhooks' payload (data, timestamp, type).
EVENT_SHAPES = {
    "stripe": {"record_path": "$.data.object", "timestamp_path": "$.created", "event_type_field": "$.type"},
    "standard_webhooks": {
        "record_path": "$.data",
        "timestamp_path": "$.timestamp",
        "event_type_field": "$.type",
    },
}

# The header an HMAC signature rides in when the source names none.
DEFAULT_HMAC_HEADER = "X-Signature"

VERIFICATION_TYPES = (
    ("none", "No verification"),
    ("hmac_sha256", "HMAC-SHA256"),
    ("hmac_sha1", "HMAC-SHA1"),
    ("stripe", "Stripe signature"),
    ("github", "GitHub (X-Hub-Signature-256)"),
    ("standard_webhooks", "Standard Webhooks"),
)

# What a delivery carries for each scheme, as words that follow "must carry".
SIGNED_WITH = {
    "stripe": "a Stripe signature (Stripe-Signature header)",
    "github": "a GitHub signature (X-Hub-Signature-256 header)",
    "standard_webhooks": "a Standard Webhooks signature (webhook-signature header)",
}


def parse_cidrs(text: str | None) -> list[ipaddress.IPv4Network | ipaddress.IPv6Network]:
    """CIDRs or addresses, one per line or comma-separated; ValueError names the bad one."""
    networks = []
    for item in (text or "").replace(",", "\n").splitlines():
        item = item.strip()
        if not item:
            continue
        try:
            networks.append(ipaddress.ip_network(item, strict=False))
        except ValueError:
            raise ValueError(f"{item!r} is not an IP address or CIDR range") from None
    return networks


@register
class Webhook(SourceType):
    short_name = "webhook"
    name = "Webhook"
    description = "Receive events pushed over HTTP; each one is stored, verified and applied instantly."
    name_example = "Shop orders webhook"
    auth_methods = ("signature", "none")
    labels = ("push", "realtime")
    supports_continuous = True
    pull, push = False, True
    auth_fields = (
        Field(
            "verification_type",
            "select",
            "Signature verification",
            default="none",
            options=VERIFICATION_TYPES,
            description="How hookstream checks that an event is genuine. Stripe and Standard Webhooks sign a "
            "timestamp and deliveries older than 5 minutes are refused, so a captured one cannot "
            "be sent again. HMAC and GitHub sign the body alone: after the dedup window a copy "
            "verifies again, so give collections a timestamp path, and an old event sent again "
            "changes nothing.",
        ),
        Field(
            "signing_secret",
            "password",
            "Signing secret",
            description="Shared secret of the sender. Required unless verification is off.",
            shown_when=("verification_type", tuple(v for v, _ in VERIFICATION_TYPES if v != "none")),
        ),
        Field(
            "signature_header",
            "string",
            "Signature header",
            placeholder=DEFAULT_HMAC_HEADER,
            description=f"For HMAC: the header carrying the signature (default {DEFAULT_HMAC_HEADER}).",
            fallback=DEFAULT_HMAC_HEADER,
            shown_when=("verification_type", ("hmac_sha256", "hmac_sha1")),
            rules=HEADER_NAME_RULE,
        ),
    )
    config_fields = (
        Field(
            "dedup_key",
            "string",
            "Deduplication key",
            placeholder="Idempotency-Key or $.id",
            description="A header name or a JSONPath into the body. Empty: the payload hash.",
            rules={"pattern": f"^(?:\\$.*|{HEADER_NAME.pattern})$"},
        ),
        Field(
            "dedup_window_seconds",
            "number",
            "Deduplication window (seconds)",
            default=300,
            rules={"minimum": 0, "maximum": 7 * 86400},
        ),
        Field(
            "ip_allowlist",
            "text",
            "IP allowlist",
            placeholder="203.0.113.0/24",
            description="Only these addresses or CIDR ranges may send. One per line.",
        ),
        Field("ip_denylist", "text", "IP denylist", description="These may never send. One per line."),
    )

    def check(self, credentials: dict, config: dict) -> dict[str, str]:
        errors = {}
        if credentials.get("verification_type", "none") != "none" and not credentials.get("signing_secret"):
            errors["signing_secret"] = "is required when signature verification is on"  # noqa: S105 -- a message
        header = credentials.get("signature_header")
        if header and not HEADER_NAME.fullmatch(header):
            errors["signature_header"] = NOT_A_HEADER_NAME
        dedup = config.get("dedup_key")
        if dedup and dedup.startswith("$"):
            try:
                config["dedup_key"] = jsonpaths.normalise(dedup)
            except ValueError as exc:
                errors["dedup_key"] = str(exc)
        elif dedup and not HEADER_NAME.fullmatch(dedup):
            errors["dedup_key"] = "must be a header name, or a JSONPath into the body starting with $"
        window = config.get("dedup_window_seconds")
        if window is not None and not 0 <= window <= 7 * 86400:
            errors["dedup_window_seconds"] = "must be between 0 and 604800 (7 days)"
        for name in ("ip_allowlist", "ip_denylist"):
            try:
                parse_cidrs(config.get(name))
            except ValueError as exc:
                errors[name] = str(exc)
        return errors

    def delivery_requirement(self, credentials: dict) -> str | None:
        kind = credentials.get("verification_type") or "none"
        if kind in ("hmac_sha256", "hmac_sha1"):
            header = credentials.get("signature_header") or DEFAULT_HMAC_HEADER
            return f"an {dict(VERIFICATION_TYPES)[kind]} signature of the body in its {header} header"
        return SIGNED_WITH.get(kind)

    def binding_defaults(self, credentials: dict, config: dict) -> dict[str, str]:
        return dict(EVENT_SHAPES.get(credentials.get("verification_type") or "none", {}))

    def test_event(self, credentials: dict) -> dict:
        record = {"id": f"test_{secrets.token_hex(4)}", "message": "Hello from hookstream"}
        kind = credentials.get("verification_type") or "none"
        if kind == "stripe":
            return {
                "id": f"evt_test_{secrets.token_hex(4)}",
                "object": "event",
                "type": "test.event",
                "created": int(utcnow().timestamp()),
                "data": {"object": record},
            }
        if kind == "standard_webhooks":
            return {"type": "test.event", "timestamp": utcnow().isoformat(), "data": record}
        return {"id": f"test_{secrets.token_hex(4)}", "type": "test.event", "data": record}

    def test(self, conn: Connection) -> TestResult:
        needs = self.delivery_requirement(conn.credentials)
        signed = f"events must carry {needs}" if needs else "unsigned events are accepted"
        if conn.ingest_url is None:  # not saved yet: its URL comes with its id
            return TestResult(True, f"Ready: {signed}. Its ingest URL is shown once the source is connected.")
        return TestResult(True, f"Ready: send events to {conn.ingest_url}; {signed}.")
