"""Collections: create, list, read, change and delete, scoped to the caller's environment."""

from __future__ import annotations

import contextlib
import re
import secrets
import string
from typing import TYPE_CHECKING, Any

from flask import abort
from pydantic import BaseModel, ConfigDict, Field, field_validator
from sqlalchemy import Select, or_, select
from sqlalchemy.exc import IntegrityError

from ..errors import ValidationFailed, documented, validated
from ..models import Binding, Collection, Event, SourceConnection, db
from ..models.principal import Principal
from ..values import jsonpaths
from . import bindings
from .accounts import slugify
from .bindings import EVENT_TYPE_MAX, EVENT_TYPES_MAX, PATH_MAX
from .names import name_problem, pydantic_name
from .pagination import Page, paginate

if TYPE_CHECKING:  # sources import services: only the type is needed here
    from ..sources.base import SourceType

SLUG_RE = re.compile(r"^[a-z0-9]+(-[a-z0-9]+)*$")
NAME_MIN, NAME_MAX, SLUG_MAX, DESCRIPTION_MAX = 4, 64, 64, 2000
SUFFIX_ALPHABET = string.ascii_lowercase + string.digits


def _blank_to_none(value: Any) -> Any:
    if isinstance(value, str) and not value.strip():
        return None
    return value


class _CollectionFields(BaseModel):
    """Rules shared by create and update; every message names its field."""

    model_config = ConfigDict(extra="ignore", str_strip_whitespace=True)

    name: str | None = Field(
        default=None, json_schema_extra=documented(minLength=NAME_MIN, maxLength=NAME_MAX)
    )
    slug: str | None = Field(
        default=None, json_schema_extra=documented(maxLength=SLUG_MAX, pattern=SLUG_RE.pattern)
    )
    # The slug's older name, still accepted: what is wrong with it is reported as readable_id.
    readable_id: str | None = Field(
        default=None, json_schema_extra=documented(maxLength=SLUG_MAX, pattern=SLUG_RE.pattern)
    )
    source_id: str | None = None
    stream: str | None = Field(default=None, max_length=200)
    primary_key_path: str | None = Field(default=None, json_schema_extra=documented(maxLength=PATH_MAX))
    timestamp_path: str | None = Field(default=None, json_schema_extra=documented(maxLength=PATH_MAX))
    event_type_field: str | None = Field(default=None, json_schema_extra=documented(maxLength=PATH_MAX))
    delete_event_types: list[str] | None = Field(
        default=None,
        json_schema_extra=documented(
            maxItems=EVENT_TYPES_MAX, items={"type": "string", "minLength": 1, "maxLength": EVENT_TYPE_MAX}
        ),
    )
    description: str | None = Field(default=None, json_schema_extra=documented(maxLength=DESCRIPTION_MAX))
    search_index: bool | None = None

    @field_validator(
        "slug",
        "readable_id",
        "source_id",
        "stream",
        "timestamp_path",
        "event_type_field",
        "description",
        "search_index",
        mode="before",
    )
    @classmethod
    def _optional(cls, value: Any) -> Any:
        return _blank_to_none(value)

    @field_validator("name")
    @classmethod
    def _name(cls, value: Any) -> str | None:
        return pydantic_name(value, NAME_MIN, NAME_MAX)

    @field_validator("slug", "readable_id")
    @classmethod
    def _slug(cls, value: str | None) -> str | None:
        if value is not None and (len(value) > SLUG_MAX or not SLUG_RE.match(value)):
            raise ValueError(
                "must be lowercase letters, digits and single hyphens "
                f"(e.g. finance-data), at most {SLUG_MAX} characters"
            )
        return value

    @field_validator("primary_key_path", "timestamp_path", "event_type_field")
    @classmethod
    def _path(cls, value: str | None) -> str | None:
        return bindings.checked_path(value)

    @field_validator("delete_event_types", mode="before")
    @classmethod
    def _delete_types(cls, value: Any) -> Any:
        return bindings.delete_types(value)

    @field_validator("description")
    @classmethod
    def _description(cls, value: str | None) -> str | None:
        if value is not None and len(value) > DESCRIPTION_MAX:
            raise ValueError(f"must be at most {DESCRIPTION_MAX} characters")
        return value


class CollectionCreate(_CollectionFields):
    name: str = Field(json_schema_extra=documented(minLength=NAME_MIN, maxLength=NAME_MAX))
    primary_key_path: str = Field(json_schema_extra=documented(maxLength=PATH_MAX))


