"""Credentials at rest: one Fernet token of the JSON credentials per connection.

MultiFernet decrypts with any configured key and encrypts with the first, so keys can be
rotated (`flask rotate-credentials-key`) without downtime.
"""

from __future__ import annotations

import base64
import json
import re
from urllib.parse import quote, quote_plus

from cryptography.fernet import Fernet, InvalidToken, MultiFernet
from flask import current_app


def _fernet() -> MultiFernet:
    keys = current_app.config["CREDENTIALS_KEYS"]
    cached = current_app.extensions.get("hookstream_fernet")
    if cached is None or cached[0] != keys:
        cached = (list(keys), MultiFernet([Fernet(k) for k in keys]))
        current_app.extensions["hookstream_fernet"] = cached
    return cached[1]


def encrypt(credentials: dict) -> str:
    return _fernet().encrypt(json.dumps(credentials).encode()).decode()


def decrypt(token: str | None) -> dict:
    if not token:
        return {}
    try:
        return json.loads(_fernet().decrypt(token.encode()))
    except InvalidToken:
        # Never fall back to showing anything: the key is wrong or the data was tampered.
        raise RuntimeError("stored credentials cannot be decrypted with the configured keys") from None


def rotate(token: str) -> str:
    return _fernet().rotate(token.encode()).decode()


def scrub(message: str, secrets: list[str]) -> str:
    """A message with every secret value cut out, for errors that may quote their input: in
    any case, with spacing added or taken out, and as URLs, JSON and base64 write it."""
    for secret in sorted(set(secrets), key=len, reverse=True):
        if secret and len(secret) >= 3:
            for spelling in _spellings(secret):
                message = _loose(spelling).sub("•••", message)
    return message


def _spellings(secret: str) -> set[str]:
    return {
        secret,
        quote(secret, safe=""),
        quote_plus(secret),
        json.dumps(secret)[1:-1],
        base64.b64encode(secret.encode()).decode().rstrip("="),
    }


def _loose(spelling: str) -> re.Pattern:
    """`spelling`, in any case and with any whitespace between its characters."""
    return re.compile(r"\s*".join(re.escape(c) for c in spelling if not c.isspace()), re.IGNORECASE)
