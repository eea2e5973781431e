"""/v1/syncs: a sync is a source connection seen as a scheduled pull, answered as itself
(no envelope)."""

from __future__ import annotations

from flask import request

from ..models import SourceConnection
from ..models.principal import Principal
from ..services import syncs as svc
from ..values.times import isoformat
from . import schemas, v1
from .openapi import PAGE_QUERY, endpoint, json_body

TAG = "syncs"


def _health(source: SourceConnection) -> schemas.SyncHealth:
    health = schemas.SyncHealth(
        status=source.health_status or "healthy",
        last_error=source.last_error,
        last_success_at=isoformat(source.last_success_at),
        sync_id=source.id,
    )
    replication = svc.source_svc.feed_health(source)
    if replication is not None:  # set only then: the seed's health has four fields
        health.replication = schemas.SyncReplication(**replication)
    return health


def sync_json(source: SourceConnection) -> schemas.Sync:
    refs = source.collection_refs or []
    holder = svc.source_svc.credential_holder(source)
    meta = holder.credential_meta or {}
    return schemas.Sync(
        id=source.id,
        provider=source.short_name,
        stream_id=source.stream_id,
        name=source.name,
        status=source.sync_status or "active",
        org_id=source.org_id,
        env_id=source.env_id,
        health=_health(source),
        collection_ids=list(refs),
        rate_limit=source.rate_limit,
        credential_id=holder.id,
        credential=schemas.SyncCredential(
            id=holder.id,
            provider=source.short_name,
            properties=svc.credential_properties(source),
            oauth_app_id=meta.get("oauth_app_id"),
            oauth_app=schemas.OAuthApp(kind="hookstream"),
            metadata=meta.get("metadata"),
            created_at=isoformat(holder.created_at),
            updated_at=isoformat(holder.updated_at),
        ),
        config=dict(source.config or {}),
        max_age_days=source.max_age_days,
        sync_frequency=source.sync_frequency,
        initial_backfill_completed_at=isoformat(source.initial_backfill_completed_at),
        metadata=source.sync_metadata,
        external_id=source.external_id,
        created_at=isoformat(source.created_at),
        updated_at=isoformat(source.updated_at),
    )


@endpoint(
    v1,
    "/syncs",
    "POST",
    summary="Create a sync",
    tag=TAG,
    body=svc.SyncCreate,
    responses={201: schemas.Sync, 404: schemas.Error, 409: schemas.Error},
)
def create_sync(principal: Principal) -> schemas.Sync:
    return sync_json(svc.create_sync(principal, json_body()))


@endpoint(
    v1,
    "/syncs",
    "GET",
    summary="List syncs",
    tag=TAG,
    responses={200: schemas.SyncList},
    query={
        **PAGE_QUERY,
        "provider": {"type": "string", "enum": svc.PULL_PROVIDERS},
        "status": {"type": "string", "enum": svc.SYNC_STATUSES},
        "external_id": {"type": "string"},
    },
)
def list_syncs(principal: Principal) -> schemas.SyncList:
    a = request.args
    page = svc.list_syncs(
        principal,
        cursor=a.get("cursor"),
        limit=a.get("limit"),
        provider=a.get("provider"),
        status=a.get("status"),
        external_id=a.get("external_id"),
    )
    return schemas.SyncList(
        syncs=[sync_json(s) for s in page.items], cursor=page.cursor, has_more=page.has_more
    )


@endpoint(
    v1,
    "/syncs/<sync_id>",
    "GET",
    summary="Get a sync",
    tag=TAG,
    responses={200: schemas.Sync, 404: schemas.Error},
)
def get_sync(principal: Principal, sync_id: str) -> schemas.Sync:
    return sync_json(svc.get_sync_or_404(principal, sync_id))


@endpoint(
    v1,
    "/syncs/<sync_id>",
    "PATCH",
    summary="Change a sync",
    tag=TAG,
    body=svc.SyncUpdate,
    responses={200: schemas.Sync, 404: schemas.Error, 409: schemas.Error},
)
def update_sync(principal: Principal, sync_id: str) -> schemas.Sync:
    source = svc.get_sync_or_404(principal, sync_id)
    return sync_json(svc.update_sync(principal, source, json_body()))


@endpoint(
    v1,
    "/syncs/<sync_id>",
    "DELETE",
    summary="Delete a sync (its collections stay)",
    tag=TAG,
    responses={200: schemas.Deleted, 404: schemas.Error, 409: schemas.Error},
)
def delete_sync(principal: Principal, sync_id: str) -> schemas.Deleted:
    source = svc.get_sync_or_404(principal, sync_id)
    svc.delete_sync(principal, source)
    return schemas.Deleted(id=sync_id, deleted=True)
