"""HTTP webhook: each change POSTed as JSON, signed the Standard Webhooks way (webhook-id,
webhook-timestamp, webhook-signature). The change's id is the webhook-id, the same on every
attempt, so a receiver can drop a change it already has. During a secret rotation's overlap
each request carries both signatures."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import secrets as random
import time
from datetime import datetime
from typing import Any, ClassVar

import httpx
from pydantic import BaseModel, ConfigDict, Field, field_validator

from ..sources.http import GuardedTransport, shown
from ..sources.netguard import CONNECT_TIMEOUT
from .base import DestinationType, Outcome, bounded

SIGNED_HEADERS = ("webhook-id", "webhook-timestamp", "webhook-signature")
RESERVED = {*SIGNED_HEADERS, "content-type", "content-length", "host", "transfer-encoding", "connection"}
MASK = "••••••"
EVENT_TYPES = {"insert": "record.inserted", "update": "record.updated", "delete": "record.deleted"}


def standard_signature(secret: str, msg_id: str, timestamp: str, body: bytes) -> str:
    """Standard Webhooks' v1 signature: base64 HMAC-SHA256 of `id.timestamp.body`, keyed by
    the secret after `whsec_`, base64-decoded (its own bytes when that does not decode)."""
    key = secret[len("whsec_") :] if secret.startswith("whsec_") else secret
    try:
        key_bytes = base64.b64decode(key)
    except (ValueError, TypeError):
        key_bytes = secret.encode()
    digest = hmac.new(key_bytes, f"{msg_id}.{timestamp}.".encode() + body, hashlib.sha256).digest()
    return base64.b64encode(digest).decode()


class WebhookConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")

    url: str = Field(max_length=2000, description="Where each change is POSTed (http or https)")
    headers: dict[str, str] = Field(default_factory=dict, description="Sent with every request")
    timeout_seconds: float = Field(10.0, ge=1, le=30, description="How long one request may take")

    @field_validator("url")
    @classmethod
    def _url(cls, value: str) -> str:
        parsed = httpx.URL(value) if value.startswith(("http://", "https://")) else None
        if parsed is None or not parsed.host:
            raise ValueError("must be an http:// or https:// URL with a host")
        return value

    @field_validator("headers")
    @classmethod
    def _headers(cls, value: dict[str, str]) -> dict[str, str]:
        if len(value) > 20:
            raise ValueError("at most 20 headers")
        for name, text in value.items():
            if name.lower() in RESERVED or not name.replace("-", "").isalnum():
                raise ValueError(
                    f"{name!r} cannot be set: it is the signature's, HTTP's, or not a header name"
                )
            if len(text) > 2000 or "\n" in text or "\r" in text:
                raise ValueError(f"the value of {name!r} must be one line of at most 2,000 characters")
        return value


class Webhook(DestinationType):
    short_name = "webhook"
    title = "HTTP webhook"
    Config: ClassVar[type[BaseModel]] = WebhookConfig

    def __init__(self, destination_id: str, config: dict, secrets: dict) -> None:
        super().__init__(destination_id, config, secrets)
        self.client = httpx.Client(
            transport=GuardedTransport(),
            timeout=httpx.Timeout(float(config.get("timeout_seconds") or 10), connect=CONNECT_TIMEOUT),
            follow_redirects=False,
            trust_env=False,
        )

    @classmethod
    def new_secrets(cls) -> dict:
        return {"signing_secret": new_signing_secret()}

    @classmethod
    def shown_secrets(cls, secrets: dict) -> dict:
        return {
            "signing_secret": MASK if secrets.get("signing_secret") else None,
            "previous_secret_until": secrets.get("previous_until"),
        }

    def signing_secrets(self, now: float) -> list[str]:
        """The current secret, and the one it replaced while their overlap lasts."""
        out = [self.secrets["signing_secret"]]
        until = self.secrets.get("previous_until")
        if self.secrets.get("previous_secret") and until and datetime.fromisoformat(until).timestamp() > now:
            out.append(self.secrets["previous_secret"])
        return out

    def send(self, change: dict) -> Outcome:
        body = json.dumps(payload(change), separators=(",", ":")).encode()
        now = time.time()
        stamp = str(int(now))
        signature = " ".join(
            "v1," + standard_signature(s, change["id"], stamp, body) for s in self.signing_secrets(now)
        )
        headers = {
            **self.config.get("headers", {}),
            "content-type": "application/json",
            "webhook-id": change["id"],
            "webhook-timestamp": stamp,
            "webhook-signature": signature,
        }
        logged = {
            "method": "POST",
            "url": shown(self.config["url"]),
            "headers": {k: (MASK if k == "webhook-signature" else v) for k, v in headers.items()},
            "body": bounded(body.decode()),
        }
        started = time.monotonic()
        try:
            answer = self.client.post(self.config["url"], content=body, headers=headers)
        except Exception as exc:  # the receiver's failure, whatever it is: an outcome
            return Outcome(False, None, _failure(exc), logged, None, _ms(started))
        said = {"headers": dict(answer.headers), "body": bounded(answer.text)}
        ok = 200 <= answer.status_code < 300
        error = None if ok else f"answered {answer.status_code}"
        return Outcome(ok, answer.status_code, error, logged, said, _ms(started))

    def close(self) -> None:
        self.client.close()


def payload(change: dict) -> dict[str, Any]:
    """What the receiver gets: Standard Webhooks' type, timestamp and data."""
    return {
        "type": EVENT_TYPES[change["op"]],
        "timestamp": change["changed_at"],
        "data": {k: v for k, v in change.items() if k != "id"},
    }


def new_signing_secret() -> str:
    return "whsec_" + base64.b64encode(random.token_bytes(24)).decode()


def _failure(exc: Exception) -> str:
    from ..sources.base import SourceError

    if isinstance(exc, SourceError):  # the network guard refused the address
        return str(exc)
    if isinstance(exc, httpx.TimeoutException):
        return "timed out"
    if isinstance(exc, httpx.ConnectError):
        return "could not connect"
    return type(exc).__name__


def _ms(started: float) -> int:
    return round((time.monotonic() - started) * 1000)
