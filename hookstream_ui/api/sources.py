"""/api/v1, the Sources API: the catalog of source types, source connections and their runs.
Every answer says `success`; its fields are in camelCase."""

from __future__ import annotations

from typing import Any

from flask import Blueprint, current_app, request

from ..errors import ValidationFailed
from ..models import SourceConnection, SyncRun
from ..models.principal import Principal
from ..services import runs as run_svc
from ..services import sources as svc
from ..sources import REGISTRY, source_type_or_404
from ..sources.file import FORMATS
from ..values.times import isoformat
from . import schemas
from .openapi import endpoint, json_body

UPLOAD_BODY: dict[str, Any] = {
    "required": True,
    "description": "The file, as multipart/form-data (`file`, optional `format`) or as the raw body (with "
    "`filename` in the query). At most MAX_UPLOAD_BYTES (413 above).",
    "content": {
        "multipart/form-data": {
            "schema": {
                "type": "object",
                "required": ["file"],
                "properties": {
                    "file": {"type": "string", "format": "binary"},
                    "format": {"type": "string", "enum": [value for value, _ in FORMATS]},
                },
            }
        },
        "application/octet-stream": {"schema": {"type": "string", "format": "binary"}},
    },
}

sources_v1 = Blueprint("api_sources", __name__, url_prefix="/api/v1")
TAG = "sources"
E = schemas.SourcesError


def connection_json(source: SourceConnection) -> schemas.SourceConnection:
    return schemas.SourceConnection(
        id=source.id,
        name=source.name,
        shortName=source.short_name,
        status=source.status,
        collectionIds=[c.id for c in svc.bound_collections(source)],
        credentials=svc.masked_credentials(source),
        config=dict(source.config or {}),
        ingestUrl=svc.ingest_url(source),
        lastTestedAt=isoformat(source.last_tested_at),
        lastTestMessage=source.last_test_message,
        createdAt=isoformat(source.created_at),
        updatedAt=isoformat(source.updated_at),
    )


def _section(body: dict[str, Any], key: str) -> dict[str, Any]:
    """A PUT body wraps the fields to change (`{"credentials": {...}}`) or is those fields
    itself. Anything else is refused by name: a body misread as "no fields" would reset them."""
    if key in body:
        if not isinstance(body[key], dict):
            raise ValidationFailed({key: "must be an object of fields"})
        extra = sorted(set(body) - {key})
        if extra:
            raise ValidationFailed(dict.fromkeys(extra, f"is not taken here (send {key} alone)"))
        body = body[key]
    if not body:
        raise ValidationFailed({key: "is required: send the fields to change"})
    return body


@endpoint(
    sources_v1, "/sources", "GET", summary="List source types", tag=TAG, responses={200: schemas.SourceList}
)
def list_source_types(principal: Principal) -> schemas.SourceList:
    return schemas.SourceList.model_validate(
        {"success": True, "sources": [t.summary() for t in REGISTRY.values()]}
    )


@endpoint(
    sources_v1,
    "/sources/<short_name>",
    "GET",
    summary="A source type with its fields",
    tag=TAG,
    responses={200: schemas.SourceDetailEnvelope, 404: E},
)
def get_source_type(principal: Principal, short_name: str) -> schemas.SourceDetailEnvelope:
    return schemas.SourceDetailEnvelope.model_validate(
        {"success": True, "source": source_type_or_404(short_name).detail()}
    )


@endpoint(
    sources_v1,
    "/source-connections",
    "POST",
    summary="Create a source connection",
    tag=TAG,
    body=schemas.SourceConnectionCreate,
    responses={201: schemas.SourceConnectionEnvelope, 404: E, 409: E},
)
def create_connection(principal: Principal) -> schemas.SourceConnectionEnvelope:
    source = svc.create_source(principal, json_body())
    return schemas.SourceConnectionEnvelope(success=True, sourceConnection=connection_json(source))


@endpoint(
    sources_v1,
    "/source-connections",
    "GET",
    summary="List source connections",
    tag=TAG,
    query={"collectionId": {"type": "string"}},
    responses={200: schemas.SourceConnectionList, 404: E},
)
def list_connections(principal: Principal) -> schemas.SourceConnectionList:
    sources = svc.list_sources(principal, request.args.get("collectionId"))
    return schemas.SourceConnectionList(success=True, sourceConnections=[connection_json(s) for s in sources])


