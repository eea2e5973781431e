"""An org's people: members and their roles, invitations, and the org's environments.

Invitation links are signed (itsdangerous, with the app's SECRET_KEY), expire, and work
once: the link carries the invitation id and a random secret whose SHA-256 is stored, so
a tampered link fails the signature, and the table alone cannot mint a working one.
"""

from __future__ import annotations

import hashlib
import secrets
from collections.abc import Sequence
from datetime import timedelta
from typing import Any, cast

from flask import abort, current_app, session, url_for
from itsdangerous import BadSignature, SignatureExpired, URLSafeTimedSerializer
from sqlalchemy import Select, func, select, update
from sqlalchemy.exc import IntegrityError, InvalidRequestError

from ..errors import ValidationFailed
from ..infra import locks
from ..models import ROLES, Environment, Invitation, Membership, Org, User, db
from ..models.base import rows_changed
from ..models.principal import Principal, suspended_message
from ..values.times import as_utc, utcnow
from . import accounts, api_keys, audit, links
from .names import ORG_NAME_MAX, clean_name
from .pagination import Page, paginate

INVITATION_DAYS = 7


# --- members -----------------------------------------------------------------------------


def _members(principal: Principal) -> Select[tuple[Membership]]:
    return select(Membership).join(User).where(Membership.org_id == principal.org.id)


def list_members(principal: Principal) -> Sequence[Membership]:
    return db.session.scalars(_members(principal).order_by(Membership.created_at, Membership.id)).all()


def members_page(principal: Principal, cursor: str | None = None, limit: str | int | None = None) -> Page:
    return paginate(_members(principal), Membership, cursor, limit)


def get_member_or_404(principal: Principal, user_id: str) -> Membership:
    membership = db.session.scalar(
        select(Membership).where(Membership.org_id == principal.org.id, Membership.user_id == user_id)
    )
    if membership is None:
        abort(404, description="No member with that user id in this organization")
    return membership


def _owners(org_id: str) -> int:
    return (
        db.session.scalar(
            select(func.count())
            .select_from(Membership)
            .where(Membership.org_id == org_id, Membership.role == "owner")
        )
        or 0
    )


def _lock_owners(principal: Principal, membership: Membership) -> None:
    """Before a change that can take an owner away: hold the org's owner lock, then read
    again who is an owner (the acting user included: another change may have just demoted
    them), so that concurrent changes are judged one after another."""
    locks.hold(f"owners:{principal.org.id}")
    try:
        db.session.refresh(membership)
    except InvalidRequestError:  # removed meanwhile
        abort(404, description="No member with that user id in this organization")
    acting = db.session.scalar(
        select(Membership.role).where(
            Membership.org_id == principal.org.id, Membership.user_id == principal.user_id
        )
    )
    if membership.user_id != principal.user_id and acting != "owner" and membership.role == "owner":
        raise ValidationFailed({"user_id": "only an owner can change an owner"}, status=403, code="forbidden")


def _check_role(value: object, principal: Principal, field: str = "role") -> str:
    if value not in ROLES:
        raise ValidationFailed({field: f"must be one of {', '.join(ROLES)}"})
    if value == "owner" and not principal.can("owner"):
        raise ValidationFailed(
            {field: "only an owner can make someone an owner"}, status=403, code="forbidden"
        )
    return str(value)  # one of ROLES


def change_role(principal: Principal, user_id: str, role: object) -> Membership:
    membership = get_member_or_404(principal, user_id)
    role = _check_role(role, principal)
    if membership.role == "owner" and role != "owner":
        if not principal.can("owner"):
            raise ValidationFailed(
                {"role": "only an owner can change an owner's role"}, status=403, code="forbidden"
            )
        _lock_owners(principal, membership)
        if membership.role == "owner" and _owners(principal.org.id) == 1:
            raise ValidationFailed(
                {"role": "the last owner cannot be demoted; make someone else owner first"},
                status=409,
                code="last_owner",
            )
    membership.role = role
    api_keys.end_keys_of(
        membership.user_id, f"its owner was made a {role}", org_id=principal.org.id, role=role
    )
    db.session.commit()
    return membership


