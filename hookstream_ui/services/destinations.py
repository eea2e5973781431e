"""Destinations: create, change, delete; which collections each follows and which changes it
takes (filters); its secret, shown once and rotated with an overlap; and what it was sent:
attempts, what is undelivered, retry and replay. Delivery itself is sync/deliver.py."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from flask import abort
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator
from sqlalchemy import Select, func, select
from sqlalchemy import update as sql_update

from ..destinations import DestinationType, destination_type, destination_type_or_400
from ..destinations.webhook import new_signing_secret
from ..errors import ValidationFailed, validated
from ..models import Collection, Delivery, DeliveryAttempt, Destination, RecordChange, Subscription, db
from ..models.base import rows_changed
from ..models.principal import Principal
from ..sources import secrets as vault
from ..values import jsonpaths
from ..values.times import isoformat, utcnow
from . import audit
from .changes import OPS
from .collections import scoped_collections
from .names import clean_name

ROTATION_OVERLAP = timedelta(hours=24)  # the replaced secret still signs for this long
CONDITIONS = ("eq", "ne", "exists", "missing")
STATUSES = ("active", "paused")


class Condition(BaseModel):
    model_config = ConfigDict(extra="forbid")
    path: str
    op: str = "eq"
    value: Any = None

    @field_validator("path")
    @classmethod
    def _path(cls, value: str) -> str:
        if len(value) > 500:
            raise ValueError("must be at most 500 characters")
        return jsonpaths.normalise(value)

    @field_validator("op")
    @classmethod
    def _op(cls, value: str) -> str:
        if value not in CONDITIONS:
            raise ValueError(f"must be one of {', '.join(CONDITIONS)}")
        return value


class Filters(BaseModel):
    """Which changes a destination takes; each list empty or absent takes every one."""

    model_config = ConfigDict(extra="forbid")
    ops: list[str] = Field(default_factory=list, description="insert, update, delete")
    event_types: list[str] = Field(default_factory=list, description="the records' event types")
    where: list[Condition] = Field(default_factory=list, max_length=20, description="every one must hold")

    @field_validator("ops")
    @classmethod
    def _ops(cls, value: list[str]) -> list[str]:
        wrong = [op for op in value if op not in OPS]
        if wrong:
            raise ValueError(f"{', '.join(wrong)}: each must be one of {', '.join(OPS)}")
        return value


class DestinationFields(BaseModel):
    model_config = ConfigDict(extra="forbid")
    name: str | None = Field(None, max_length=120)
    kind: str | None = None
    config: dict | None = None
    secrets: dict | None = Field(None, description="secrets the kind takes (a password); never answered")
    collection_ids: list[str] | None = Field(None, max_length=100)
    filters: Filters | None = None
    status: str | None = None

    @field_validator("status")
    @classmethod
    def _status(cls, value: str | None) -> str | None:
        if value is not None and value not in STATUSES:
            raise ValueError(f"must be one of {', '.join(STATUSES)}")
        return value


def scoped(principal: Principal) -> Select[tuple[Destination]]:
    return select(Destination).where(
        Destination.org_id == principal.org.id, Destination.env_id == principal.env.id
    )


def list_destinations(principal: Principal) -> list[Destination]:
    return list(db.session.scalars(scoped(principal).order_by(Destination.created_at, Destination.id)))


def get_destination_or_404(principal: Principal, destination_id: str) -> Destination:
    found = db.session.scalar(scoped(principal).where(Destination.id == destination_id))
    if found is None:
        abort(404, description="Destination not found")
    return found


def kind_of(destination: Destination) -> type[DestinationType]:
    kind = destination_type(destination.kind)
    if kind is None:
        raise RuntimeError(f"destination {destination.id} has an unknown kind {destination.kind!r}")
    return kind


def secrets_of(destination: Destination) -> dict:
    return vault.decrypt(destination.secrets_encrypted)


def _config(kind: type[DestinationType], raw: Any) -> dict:
    try:
        return kind.Config.model_validate(raw if raw is not None else {}).model_dump(by_alias=True)
    except ValidationError as exc:
        raise ValidationFailed(
            {
                "config." + ".".join(str(p) for p in e["loc"]): e["msg"].removeprefix("Value error, ")
                for e in exc.errors()
            }
        ) from None


def _collections(principal: Principal, ids: list[str]) -> list[Collection]:
    found = {c.id: c for c in db.session.scalars(scoped_collections(principal).where(Collection.id.in_(ids)))}
    missing = [i for i in ids if i not in found]
    if missing:
        raise ValidationFailed({"collection_ids": f"no collection {', '.join(missing)} in this environment"})
    return [found[i] for i in dict.fromkeys(ids)]


def create(principal: Principal, payload: object) -> tuple[Destination, dict]:
    """The destination, and its secrets as made: the only time they are shown."""
    data: DestinationFields = validated(DestinationFields, payload)
    problems = {name: "is required" for name in ("name", "kind") if not getattr(data, name)}
    if problems:
        raise ValidationFailed(problems)
    kind = destination_type_or_400(data.kind)
    config, hidden = kind.hide(_config(kind, data.config))
    collections = _collections(principal, data.collection_ids or [])
    given = kind.given_secrets(data.secrets)
    made = kind.new_secrets()
    destination = Destination(
        org_id=principal.org.id,
        env_id=principal.env.id,
        name=clean_name(data.name or ""),
        kind=kind.short_name,
        status=data.status or "active",
        config=config,
        secrets_encrypted=vault.encrypt({**given, **hidden, **made}),
        filters=data.filters.model_dump() if data.filters else None,
        created_by_id=principal.user_id,
    )
    db.session.add(destination)
    _subscribe(destination, collections, from_now=True)
    _audit("destination.create", destination)
    db.session.commit()
    return destination, made


def update(principal: Principal, destination: Destination, payload: object) -> Destination:
    data: DestinationFields = validated(DestinationFields, payload)
    if data.kind is not None and data.kind != destination.kind:
        raise ValidationFailed({"kind": "cannot be changed: make a new destination"})
    kind = kind_of(destination)
    held = secrets_of(destination)
    if data.config is not None:
        # What is not given keeps its value, secret ones included (the stored config masks them).
        given = kept(destination.config, kind.reveal(destination.config, held), data.config)
        config, hidden = kind.hide(_config(kind, given))
        destination.config, held = config, {**held, **hidden}
    if data.secrets:
        held = {**held, **kind.given_secrets(data.secrets)}
    if data.config is not None or data.secrets:
        destination.secrets_encrypted = vault.encrypt(held)
    if data.collection_ids is not None:
        _subscribe(destination, _collections(principal, data.collection_ids), from_now=True)
    if "filters" in data.model_fields_set:
        destination.filters = data.filters.model_dump() if data.filters else None
    if data.name is not None:
        destination.name = clean_name(data.name)
    if data.status is not None:
        destination.status = data.status
    _audit("destination.update", destination, {"fields": sorted(data.model_fields_set)})
    db.session.commit()
    return destination


def kept(shown: dict, held: dict, given: dict) -> dict:
    """The config `given` over the one held, where a value given as it is shown (masked: a
    header's value, a URL with its token) keeps the value held: a client that sends back
    what it read changes nothing it could not see. A dict given (headers) replaces the one
    held, but for its masked values."""
    out = dict(held)
    for name, value in given.items():
        was, had = shown.get(name), held.get(name)
        if isinstance(value, dict) and isinstance(was, dict) and isinstance(had, dict):
            out[name] = {k: had[k] if k in had and v == was.get(k) else v for k, v in value.items()}
        else:
            out[name] = had if value == was and name in held else value
    return out


def _subscribe(destination: Destination, collections: list[Collection], from_now: bool) -> None:
    """Follow exactly these collections; one newly followed starts after its newest change
    (what was already there is the records themselves: replay sends it)."""
    keep = {c.id for c in collections}
    for sub in list(destination.subscriptions):
        if sub.collection_id not in keep:
            destination.subscriptions.remove(sub)
    have = {s.collection_id for s in destination.subscriptions}
    for collection in collections:
        if collection.id not in have:
            destination.subscriptions.append(
                Subscription(
                    collection_id=collection.id,
                    after=collection.change_seq if from_now else 0,
                    created_at=utcnow(),
                )
            )


def delete(principal: Principal, destination: Destination) -> None:
    _audit("destination.delete", destination)
    db.session.delete(destination)
    db.session.commit()


def rotate_secret(principal: Principal, destination: Destination) -> dict:
    """A new signing secret, shown once; the old one still signs for ROTATION_OVERLAP, so a
    receiver can take the new one without missing a delivery."""
    held = secrets_of(destination)
    if "signing_secret" not in held:
        raise ValidationFailed({"kind": "this destination has no signing secret"})
    fresh = new_signing_secret()
    held.update(
        signing_secret=fresh,
        previous_secret=held["signing_secret"],
        previous_until=(utcnow() + ROTATION_OVERLAP).isoformat(),
    )
    destination.secrets_encrypted = vault.encrypt(held)
    _audit("destination.rotate_secret", destination)
    db.session.commit()
    return {"signing_secret": fresh, "previous_secret_until": held["previous_until"]}


# --- what it was sent ------------------------------------------------------------------------


def attempts(destination: Destination, limit: int = 50, only_failed: bool = False) -> list[DeliveryAttempt]:
    query = select(DeliveryAttempt).where(DeliveryAttempt.destination_id == destination.id)
    if only_failed:
        query = query.where(DeliveryAttempt.ok.is_(False))
    return list(db.session.scalars(query.order_by(DeliveryAttempt.id.desc()).limit(limit)))


def undelivered(destination: Destination, limit: int = 100) -> list[Delivery]:
    return list(
        db.session.scalars(
            select(Delivery)
            .where(Delivery.destination_id == destination.id, Delivery.status != "delivered")
            .order_by(Delivery.seq)
            .limit(limit)
        )
    )


def counts(destination: Destination) -> dict[str, int]:
    rows = db.session.execute(
        select(Delivery.status, func.count())
        .where(Delivery.destination_id == destination.id)
        .group_by(Delivery.status)
    ).all()
    return {str(status): int(n) for status, n in rows}


def health(destination: Destination) -> dict[str, Any]:
    """How it is doing: its circuit, its last failure, what it owes."""
    owed = counts(destination)
    if destination.status == "paused":
        state = "paused"
    elif destination.open_until is not None:
        state = "open"
    elif destination.consecutive_failures or owed.get("dead"):
        state = "failing"
    else:
        state = "healthy"
    return {
        "state": state,
        "consecutive_failures": destination.consecutive_failures or 0,
        "open_until": isoformat(destination.open_until),
        "last_error": destination.last_error,
        "last_delivered_at": destination.last_delivered_at.isoformat()
        if destination.last_delivered_at
        else None,
        "backlog": backlog(destination),
        "retrying": owed.get("retrying", 0),
        "waiting": owed.get("waiting", 0),
        "dead": owed.get("dead", 0),
    }


def backlog(destination: Destination) -> int:
    """Changes its collections have that it has not reached yet."""
    return sum(max(s.collection.change_seq - s.after, 0) for s in destination.subscriptions)


def retry(principal: Principal, destination: Destination, delivery_id: str | None = None) -> int:
    """Dead deliveries (one, or all) back to retrying now, their attempts counted afresh."""
    query = sql_update(Delivery).where(Delivery.destination_id == destination.id, Delivery.status == "dead")
    if delivery_id is not None:
        query = query.where(Delivery.id == delivery_id)
    n = rows_changed(
        query.values(status="retrying", attempts=0, next_attempt_at=utcnow(), updated_at=utcnow())
    )
    if delivery_id is not None and not n:
        abort(404, description="No dead delivery with that id")
    destination.open_until, destination.consecutive_failures = None, 0  # asked for: try now
    _audit("destination.retry", destination, {"deliveries": n})
    db.session.commit()
    return n


class Replay(BaseModel):
    model_config = ConfigDict(extra="forbid")
    collection_id: str | None = None
    after: int | None = Field(None, ge=0, description="send again every change after this number")
    since: datetime | None = Field(None, description="send again every change from this time")


def replay(principal: Principal, destination: Destination, payload: object) -> dict[str, int]:
    """Send again what followed a number or a time: each chosen subscription's place moves
    back (never forward); what is pruned from the feed by then cannot be sent again."""
    data: Replay = validated(Replay, payload)
    if (data.after is None) == (data.since is None):
        raise ValidationFailed({"after": "give after or since, not both"})
    subs = [s for s in destination.subscriptions if data.collection_id in (None, s.collection_id)]
    if data.collection_id is not None and not subs:
        raise ValidationFailed({"collection_id": "this destination does not follow that collection"})
    moved: dict[str, int] = {}
    for sub in subs:
        if data.after is not None:
            to = data.after
        else:
            first = db.session.scalar(
                select(func.min(RecordChange.seq)).where(
                    RecordChange.collection_id == sub.collection_id, RecordChange.changed_at >= data.since
                )
            )
            to = (first - 1) if first is not None else sub.collection.change_seq
        sub.after = min(sub.after, to)
        moved[sub.collection_id] = sub.after
    _audit("destination.replay", destination, {"to": moved})
    db.session.commit()
    return moved


def _audit(action: str, destination: Destination, more: dict | None = None) -> None:
    audit.note(
        action,
        "destination",
        destination.id,
        org_id=destination.org_id,
        env_id=destination.env_id,
        details={"name": destination.name, "kind": destination.kind, **(more or {})},
    )
