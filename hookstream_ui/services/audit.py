"""The audit log: who created, changed or deleted what, when, and from where.

Recorded in one place, a flush hook on the session, so no service can forget it and the
entry commits (or rolls back) with the change itself. Only changes made on someone's
behalf are recorded: a request with a principal, or an actor set for the request or
command (sign-in, sign-up, accepting an invitation, /admin, the CLI). A worker updating a
source's health is not an audit event. Values are recorded only for the few fields that
are never secret (names, roles, statuses); for the rest, just which fields changed.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from flask import g, has_app_context, has_request_context, request
from sqlalchemy import event, inspect, or_, select
from sqlalchemy.orm import Session

from ..errors import ValidationFailed
from ..models import (
    ApiKey,
    AuditEntry,
    Collection,
    Environment,
    Invitation,
    Membership,
    Org,
    SourceConnection,
    User,
    db,
)
from ..models.base import Model
from ..values.records import parse_time
from ..values.times import isoformat, utcnow
from .pagination import Page, paginate

AUDITED = {
    Collection: "collection",
    SourceConnection: "source",
    ApiKey: "api_key",
    Membership: "member",
    Environment: "environment",
    Org: "org",
    Invitation: "invitation",
    User: "user",
}
# Bookkeeping that changes on its own (counters, health, sync progress): not a change by anyone.
UNAUDITED_FIELDS = {
    "updated_at",
    "last_used_at",
    "request_count",
    "record_count",
    "last_sync_at",
    "sync_state",
    "backfill_sources",
    "sync_status",
    "next_run_at",
    "health_status",
    "last_error",
    "last_success_at",
    "consecutive_failures",
    "initial_backfill_completed_at",
    "last_tested_at",
    "last_test_message",
    "backfill_status",
    "backfill_progress",
    "backfill_total",
    "backfill_cursor",
    "backfill_started_at",
    "backfill_completed_at",
    "backfill_error",
    "modified_by_id",
    "credential_meta",
    "last_sign_in_at",
    "session_token",
}
SHOWN_VALUES = {
    "name",
    "slug",
    "role",
    "status",
    "email",
    "suspended_reason",
    "primary_key_path",
    "sync_frequency",
    "revoked_at",
    "suspended_at",
    "disabled_at",
    "is_instance_admin",
}


@dataclass(frozen=True)
class Actor:
    id: str | None
    label: str


def act_as(actor: Actor) -> None:
    """Name who is acting for the rest of this request (when there is no principal)."""
    g.audit_actor = actor


def actor_for_user(user: User) -> Actor:
    return Actor(user.id, user.email)


def _current_actor() -> Actor | None:
    if not has_app_context():
        return None
    if g.get("audit_actor") is not None:
        return g.audit_actor
    principal = g.get("principal")
    if principal is None:
        return None
    if principal.api_key is not None:
        return actor_for_key(principal.api_key)
    return Actor(principal.user.id, principal.user.email)


def actor_for_key(key: ApiKey) -> Actor:
    """A key is named with what the keys page shows of it (name, prefix) and the person it
    acts for, so its entries are found by the owner's email too."""
    owner = key.created_by.email if key.created_by is not None else "a former member"
    return Actor(key.id, f"API key {key.name} ({key.prefix}…) of {owner}")


def _ip() -> str | None:
    return request.remote_addr if has_request_context() else None


def _ensure_id(obj: Any) -> str:  # a model row with a generated id
    # New rows get their id at INSERT; the entry needs it now.
    if obj.id is None:
        obj.id = type(obj).__table__.c.id.default.arg(None)
    return obj.id


def _scope(obj: object) -> tuple[Org | str | None, str | None]:
    """The entry's org (the object itself when there is one, so that a new org is inserted
    before its entries) and environment."""
    if isinstance(obj, Org):
        return obj, None
    if isinstance(obj, User):
        return None, None  # instance-wide: instance admins see these
    return getattr(obj, "org", None) or getattr(obj, "org_id", None), getattr(obj, "env_id", None)


def _changes(obj: Model) -> dict[str, Any]:
    state = inspect(obj)
    changed: list[str] = []
    values: dict[str, dict[str, Any]] = {}
    for attr in state.mapper.column_attrs:
        history = state.attrs[attr.key].history
        if not history.has_changes() or attr.key in UNAUDITED_FIELDS:
            continue
        changed.append(attr.key)
        if attr.key in SHOWN_VALUES:
            values[attr.key] = {
                "from": _plain(history.deleted[0] if history.deleted else None),
                "to": _plain(history.added[0] if history.added else None),
            }
    return {"changed": changed, **({"values": values} if values else {})}


def _plain(value: object) -> object:
    return isoformat(value) if isinstance(value, datetime) else value


def _label(obj: object) -> dict[str, Any]:
    return {
        k: getattr(obj, k) for k in ("name", "slug", "email", "role") if getattr(obj, k, None) is not None
    }


@event.listens_for(Session, "before_flush")
def _record(session: Session, _context: object, _instances: object) -> None:
    actor = _current_actor()
    if actor is None:
        return
    entries = []
    for verb, objects in (("create", session.new), ("update", session.dirty), ("delete", session.deleted)):
        for obj in list(objects):
            entry = _entry(session, actor, verb, obj)
            if entry is not None:
                entries.append(entry)
    session.add_all(entries)