def role_change_effects(principal: Principal, membership: Membership, role: object) -> dict[str, Any] | None:
    """What changing `membership` to `role` would do that cannot simply be undone, to be
    asked about first: making an owner (only an owner can undo it) or lowering a role
    (their keys above the new role are revoked for good). None when nothing needs asking,
    or the role is not one (the change itself then refuses it, by field)."""
    if role not in ROLES or role == membership.role:
        return None
    promoting = role == "owner"
    if not promoting and ROLES.index(role) < ROLES.index(membership.role):
        return None  # a promotion below owner revokes nothing and is undone by the same select
    keys = [] if promoting else api_keys.keys_ended_by(membership.user_id, org_id=principal.org.id, role=role)
    return {"member": membership, "role": role, "promoting": promoting, "keys": len(keys)}


def remove_member(principal: Principal, user_id: str) -> None:
    """Admins remove others; anyone may leave. Owners are removed only by owners, and the
    last owner can neither leave nor be removed."""
    membership = get_member_or_404(principal, user_id)
    leaving = principal.user_id == user_id
    if not leaving and not principal.can("admin"):
        abort(403, description="This needs the admin role or higher")
    if membership.role == "owner":
        if not leaving and not principal.can("owner"):
            raise ValidationFailed(
                {"user_id": "only an owner can remove an owner"}, status=403, code="forbidden"
            )
        _lock_owners(principal, membership)
        if membership.role == "owner" and _owners(principal.org.id) == 1:
            raise ValidationFailed(
                {"user_id": "the last owner cannot leave; make someone else owner first"},
                status=409,
                code="last_owner",
            )
    api_keys.end_keys_of(
        membership.user_id,
        "its owner left the organization" if leaving else "its owner was removed from the organization",
        org_id=principal.org.id,
    )
    db.session.delete(membership)
    db.session.commit()


# --- invitations -------------------------------------------------------------------------


def _serializer() -> URLSafeTimedSerializer:
    return URLSafeTimedSerializer(current_app.config["SECRET_KEY"], salt="hookstream-invitation")


