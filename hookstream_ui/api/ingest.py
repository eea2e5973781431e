"""ANY /v1/ingest/<source_id> (no API key), /v1/events, and a collection's records."""

from __future__ import annotations

from typing import Any

from flask import Response, abort, g, request, stream_with_context

from ..errors import ValidationFailed
from ..infra.group_commit import Unavailable
from ..models import Collection, Event, Record
from ..models.principal import Principal
from ..request_checks import request_is_payload
from ..services import backfills
from ..services import collections as collection_svc
from ..services import ingest as svc
from ..services import records as record_svc
from ..services.signatures import SignatureError
from ..values.times import isoformat
from . import schemas, v1
from .openapi import PAGE_QUERY, endpoint

INGEST_METHODS = ("POST", "PUT", "PATCH", "GET", "DELETE")


# `filter[data.status]=open`: one query parameter per field path, as OpenAPI's deepObject.
FILTER_PARAM: dict[str, Any] = {
    "type": "object",
    "additionalProperties": {"type": "string"},
    "propertyNames": {"pattern": r"^(\$\.)?[A-Za-z0-9_-]+(\.[A-Za-z0-9_-]+)*$"},
    "style": "deepObject",
    "explode": True,
    "description": "Records whose field at each path equals the value, e.g. filter[data.status]=open "
    "(a dot path of field names; the value matches as text, number or boolean)",
}
EXPORT_BODIES: dict[str, Any] = {
    "headers": {
        "Content-Disposition": {
            "schema": {"type": "string"},
            "description": 'attachment; filename="<slug>.<format>"',
        }
    },
    "content": {
        "application/x-ndjson": {
            "schema": {
                "type": "string",
                "description": (
                    "One JSON object per line and per record, in key order, streamed: record_key, data, event_type, "
                    "source_event_id, source_event_at, created_at, updated_at"
                ),
                "x-line-schema": {
                    "type": "object",
                    "required": ["record_key", "data"],
                    "properties": {
                        "record_key": {"type": "string"},
                        "data": {"type": "object"},
                        "event_type": {"type": ["string", "null"]},
                        "source_event_id": {"type": ["string", "null"]},
                        "source_event_at": {"type": ["string", "null"]},
                        "created_at": {"type": "string"},
                        "updated_at": {"type": "string"},
                    },
                },
            }
        },
        "text/csv": {
            "schema": {
                "type": "string",
                "description": (
                    "RFC 4180 CSV, streamed: a header row naming the columns, then one row per record in key order. "
                    "The record's own columns (record_key, event_type, source_event_id, source_event_at, created_at, "
                    "updated_at) come first; each data field's column is named by its path as the records page names it "
                    "(customer.email), except a field named like one of those, written as its $-path ($.created_at); "
                    "past 2000 data fields the rest go, as JSON, into other_fields"
                ),
            }
        },
    },
}
INGEST_BODY: dict[str, Any] = {
    "required": False,
    "description": "The delivery as the sender makes it: any content type, stored as received (JSON is "
    "also upserted into the source's collections). At most MAX_BODY_BYTES (413 above), "
    "chunked or not. Signed per the source's verification settings (its signature header).",
    "content": {
        "application/json": {"schema": {}},
        "application/x-www-form-urlencoded": {"schema": {"type": "object"}},
        "*/*": {"schema": {"type": "string", "format": "binary"}},
    },
}


def _ingest(source_id: str) -> schemas.IngestAccepted:
    try:
        event = svc.ingest(
            source_id,
            address=request.remote_addr,
            method=request.method,
            headers=dict(request.headers),
            query=request.args.to_dict(flat=True),
            read_body=lambda: request.get_data(cache=False),
            content_type=request.content_type,
        )
    except SignatureError as exc:
        raise ValidationFailed(
            {"signature": str(exc)},
            status=401,
            code="invalid_signature",
            message=f"Signature verification failed: {exc}",
        ) from None
    except Unavailable as exc:
        abort(503, description=f"{exc}; try again")
    g.ingest_outcome = "duplicate" if event.duplicate else event.status  # for the ingest metrics
    if event.duplicate:
        return schemas.IngestAccepted(
            event_id=event.id, source_id=source_id, duplicate=True, original_event_id=event.duplicate_of
        )
    return schemas.IngestAccepted(event_id=event.id, source_id=source_id)


for _method in INGEST_METHODS:

    def _view(source_id: str) -> schemas.IngestAccepted:
        return _ingest(source_id)

    _view.__name__ = f"ingest_{_method.lower()}"
    request_is_payload(_view)
    endpoint(
        v1,
        "/ingest/<source_id>",
        _method,
        summary="Receive a webhook delivery (no API key)",
        tag="ingest",
        responses={
            200: schemas.IngestAccepted,
            401: schemas.Error,
            403: schemas.Error,
            404: schemas.Error,
            413: schemas.Error,
            503: schemas.Error,
        },
        public=True,
        raw_body=INGEST_BODY if _method != "GET" else None,
    )(_view)


