"""Who is calling, in which org and environment, with which role.

Every scoped query reads `g.principal`; it is built once per request from either an
API key or the signed-in session, so the two paths cannot scope differently.
"""

from __future__ import annotations

from dataclasses import dataclass

from flask import abort, g, session
from flask_login import current_user
from sqlalchemy import select

from ..models import ApiKey, Environment, Membership, Org, User, db, role_at_least


@dataclass(frozen=True)
class Principal:
    org: Org
    env: Environment
    role: str
    user: User | None = None
    api_key: ApiKey | None = None

    @property
    def via_session(self) -> bool:
        return self.api_key is None

    @property
    def acting_user(self) -> User | None:
        """Whom the change is by: the signed-in user, or the person a key acts for (what
        created_by and modified_by name)."""
        if self.user is not None:
            return self.user
        return self.api_key.created_by if self.api_key is not None else None

    @property
    def email(self) -> str | None:
        return self.acting_user.email if self.acting_user else None

    @property
    def user_id(self) -> str | None:
        return self.acting_user.id if self.acting_user else None

    def can(self, role: str) -> bool:
        return role_at_least(self.role, role)


def suspended_message(org: Org) -> str:
    reason = f": {org.suspended_reason}" if org.suspended_reason else ""
    return f"The organization {org.name} is suspended{reason}"


def no_org_message(user: User) -> str:
    """Why a signed-in user has no org to work in."""
    suspended = db.session.scalars(
        select(Org).join(Membership).where(Membership.user_id == user.id, Org.suspended_at.is_not(None))
    ).first()
    if suspended is not None:
        return suspended_message(suspended)
    return "You are not a member of any organization; ask an admin for an invitation"


def principal_for_key(key: ApiKey) -> Principal:
    env = key.environment
    if env.org.suspended_at is not None:
        abort(403, description=suspended_message(env.org))
    return Principal(org=env.org, env=env, role=key.role, api_key=key)


def principal_for_session() -> Principal | None:
    """The signed-in user's current org and environment, kept in the session."""
    if not current_user.is_authenticated:
        return None
    # A suspended org is out of reach; its members keep their other orgs.
    memberships = db.session.scalars(
        select(Membership)
        .join(Org)
        .where(Membership.user_id == current_user.id, Org.suspended_at.is_(None))
        .order_by(Membership.created_at)
    ).all()
    if not memberships:
        return None
    membership = next((m for m in memberships if m.org_id == session.get("org_id")), None)
    if membership is None:
        membership = memberships[0]
        _say_why_moved(session.get("org_id"), membership.org)
    org: Org = membership.org
    env = None
    if session.get("env_id"):
        env = db.session.scalar(
            select(Environment).where(Environment.id == session["env_id"], Environment.org_id == org.id)
        )
    if env is None:
        env = org.environments[0]
    # Only write when it changed, so ordinary requests do not re-issue the cookie.
    if (session.get("org_id"), session.get("env_id")) != (org.id, env.id):
        session["org_id"], session["env_id"] = org.id, env.id
    return Principal(org=org, env=env, role=membership.role, user=current_user._get_current_object())


def _say_why_moved(left_id: str | None, now_in: Org) -> None:
    """The org this session was working in went out of reach under it (suspended, or the
    user was removed): the next page is another org's, and says why rather than changing
    org without a word."""
    from flask import flash, request

    left = db.session.get(Org, left_id) if left_id else None
    if left is None or request.path.startswith(("/v1/", "/api/")):
        return
    why = (
        suspended_message(left)
        if left.suspended_at is not None
        else f"You are no longer a member of {left.name}"
    )
    flash(f"{why}. You are now in {now_in.name}.", "error")


def current_principal() -> Principal | None:
    if "principal" not in g:
        g.principal = principal_for_session()
    return g.principal
