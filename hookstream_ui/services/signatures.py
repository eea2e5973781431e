"""Webhook signature schemes. Every comparison is constant-time (hmac.compare_digest).

Replay: Stripe and Standard Webhooks sign a timestamp, and a delivery more than five minutes
old is refused, so a captured delivery cannot be sent again later. HMAC-SHA256/SHA1 and
GitHub sign the body alone: within the dedup window a copy is a duplicate, after it a copy
verifies. A collection with a timestamp path keeps last-write-wins by the event's own time,
so a replayed old event changes nothing there (services/upsert).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import time
from collections.abc import Callable, Mapping
from typing import Any

from werkzeug.datastructures import Headers

from ..sources.webhook import DEFAULT_HMAC_HEADER

TOLERANCE_SECONDS = 300
# What a delivery's headers come as: werkzeug's Headers from a request, or a plain dict.
HeaderMap = Headers | Mapping[str, str]
Digest = Callable[[], Any]  # a hashlib constructor


class SignatureError(Exception):
    """Why a delivery's signature does not verify; safe to show (it never quotes the secret)."""


def _hex_hmac(secret: str, payload: bytes, digest: Digest) -> str:
    return hmac.new(secret.encode(), payload, digest).hexdigest()


def _same(given: str, expected: str) -> bool:
    """Constant-time, on bytes: compare_digest refuses str with characters beyond ASCII (a
    header can hold any), which answered 500."""
    return hmac.compare_digest(given.encode("utf-8", "replace"), expected.encode("utf-8", "replace"))


def _check_time(timestamp: str, now: float) -> None:
    if not (timestamp or "").isascii() or not timestamp.strip().lstrip("-").isdigit() or len(timestamp) > 20:
        raise SignatureError("signature timestamp is missing or not a number")
    ts = int(timestamp)
    if abs(now - ts) > TOLERANCE_SECONDS:
        raise SignatureError("signature timestamp is outside the 5-minute tolerance")


def verify_hmac(
    secret: str, body: bytes, headers: HeaderMap, header: str, digest: Digest, prefix: str
) -> None:
    given = headers.get(header)
    if not given:
        raise SignatureError(f"missing {header} header")
    given = given.strip()
    if given.lower().startswith(prefix + "="):
        given = given[len(prefix) + 1 :]
    if not _same(given.lower(), _hex_hmac(secret, body, digest)):
        raise SignatureError(f"{header} does not match the body")


def verify_stripe(secret: str, body: bytes, headers: HeaderMap, now: float) -> None:
    header = headers.get("Stripe-Signature")
    if not header:
        raise SignatureError("missing Stripe-Signature header")
    parts = [p.split("=", 1) for p in header.split(",") if "=" in p]
    timestamp = next((v for k, v in parts if k.strip() == "t"), None)
    signatures = [v.strip() for k, v in parts if k.strip() == "v1"]
    if timestamp is None or not signatures:
        raise SignatureError("Stripe-Signature has no t= or v1= part")
    expected = _hex_hmac(secret, f"{timestamp}.".encode() + body, hashlib.sha256)
    if not any(_same(sig, expected) for sig in signatures):
        raise SignatureError("Stripe-Signature does not match the body")
    _check_time(timestamp, now)


def standard_key(secret: str) -> tuple[bytes, bool]:
    """A Standard Webhooks key: the secret after `whsec_`, base64-decoded (characters outside
    base64 skipped); the secret's own bytes if that does not decode. True when decoded."""
    key = secret[len("whsec_") :] if secret.startswith("whsec_") else secret
    try:
        return base64.b64decode(key), True
    except (ValueError, TypeError):
        return secret.encode(), False


def verify_standard(secret: str, body: bytes, headers: HeaderMap, now: float) -> None:
    """Standard Webhooks: HMAC-SHA256 of `id.timestamp.body`, base64, `v1,<sig>` (space-separated)."""
    msg_id, timestamp, header = (
        headers.get("webhook-id"),
        headers.get("webhook-timestamp"),
        headers.get("webhook-signature"),
    )
    if not (msg_id and timestamp and header):
        raise SignatureError("missing webhook-id, webhook-timestamp or webhook-signature header")
    key_bytes, _ = standard_key(secret)
    expected = base64.b64encode(
        hmac.new(key_bytes, f"{msg_id}.{timestamp}.".encode() + body, hashlib.sha256).digest()
    ).decode()
    candidates = [part.split(",", 1)[1] for part in header.split() if part.startswith("v1,")]
    if not any(_same(c, expected) for c in candidates):
        raise SignatureError("webhook-signature does not match the body")
    _check_time(timestamp, now)


