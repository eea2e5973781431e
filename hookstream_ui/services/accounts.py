"""Users, their orgs and sign-in."""

from __future__ import annotations

import hashlib
import re
import secrets
import unicodedata
from collections.abc import Callable, Sequence
from datetime import timedelta
from typing import Any, NoReturn

from email_validator import EmailNotValidError, validate_email
from flask import current_app
from sqlalchemy import case, func, select, update
from sqlalchemy.exc import IntegrityError
from werkzeug.security import check_password_hash, generate_password_hash

from ..errors import ValidationFailed
from ..infra import locks
from ..models import Environment, Membership, Org, PasswordReset, SignInFailure, User, UserSession, db
from ..models.base import rows_changed
from ..models.principal import suspended_message
from ..values.times import as_utc, utcnow
from . import audit

MIN_PASSWORD = 10


def normalise_email(email: str) -> str:
    try:
        return validate_email(email or "", check_deliverability=False).normalized.lower()
    except EmailNotValidError as exc:
        raise ValidationFailed({"email": str(exc)}) from None


def at_once(*checks: Callable[[], Any]) -> list[Any]:
    """Each check's result; every field's error at once when any is refused, not one field
    per submit."""
    errors: dict[str, str] = {}
    results: list[Any] = []
    for check in checks:
        try:
            results.append(check())
        except ValidationFailed as exc:
            if exc.status != 400:
                raise
            errors.update({k: v for k, v in exc.errors.items() if k not in errors})
            results.append(None)
    if errors:
        raise ValidationFailed(errors)
    return results


def _refuse(field: str, message: str) -> NoReturn:
    raise ValidationFailed({field: message})


def _matches(confirm: object, value: object, field: str, what: str) -> None:
    """`confirm` (None: the form does not ask) typed the same as `value`."""
    if confirm is not None and confirm != value:
        raise ValidationFailed({field: f"does not match {what}"})


def check_password_strength(password: object, field: str = "password") -> None:
    if not isinstance(password, str) or len(password) < MIN_PASSWORD:
        raise ValidationFailed({field: f"must be at least {MIN_PASSWORD} characters"})


# Latin letters NFKD leaves whole (they are letters of their own, not a letter and a mark).
_LETTERS = str.maketrans(
    {
        "ß": "ss",
        "ẞ": "ss",
        "æ": "ae",
        "Æ": "ae",
        "œ": "oe",
        "Œ": "oe",
        "ø": "o",
        "Ø": "o",
        "ł": "l",
        "Ł": "l",
        "đ": "d",
        "Đ": "d",
        "ð": "d",
        "Ð": "d",
        "þ": "th",
        "Þ": "th",
        "ħ": "h",
        "Ħ": "h",
        "ı": "i",
        "ŋ": "ng",
        "Ŋ": "ng",
        "ĸ": "q",
        "ŀ": "l",
        "Ŀ": "l",
    }
)


def transliterate(text: str) -> str:
    """Latin letters as ASCII: "Ünïcode" reads "Unicode", "Straße" "Strasse". Accented
    letters lose their marks (NFKD splits them); the few letters NFKD does not split come
    from a table. Other scripts are left as they are (and a slug drops them)."""
    decomposed = unicodedata.normalize("NFKD", (text or "").translate(_LETTERS))
    return "".join(ch for ch in decomposed if not unicodedata.combining(ch))


def slugify(text: str, fallback: str = "org") -> str:
    slug = re.sub(r"[^a-z0-9]+", "-", transliterate(text).lower()).strip("-")[:40].strip("-")
    return slug or fallback


def create_org(name: str, owner: User | None = None, slug: str | None = None) -> Org:
    """An org always starts with a `production` environment."""
    slug = slugify(slug or name)
    if db.session.scalar(select(Org.id).where(Org.slug == slug)):
        slug = f"{slug}-{secrets.token_hex(3)}"
    org = Org(name=name, slug=slug)
    org.environments.append(Environment(name="production", slug="production"))
    db.session.add(org)
    if owner is not None:
        db.session.add(Membership(org=org, user=owner, role="owner"))
    return org


def is_empty_instance() -> bool:
    return db.session.scalar(select(func.count(User.id))) == 0