class CollectionUpdate(_CollectionFields):
    status: str | None = Field(default=None, json_schema_extra=documented(enum=["ACTIVE", "PAUSED"]))

    @field_validator("status")
    @classmethod
    def _status(cls, value: str | None) -> str | None:
        if value is not None and value not in ("ACTIVE", "PAUSED"):
            raise ValueError("can be set to ACTIVE or PAUSED")
        return value

    @field_validator("name", "primary_key_path", mode="before")
    @classmethod
    def _not_null(cls, value: Any) -> Any:
        if value is None:
            raise ValueError("cannot be null")
        return value


SUFFIX_RE = re.compile(r"-([a-z0-9]{6})$")


def generated_slug(name: str, suffix: str | None = None) -> str:
    """The name's slug and a random 6-character suffix; `suffix` keeps one already shown."""
    suffix = suffix or "".join(secrets.choice(SUFFIX_ALPHABET) for _ in range(6))
    return f"{slugify(name, 'collection')[:57].strip('-')}-{suffix}"


def suggested_slug(name: str, shown: str | None) -> str:
    """The slug a form without one is saved with: the one its preview showed (`shown`), for
    the name as submitted. The suffix stays the one shown, so the preview does not change
    with every key typed, and what it promised is what is created."""
    found = SUFFIX_RE.search(shown or "")
    return generated_slug(name, found.group(1) if found else None)


def slug_preview(
    principal: Principal, name: str, slug: str, shown: str | None = None, exclude_id: str | None = None
) -> dict:
    """What the slug will be, and whether it can be: the same rules create and update apply."""
    typed, name, slug = name, (name or "").strip(), (slug or "").strip()
    if slug:
        try:
            CollectionUpdate.model_validate({"slug": slug})
        except ValueError:
            return {
                "slug": slug,
                "generated": False,
                "error": "Use lowercase letters, digits and single hyphens.",
            }
        if slug_taken(principal, slug, exclude_id=exclude_id):
            return {"slug": slug, "generated": False, "error": "That slug is already taken in this project."}
        return {"slug": slug, "generated": False, "error": None}
    if not name:
        return {"slug": "", "generated": False, "error": None}
    if problem := name_problem(typed, NAME_MIN, NAME_MAX):
        # No slug is promised for a name that will be refused: its own error instead.
        return {"slug": "", "generated": False, "error": f"Name {problem}."}
    generated = suggested_slug(name, shown)
    while slug_taken(principal, generated, exclude_id=exclude_id):  # a suffix another collection drew
        generated = generated_slug(name)
    return {"slug": generated, "generated": True, "error": None}


def slug_taken(principal: Principal, slug: str, exclude_id: str | None = None) -> bool:
    query = select(Collection.id).where(Collection.env_id == principal.env.id, Collection.slug == slug)
    if exclude_id:
        query = query.where(Collection.id != exclude_id)
    return db.session.scalar(query) is not None


def _slug_asked(data: _CollectionFields) -> tuple[str | None, str]:
    """The slug asked for, and the field it was given in (slug, or its older name readable_id),
    so that what is wrong with it is reported where the caller put it."""
    given = data.model_fields_set
    if {"slug", "readable_id"} <= given and data.slug != data.readable_id:
        raise ValidationFailed({"readable_id": "must be the same as slug when both are given"})
    if "slug" not in given and "readable_id" in given:
        return data.readable_id, "readable_id"
    return data.slug, "slug"


def _slug_conflict(slug: str, field: str = "slug") -> ValidationFailed:
    return ValidationFailed(
        {field: f"{slug!r} is already taken in this project"}, status=409, code="conflict"
    )


def _commit_or_conflict(slug: str, field: str = "slug") -> None:
    try:
        db.session.commit()
    except IntegrityError:
        # Two creates raced for one slug; the unique constraint decided.
        db.session.rollback()
        raise _slug_conflict(slug, field) from None


