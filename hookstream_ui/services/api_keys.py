"""API keys: `hs_live_<random>`, shown once, stored as a SHA-256 hash."""
from __future__ import annotations

import hashlib
import secrets
import time
from datetime import datetime, timezone

import redis
from flask import abort
from sqlalchemy import case, select, update
from sqlalchemy.orm import joinedload

from ..auth.principal import Principal
from ..errors import ValidationFailed
from ..extensions import get_redis
from ..models import ApiKey, Environment, User, db, utcnow

KEY_PREFIX = "hs_live_"


def hash_key(raw: str) -> str:
    return hashlib.sha256(raw.encode()).hexdigest()


def create_key(env: Environment, name, created_by: User | None) -> tuple[ApiKey, str]:
    if name is None:
        raise ValidationFailed({"name": "is required"})
    if not isinstance(name, str):
        raise ValidationFailed({"name": "must be a string"})
    name = name.strip()
    if not 1 <= len(name) <= 100:
        raise ValidationFailed({"name": "must be 1 to 100 characters"})
    raw = KEY_PREFIX + secrets.token_urlsafe(32)
    key = ApiKey(
        org_id=env.org_id, env_id=env.id, name=name, prefix=raw[: len(KEY_PREFIX) + 6],
        key_hash=hash_key(raw), created_by_id=created_by.id if created_by else None,
    )
    db.session.add(key)
    db.session.commit()
    return key, raw


def list_keys(principal: Principal) -> list[ApiKey]:
    fold_usage(principal)
    return db.session.scalars(
        select(ApiKey)
        .where(ApiKey.org_id == principal.org.id, ApiKey.env_id == principal.env.id,
               ApiKey.revoked_at.is_(None))
        .order_by(ApiKey.created_at.desc(), ApiKey.id.desc())
    ).all()


def get_key_or_404(principal: Principal, key_id: str) -> ApiKey:
    key = db.session.scalar(
        select(ApiKey).where(ApiKey.id == key_id, ApiKey.org_id == principal.org.id,
                             ApiKey.env_id == principal.env.id, ApiKey.revoked_at.is_(None))
    )
    if key is None:
        abort(404, description="API key not found")
    return key


def revoke_key(principal: Principal, key_id: str) -> ApiKey:
    key = get_key_or_404(principal, key_id)
    key.revoked_at = utcnow()
    db.session.commit()
    return key


def authenticate_key(raw: str) -> ApiKey | None:
    """The live key for `raw`, with its usage counted; None for unknown or revoked keys."""
    if not raw or not raw.startswith(KEY_PREFIX):
        return None
    key = db.session.scalar(
        select(ApiKey)
        .options(joinedload(ApiKey.environment).joinedload(Environment.org))
        .where(ApiKey.key_hash == hash_key(raw), ApiKey.revoked_at.is_(None))
    )
    if key is not None:
        record_usage(key.id)
    return key


# Usage is counted in Redis, one pipelined round trip per request, and folded into the
# rows when keys are listed: a database write per API call would serialise every request
# on SQLite's single writer. If Redis is down, the row is updated directly instead.
USAGE_HASH = "hookstream:api-key-usage"


def record_usage(key_id: str) -> None:
    try:
        pipe = get_redis().pipeline(transaction=False)
        pipe.hincrby(USAGE_HASH, f"{key_id}:n", 1)
        pipe.hset(USAGE_HASH, f"{key_id}:t", time.time())
        pipe.execute()
    except redis.RedisError:
        _add_usage(key_id, 1, utcnow())
        db.session.commit()


def _add_usage(key_id: str, count: int, last_used: datetime) -> None:
    db.session.execute(
        update(ApiKey).where(ApiKey.id == key_id)
        .values(request_count=ApiKey.request_count + count,
                last_used_at=case((ApiKey.last_used_at > last_used, ApiKey.last_used_at), else_=last_used))
    )


def fold_usage(principal: Principal) -> None:
    """Move the Redis counters of this environment's keys into their rows."""
    ids = db.session.scalars(select(ApiKey.id).where(ApiKey.env_id == principal.env.id)).all()
    if not ids:
        return
    try:
        pipe = get_redis().pipeline(transaction=True)  # read-and-clear atomically
        for key_id in ids:
            pipe.hget(USAGE_HASH, f"{key_id}:n").hget(USAGE_HASH, f"{key_id}:t")
            pipe.hdel(USAGE_HASH, f"{key_id}:n", f"{key_id}:t")
        replies = pipe.execute()
    except redis.RedisError:
        return  # counts stay in Redis until it is back
    for index, key_id in enumerate(ids):
        count, stamp = replies[3 * index], replies[3 * index + 1]
        if count:
            _add_usage(key_id, int(count), datetime.fromtimestamp(float(stamp), timezone.utc))
    db.session.commit()
