"""API keys: `hs_live_<random>`, shown once, stored as a SHA-256 hash."""
from __future__ import annotations

import hashlib
import secrets

from flask import abort
from sqlalchemy import select, update

from ..auth.principal import Principal
from ..errors import ValidationFailed
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
    digest = hash_key(raw)
    key = db.session.scalar(select(ApiKey).where(ApiKey.key_hash == digest))
    if key is None or key.revoked_at is not None:
        return None
    # One UPDATE, so concurrent requests cannot lose counts.
    db.session.execute(
        update(ApiKey).where(ApiKey.id == key.id)
        .values(request_count=ApiKey.request_count + 1, last_used_at=utcnow())
    )
    db.session.commit()
    return key