def create_collection(principal: Principal, payload: object) -> Collection:
    data: CollectionCreate = validated(CollectionCreate, payload)
    source = bindings.source_in_env(principal, data.source_id) if data.source_id else None
    asked, slug_field = _slug_asked(data)
    slug = asked or generated_slug(data.name)
    if slug_taken(principal, slug):
        raise _slug_conflict(slug, slug_field)
    collection = Collection(
        org_id=principal.org.id,
        env_id=principal.env.id,
        name=data.name,
        slug=slug,
        primary_key_path=data.primary_key_path,
        timestamp_path=data.timestamp_path,
        event_type_field=data.event_type_field,
        delete_event_types=data.delete_event_types,
        description=data.description,
        status="NEEDS_SOURCE",
        search_index="off" if data.search_index is False else "on",
        record_count=0,
        created_by_id=principal.user_id,
        modified_by_id=principal.user_id,
    )
    db.session.add(collection)
    if source is not None:
        bindings.bind(collection, source, stream=data.stream)
    _commit_or_conflict(slug, slug_field)
    return collection


def update_collection(principal: Principal, collection: Collection, payload: object) -> Collection:
    data: CollectionUpdate = validated(CollectionUpdate, payload)
    given = data.model_fields_set
    asked, slug_field = _slug_asked(data)
    if given & {"slug", "readable_id"}:
        _rename(principal, collection, asked, slug_field)
    if "source_id" in given:
        _set_first_source(principal, collection, data.source_id)
    if "stream" in given:
        if not collection.bindings:
            raise ValidationFailed({"stream": "is a source's stream; the collection has no source yet"})
        first = collection.bindings[0]
        if first.stream != data.stream:
            first.stream, first.sync_state = data.stream, None
    for field in (
        "name",
        "primary_key_path",
        "timestamp_path",
        "event_type_field",
        "delete_event_types",
        "description",
    ):
        if field in given:
            setattr(collection, field, getattr(data, field))
    _set_status(collection, data.status)
    if "search_index" in given and data.search_index is not None:
        _switch_search_index(collection, data.search_index)
    collection.modified_by_id = principal.user_id
    _commit_or_conflict(collection.slug, slug_field)
    if collection.search_index == "building" and "search_index" in given:
        from . import index_jobs

        index_jobs.enqueue(collection.id)
    return collection


def _rename(principal: Principal, collection: Collection, asked: str | None, slug_field: str) -> None:
    if asked is None:
        raise ValidationFailed({slug_field: "cannot be empty"})
    if slug_taken(principal, asked, exclude_id=collection.id):
        raise _slug_conflict(asked, slug_field)
    collection.slug = asked


def _set_first_source(principal: Principal, collection: Collection, source_id: str | None) -> None:
    """`source_id` (the seeds' one source) adds that source beside the ones the collection
    has, never in place of them (a source is removed by its own request, or here by null,
    which removes every one)."""
    if source_id:
        bindings.bind(collection, bindings.source_in_env(principal, source_id))
        return
    for binding in list(collection.bindings):
        bindings.unbind(collection, binding)


def _set_status(collection: Collection, asked: str | None) -> None:
    """The status asked for, if the collection can have it: PAUSED, or (ACTIVE, or nothing
    asked) what its sources give it (bindings.settle_status); without a source it cannot be
    ACTIVE."""
    if asked == "ACTIVE" and not collection.bindings:
        raise ValidationFailed({"status": "cannot be ACTIVE without a source"})
    if asked == "PAUSED":
        collection.status = "PAUSED"
        return
    if asked == "ACTIVE" or collection.status != "PAUSED":
        collection.status = "ACTIVE"
        bindings.settle_status(collection)


def _switch_search_index(collection: Collection, on: bool) -> None:
    """Off: records are no longer indexed and searches scan. On: records written from now
    are indexed, and a job indexes the ones already stored before searches use the index."""
    if not on:
        collection.search_index = "off"
    elif collection.search_index != "on":  # again while building: the job is idempotent
        collection.search_index = "building" if collection.record_count else "on"


def scoped_collections(principal: Principal) -> Select[tuple[Collection]]:
    return select(Collection).where(
        Collection.org_id == principal.org.id, Collection.env_id == principal.env.id
    )


def check_status_filter(status: str | None) -> None:
    """The dashboard's status filter takes a status a collection can have, or says which."""
    from ..models import STATUSES

    if status and status not in STATUSES:
        names = ", ".join(s.replace("_", " ").title() for s in STATUSES)
        raise ValidationFailed({"status": f"must be one of: {names}"})