def event_json(e: Event) -> schemas.EventSummary:
    return schemas.EventSummary(
        id=e.id,
        source_id=e.source_id,
        method=e.method,
        status=e.status,
        verification=e.verification,
        verification_error=e.verification_error,
        duplicate=e.duplicate,
        duplicate_of=e.duplicate_of,
        dedup_key=e.dedup_key,
        content_type=e.content_type,
        size=e.size,
        source_ip=e.source_ip,
        received_at=isoformat(e.received_at),
        error=e.error,
        outcomes=dict(e.outcomes or {}),
        event_type=e.event_type,
        sender_event_id=e.sender_event_id,
    )


def event_detail_json(e: Event) -> schemas.EventDetail:
    """An event with what was received: its headers, query and body."""
    return schemas.EventDetail(
        **event_json(e).model_dump(),
        headers=dict(e.headers or {}),
        query=dict(e.query or {}),
        body=e.body,
        body_encoding=e.body_encoding,
    )


@endpoint(
    v1,
    "/events",
    "GET",
    summary="Stored webhook events",
    tag="events",
    responses={200: schemas.EventList},
    query={
        **{k: {"type": "string"} for k in ("source_id", "status", "verification", "search")},
        "duplicate": {"type": "string", "enum": ["true", "false"]},
        "since": {"type": "string", "description": "ISO 8601 or epoch seconds"},
        "until": {"type": "string", "description": "ISO 8601 or epoch seconds"},
        **PAGE_QUERY,
    },
)
def list_events(principal: Principal) -> schemas.EventList:
    a = request.args
    duplicate = a.get("duplicate")
    if duplicate not in (None, "true", "false"):
        raise ValidationFailed({"duplicate": "must be true or false"})
    page = record_svc.list_events(
        principal,
        source_id=a.get("source_id"),
        status=a.get("status"),
        verification=a.get("verification"),
        duplicate=None if duplicate is None else duplicate == "true",
        since=a.get("since"),
        until=a.get("until"),
        search=a.get("search"),
        cursor=a.get("cursor"),
        limit=a.get("limit"),
    )
    return schemas.EventList(
        events=[event_json(e) for e in page.items], cursor=page.cursor, has_more=page.has_more
    )


@endpoint(
    v1,
    "/events/<event_id>",
    "GET",
    summary="One event as received, with its outcomes",
    tag="events",
    responses={200: schemas.EventEnvelope, 404: schemas.Error},
)
def get_event(principal: Principal, event_id: str) -> schemas.EventEnvelope:
    return schemas.EventEnvelope(event=event_detail_json(record_svc.get_event_or_404(principal, event_id)))


def _filters() -> dict[str, str]:
    """The `filter[<path>]=<value>` parameters, by path."""
    return {
        k[len("filter[") : -1]: v
        for k, v in request.args.items()
        if k.startswith("filter[") and k.endswith("]")
    }


def record_json(r: Record) -> schemas.RecordOut:
    return schemas.RecordOut(
        id=r.id,
        collection_id=r.collection_id,
        record_key=r.record_key,
        data=r.data,
        event_type=r.event_type,
        source_event_id=r.source_event_id,
        source_event_at=isoformat(r.source_event_at),
        created_at=isoformat(r.created_at),
        updated_at=isoformat(r.updated_at),
        source_id=r.source_id,
        sync_run_id=r.sync_run_id,
    )


@endpoint(
    v1,
    "/collections/<ident>/records",
    "GET",
    summary="Records of a collection",
    tag="records",
    responses={200: schemas.RecordList, 404: schemas.Error},
    query={
        "search": {
            "type": "string",
            "description": "text in the key or the data, where a word starts "
            "(cus_0042, user42@, example.com); any case",
        },
        "event_type": {"type": "string"},
        **PAGE_QUERY,
        "filter": FILTER_PARAM,
    },
)
def list_records(principal: Principal, ident: str) -> schemas.RecordList:
    collection = collection_svc.get_collection_or_404(principal, ident)
    filters = _filters()
    page = record_svc.list_records(
        collection,
        search=request.args.get("search"),
        event_type=request.args.get("event_type"),
        filters=filters,
        cursor=request.args.get("cursor"),
        limit=request.args.get("limit"),
    )
    return schemas.RecordList(
        records=[record_json(r) for r in page.items], has_more=page.has_more, next_cursor=page.cursor
    )


@endpoint(
    v1,
    "/collections/<ident>/records/<record_key:key>",
    "GET",
    summary="One record by key",
    tag="records",
    responses={200: schemas.RecordEnvelope, 404: schemas.Error},
)
def get_record(principal: Principal, ident: str, key: str) -> schemas.RecordEnvelope:
    collection = collection_svc.get_collection_or_404(principal, ident)
    return schemas.RecordEnvelope(record=record_json(record_svc.get_record_or_404(collection, key)))


