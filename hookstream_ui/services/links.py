"""Absolute links that leave the instance: ingest URLs given to senders, invitation links
sent to people. They are built on PUBLIC_URL when it is set: the request's Host header is
whatever the client sent, and a link built on it can lead anywhere."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from flask import current_app, has_request_context, request

if TYPE_CHECKING:
    from ..models import Environment, User
    from ..models.principal import Principal


def public(path: str) -> str:
    base = current_app.config.get("PUBLIC_URL") or (request.host_url if has_request_context() else "")
    return f"{base.rstrip('/')}/{path.lstrip('/')}"


# Dashboard pages whose object lives in one project: the endpoint, the URL argument naming
# the object, and the model and columns that argument can match.
def _kinds() -> dict[str, tuple[str, tuple[type[Any], tuple[str, ...], str]]]:
    from ..models import Collection, Event, SourceConnection, SyncRun

    collection = (Collection, ("id", "slug"), "collection")
    return {
        "dashboard.collection_detail": ("ident", collection),
        "dashboard.collection_edit": ("ident", collection),
        "dashboard.collection_delete": ("ident", collection),
        "dashboard.record_detail": ("ident", collection),
        "dashboard.source_detail": ("source_id", (SourceConnection, ("id",), "source")),
        "dashboard.source_edit": ("source_id", (SourceConnection, ("id",), "source")),
        "dashboard.run_detail": ("run_id", (SyncRun, ("id",), "sync run")),
        "dashboard.event_detail": ("event_id", (Event, ("id",), "event")),
    }


def elsewhere(
    user: User | None, principal: Principal | None, endpoint: str | None, view_args: dict[str, Any] | None
) -> tuple[str, Sequence[Environment]] | None:
    """For a page not found in the caller's project: (what it is, [Environment, …]) of the
    other projects holding it, among the organizations the user is a member of (and not
    suspended). Anything of another organization stays not found: it is never revealed."""
    from sqlalchemy import or_, select

    from ..models import Environment, Membership, Org, db

    found = _kinds().get(endpoint or "")
    if found is None or user is None or principal is None:
        return None
    arg, (model, columns, label) = found
    ident = (view_args or {}).get(arg)
    if not ident:
        return None
    matches = or_(*[getattr(model, c) == ident for c in columns])
    if db.session.scalar(select(model.id).where(matches, model.env_id == principal.env.id).limit(1)):
        return None  # it is here (what was not found is inside it, as a record of a collection)
    mine = (
        select(Membership.org_id)
        .join(Org, Org.id == Membership.org_id)
        .where(Membership.user_id == user.id, Org.suspended_at.is_(None))
    )
    envs = (
        db.session.scalars(
            select(Environment)
            .join(model, model.env_id == Environment.id)
            .where(
                matches,
                model.org_id.in_(mine),
                Environment.org_id == model.org_id,
                Environment.id != principal.env.id,
            )
            .order_by(Environment.org_id, Environment.created_at)
            .limit(10)
        )
        .unique()
        .all()
    )
    return (label, envs) if envs else None