@endpoint(
    sources_v1,
    "/source-connections/<source_id>",
    "GET",
    summary="Get a source connection",
    tag=TAG,
    responses={200: schemas.SourceConnectionEnvelope, 404: E},
)
def get_connection(principal: Principal, source_id: str) -> schemas.SourceConnectionEnvelope:
    source = svc.get_source_or_404(principal, source_id)
    return schemas.SourceConnectionEnvelope(success=True, sourceConnection=connection_json(source))


@endpoint(
    sources_v1,
    "/source-connections/<source_id>/test",
    "POST",
    summary="Test a source connection",
    tag=TAG,
    responses={200: schemas.TestOutcome, 404: E},
)
def test_connection(principal: Principal, source_id: str) -> schemas.TestOutcome:
    result = svc.test_source(principal, svc.get_source_or_404(principal, source_id))
    return schemas.TestOutcome(
        success=result.ok, status="connected" if result.ok else "failed", message=result.message
    )


@endpoint(
    sources_v1,
    "/source-connections/<source_id>/streams",
    "GET",
    summary="Streams a collection can pick",
    tag=TAG,
    role="member",
    responses={200: schemas.StreamList, 404: E, 502: E},
)
def list_connection_streams(principal: Principal, source_id: str) -> schemas.StreamList:
    streams = svc.list_streams(principal, svc.get_source_or_404(principal, source_id))
    return schemas.StreamList.model_validate({"success": True, "streams": streams})


@endpoint(
    sources_v1,
    "/source-connections/<source_id>/credentials",
    "PUT",
    summary="Change credentials (the fields given)",
    tag=TAG,
    body=schemas.CredentialsUpdate,
    responses={200: schemas.SourceConnectionEnvelope, 404: E, 409: E},
)
def put_credentials(principal: Principal, source_id: str) -> schemas.SourceConnectionEnvelope:
    source = svc.get_source_or_404(principal, source_id)
    svc.update_source(principal, source, credentials=_section(json_body(), "credentials"), partial=True)
    return schemas.SourceConnectionEnvelope(success=True, sourceConnection=connection_json(source))


@endpoint(
    sources_v1,
    "/source-connections/<source_id>/config",
    "PUT",
    summary="Change configuration (the fields given)",
    tag=TAG,
    body=schemas.ConfigUpdate,
    responses={200: schemas.SourceConnectionEnvelope, 404: E, 409: E},
)
def put_config(principal: Principal, source_id: str) -> schemas.SourceConnectionEnvelope:
    source = svc.get_source_or_404(principal, source_id)
    svc.update_source(principal, source, config=_section(json_body(), "config"), partial=True)
    return schemas.SourceConnectionEnvelope(success=True, sourceConnection=connection_json(source))


@endpoint(
    sources_v1,
    "/source-connections/<source_id>",
    "DELETE",
    summary="Delete a source connection",
    tag=TAG,
    query={"deleteData": {"type": "boolean", "default": False}},
    responses={200: schemas.SourceDeleted, 404: E, 409: E},
)
def delete_connection(principal: Principal, source_id: str) -> schemas.SourceDeleted:
    source = svc.get_source_or_404(principal, source_id)
    delete_data = svc.parse_bool_param(request.args.get("deleteData"), "deleteData")
    svc.delete_source(principal, source, delete_data)
    return schemas.SourceDeleted(success=True, id=source_id, deleted=True, dataDeleted=delete_data)


@endpoint(
    sources_v1,
    "/source-connections/<source_id>/data",
    "DELETE",
    summary="Clear a source's records",
    tag=TAG,
    responses={200: schemas.DataCleared, 404: E, 409: E},
)
def clear_connection_data(principal: Principal, source_id: str) -> schemas.DataCleared:
    source = svc.get_source_or_404(principal, source_id)
    return schemas.DataCleared(success=True, id=source.id, recordsDeleted=svc.clear_data(principal, source))


