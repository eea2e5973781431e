"""Collections and API keys as their answers' models. The other resource modules build
theirs the same way, beside their handlers: each field is declared once, in api/schemas.py,
and only filled where an answer is built."""

from __future__ import annotations

from ..models import ApiKey, Binding, Collection
from ..values.times import isoformat
from . import schemas


def collection_json(c: Collection, status: str | None = None) -> schemas.Collection:
    """`status`: the collection's status as services/live.py reads it, where the caller has it
    (a list reads them in one go); otherwise read here, so no answer gives the stored one."""
    if status is None:
        from ..services import live

        status = live.collection_state(c).status
    return schemas.Collection(
        id=c.id,
        org_id=c.org_id,
        env_id=c.env_id,
        name=c.name,
        slug=c.slug,
        readable_id=c.slug,
        source_id=c.source_id,
        source_name=c.source.name if c.source else None,
        stream=c.stream,
        primary_key_path=c.primary_key_path,
        timestamp_path=c.timestamp_path,
        event_type_field=c.event_type_field,
        delete_event_types=list(c.delete_event_types or []),
        description=c.description,
        status=status,
        record_count=c.record_count or 0,
        search_index=c.search_index,
        last_sync_at=isoformat(c.last_sync_at),
        created_at=isoformat(c.created_at),
        updated_at=isoformat(c.updated_at),
        backfill_status=c.backfill_status,
        backfill_progress=c.backfill_progress,
        backfill_total=c.backfill_total,
        backfill_cursor=c.backfill_cursor,
        backfill_started_at=isoformat(c.backfill_started_at),
        backfill_completed_at=isoformat(c.backfill_completed_at),
        backfill_error=c.backfill_error,
        created_by_email=c.created_by.email if c.created_by else None,
        modified_by_email=c.modified_by.email if c.modified_by else None,
        sources=[binding_json(b) for b in c.bindings],
    )


def binding_json(b: Binding) -> schemas.CollectionSource:
    return schemas.CollectionSource(
        source_id=b.source_id,
        source_name=b.source.name,
        short_name=b.source.short_name,
        position=b.position,
        stream=b.stream,
        record_path=b.record_path,
        primary_key_path=b.primary_key_path,
        timestamp_path=b.timestamp_path,
        event_type_field=b.event_type_field,
        delete_event_types=list(b.delete_event_types or []),
        event_types=list(b.event_types or []),
        health_status=b.source.health_status,
        last_error=b.source.last_error,
        created_at=isoformat(b.created_at),
    )


def api_key_json(k: ApiKey) -> schemas.ApiKey:
    return schemas.ApiKey(
        id=k.id,
        name=k.name,
        prefix=k.prefix,
        env_id=k.env_id,
        role=k.role,
        created_at=isoformat(k.created_at),
        last_used_at=isoformat(k.last_used_at),
        request_count=k.request_count or 0,
        created_by_email=k.created_by.email if k.created_by else None,
        expires_at=isoformat(k.expires_at),
        status=k.status,
        revoked_at=isoformat(k.revoked_at),
        revoked_reason=k.revoked_reason,
    )


def new_api_key_json(k: ApiKey, raw: str) -> schemas.NewApiKey:
    """A key as made: the one answer that shows the key itself."""
    return schemas.NewApiKey(**api_key_json(k).model_dump(), key=raw)