def _entry(session: Session, actor: Actor, verb: str, obj: Model) -> AuditEntry | None:
    """The entry for one row created, changed or deleted in this flush; None when the row
    is not audited or nothing audited about it changed."""
    kind = AUDITED.get(type(obj))
    if kind is None:
        return None
    if verb == "update":
        if not session.is_modified(obj, include_collections=False):
            return None
        details = _changes(obj)
        if not details["changed"]:
            return None
    else:
        details = _label(obj)
    org, env_id = _scope(obj)
    if isinstance(obj, Org) and verb == "delete":
        org = None  # the entry outlives the org (its own entries go with it)
        details["org_id"] = obj.id
    if isinstance(obj, Membership):
        details["user_id"] = obj.user_id or (_ensure_id(obj.user) if obj.user else None)
    entry = AuditEntry(
        env_id=env_id,
        actor_id=actor.id,
        actor=actor.label[:254],
        action=f"{kind}.{verb}",
        resource_type=kind,
        resource_id=_ensure_id(obj),
        details=details,
        ip=_ip(),
        at=utcnow(),
    )
    if isinstance(org, Org):
        entry.org = org
    else:
        entry.org_id = org
    return entry


def record(
    action: str,
    resource_type: str,
    resource_id: str | None,
    *,
    actor: Actor,
    org_id: str | None = None,
    env_id: str | None = None,
    details: dict[str, Any] | None = None,
) -> None:
    """An entry for something that is not a row change (a sign-in). The caller commits."""
    db.session.add(
        AuditEntry(
            org_id=org_id,
            env_id=env_id,
            actor_id=actor.id,
            actor=actor.label[:254],
            action=action,
            resource_type=resource_type,
            resource_id=resource_id,
            details=details or {},
            ip=_ip(),
            at=utcnow(),
        )
    )


def note(
    action: str,
    resource_type: str,
    resource_id: str | None,
    *,
    org_id: str | None,
    env_id: str | None = None,
    details: dict[str, Any] | None = None,
) -> None:
    """record(), by whoever acts now (nothing when nobody does: a worker). The caller commits."""
    actor = _current_actor()
    if actor is not None:
        record(action, resource_type, resource_id, actor=actor, org_id=org_id, env_id=env_id, details=details)


FILTERS = ("actor", "action", "resource", "since", "until", "cursor")  # list_entries' filters


# How an entry's details read on the audit log pages, key by key (others: the key in words).
DETAIL_LABELS = {
    "changed": "Changed",
    "secrets_used": "Secrets used",
    "unsaved": "Unsaved form",
    "connected": "Connected",
    "user_id": "User",
    "org_id": "Organization",
    "records_deleted": "Records deleted",
    "collection_ids": "Collections",
    "source_id": "Source id",
    "invited_by": "Invited by",
    "new_account": "New account",
    "invitation_id": "Invitation",
    "record_key": "Record key",
    "is_instance_admin": "Instance admin",
    "suspended_reason": "Suspension reason",
}


def _words(key: str) -> str:
    return DETAIL_LABELS.get(key) or key.replace("_", " ").capitalize()


def _text(value: object) -> str:
    if value is None or value == "":
        return "—"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, (list, tuple)):
        return ", ".join(_text(v) for v in value) or "—"
    if isinstance(value, dict):
        if set(value) == {"from", "to"}:
            return f"{_text(value['from'])} → {_text(value['to'])}"
        return "; ".join(f"{_words(k)}: {_text(v)}" for k, v in value.items())
    return str(value)


def readable_details(details: dict[str, Any] | None) -> list[tuple[str, str]]:
    """An entry's details as (label, text) pairs people read: a change as `old → new`, the
    fields changed in words, yes and no for flags; nothing cut short."""
    details = dict(details or {})
    values = details.pop("values", None) or {}
    pairs = [(_words(field), _text(change)) for field, change in values.items()]
    changed = [f for f in details.pop("changed", None) or [] if f not in values]
    if changed:
        pairs.append(("Changed", ", ".join(_words(f).lower() for f in changed)))
    pairs += [(_words(key), _text(value)) for key, value in details.items()]
    return pairs


def list_entries(
    *,
    org_id: str | None,
    actor: str | None = None,
    action: str | None = None,
    resource: str | None = None,
    since: str | None = None,
    until: str | None = None,
    cursor: str | None = None,
    limit: str | int | None = None,
) -> Page:
    """An org's entries (org_id None: every entry, for instance admins). `action` matches
    exactly or by prefix ("collection." or "collection"); `resource` is a type or an id."""
    query = select(AuditEntry)
    if org_id is not None:
        query = query.where(AuditEntry.org_id == org_id)
    if actor:
        query = query.where(
            or_(AuditEntry.actor_id == actor, AuditEntry.actor.icontains(actor.strip(), autoescape=True))
        )
    if action:
        action = action.strip()
        query = query.where(
            AuditEntry.action == action
            if "." in action.rstrip(".")
            else AuditEntry.action.startswith(action.rstrip(".") + ".")
        )
    if resource:
        query = query.where(or_(AuditEntry.resource_type == resource, AuditEntry.resource_id == resource))
    for name, value in (("since", since), ("until", until)):
        if value:
            moment = parse_time(value)
            if moment is None:
                raise ValidationFailed({name: "must be an ISO 8601 time or epoch seconds"})
            query = query.where(AuditEntry.at >= moment if name == "since" else AuditEntry.at <= moment)
    return paginate(query, AuditEntry, cursor, limit, by="at")