def list_collections(
    principal: Principal,
    *,
    cursor: str | None = None,
    limit: str | int | None = None,
    status: str | None = None,
    source_id: str | None = None,
    search: str | None = None,
) -> Page:
    query = scoped_collections(principal)
    if status:
        query = query.where(Collection.status == status)
    if source_id:
        query = query.where(
            Collection.id.in_(select(Binding.collection_id).where(Binding.source_id == source_id))
        )
    if search:
        term = search.strip()
        query = query.where(
            or_(
                Collection.name.icontains(term, autoescape=True),
                Collection.slug.icontains(term, autoescape=True),
            )
        )
    return paginate(query, Collection, cursor, limit)


def get_collection_or_404(principal: Principal, ident: str) -> Collection:
    collection = db.session.scalar(
        scoped_collections(principal).where(or_(Collection.id == ident, Collection.slug == ident))
    )
    if collection is None:
        abort(404, description="Collection not found")
    return collection


def delete_collection(principal: Principal, collection: Collection) -> None:
    db.session.delete(collection)
    db.session.commit()


def _newest_event_document(source: SourceConnection) -> tuple[dict[str, Any] | None, Event | None]:
    """The newest stored event of `source` whose body is a JSON object, and the event."""
    from ..values import documents

    events = db.session.scalars(
        select(Event)
        .where(
            Event.source_id == source.id,
            Event.org_id == source.org_id,
            Event.env_id == source.env_id,
            Event.body_encoding == "utf-8",
        )
        .order_by(Event.received_at.desc(), Event.id.desc())
        .limit(20)
    )
    for event in events:
        try:
            document = documents.loads(event.body or "")
        except ValueError:
            continue
        if isinstance(document, dict):
            return document, event
    return None, None


def _sample(
    principal: Principal, collection: Collection | None, source_id: str | None, stream: str | None
) -> tuple[Any, str | None, str | None]:
    """A real document the paths will be applied to, and where it came from: the collection's
    newest record, else the chosen source's newest event, else the first row a read gives."""
    from ..models import Record
    from ..sources import SourceError
    from . import sources as source_svc

    # The collection's records are a sample of its sources (the edit form names none); a
    # form naming another source is checked against that one's.
    if collection is not None and collection.record_count and source_id in (None, "", collection.source_id):
        record = db.session.scalar(
            select(Record)
            .where(Record.collection_id == collection.id)
            .order_by(Record.updated_at.desc(), Record.id.desc())
            .limit(1)
        )
        if record is not None:
            return record.data, f"the newest record of this collection (key {record.record_key})", None
    if not source_id:
        return None, None, None
    source = db.session.scalar(
        select(SourceConnection).where(
            SourceConnection.id == source_id,
            SourceConnection.org_id == principal.org.id,
            SourceConnection.env_id == principal.env.id,
        )
    )
    if source is None:
        return None, None, None
    kind = source_svc.type_of(source)
    if not kind.pull:
        document, event = _newest_event_document(source)
        return document, (f"the latest event {source.name} received ({event.id})" if event else None), None
    try:
        document = _read_sample(source, kind, stream or None)
    except SourceError as exc:
        return None, None, source_svc.said(kind, source_svc.credentials_of(source), str(exc))
    where = f"the first row of {stream}" if stream else f"the first record from {source.name}"
    return document, where if document is not None else None, None


SAMPLE_SECONDS = 120


def _read_sample(source: SourceConnection, kind: SourceType, stream: str | None) -> dict[str, Any] | None:
    """The first record a read gives, read at most once in SAMPLE_SECONDS per source, stream
    and version of the source: the form asks again as each path is typed, and every keystroke
    must not be a request to the source's API. A read (it uses the stored secrets) is in the
    audit log; without Redis every ask reads."""
    import json

    import redis

    from ..extensions import get_redis
    from . import audit
    from . import sources as source_svc

    conn = source_svc.connection_for(source)
    version = f"{source.updated_at.timestamp() if source.updated_at else 0}:{conn.latest_file_id or ''}"
    key = f"hookstream:sample:{source.id}:{stream or ''}:{version}"
    try:
        cached = get_redis().get(key)
    except redis.RedisError:
        cached = None
    if cached is not None:
        return json.loads(cached)
    document = kind.sample(conn, stream)
    audit.note(
        "source.sample",
        "source",
        source.id,
        org_id=source.org_id,
        env_id=source.env_id,
        details={"stream": stream, "secrets_used": True},
    )
    db.session.commit()
    with contextlib.suppress(redis.RedisError):
        get_redis().set(key, json.dumps(document), ex=SAMPLE_SECONDS)
    return document


