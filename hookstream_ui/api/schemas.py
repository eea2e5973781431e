"""Response shapes of the JSON API, for the OpenAPI document and its contract tests.

Responses are built by the serializers; these models only describe them, and forbid
extra properties so that an undocumented field fails the contract test.
"""
from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class Error(Strict):
    error: str
    code: str
    status: int
    request_id: str | None
    errors: dict[str, str] | None = None


class SourcesError(Strict):
    success: Literal[False]
    error: str
    message: str
    errors: dict[str, str] | None = None


class Collection(Strict):
    id: str
    org_id: str
    env_id: str
    name: str
    slug: str
    readable_id: str
    source_id: str | None
    source_name: str | None
    stream: str | None
    primary_key_path: str
    timestamp_path: str | None
    event_type_field: str | None
    description: str | None
    status: Literal["NEEDS_SOURCE", "ACTIVE", "SYNCING", "PAUSED", "ERROR"]
    record_count: int
    last_sync_at: str | None
    created_at: str
    updated_at: str
    backfill_status: str | None
    backfill_progress: int | None
    backfill_total: int | None
    backfill_cursor: str | None
    backfill_started_at: str | None
    backfill_completed_at: str | None
    backfill_error: str | None
    created_by_email: str | None
    modified_by_email: str | None


class CollectionEnvelope(Strict):
    collection: Collection


class CollectionList(Strict):
    collections: list[Collection]
    cursor: str | None
    has_more: bool


class Deleted(Strict):
    id: str
    deleted: Literal[True]


class ApiKey(Strict):
    id: str
    name: str
    prefix: str
    env_id: str
    created_at: str
    last_used_at: str | None
    request_count: int
    created_by_email: str | None


class NewApiKey(ApiKey):
    key: str


class ApiKeyEnvelope(Strict):
    api_key: NewApiKey


class ApiKeyList(Strict):
    api_keys: list[ApiKey]
    cursor: str | None
    has_more: bool


class ApiKeyCreate(BaseModel):
    name: str