def verify(credentials: dict[str, Any], body: bytes, headers: HeaderMap, now: float | None = None) -> str:
    """'skipped' when verification is off, 'verified' when it passes; else SignatureError."""
    kind = credentials.get("verification_type") or "none"
    now = time.time() if now is None else now
    secret = credentials.get("signing_secret") or ""
    if kind == "none":
        return "skipped"
    if kind == "hmac_sha256":
        verify_hmac(
            secret,
            body,
            headers,
            credentials.get("signature_header") or DEFAULT_HMAC_HEADER,
            hashlib.sha256,
            "sha256",
        )
    elif kind == "hmac_sha1":
        verify_hmac(
            secret,
            body,
            headers,
            credentials.get("signature_header") or DEFAULT_HMAC_HEADER,
            hashlib.sha1,
            "sha1",
        )
    elif kind == "github":
        verify_hmac(secret, body, headers, "X-Hub-Signature-256", hashlib.sha256, "sha256")
    elif kind == "stripe":
        verify_stripe(secret, body, headers, now)
    elif kind == "standard_webhooks":
        verify_standard(secret, body, headers, now)
    else:
        raise SignatureError(f"unknown verification type {kind!r}")
    return "verified"


def sign(credentials: dict, body: bytes, now: float | None = None) -> dict:
    """Headers that make `body` verify under these credentials (for "send a test event")."""
    kind = credentials.get("verification_type") or "none"
    secret = credentials.get("signing_secret") or ""
    ts = int(time.time() if now is None else now)
    if kind in ("hmac_sha256", "hmac_sha1"):
        digest = hashlib.sha256 if kind == "hmac_sha256" else hashlib.sha1
        return {credentials.get("signature_header") or DEFAULT_HMAC_HEADER: _hex_hmac(secret, body, digest)}
    if kind == "github":
        return {"X-Hub-Signature-256": "sha256=" + _hex_hmac(secret, body, hashlib.sha256)}
    if kind == "stripe":
        return {
            "Stripe-Signature": f"t={ts},v1=" + _hex_hmac(secret, f"{ts}.".encode() + body, hashlib.sha256)
        }
    if kind == "standard_webhooks":
        key_bytes, _ = standard_key(secret)
        msg_id = f"msg_test_{ts}"
        sig = base64.b64encode(
            hmac.new(key_bytes, f"{msg_id}.{ts}.".encode() + body, hashlib.sha256).digest()
        )
        return {"webhook-id": msg_id, "webhook-timestamp": str(ts), "webhook-signature": "v1," + sig.decode()}
    return {}


# How a shell computes each scheme's signature of "$BODY" from "$SIGNING_SECRET", with
# openssl, as verify() checks it: (lines that set SIG and what it needs, curl's header
# arguments). The dashboard shows these; tests run them against a live server.
_HEX_HMAC = "openssl dgst -{digest} -hmac \"$SIGNING_SECRET\" | sed 's/^.*= //'"


def shell_recipe(credentials: dict) -> tuple[list[str], list[str]]:
    kind = credentials.get("verification_type") or "none"
    if kind in ("hmac_sha256", "hmac_sha1"):
        digest = "sha256" if kind == "hmac_sha256" else "sha1"
        header = credentials.get("signature_header") or DEFAULT_HMAC_HEADER
        return (
            [f"SIG=$(printf '%s' \"$BODY\" | {_HEX_HMAC.format(digest=digest)})"],
            [f'-H "{header}: {digest}=$SIG"'],
        )
    if kind == "github":
        return (
            [f"SIG=$(printf '%s' \"$BODY\" | {_HEX_HMAC.format(digest='sha256')})"],
            ['-H "X-Hub-Signature-256: sha256=$SIG"'],
        )
    if kind == "stripe":
        return (
            [
                "TS=$(date +%s)",
                f'SIG=$(printf \'%s.%s\' "$TS" "$BODY" | {_HEX_HMAC.format(digest="sha256")})',
            ],
            ['-H "Stripe-Signature: t=$TS,v1=$SIG"'],
        )
    if kind == "standard_webhooks":
        _, decoded = standard_key(credentials.get("signing_secret") or "")
        key = (
            "KEY=$(printf '%s' \"${SIGNING_SECRET#whsec_}\" | base64 -di | od -An -v -tx1 | tr -d ' \\n')"
            if decoded
            else "KEY=$(printf '%s' \"$SIGNING_SECRET\" | od -An -v -tx1 | tr -d ' \\n')"
        )
        return (
            [
                "TS=$(date +%s)",
                "MSG_ID=msg_$TS",
                key,
                'SIG=$(printf \'%s.%s.%s\' "$MSG_ID" "$TS" "$BODY" | openssl dgst -sha256 -mac HMAC '
                '-macopt hexkey:"$KEY" -binary | base64)',
            ],
            ['-H "webhook-id: $MSG_ID"', '-H "webhook-timestamp: $TS"', '-H "webhook-signature: v1,$SIG"'],
        )
    return [], []
