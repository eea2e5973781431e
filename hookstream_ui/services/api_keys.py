"""API keys: `hs_live_<random>`, shown once, stored as a SHA-256 hash.

A key acts inside its environment with its role (member or viewer), for its owner: it stops
working when the owner is removed from the org, demoted below the key's role, disabled or
deleted. The team services end such keys when that happens (revoked, with the reason), and
every request checks the owner again, so a change made any other way ends them too.
"""

from __future__ import annotations

import hashlib
import secrets
import time
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta

import redis
from flask import abort
from sqlalchemy import ColumnElement, and_, case, or_, select, update
from sqlalchemy.orm import joinedload

from ..errors import ValidationFailed
from ..extensions import get_redis
from ..models import KEY_ROLES, ApiKey, Environment, Membership, User, db, role_at_least
from ..models.principal import Principal
from ..values.times import isoformat, utcnow
from .names import clean_name, name_problem
from .pagination import Page, paginate

KEY_PREFIX = "hs_live_"
ENDED_SHOWN = 20  # ended keys the keys page lists, newest first


class KeyRefused(Exception):
    """The key is unknown or no longer works; the message says which, and why."""


def hash_key(raw: str) -> str:
    return hashlib.sha256(raw.encode()).hexdigest()


EXPIRY_DAYS = (7, 30, 90, 365)  # the dashboard's choices; the API takes any future time
MAX_EXPIRY = timedelta(days=3660)


def _expiry(value: object) -> tuple[datetime | None, str | None]:
    """`expires_at` as given (ISO 8601, or None for never), or what is wrong with it."""
    if value is None or value == "":
        return None, None
    if not isinstance(value, str):
        return None, "must be an ISO 8601 time (e.g. 2027-01-31T00:00:00Z) or null"
    try:
        moment = datetime.fromisoformat(value.strip().replace("Z", "+00:00").replace("z", "+00:00"))
    except ValueError:
        return None, "must be an ISO 8601 time (e.g. 2027-01-31T00:00:00Z) or null"
    moment = moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)
    now = utcnow()
    if moment <= now:
        return None, "must be in the future"
    if moment > now + MAX_EXPIRY:
        return None, "must be within 10 years"
    return moment, None


def expiry_in_days(days: str | None, field: str = "expires_in") -> str | None:
    """The dashboard's choice of days (blank: never) as the time create_key takes."""
    if days in (None, ""):
        return None
    if days not in {str(d) for d in EXPIRY_DAYS}:
        raise ValidationFailed(
            {field: "must be one of: never, " + ", ".join(f"{d} days" for d in EXPIRY_DAYS)}
        )
    return (utcnow() + timedelta(days=int(days))).isoformat()


NAME_MAX = 100


def create_key(
    env: Environment, name: object, created_by: User, role: str = "member", expires_at: object = None
) -> tuple[ApiKey, str]:
    errors = {}
    if problem := name_problem(name, 1, NAME_MAX):
        errors["name"] = problem
    if role not in KEY_ROLES:
        errors["role"] = "must be one of: " + ", ".join(KEY_ROLES)
    expires, problem = _expiry(expires_at)
    if problem:
        errors["expires_at"] = problem
    if errors:
        raise ValidationFailed(errors)
    raw = KEY_PREFIX + secrets.token_urlsafe(32)
    key = ApiKey(
        org_id=env.org_id,
        env_id=env.id,
        name=clean_name(name),
        prefix=raw[: len(KEY_PREFIX) + 6],
        key_hash=hash_key(raw),
        created_by_id=created_by.id,
        role=role,
        expires_at=expires,
    )
    db.session.add(key)
    db.session.commit()
    return key, raw


def _live() -> ColumnElement[bool]:
    return and_(ApiKey.revoked_at.is_(None), or_(ApiKey.expires_at.is_(None), ApiKey.expires_at > utcnow()))


def list_keys(principal: Principal) -> Sequence[ApiKey]:
    """The environment's keys that work."""
    fold_usage(principal)
    return db.session.scalars(
        select(ApiKey)
        .where(ApiKey.org_id == principal.org.id, ApiKey.env_id == principal.env.id, _live())
        .order_by(ApiKey.created_at.desc(), ApiKey.id.desc())
    ).all()


def keys_page(principal: Principal, cursor: str | None = None, limit: str | int | None = None) -> Page:
    """A page of the environment's keys, revoked and expired ones too (each says which)."""
    fold_usage(principal)
    return paginate(
        select(ApiKey).where(ApiKey.org_id == principal.org.id, ApiKey.env_id == principal.env.id),
        ApiKey,
        cursor,
        limit,
    )


def ended_keys(principal: Principal) -> Sequence[ApiKey]:
    """The environment's newest revoked or expired keys, with whose they were and why they
    ended."""
    ended_at = case((ApiKey.revoked_at.is_not(None), ApiKey.revoked_at), else_=ApiKey.expires_at)
    return db.session.scalars(
        select(ApiKey)
        .where(ApiKey.org_id == principal.org.id, ApiKey.env_id == principal.env.id, ~_live())
        .order_by(ended_at.desc(), ApiKey.id.desc())
        .limit(ENDED_SHOWN)
    ).all()


