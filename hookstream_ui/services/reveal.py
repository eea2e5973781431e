"""A secret shown once, after a redirect: the page that made it redirects (so a reload does
not make another), and the page it lands on takes it back, once, by a single-use token.
Kept encrypted in Redis for REVEAL_SECONDS, for the person who made it only."""

from __future__ import annotations

import secrets

from ..extensions import get_redis
from ..sources import secrets as vault

REVEAL_SECONDS = 300
PREFIX = "hookstream:reveal:"


def keep(user_id: str | None, values: dict) -> str:
    token = secrets.token_urlsafe(18)
    sealed = vault.encrypt({"user": user_id, "values": values})
    get_redis().set(PREFIX + token, sealed, ex=REVEAL_SECONDS)
    return token


def take(user_id: str | None, token: str | None) -> dict | None:
    """The values, the first time they are asked for by the person they were kept for."""
    if not token or len(token) > 64:
        return None
    sealed = get_redis().getdel(PREFIX + token)
    if sealed is None:
        return None
    held = vault.decrypt(sealed.decode() if isinstance(sealed, bytes) else str(sealed))
    if held.get("user") != user_id:
        return None
    values = held.get("values")
    return values if isinstance(values, dict) else None
