"""A collection's sources: bind one (with how its records map in), change, unbind; and the
collection's status, which follows the health of all of them."""

from __future__ import annotations

from typing import Any

from flask import abort
from pydantic import BaseModel, ConfigDict, Field, field_validator
from sqlalchemy import select

from ..errors import ValidationFailed, documented, validated
from ..models import ACTIVE_STATUSES, Binding, Collection, SourceConnection, SyncRun, db
from ..models.principal import Principal
from ..values import jsonpaths
from . import audit, live

PATH_MAX, EVENT_TYPES_MAX, EVENT_TYPE_MAX = 500, 50, 200
# What a binding maps, each None for the collection's own (record path: the item itself).
MAPPING_FIELDS = (
    "stream",
    "record_path",
    "primary_key_path",
    "timestamp_path",
    "event_type_field",
    "delete_event_types",
    "event_types",
)
# A collection's own paths, which a binding's None stands for.
COLLECTION_PATHS = ("primary_key_path", "timestamp_path", "event_type_field", "delete_event_types")


def checked_path(value: str | None) -> str | None:
    """A JSONPath as stored (dot paths normalised), for a collection's paths and a binding's."""
    if value is not None and len(value) > PATH_MAX:
        raise ValueError(f"must be at most {PATH_MAX} characters")
    return None if value is None else jsonpaths.normalise(value)


def delete_types(value: Any) -> Any:
    """Event type names that delete, from a list or a form's comma-separated text."""
    if isinstance(value, str):
        value = [part.strip() for part in value.split(",") if part.strip()]
    if isinstance(value, list):
        if len(value) > EVENT_TYPES_MAX or any(
            not isinstance(v, str) or not v.strip() or len(v) > EVENT_TYPE_MAX for v in value
        ):
            raise ValueError(
                f"must be at most {EVENT_TYPES_MAX} event type names of 1 to {EVENT_TYPE_MAX} characters"
            )
        return [v.strip() for v in value] or None
    return value


class BindingFields(BaseModel):
    """How one source's records map into a collection, beside its other sources' (last write
    wins by each record's own time). A path left out takes the collection's own, or, when
    bound, the source's own event shape where its type knows one (a Stripe-signed webhook:
    `$.data.object`, `$.created`, `$.type`); null on a change clears it (the record path: the
    item itself). The key path is read in the record (at `record_path`), the timestamp path
    and event type field in the item as the source gave it. Every message names its field."""

    model_config = ConfigDict(extra="ignore", str_strip_whitespace=True)

    source_id: str | None = None
    stream: str | None = Field(default=None, max_length=200)
    record_path: str | None = Field(default=None, json_schema_extra=documented(maxLength=PATH_MAX))
    primary_key_path: str | None = Field(default=None, json_schema_extra=documented(maxLength=PATH_MAX))
    timestamp_path: str | None = Field(default=None, json_schema_extra=documented(maxLength=PATH_MAX))
    event_type_field: str | None = Field(default=None, json_schema_extra=documented(maxLength=PATH_MAX))
    delete_event_types: list[str] | None = Field(
        default=None,
        json_schema_extra=documented(
            maxItems=EVENT_TYPES_MAX, items={"type": "string", "minLength": 1, "maxLength": EVENT_TYPE_MAX}
        ),
    )
    # For a push source: the event types it takes ("customer.*" takes each under customer.).
    event_types: list[str] | None = Field(
        default=None,
        json_schema_extra=documented(
            maxItems=EVENT_TYPES_MAX, items={"type": "string", "minLength": 1, "maxLength": EVENT_TYPE_MAX}
        ),
    )

    @field_validator("source_id", *MAPPING_FIELDS[:-2], mode="before")
    @classmethod
    def _optional(cls, value: Any) -> Any:
        return None if isinstance(value, str) and not value.strip() else value

    @field_validator("record_path", "primary_key_path", "timestamp_path", "event_type_field")
    @classmethod
    def _path(cls, value: str | None) -> str | None:
        return checked_path(value)

    @field_validator("delete_event_types", "event_types", mode="before")
    @classmethod
    def _delete_types(cls, value: Any) -> Any:
        return delete_types(value)


def bindings_of(source: SourceConnection) -> list[Binding]:
    """The source's bindings, each with its collection, in the collections' id order."""
    return list(
        db.session.scalars(
            select(Binding)
            .join(Collection, Collection.id == Binding.collection_id)
            .where(Binding.source_id == source.id, Collection.env_id == source.env_id)
            .order_by(Collection.id)
        ).all()
    )


def mapping_state(source_id: str) -> frozenset[str]:
    """How the source's records map into its collections: each binding's mapping, its
    collection's own paths, and whether that collection is paused. A running stream ends
    when this changes. Read on a connection of its own: the feed's reader asks from its
    thread."""
    columns = [getattr(Binding, name) for name in MAPPING_FIELDS]
    own = [getattr(Collection, name) for name in COLLECTION_PATHS]
    with db.engine.connect() as conn:
        rows = conn.execute(
            select(Binding.id, *columns, *own, Collection.status == "PAUSED")
            .join(Collection, Collection.id == Binding.collection_id)
            .where(Binding.source_id == source_id)
        ).all()
    return frozenset(repr(tuple(row)) for row in rows)


def binding_of(collection: Collection, source_id: str) -> Binding | None:
    return next((b for b in collection.bindings if b.source_id == source_id), None)


def binding_or_404(collection: Collection, source_id: str) -> Binding:
    binding = binding_of(collection, source_id)
    if binding is None:
        abort(404, description="Source not bound to this collection")
    return binding