@endpoint(
    v1,
    "/collections/<ident>/records/<record_key:key>",
    "DELETE",
    summary="Delete one record",
    tag="records",
    responses={200: schemas.Deleted, 404: schemas.Error},
)
def delete_record(principal: Principal, ident: str, key: str) -> schemas.Deleted:
    collection = collection_svc.get_collection_or_404(principal, ident)
    record = record_svc.get_record_or_404(collection, key)
    record_id = record.id
    record_svc.delete_record(collection, record)
    return schemas.Deleted(id=record_id, deleted=True)


@endpoint(
    v1,
    "/collections/<ident>/schema",
    "GET",
    summary="Fields inferred from sampled records",
    tag="records",
    query={"sample": {"type": "integer", "minimum": 1, "maximum": 500, "default": 200}},
    responses={200: schemas.CollectionSchema, 404: schemas.Error},
)
def collection_schema(principal: Principal, ident: str) -> schemas.CollectionSchema:
    collection = collection_svc.get_collection_or_404(principal, ident)
    return schemas.CollectionSchema.model_validate(
        record_svc.infer_schema(collection, request.args.get("sample"))
    )


@endpoint(
    v1,
    "/collections/<ident>/stats",
    "GET",
    summary="Counts and activity of a collection",
    tag="records",
    responses={200: schemas.CollectionStats, 404: schemas.Error},
)
def collection_stats(principal: Principal, ident: str) -> schemas.CollectionStats:
    collection = collection_svc.get_collection_or_404(principal, ident)
    return schemas.CollectionStats.model_validate(record_svc.collection_stats(collection))


@endpoint(
    v1,
    "/collections/<ident>/export",
    "GET",
    summary="All records as NDJSON or CSV (streamed)",
    tag="records",
    query={
        "format": {
            "type": "string",
            "enum": ["ndjson", "csv"],
            "default": "ndjson",
            "description": "ndjson: one record a line, whole. csv: record_key, "
            "event_type, source_event_id, source_event_at, created_at, updated_at, "
            "then a column per field of data named by its path as the records "
            "page names it (customer.email for $.customer.email; a field named "
            "like one of the record's own columns as its $-path, $.created_at), "
            "arrays and objects as JSON text",
        },
        "columns": {
            "type": "string",
            "pattern": r"^[A-Za-z0-9_\-]+(\.[A-Za-z0-9_\-]+)*"
            r"(,[A-Za-z0-9_\-]+(\.[A-Za-z0-9_\-]+)*)*$",
            "description": "csv only: the data columns to write, comma-separated "
            "dot paths (status,customer.email), in this order; "
            "without it, every field",
        },
        "search": {"type": "string", "description": "only records the records list's search finds"},
        "event_type": {"type": "string"},
        "filter[<path>]": {"type": "string"},
    },
    responses={200: EXPORT_BODIES, 400: schemas.Error, 404: schemas.Error},
)
def export_collection(principal: Principal, ident: str) -> Response:
    collection = collection_svc.get_collection_or_404(principal, ident)
    fmt = request.args.get("format", "ndjson")
    if fmt not in ("ndjson", "csv"):
        raise ValidationFailed({"format": "must be ndjson or csv"})
    mimetype = "application/x-ndjson" if fmt == "ndjson" else "text/csv"
    filters = _filters()
    columns = record_svc.export_columns(request.args.get("columns"))
    body = stream_with_context(
        record_svc.export(
            collection,
            fmt,
            search=request.args.get("search"),
            event_type=request.args.get("event_type"),
            filters=filters,
            columns=columns,
        )
    )
    return Response(
        body,
        mimetype=mimetype,
        headers={"Content-Disposition": f'attachment; filename="{collection.slug}.{fmt}"'},
    )


def backfill_json(c: Collection) -> schemas.Backfill:
    return schemas.Backfill(
        collection_id=c.id,
        status=c.backfill_status,
        progress=c.backfill_progress,
        total=c.backfill_total,
        cursor=c.backfill_cursor,
        started_at=isoformat(c.backfill_started_at),
        completed_at=isoformat(c.backfill_completed_at),
        error=c.backfill_error,
        sources=[schemas.BackfillPart(**part) for part in backfills.report(c)],
    )


@endpoint(
    v1,
    "/collections/<ident>/backfill",
    "POST",
    summary="Start or resume a backfill",
    tag="records",
    responses={202: schemas.BackfillEnvelope, 404: schemas.Error, 409: schemas.Error},
)
def start_backfill(principal: Principal, ident: str) -> schemas.BackfillEnvelope:
    from ..sync.backfill import start_backfill as start

    collection = start(collection_svc.get_collection_or_404(principal, ident))
    return schemas.BackfillEnvelope(backfill=backfill_json(collection))


@endpoint(
    v1,
    "/collections/<ident>/backfill",
    "GET",
    summary="Backfill progress",
    tag="records",
    responses={200: schemas.BackfillEnvelope, 404: schemas.Error},
)
def get_backfill(principal: Principal, ident: str) -> schemas.BackfillEnvelope:
    return schemas.BackfillEnvelope(
        backfill=backfill_json(collection_svc.get_collection_or_404(principal, ident))
    )
