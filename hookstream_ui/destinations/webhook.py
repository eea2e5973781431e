"""HTTP webhook: each change POSTed as JSON, signed the Standard Webhooks way (webhook-id,
webhook-timestamp, webhook-signature). The change's id is the webhook-id, the same on every
attempt, so a receiver can drop a change it already has. During a secret rotation's overlap
each request carries both signatures."""

from __future__ import annotations

import base64
import hashlib
import hmac
import http.client
import json
import secrets as random
import socket
import ssl
import threading
import time
from datetime import datetime
from typing import ClassVar
from urllib.parse import urlsplit

from pydantic import BaseModel, ConfigDict, Field, field_validator

from ..sources.base import SourceError
from ..sources.http import masked_url, shown, tls_context
from ..sources.netguard import CONNECT_TIMEOUT, resolve
from .base import MASK, DestinationType, Outcome, bounded

ANSWER_BYTES = 64 * 1024  # of a receiver's answer read; the log keeps 2 KB of it

SIGNED_HEADERS = ("webhook-id", "webhook-timestamp", "webhook-signature")
RESERVED = {*SIGNED_HEADERS, "content-type", "content-length", "host", "transfer-encoding", "connection"}
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
        parsed = urlsplit(value) if value.startswith(("http://", "https://")) else None
        try:
            port_ok = parsed is not None and (parsed.port or 1) > 0
        except ValueError:
            port_ok = False
        if parsed is None or not parsed.hostname or not port_ok or any(c.isspace() for c in value):
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


class _GuardedHTTP(http.client.HTTPConnection):
    """Dials the address the network guard checked, as each new connection is made."""

    def connect(self) -> None:
        address = resolve(self.host, self.port)[0]
        self.sock = socket.create_connection((address, self.port), CONNECT_TIMEOUT)
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.sock.settimeout(self.timeout)


class _GuardedHTTPS(http.client.HTTPSConnection):
    """The same, with TLS verifying the name given (the process's one context)."""

    def connect(self) -> None:
        address = resolve(self.host, self.port)[0]
        sock = socket.create_connection((address, self.port), CONNECT_TIMEOUT)
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        sock.settimeout(self.timeout)
        self.sock = tls_context().wrap_socket(sock, server_hostname=self.host)


