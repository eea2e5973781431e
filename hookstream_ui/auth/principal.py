"""Finding the Principal of a request: from an API key, or from the signed-in session.

It is built once per request and kept in `g.principal`, so the two paths cannot scope
differently.
"""

from __future__ import annotations

from flask import abort, g, session
from flask_login import current_user
from sqlalchemy import select

from ..models import ApiKey, Environment, Membership, Org, User, db
from ..models.principal import Principal, suspended_message


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


def maybe_principal() -> Principal | None:
    """The caller's Principal, or None when the request has none (not signed in, or in no
    org): for the few places that run before or without the sign-in guard."""
    if "principal" not in g:
        g.principal = principal_for_session()
    return g.principal


def current_principal() -> Principal:
    """The caller's Principal, in a view behind the sign-in guard (the dashboard's
    before_request and `authenticate_api_request` set one up or answer first)."""
    principal = maybe_principal()
    if principal is None:
        abort(401, description="Authentication required")
    return principal