def _scalar_paths(document: dict, limit: int = 12) -> list[str]:
    """Paths in `document` that hold a value a key can be made of, shallow ones first."""
    found: list[str] = []
    level = [("$", document)]
    while level and len(found) < limit:
        deeper = []
        for path, value in level:
            for key, child in value.items():
                if not SEGMENT_RE.match(str(key)):
                    continue
                if isinstance(child, dict):
                    deeper.append((f"{path}.{key}", child))
                elif child is not None and not isinstance(child, list):
                    found.append(f"{path}.{key}")
        level = deeper
    return found[:limit]


SEGMENT_RE = re.compile(r"^[A-Za-z_][A-Za-z0-9_\-]*$")


PATH_LABELS = {
    "primary_key_path": "Primary key path",
    "timestamp_path": "Timestamp path",
    "event_type_field": "Event type field",
}


def _key_state(state: dict[str, Any], path: str, document: dict[str, Any], where: str | None) -> None:
    from ..values.records import key_at

    state["value"] = key_at(path, document)
    if state["value"] is None:
        state["warning"] = (
            f"{path} matches nothing usable as a key in {where}. Records without a key are skipped."
        )


def _time_state(state: dict[str, Any], path: str, document: dict[str, Any], where: str | None) -> None:
    from ..values.records import parse_time

    raw = jsonpaths.getter(path)(document)
    moment = parse_time(raw)
    if raw is None:
        state["warning"] = (
            f"{path} matches nothing in {where}. Records without it are timed by when they arrive."
        )
    elif moment is None:
        state["warning"] = f"{path} gives {raw!r} in {where}, which is not a time."
    else:
        state["value"], state["note"] = moment.isoformat().replace("+00:00", "Z"), "a time"


def _type_state(state: dict[str, Any], path: str, document: dict[str, Any], where: str | None) -> None:
    from ..values.records import is_deletion

    raw = jsonpaths.getter(path)(document)
    if raw is None:
        state["warning"] = (
            f"{path} matches nothing in {where}. Records without an event type are never deleted by one."
        )
    elif not isinstance(raw, str):
        state["warning"] = f"{path} gives {raw!r} in {where}, which is not text."
    else:
        state["value"] = raw
        state["note"] = "a deletion type: the record is removed" if is_deletion(raw) else "an event type"


_PATH_CHECKS = {
    "primary_key_path": _key_state,
    "timestamp_path": _time_state,
    "event_type_field": _type_state,
}


def _path_state(
    field: str, path: str | None, document: dict[str, Any] | None, where: str | None
) -> dict[str, Any]:
    """One path of the form applied to the sample by the rule writes use."""
    state: dict[str, Any] = {
        "field": field,
        "label": PATH_LABELS[field],
        "path": None,
        "value": None,
        "note": None,
        "sample_from": where,
        "error": None,
        "warning": None,
        "paths": [],
    }
    try:
        state["path"] = jsonpaths.normalise(path) if path and path.strip() else None
    except ValueError as exc:
        state["error"] = f"{PATH_LABELS[field]} {exc}"
        return state
    if document is None or state["path"] is None:
        return state
    _PATH_CHECKS[field](state, state["path"], document, where)
    if state["warning"]:
        state["paths"] = _scalar_paths(document)
    return state


def path_previews(
    principal: Principal,
    paths: dict,
    *,
    collection: Collection | None = None,
    source_id: str | None = None,
    stream: str | None = None,
) -> dict:
    """The form's paths (primary key, timestamp, event type) applied to one real sample:
    {field: what it gives, or why it gives nothing}, and where the sample came from."""
    document, where, problem = _sample(principal, collection, source_id, stream)
    found = {field: _path_state(field, paths.get(field), document, where) for field in PATH_LABELS}
    return {
        "fields": found,
        "sample_from": where,
        "unavailable": problem,
        "sampled": document is not None,
        "rekey": rekey_warning(collection, paths.get("primary_key_path")),
    }


def rekey_warning(collection: Collection | None, path: str | None) -> dict | None:
    """What changing a collection's primary key path does to the records it holds: they keep
    the keys the old path gave, so an update to one of them makes a second record beside it."""
    if collection is None or not (collection.record_count or 0) or not path or not path.strip():
        return None
    try:
        new = jsonpaths.normalise(path)
    except ValueError:
        return None  # said under the field already
    if new == collection.primary_key_path:
        return None
    return {"count": collection.record_count, "old": collection.primary_key_path, "new": new}