@endpoint(
    sources_v1,
    "/source-connections/<source_id>/files",
    "POST",
    summary="Upload a file (file sources)",
    tag=TAG,
    query={
        "filename": {"type": "string", "description": "the file's name, for a raw body"},
        "format": {"type": "string", "enum": [value for value, _ in FORMATS]},
    },
    responses={201: schemas.UploadEnvelope, 400: E, 404: E, 409: E, 413: E},
    raw_body=UPLOAD_BODY,
)
def upload_file(principal: Principal, source_id: str) -> schemas.UploadEnvelope:
    source = svc.get_source_or_404(principal, source_id)
    run_svc.ensure_idle(source)
    request.max_content_length = current_app.config["MAX_UPLOAD_BYTES"]
    upload = request.files.get("file")
    if upload is not None:
        name = upload.filename or "upload"
        stored = svc.store_file(principal, source, name, upload.stream, request.form.get("format"))
    else:  # a raw body: curl --data-binary @orders.csv '...?filename=orders.csv'
        stored = svc.store_file(
            principal,
            source,
            request.args.get("filename", "upload"),
            request.stream,
            request.args.get("format"),
        )
    # Each upload is a sync of its own; it runs when a bound collection can take it (not paused).
    run = (
        run_svc.start_run(source, trigger="upload", full=False, file_id=stored.id)
        if svc.readable_collections(source)
        else None
    )
    return schemas.UploadEnvelope(
        success=True,
        syncId=run.id if run else None,
        file=schemas.UploadedFile(
            id=stored.id,
            filename=stored.filename,
            format=stored.format,
            size=stored.size,
            sha256=stored.sha256,
            createdAt=isoformat(stored.created_at),
        ),
    )


def run_json(run: SyncRun) -> schemas.SyncRun:
    rate, eta = run_svc.rate_and_eta(run)
    return schemas.SyncRun(
        id=run.id,
        sourceConnectionId=run.source_id,
        status=run.status,
        trigger=run.trigger,
        mode=run.mode,
        recordsInserted=run.records_inserted or 0,
        recordsUpdated=run.records_updated or 0,
        recordsDeleted=run.records_deleted or 0,
        recordsSkipped=run.records_skipped or 0,
        skipReasons=dict(run.skip_reasons or {}),
        progress=run.progress or 0,
        total=run.total,
        rate=round(rate, 1) if rate else None,
        etaSeconds=round(eta, 1) if eta else None,
        cursor=dict(run.cursor or {}),
        error=run.error,
        attempt=run.attempt or 0,
        createdAt=isoformat(run.created_at),
        startedAt=isoformat(run.started_at),
        finishedAt=isoformat(run.finished_at),
    )


@endpoint(
    sources_v1,
    "/source-connections/<source_id>/run",
    "POST",
    summary="Start a sync run",
    tag=TAG,
    body=schemas.RunRequest,
    responses={200: schemas.RunStarted, 404: E, 409: E},
)
def run_connection(principal: Principal, source_id: str) -> schemas.RunStarted:
    source = svc.get_source_or_404(principal, source_id)
    full = json_body().get("full", False)
    if not isinstance(full, bool):
        raise ValidationFailed({"full": "must be true or false"})
    run = run_svc.start_run(source, trigger="manual", full=True if full else None)
    return schemas.RunStarted(success=True, syncId=run.id, status="started")


@endpoint(
    sources_v1,
    "/source-connections/<source_id>/runs",
    "GET",
    summary="Runs of a source connection",
    tag=TAG,
    responses={200: schemas.RunList, 404: E},
)
def list_runs(principal: Principal, source_id: str) -> schemas.RunList:
    source = svc.get_source_or_404(principal, source_id)
    return schemas.RunList(success=True, runs=[run_json(r) for r in run_svc.runs_of(source)])


@endpoint(
    sources_v1,
    "/source-connections/<source_id>/runs/<run_id>",
    "GET",
    summary="One sync run",
    tag=TAG,
    responses={200: schemas.RunEnvelope, 404: E},
)
def get_run(principal: Principal, source_id: str, run_id: str) -> schemas.RunEnvelope:
    source = svc.get_source_or_404(principal, source_id)
    return schemas.RunEnvelope(success=True, run=run_json(run_svc.get_run_or_404(principal, source, run_id)))


@endpoint(
    sources_v1,
    "/source-connections/<source_id>/runs/<run_id>/cancel",
    "POST",
    summary="Cancel a run",
    tag=TAG,
    responses={200: schemas.RunEnvelope, 404: E},
)
def cancel_run(principal: Principal, source_id: str, run_id: str) -> schemas.RunEnvelope:
    source = svc.get_source_or_404(principal, source_id)
    run = run_svc.cancel_run(run_svc.get_run_or_404(principal, source, run_id))
    return schemas.RunEnvelope(success=True, run=run_json(run))