def create_user(
    email: str,
    password: str,
    *,
    admin: bool = False,
    org_slug: str | None = None,
    role: str = "member",
    confirm: str | None = None,
) -> User:
    """A user joins `org_slug` with `role`, or else gets an org of their own as owner."""
    email, _, _ = at_once(
        lambda: normalise_email(email),
        lambda: check_password_strength(password),
        lambda: _matches(confirm, password, "password_confirm", "the password"),
    )
    if db.session.scalar(select(User.id).where(User.email == email)):
        raise ValidationFailed({"email": "is already registered"}, status=409, code="conflict")
    org = None
    if org_slug:
        org = db.session.scalar(select(Org).where(Org.slug == org_slug))
        if org is None:
            raise ValidationFailed({"org": f"no org with slug {org_slug!r}"}, status=404, code="not_found")
    user = User(email=email, is_instance_admin=admin)
    user.set_password(password)
    db.session.add(user)
    if org is not None:
        db.session.add(Membership(org=org, user=user, role=role))
    else:
        create_org(f"{email.split('@')[0]}'s org", owner=user)
    db.session.commit()
    return user


def sign_up(email: str, password: str, confirm: str | None = None) -> User:
    """The first person on an empty instance becomes its admin; after that, only if allowed.
    Counted under a lock: concurrent first sign-ups made several instance admins."""
    locks.hold("first-user")
    first = is_empty_instance()
    if not first and not current_app.config["ALLOW_SIGNUP"]:
        raise ValidationFailed(
            {"email": "Sign-up is closed on this instance; ask an admin for an invitation."},
            status=403,
            code="signup_closed",
        )
    user = create_user(email, password, admin=first, confirm=confirm)
    org = user.memberships[0].org
    audit.record(
        "org.create",
        "org",
        org.id,
        actor=audit.actor_for_user(user),
        org_id=org.id,
        details={"name": org.name, "via": "sign-up"},
    )
    db.session.commit()
    return user


# Failed sign-ins allowed per address (and per client IP) before sign-in is refused until
# the window has passed without another failure: guessing gets a handful of tries.
SIGN_IN_FAILURES = 10
SIGN_IN_IP_FAILURES = 50
SIGN_IN_WINDOW = 15 * 60


def _nobody() -> str:
    """A hash to check when the email has no account, so that both answers take as long
    (made once per app, with the method the accounts' own hashes use)."""
    found = current_app.extensions.get("hookstream_nobody")
    if found is None:
        found = current_app.extensions["hookstream_nobody"] = generate_password_hash(
            secrets.token_urlsafe(16), method=current_app.config["PASSWORD_HASH_METHOD"]
        )
    return found


def _throttle_keys(email: str, ip: str | None) -> list[tuple[str, int]]:
    keys = [(f"email:{hashlib.sha256(email.encode()).hexdigest()}", SIGN_IN_FAILURES)]
    if ip:
        keys.append((f"ip:{ip[:80]}", SIGN_IN_IP_FAILURES))
    return keys


def _throttled(keys: list[tuple[str, int]]) -> int | None:
    """Seconds until sign-in is allowed again, if it is refused now."""
    limits = dict(keys)
    now = utcnow()
    waits = [
        SIGN_IN_WINDOW - (now - as_utc(row.last_failure_at)).total_seconds()
        for row in db.session.scalars(select(SignInFailure).where(SignInFailure.key.in_(limits)))
        if row.failures >= limits[row.key]
    ]
    waits = [w for w in waits if w > 0]
    return max(1, int(max(waits))) if waits else None


def _count_failure(keys: list[tuple[str, int]]) -> None:
    """One more failure for each key, in its own transaction; the count starts again once a
    window has passed without one (as an expiring counter would)."""
    now, failures = utcnow(), SignInFailure.__table__
    stale = now - timedelta(seconds=SIGN_IN_WINDOW)
    db.session.rollback()
    for key, _ in keys:
        bump = (
            failures.update()
            .where(failures.c.key == key)
            .values(
                failures=case((failures.c.last_failure_at < stale, 1), else_=failures.c.failures + 1),
                last_failure_at=now,
            )
        )
        if rows_changed(bump) == 0:
            try:
                with db.session.begin_nested():
                    db.session.execute(failures.insert().values(key=key, failures=1, last_failure_at=now))
            except IntegrityError:  # another failure for the same key got there first
                db.session.execute(bump)
    db.session.commit()