class Webhook(DestinationType):
    """http.client, one keep-alive connection per sending thread: a request costs about a
    fifth of httpx's CPU (measured in bench/deliver.py), and the deliverer is bound by it."""

    short_name = "webhook"
    title = "HTTP webhook"
    Config: ClassVar[type[BaseModel]] = WebhookConfig
    takes_raw_record = True

    def __init__(self, destination_id: str, config: dict, secrets: dict) -> None:
        super().__init__(destination_id, config, secrets)
        url = urlsplit(secrets.get("url") or config["url"])
        self.https = url.scheme == "https"
        self.host = url.hostname or ""
        self.port = url.port or (443 if self.https else 80)
        self.target = (url.path or "/") + (f"?{url.query}" if url.query else "")
        self.timeout = float(config.get("timeout_seconds") or 10)
        self.local = threading.local()
        self.opened: list[http.client.HTTPConnection] = []
        self.lock = threading.Lock()

    @classmethod
    def new_secrets(cls) -> dict:
        return {"signing_secret": new_signing_secret()}

    @classmethod
    def hide(cls, config: dict) -> tuple[dict, dict]:
        # A custom header is how receivers take a token (Authorization), and a URL's query or
        # password another (?token=): their values are secrets.
        headers = dict(config.get("headers") or {})
        url = config.get("url") or ""
        shown_url = masked_url(url)
        hidden = {"headers": headers, "url": url if shown_url != url else None}
        return {**config, "url": shown_url, "headers": dict.fromkeys(headers, MASK)}, hidden

    @classmethod
    def reveal(cls, config: dict, secrets: dict) -> dict:
        return {
            **config,
            "url": secrets.get("url") or config.get("url"),
            "headers": dict(secrets.get("headers") or {}),
        }

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

    def _connection(self) -> http.client.HTTPConnection:
        conn = getattr(self.local, "conn", None)
        if conn is None:
            kind = _GuardedHTTPS if self.https else _GuardedHTTP
            conn = kind(self.host, self.port, timeout=self.timeout)
            self.local.conn = conn
            with self.lock:
                self.opened.append(conn)
        return conn

    def send(self, change: dict) -> Outcome:
        return self.post_signed(change["id"], payload(change))

    def post_signed(self, message_id: str, body: bytes) -> Outcome:
        """POST `body` signed as message `message_id` (a change; an alert)."""
        now = time.time()
        stamp = str(int(now))
        signature = " ".join(
            "v1," + standard_signature(s, message_id, stamp, body) for s in self.signing_secrets(now)
        )
        custom = self.secrets.get("headers") or {}
        headers = {
            **custom,
            "content-type": "application/json",
            "webhook-id": message_id,
            "webhook-timestamp": stamp,
            "webhook-signature": signature,
        }
        logged = {
            "method": "POST",
            "url": shown(self.config["url"]),
            "headers": {
                k: (MASK if k == "webhook-signature" or k in custom else v) for k, v in headers.items()
            },
            "body": bounded(body.decode()),
        }
        started = time.monotonic()
        try:
            status, said = self._post(body, headers)
        except Exception as exc:  # the receiver's failure, whatever it is: an outcome
            return Outcome(False, None, _failure(exc), logged, None, _ms(started))
        ok = 200 <= status < 300
        return Outcome(ok, status, None if ok else f"answered {status}", logged, said, _ms(started))

    def _post(self, body: bytes, headers: dict[str, str]) -> tuple[int, dict]:
        """One POST on this thread's connection; once more on a new one if a kept-alive
        connection turns out closed by the receiver before it answered."""
        for tries_left in (1, 0):
            conn = self._connection()
            reused = conn.sock is not None
            try:
                conn.request("POST", self.target, body=body, headers=headers)
                answer = conn.getresponse()
                text = answer.read(ANSWER_BYTES).decode(errors="replace")
                if answer.will_close:
                    conn.close()
                return answer.status, {"headers": dict(answer.getheaders()), "body": bounded(text)}
            except (http.client.RemoteDisconnected, BrokenPipeError, ConnectionResetError):
                conn.close()
                if not (reused and tries_left):
                    raise
            except Exception:
                conn.close()
                raise
        raise RuntimeError("unreachable")

    def close(self) -> None:
        with self.lock:
            for conn in self.opened:
                conn.close()
            self.opened.clear()


def payload(change: dict) -> bytes:
    """What the receiver gets: Standard Webhooks' type, timestamp and data, the record's
    stored JSON put in as it is (parsing and writing it again cost more than the request)."""
    meta = {k: v for k, v in change.items() if k not in ("id", "record_json")}
    head = json.dumps(
        {"type": EVENT_TYPES[change["op"]], "timestamp": change["changed_at"], "data": meta},
        separators=(",", ":"),
    )
    return (head[:-2] + ',"record":' + (change.get("record_json") or "null") + "}}").encode()


def new_signing_secret() -> str:
    return "whsec_" + base64.b64encode(random.token_bytes(24)).decode()


def _failure(exc: Exception) -> str:
    if isinstance(exc, SourceError):  # the network guard refused the address, or no such host
        return str(exc)
    if isinstance(exc, TimeoutError | socket.timeout):
        return "timed out"
    if isinstance(exc, ConnectionRefusedError):
        return "could not connect (refused)"
    if isinstance(exc, ssl.SSLError):
        return f"TLS failed: {exc.reason or type(exc).__name__}"
    if isinstance(exc, OSError | http.client.HTTPException):
        return f"connection failed ({type(exc).__name__})"
    return type(exc).__name__


def _ms(started: float) -> int:
    return round((time.monotonic() - started) * 1000)