def get_key_or_404(principal: Principal, key_id: str) -> ApiKey:
    key = db.session.scalar(
        select(ApiKey).where(
            ApiKey.id == key_id,
            ApiKey.org_id == principal.org.id,
            ApiKey.env_id == principal.env.id,
            ApiKey.revoked_at.is_(None),
        )
    )
    if key is None:
        abort(404, description="API key not found")
    return key


def revoke_key(principal: Principal, key_id: str) -> ApiKey:
    key = get_key_or_404(principal, key_id)
    # Who, by role: the reason reaches whoever still holds the key (its 401), so no email;
    # the audit log names the person.
    by = (
        "its owner"
        if principal.user_id == key.created_by_id
        else f"an {principal.role}"
        if principal.role[:1] in "aeiou"
        else f"a {principal.role}"
    )
    key.revoked_at, key.revoked_reason = utcnow(), f"revoked by {by}"
    db.session.commit()
    return key


def keys_ended_by(user_id: str, *, org_id: str | None = None, role: str | None = None) -> list[ApiKey]:
    """The user's live keys (in one org, or in all) that `role` (their new role) may not
    hold: what a change would revoke, so that it can be said before it is made."""
    keys = db.session.scalars(
        select(ApiKey).where(
            ApiKey.created_by_id == user_id,
            ApiKey.revoked_at.is_(None),
            *([ApiKey.org_id == org_id] if org_id else []),
        )
    ).all()
    return [k for k in keys if role is None or not role_at_least(role, k.role)]


def end_keys_of(user_id: str, reason: str, *, org_id: str | None = None, role: str | None = None) -> int:
    """Revoke the user's live keys (in one org, or in all) that `role` (their new role) may
    not hold. The caller commits, with the change that ended them."""
    ended = keys_ended_by(user_id, org_id=org_id, role=role)
    for key in ended:
        key.revoked_at, key.revoked_reason = utcnow(), reason
    return len(ended)


def _owner_problem(key: ApiKey, owner_role: str | None) -> str | None:
    """Why the key's owner can no longer hold it, if they cannot."""
    owner = key.created_by
    if owner is None:
        return "its owner's account was deleted"
    if owner.disabled_at is not None:
        return "its owner's account is disabled"
    if owner_role is None:
        return "its owner is no longer a member of the organization"
    if not role_at_least(owner_role, key.role):
        return f"its owner is now a {owner_role}, below the key's {key.role} role"
    return None


def authenticate_key(raw: str) -> ApiKey:
    """The live key for `raw`, with its usage counted; else KeyRefused saying why."""
    found = (
        db.session.execute(
            select(ApiKey, Membership.role)
            .options(joinedload(ApiKey.environment).joinedload(Environment.org))
            .outerjoin(
                Membership,
                and_(Membership.org_id == ApiKey.org_id, Membership.user_id == ApiKey.created_by_id),
            )
            .where(ApiKey.key_hash == hash_key(raw or ""))
        ).first()
        if (raw or "").startswith(KEY_PREFIX)
        else None
    )
    if found is None:
        raise KeyRefused("Invalid API key")
    key, owner_role = found
    if key.revoked_at is None:
        problem = _owner_problem(key, owner_role)
        if problem is not None:  # ended some other way (an admin's SQL, a deleted user): end it now
            key.revoked_at, key.revoked_reason = utcnow(), problem
            db.session.commit()
    if key.revoked_at is not None:
        raise KeyRefused(f"This API key no longer works: {key.revoked_reason or 'revoked'}")
    if key.expired(utcnow()):
        raise KeyRefused(f"This API key no longer works: it expired at {isoformat(key.expires_at)}")
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
        update(ApiKey)
        .where(ApiKey.id == key_id)
        .values(
            request_count=ApiKey.request_count + count,
            last_used_at=case((ApiKey.last_used_at > last_used, ApiKey.last_used_at), else_=last_used),
        )
    )


def fold_usage(principal: Principal) -> None:
    """Move the Redis counters of this environment's keys into their rows."""
    ids = db.session.scalars(select(ApiKey.id).where(ApiKey.env_id == principal.env.id)).all()
    if not ids:
        return
    try:
        pipe = get_redis().pipeline(transaction=True)  # read-and-clear atomically
        for key_id in ids:
            pipe.hget(USAGE_HASH, f"{key_id}:n")
            pipe.hget(USAGE_HASH, f"{key_id}:t")
            pipe.hdel(USAGE_HASH, f"{key_id}:n", f"{key_id}:t")
        replies = pipe.execute()
    except redis.RedisError:
        return  # counts stay in Redis until it is back
    for index, key_id in enumerate(ids):
        count, stamp = replies[3 * index], replies[3 * index + 1]
        if count:
            _add_usage(key_id, int(count), datetime.fromtimestamp(float(stamp), UTC))
    db.session.commit()