def _orgs_or_instance(orgs: Sequence[Org]) -> list[Org | None]:
    """Where a sign-in entry goes: each of the user's orgs, or the instance (None) if none."""
    return [*orgs] if orgs else [None]


def _audit_refused(email: str, user: User | None, reason: str) -> None:
    """A refused sign-in, in the log of each org of the account it named (instance admins see
    those naming no account). Only counted attempts get here: throttled ones are refused
    before, so guessing cannot flood the log."""
    orgs = (
        db.session.scalars(select(Org).join(Membership).where(Membership.user_id == user.id)).all()
        if user is not None
        else []
    )
    if user is None:
        # What was typed naming no account is kept only if it is an email address: a password
        # typed into the email field must not land in the log.
        try:
            email = normalise_email(email)
        except ValidationFailed:
            email = "(not an email address)"
    actor = audit.Actor(None, email[:254] or "(no email)")
    for org in _orgs_or_instance(orgs):
        audit.record(
            "user.sign_in_failed",
            "user",
            user.id if user else None,
            actor=actor,
            org_id=org.id if org else None,
            details={"email": email[:254], "reason": reason},
        )
    db.session.commit()


def authenticate(email: str, password: str, ip: str | None = None) -> User:
    """The user, or a ValidationFailed that does not reveal which half was wrong."""
    email = (email or "").strip().lower()
    keys = _throttle_keys(email, ip)
    wait = _throttled(keys)
    if wait is not None:
        raise ValidationFailed(
            {"password": f"Too many failed sign-ins. Try again in {wait // 60 + 1} minutes."},
            status=429,
            code="too_many_attempts",
        )
    user = db.session.scalar(select(User).where(User.email == email))
    if user is None:
        check_password_hash(_nobody(), password or "")
    if user is None or not user.check_password(password or ""):
        _count_failure(keys)
        _audit_refused(email, user, "no such account" if user is None else "wrong password")
        raise ValidationFailed(
            {"password": "Email or password is incorrect."}, status=401, code="unauthorized"
        )
    if not user.is_active:
        _audit_refused(email, user, "account disabled")
        raise ValidationFailed({"email": "This account is disabled."}, status=403, code="forbidden")
    orgs = db.session.scalars(select(Org).join(Membership).where(Membership.user_id == user.id)).all()
    if orgs and all(org.suspended_at is not None for org in orgs):
        raise ValidationFailed({"email": suspended_message(orgs[0]) + "."}, status=403, code="org_suspended")
    user.last_sign_in_at = utcnow()
    for org in _orgs_or_instance(orgs):  # each org's log shows its members' sign-ins
        audit.record(
            "user.sign_in", "user", user.id, actor=audit.actor_for_user(user), org_id=org.id if org else None
        )
    db.session.commit()
    return user


def session_lifetime() -> timedelta:
    return current_app.config["PERMANENT_SESSION_LIFETIME"]


def open_session(user: User, ip: str | None) -> UserSession:
    """A signed-in session of `user`, for the cookie to name. The caller commits."""
    opened = UserSession(
        user_id=user.id, expires_at=utcnow() + session_lifetime(), ip=(ip or "")[:64] or None
    )
    db.session.add(opened)
    db.session.flush()
    return opened


def signed_in_user(user_id: str, token: str, session_id: str | None) -> User | None:
    """The user a session cookie names, while its session is live and the user's session
    token (rotated by a password change or disabling) is the one it was signed in with."""
    if not session_id:
        return None
    user = db.session.scalar(
        select(User)
        .join(UserSession, UserSession.user_id == User.id)
        .where(
            User.id == user_id,
            UserSession.id == session_id,
            UserSession.ended_at.is_(None),
            UserSession.expires_at > utcnow(),
        )
    )
    return user if user is not None and secrets.compare_digest(user.session_token, token) else None


def end_session(session_id: str | None) -> None:
    """Sign-out: the session stops working on the server, whoever holds its cookie."""
    if session_id:
        db.session.execute(
            update(UserSession)
            .where(UserSession.id == session_id, UserSession.ended_at.is_(None))
            .values(ended_at=utcnow())
        )
        db.session.commit()


def change_password(user: User, current: str, new: str, confirm: str | None = None) -> None:
    """`confirm`: the new password typed again, when a form asks for it."""
    at_once(
        lambda: user.check_password(current or "") or _refuse("current_password", "is incorrect"),
        lambda: check_password_strength(new, "new_password"),
        lambda: _matches(confirm, new, "new_password_confirm", "the new password"),
    )
    user.set_password(new)  # rotates session_token: every other session ends
    db.session.commit()


