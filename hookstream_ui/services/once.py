"""A secret shown once on the page after a redirect (a new API key, a password-reset
link): the POST that made it redirects, so reloading the page cannot make another. The
secret waits in Redis, encrypted with the credentials key, for a few minutes, and is
deleted as it is read; the session holds only a random handle."""

from __future__ import annotations

import secrets

import redis

from ..extensions import get_redis

TTL_SECONDS = 300


def hold(kind: str, data: dict, ttl: int = TTL_SECONDS) -> str | None:
    """A handle for take(), or None when Redis is down (the caller shows it at once)."""
    from ..sources import secrets as sealed

    handle = secrets.token_urlsafe(16)
    try:
        get_redis().set(f"hookstream:once:{kind}:{handle}", sealed.encrypt(data), ex=ttl)
    except redis.RedisError:
        return None
    return handle


def take(kind: str, handle: str | None) -> dict | None:
    """What hold() kept, the first time; None after that, or once it expired."""
    from ..sources import secrets as sealed

    if not handle:
        return None
    try:
        held = get_redis().getdel(f"hookstream:once:{kind}:{handle}")
    except redis.RedisError:
        return None
    return sealed.decrypt(held.decode() if isinstance(held, bytes) else held) if held else None