def _hash(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


def invite(principal: Principal, email: object, role: object) -> tuple[Invitation, str]:
    """A pending invitation and its link (shown to the inviter, once). Inviting the same
    address again replaces the earlier link."""
    errors = {}
    try:
        email = accounts.normalise_email(email if isinstance(email, str) else "")
    except ValidationFailed as exc:
        errors.update(exc.errors)
    try:
        role = _check_role(role, principal)
    except ValidationFailed as exc:
        if exc.status != 400:
            raise
        errors.update(exc.errors)
    if errors:
        raise ValidationFailed(errors)
    member = db.session.scalar(
        select(Membership.id).join(User).where(Membership.org_id == principal.org.id, User.email == email)
    )
    if member:
        raise ValidationFailed(
            {"email": "is already a member of this organization"}, status=409, code="conflict"
        )
    now = utcnow()
    for pending in db.session.scalars(
        select(Invitation).where(
            Invitation.org_id == principal.org.id,
            Invitation.email == email,
            Invitation.accepted_at.is_(None),
            Invitation.revoked_at.is_(None),
        )
    ):
        pending.revoked_at = now
    secret = secrets.token_urlsafe(24)
    invitation = Invitation(
        org_id=principal.org.id,
        email=email,
        role=role,
        token_hash=_hash(secret),
        invited_by_id=principal.user_id,
        expires_at=now + timedelta(days=INVITATION_DAYS),
    )
    db.session.add(invitation)
    db.session.flush()
    token = _serializer().dumps({"id": invitation.id, "secret": secret})
    db.session.commit()
    return invitation, links.public(url_for("auth.accept_invitation", token=token))


def pending_invitation(principal: Principal, email: object) -> Invitation | None:
    """The invitation `email` has waiting in this org (the one a new invitation would
    withdraw), or None."""
    try:
        email = accounts.normalise_email(email if isinstance(email, str) else "")
    except ValidationFailed:
        return None
    return db.session.scalars(
        _pending_invitations(principal)
        .where(Invitation.email == email)
        .order_by(Invitation.created_at.desc())
    ).first()


def _pending_invitations(principal: Principal) -> Select[tuple[Invitation]]:
    return select(Invitation).where(
        Invitation.org_id == principal.org.id,
        Invitation.accepted_at.is_(None),
        Invitation.revoked_at.is_(None),
        Invitation.expires_at > utcnow(),
    )


def list_invitations(principal: Principal) -> Sequence[Invitation]:
    return db.session.scalars(
        _pending_invitations(principal).order_by(Invitation.created_at.desc(), Invitation.id.desc())
    ).all()


def invitations_page(principal: Principal, cursor: str | None = None, limit: str | int | None = None) -> Page:
    return paginate(_pending_invitations(principal), Invitation, cursor, limit)


def revoke_invitation(principal: Principal, invitation_id: str) -> Invitation:
    invitation = db.session.scalar(
        select(Invitation).where(Invitation.id == invitation_id, Invitation.org_id == principal.org.id)
    )
    if invitation is None or invitation.accepted_at or invitation.revoked_at:
        abort(404, description="No pending invitation with that id")
    invitation.revoked_at = utcnow()
    db.session.commit()
    return invitation


class InvalidInvitation(Exception):
    """The link is tampered with, expired, used or revoked; the message says which."""


def invitation_for(token: str) -> Invitation:
    try:
        data = _serializer().loads(token, max_age=INVITATION_DAYS * 86400)
    except SignatureExpired:
        raise InvalidInvitation("This invitation has expired. Ask for a new one.") from None
    except BadSignature:
        raise InvalidInvitation("This invitation link is not valid.") from None
    invitation = db.session.get(Invitation, str(data.get("id", ""))) if isinstance(data, dict) else None
    if invitation is None or not secrets.compare_digest(
        invitation.token_hash, _hash(str(data.get("secret", "")))
    ):
        raise InvalidInvitation("This invitation link is not valid.")
    if invitation.accepted_at is not None:
        raise InvalidInvitation("This invitation has already been used.")
    if invitation.revoked_at is not None:
        raise InvalidInvitation("This invitation was withdrawn.")
    if as_utc(invitation.expires_at) <= utcnow():
        raise InvalidInvitation("This invitation has expired. Ask for a new one.")
    return invitation


def accept(token: str, user: User | None, password: str | None = None) -> User:
    """Join the org: as the signed-in `user` (whose email must be the invited one), or as
    a new account with `password` when nobody has that email yet."""
    invitation = invitation_for(token)
    existing = db.session.scalar(select(User).where(User.email == invitation.email))
    if user is None:
        if existing is not None:
            raise ValidationFailed(
                {"email": "An account with this email exists: sign in to accept."},
                status=409,
                code="sign_in_required",
            )
        accounts.check_password_strength(password)
    elif user.email != invitation.email:
        raise ValidationFailed(
            {"email": f"This invitation is for {invitation.email}; you are signed in as {user.email}."},
            status=403,
            code="forbidden",
        )
    # Claimed in one statement: of the same link accepted several times at once, exactly one
    # goes on; the others find it used.
    now = utcnow()
    claimed = rows_changed(
        update(Invitation)
        .where(
            Invitation.id == invitation.id, Invitation.accepted_at.is_(None), Invitation.revoked_at.is_(None)
        )
        .values(accepted_at=now)
        .execution_options(synchronize_session=False)
    )
    if not claimed:
        db.session.rollback()
        raise InvalidInvitation("This invitation has already been used.")
    if user is None:
        user = User(email=invitation.email)
        user.set_password(cast(str, password))  # its strength was checked above
        db.session.add(user)
    if not db.session.scalar(
        select(Membership.id).where(Membership.org_id == invitation.org_id, Membership.user_id == user.id)
    ):
        db.session.add(Membership(org_id=invitation.org_id, user=user, role=invitation.role))
    try:
        db.session.flush()  # a new user gets their id
    except IntegrityError:  # the same email signed up another way in the meantime
        db.session.rollback()
        raise ValidationFailed(
            {"email": "An account with this email exists: sign in to accept."},
            status=409,
            code="sign_in_required",
        ) from None
    invitation.accepted_at, invitation.accepted_by_id = now, user.id
    inviter = db.session.get(User, invitation.invited_by_id) if invitation.invited_by_id else None
    audit.record(
        "member.join",
        "member",
        user.id,
        actor=audit.actor_for_user(user),
        org_id=invitation.org_id,
        details={
            "email": user.email,
            "role": invitation.role,
            "invitation_id": invitation.id,
            "invited_by": inviter.email if inviter else None,
            "new_account": existing is None,
        },
    )
    db.session.commit()
    return user


# --- orgs and environments ---------------------------------------------------------------


def orgs_of(user: User) -> Sequence[Org]:
    return db.session.scalars(
        select(Org).join(Membership).where(Membership.user_id == user.id).order_by(Membership.created_at)
    ).all()


def switch_org(user: User, org_id: str) -> Org:
    org = db.session.scalar(
        select(Org).join(Membership).where(Membership.user_id == user.id, Org.id == org_id)
    )
    if org is None:
        abort(404, description="You are not a member of that organization")
    if org.suspended_at is not None:
        # Out of reach until an instance admin lifts it: say so, and stay where you are.
        raise ValidationFailed(
            {"org_id": suspended_message(org) + "; you stay in the organization you are in"},
            status=403,
            code="org_suspended",
        )
    session["org_id"], session["env_id"] = org.id, None
    return org


def switch_environment(user: User, env_id: str) -> Environment:
    """Make `env_id` the session's project (and its org the session's org): only in an org
    the user is a member of and that is not suspended."""
    env = db.session.scalar(
        select(Environment)
        .join(Membership, Membership.org_id == Environment.org_id)
        .join(Org, Org.id == Environment.org_id)
        .where(Environment.id == env_id, Membership.user_id == user.id, Org.suspended_at.is_(None))
    )
    if env is None:
        abort(404, description="You are not a member of that project's organization")
    session["org_id"], session["env_id"] = env.org_id, env.id
    return env


ENV_NAME_MAX = 80


def _env_name(value: object) -> str:
    return clean_name(value, "name", 1, ENV_NAME_MAX)


def _environments(principal: Principal) -> Select[tuple[Environment]]:
    query = select(Environment).where(Environment.org_id == principal.org.id)
    # A key works inside its own environment and sees only that one.
    return query if principal.via_session else query.where(Environment.id == principal.env.id)


def list_environments(principal: Principal) -> Sequence[Environment]:
    return db.session.scalars(_environments(principal).order_by(Environment.created_at, Environment.id)).all()


def environments_page(
    principal: Principal, cursor: str | None = None, limit: str | int | None = None
) -> Page:
    return paginate(_environments(principal), Environment, cursor, limit)


def create_environment(principal: Principal, name: object) -> Environment:
    name = _env_name(name)
    slug = accounts.slugify(name, "project")
    if db.session.scalar(
        select(Environment.id).where(Environment.org_id == principal.org.id, Environment.slug == slug)
    ):
        raise ValidationFailed(
            {"name": f"a project with the slug {slug!r} exists"}, status=409, code="conflict"
        )
    env = Environment(org_id=principal.org.id, name=name, slug=slug)
    db.session.add(env)
    db.session.commit()
    return env


def get_environment_or_404(principal: Principal, env_id: str) -> Environment:
    env = db.session.scalar(
        select(Environment).where(Environment.org_id == principal.org.id, Environment.id == env_id)
    )
    if env is None:
        abort(404, description="No project with that id in this organization")
    return env


def rename_environment(principal: Principal, env_id: str, name: object) -> Environment:
    env = get_environment_or_404(principal, env_id)
    env.name = _env_name(name)
    db.session.commit()
    return env


def rename_org(principal: Principal, name: object) -> Org:
    """The owner's: the org's name as every member sees it (its slug, in URLs, stays)."""
    if not principal.can("owner"):
        raise ValidationFailed(
            {"name": "only an owner can rename the organization"}, status=403, code="forbidden"
        )
    org = db.session.get_one(Org, principal.org.id)
    org.name = clean_name(name, "name", 1, ORG_NAME_MAX)
    db.session.commit()
    return org


def delete_org(principal: Principal, confirm: str | None) -> None:
    if confirm != principal.org.slug:
        raise ValidationFailed({"confirm": f"type the organization's slug ({principal.org.slug}) to confirm"})
    db.session.delete(principal.org)
    db.session.commit()