# --- password-reset links ---------------------------------------------------------------
# Made by an instance admin for a user who cannot sign in, and sent by them (no mail
# server). Instance admins only: an account spans orgs, so an org admin who could reset a
# member's password could take over what that person holds in other orgs, or an instance
# admin's account.

RESET_HOURS = 24


class InvalidReset(Exception):
    """The link is unknown, used, withdrawn or expired; the message says which."""


def _reset_hash(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


def issue_reset(acting: User, user_id: str) -> tuple[PasswordReset, str, bool]:
    """A new one-time link for `user_id`, its URL (shown to the admin once), and whether an
    earlier link of the same user, still usable, was withdrawn by it."""
    from flask import abort, url_for

    from . import links

    user = db.session.get(User, user_id)
    if user is None:
        abort(404, description="No such user")
    if user.disabled_at is not None:
        raise ValidationFailed({"user_id": f"{user.email} is disabled: enable the account first"})
    now = utcnow()
    # Only a link that could still be used counts as withdrawn: saying so of an expired one
    # (or of none) would tell the admin of a link that was never out there.
    withdrawn = (
        db.session.execute(
            update(PasswordReset)
            .where(
                PasswordReset.user_id == user.id,
                PasswordReset.used_at.is_(None),
                PasswordReset.revoked_at.is_(None),
            )
            .values(revoked_at=now)
            .returning(PasswordReset.expires_at)
        )
        .scalars()
        .all()
    )
    replaced = any(as_utc(expires) > now for expires in withdrawn)
    secret = secrets.token_urlsafe(32)
    reset = PasswordReset(
        user_id=user.id,
        token_hash=_reset_hash(secret),
        created_by_id=acting.id,
        expires_at=now + timedelta(hours=RESET_HOURS),
    )
    db.session.add(reset)
    audit.record(
        "user.password_reset_link",
        "user",
        user.id,
        actor=audit.actor_for_user(acting),
        details={"email": user.email, "expires_in_hours": RESET_HOURS},
    )
    db.session.commit()
    return reset, links.public(url_for("auth.reset_password", token=secret)), replaced


def reset_for(token: str) -> PasswordReset:
    reset = db.session.scalar(
        select(PasswordReset).where(PasswordReset.token_hash == _reset_hash(token or ""))
    )
    if reset is None:
        raise InvalidReset("This password-reset link is not valid. Ask an instance admin for a new one.")
    if reset.used_at is not None:
        raise InvalidReset("This password-reset link was already used. Ask an instance admin for a new one.")
    if reset.revoked_at is not None:
        raise InvalidReset(
            "This password-reset link was replaced by a newer one, which is the one that works."
        )
    if as_utc(reset.expires_at) <= utcnow():
        raise InvalidReset("This password-reset link has expired. Ask an instance admin for a new one.")
    if db.session.get_one(User, reset.user_id).disabled_at is not None:
        raise InvalidReset("This account is disabled, so its password-reset link does not work.")
    return reset


def use_reset(token: str, password: str, confirm: str) -> User:
    """Set the password the link is for. The link works once, and every session of the user
    ends (whoever might have been signed in as them)."""
    reset = reset_for(token)
    at_once(
        lambda: check_password_strength(password),
        lambda: _matches(confirm, password, "password_confirm", "the password"),
    )
    now = utcnow()
    # Claimed by a conditional update: two browsers using one link cannot both set it.
    claimed = rows_changed(
        update(PasswordReset)
        .where(
            PasswordReset.id == reset.id, PasswordReset.used_at.is_(None), PasswordReset.revoked_at.is_(None)
        )
        .values(used_at=now)
    )
    if claimed != 1:
        db.session.rollback()
        raise InvalidReset("This password-reset link was already used. Ask an instance admin for a new one.")
    user = db.session.get_one(User, reset.user_id)
    user.set_password(password)  # rotates the session token
    db.session.execute(
        update(UserSession)
        .where(UserSession.user_id == user.id, UserSession.ended_at.is_(None))
        .values(ended_at=now)
    )
    audit.record(
        "user.password_reset",
        "user",
        user.id,
        actor=audit.actor_for_user(user),
        details={"email": user.email},
    )
    db.session.commit()
    return user