def source_in_env(principal: Principal, source_id: str, field: str = "source_id") -> SourceConnection:
    source = db.session.scalar(
        select(SourceConnection).where(
            SourceConnection.id == source_id,
            SourceConnection.org_id == principal.org.id,
            SourceConnection.env_id == principal.env.id,
        )
    )
    if source is None:
        raise ValidationFailed(
            {field: "Source not found"}, status=404, code="not_found", message="Source not found"
        )
    return source


def bind(collection: Collection, source: SourceConnection, **mapping: Any) -> Binding:
    """Add `source` to the collection (the caller checked both are in one environment and
    commits); binding it again changes nothing and answers the binding there is."""
    existing = binding_of(collection, source.id)
    if existing is not None:
        return existing
    binding = Binding(
        org_id=collection.org_id,
        env_id=collection.env_id,
        source_id=source.id,
        position=max((b.position for b in collection.bindings), default=-1) + 1,
        **{name: mapping.get(name) for name in MAPPING_FIELDS},
    )
    _fill_defaults(binding, collection, source)
    binding.source = source
    collection.bindings.append(binding)
    _first_source(collection)
    settle_status(collection)
    return binding


def _fill_defaults(binding: Binding, collection: Collection, source: SourceConnection) -> None:
    """The source type's own shape of its items (a Stripe event's object, time and type) for
    each path that neither the binding nor the collection names. A key path that already
    reaches into the default record path (`$.data.object.id`) was written for the whole
    item, so the item stays the record."""
    from .sources import credentials_of, type_of

    key_path = binding.primary_key_path or collection.primary_key_path or ""
    defaults = type_of(source).binding_defaults(credentials_of(source), dict(source.config or {}))
    for name, value in defaults.items():
        if getattr(binding, name) is not None or getattr(collection, name, None) is not None:
            continue
        if name == "record_path" and (key_path == value or key_path.startswith((value + ".", value + "["))):
            continue
        setattr(binding, name, value)


def unbind(collection: Collection, binding: Binding) -> None:
    """The caller commits. The records the source wrote stay: they are the collection's."""
    collection.bindings.remove(binding)
    _first_source(collection)
    settle_status(collection)


def _first_source(collection: Collection) -> None:
    collection.source_id = collection.bindings[0].source_id if collection.bindings else None
    collection.source = collection.bindings[0].source if collection.bindings else None


def add_source(principal: Principal, collection: Collection, payload: object) -> Binding:
    data: BindingFields = validated(BindingFields, payload)
    if not data.source_id:
        raise ValidationFailed({"source_id": "is required"})
    source = source_in_env(principal, data.source_id)
    if binding_of(collection, source.id) is not None:
        raise ValidationFailed(
            {"source_id": f"source “{source.name}” ({source.id}) already feeds this collection"},
            status=409,
            code="conflict",
        )
    _check_takes(source, data.event_types)
    binding = bind(collection, source, **data.model_dump(include=set(MAPPING_FIELDS)))
    _audit("collection.source_add", collection, source)
    db.session.commit()
    return binding


def update_source(principal: Principal, collection: Collection, binding: Binding, payload: object) -> Binding:
    data: BindingFields = validated(BindingFields, payload)
    _check_takes(binding.source, data.event_types)
    stream = binding.stream
    for name in MAPPING_FIELDS:
        if name in data.model_fields_set:
            setattr(binding, name, getattr(data, name))
    if binding.stream != stream:
        binding.sync_state = None  # a position in another stream means nothing in this one
    _audit(
        "collection.source_update", collection, binding.source, data.model_dump(include=data.model_fields_set)
    )
    db.session.commit()
    return binding


def _check_takes(source: SourceConnection, event_types: list[str] | None) -> None:
    from .sources import type_of

    if event_types and not type_of(source).push:
        raise ValidationFailed(
            {
                "event_types": f"“{source.name}” reads its records: only a push source's events have types to take"
            }
        )


def remove_source(principal: Principal, collection: Collection, binding: Binding) -> None:
    from .runs import ensure_idle

    # A streaming run takes it: it ends once its bindings change, all it applied committed.
    ensure_idle(binding.source, streaming_ok=True)
    source = binding.source
    unbind(collection, binding)
    _audit("collection.source_remove", collection, source)
    db.session.commit()


def _audit(action: str, collection: Collection, source: SourceConnection, more: dict | None = None) -> None:
    audit.note(
        action,
        "collection",
        collection.id,
        org_id=collection.org_id,
        env_id=collection.env_id,
        details={"name": collection.name, "source_id": source.id, "source": source.name, **(more or {})},
    )


def settle_status(collection: Collection) -> None:
    """The status its sources give it, unless paused: NEEDS_SOURCE with none, SYNCING while
    one of them runs, ERROR when every one is failing, PARTIAL_ERROR when some are, else
    ACTIVE. The caller commits."""
    if collection.status == "PAUSED":
        return
    sources = [b.source for b in collection.bindings]
    if not sources:
        collection.status = "NEEDS_SOURCE"
        return
    running = db.session.scalar(
        select(SyncRun.id)
        .where(
            SyncRun.source_id.in_([s.id for s in sources]),
            SyncRun.status.in_([s for s in ACTIVE_STATUSES if s != "pending"]),
        )
        .limit(1)
    )
    collection.status = "SYNCING" if running is not None else live.health_status(sources)


def written_by_source(collection: Collection) -> dict[str, int]:
    """How many of the collection's records each source wrote the current version of."""
    from sqlalchemy import func

    from ..models import Record

    rows = db.session.execute(
        select(Record.source_id, func.count())
        .where(Record.collection_id == collection.id, Record.source_id.is_not(None))
        .group_by(Record.source_id)
    ).all()
    return {str(source_id): int(count) for source_id, count in rows}
