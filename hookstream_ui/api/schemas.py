"""The shapes of the JSON API, each declared once: a handler builds its answer as one of
these models (checked by pydantic as it is made, and by mypy's pydantic plugin for the
field names), `openapi.endpoint()` turns it into the JSON answer, and /v1/openapi.json
documents the same model. Response models forbid extra properties, so a field the
schema does not declare cannot be sent; the request bodies below document what the
services validate.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, JsonValue, ValidatorFunctionWrapHandler, WrapValidator

from ..services import api_keys, sources, team
from ..sources import REGISTRY


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


def _int_as_is(value: Any, handler: ValidatorFunctionWrapHandler) -> Any:
    return value if isinstance(value, int) and not isinstance(value, bool) else handler(value)


# A JSON number as the answer gives it: a whole number stays one (a plain float field would
# write 2 as 2.0), documented as a number.
Number = Annotated[float, WrapValidator(_int_as_is)]


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


class CollectionSource(Strict):
    """One source bound to a collection, and how its records map in (None: the collection's own)."""

    source_id: str
    source_name: str
    short_name: str
    position: int
    stream: str | None
    record_path: str | None
    primary_key_path: str | None
    timestamp_path: str | None
    event_type_field: str | None
    delete_event_types: list[str]
    event_types: list[str]
    health_status: str
    last_error: str | None
    created_at: str


class CollectionSourceEnvelope(Strict):
    source: CollectionSource


class CollectionSourceList(Strict):
    sources: list[CollectionSource]


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
    delete_event_types: list[str]
    description: str | None
    status: Literal["NEEDS_SOURCE", "ACTIVE", "PARTIAL_ERROR", "SYNCING", "PAUSED", "ERROR"]
    record_count: int
    search_index: Literal["on", "off", "building"]
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
    # Every source bound, in the order bound (`source_id` and `source_name` are the first's).
    sources: list[CollectionSource]


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
    role: Literal["member", "viewer"]
    created_at: str
    last_used_at: str | None
    request_count: int
    created_by_email: str | None
    expires_at: str | None = Field(description="When the key stops working; null: never")
    status: Literal["active", "revoked", "expired"]
    revoked_at: str | None
    revoked_reason: str | None = Field(description="Why a revoked key stopped working")


class NewApiKey(ApiKey):
    key: str


class ApiKeyEnvelope(Strict):
    api_key: NewApiKey


class ApiKeyList(Strict):
    api_keys: list[ApiKey]
    cursor: str | None
    has_more: bool


# Not blank: a name of spaces only is refused (each name is stripped, then its length checked).
NOT_BLANK = r"\S"


class ApiKeyCreate(BaseModel):
    name: str = Field(min_length=1, max_length=api_keys.NAME_MAX, pattern=NOT_BLANK)
    role: Literal["member", "viewer"] = Field("member", description="A viewer key only reads")
    expires_at: str | None = Field(
        None,
        json_schema_extra={"format": "date-time"},
        description="ISO 8601 time, in the future and within 10 years, after "
        "which the key answers 401; null or absent: never",
    )


# --- Sources API (/api/v1): every answer says `success`, fields in camelCase -------------


class FieldOption(Strict):
    value: str
    label: str


class FieldDecl(Strict):
    name: str
    type: Literal["string", "number", "password", "boolean", "select", "text", "url"]
    required: bool
    label: str
    description: str | None
    default: str | int | float | bool | None
    options: list[FieldOption] | None
    placeholder: str | None


class SourceSummary(Strict):
    id: str
    name: str
    shortName: str
    description: str
    authMethods: list[str]
    labels: list[str]
    supportsContinuous: bool


class SourceDetail(SourceSummary):
    authFields: list[FieldDecl]
    configFields: list[FieldDecl]


class SourceList(Strict):
    success: Literal[True]
    sources: list[SourceSummary]


class SourceDetailEnvelope(Strict):
    success: Literal[True]
    source: SourceDetail


class SourceConnection(Strict):
    id: str
    name: str
    shortName: str
    status: Literal["pending", "connected", "error", "syncing"]
    collectionIds: list[str]
    credentials: dict
    config: dict
    ingestUrl: str | None
    lastTestedAt: str | None
    lastTestMessage: str | None
    createdAt: str
    updatedAt: str


class SourceConnectionEnvelope(Strict):
    success: Literal[True]
    sourceConnection: SourceConnection


class SourceConnectionList(Strict):
    success: Literal[True]
    sourceConnections: list[SourceConnection]


class TestOutcome(Strict):
    success: bool
    status: Literal["connected", "failed"]
    message: str


class StreamItem(Strict):
    name: str
    label: str


class StreamList(Strict):
    success: Literal[True]
    streams: list[StreamItem]


class SourceDeleted(Strict):
    success: Literal[True]
    id: str
    deleted: Literal[True]
    dataDeleted: bool


class DataCleared(Strict):
    success: Literal[True]
    id: str
    recordsDeleted: int


class UploadedFile(Strict):
    id: str
    filename: str
    format: str
    size: int
    sha256: str | None
    createdAt: str


class UploadEnvelope(Strict):
    success: Literal[True]
    syncId: str | None
    file: UploadedFile


def _per_source_type(schema: dict[str, JsonValue]) -> None:
    """credentials and config as each source type declares them (its authFields and
    configFields): one variant per sourceShortName."""
    from ..sources.fields import object_schema

    schema["oneOf"] = [
        {
            "properties": {
                "sourceShortName": {"const": short},
                "credentials": object_schema(kind.auth_fields),
                "config": object_schema(kind.config_fields),
            }
        }
        for short, kind in sorted(REGISTRY.items())
    ]


SOURCE_TYPES: list[JsonValue] = [*sorted(REGISTRY)]


class SourceConnectionCreate(BaseModel):
    """Validated against the source type's authFields and configFields (one variant each)."""

    model_config = ConfigDict(json_schema_extra=_per_source_type)

    sourceShortName: str = Field(json_schema_extra={"enum": SOURCE_TYPES})
    name: str = Field(min_length=1, max_length=sources.NAME_MAX, pattern=NOT_BLANK)
    collectionId: str | None = Field(None, description="A collection no other source feeds (409 otherwise)")
    credentials: dict = {}
    config: dict = {}


class CredentialsUpdate(BaseModel):
    credentials: dict


class ConfigUpdate(BaseModel):
    config: dict


class SyncRun(Strict):
    id: str
    sourceConnectionId: str
    status: Literal["pending", "running", "completed", "failed", "cancelling", "cancelled"]
    trigger: Literal["manual", "schedule", "backfill", "upload"]
    mode: Literal["full", "incremental"]
    recordsInserted: int
    recordsUpdated: int
    recordsDeleted: int
    recordsSkipped: int
    skipReasons: dict[str, int]
    progress: int
    total: int | None
    rate: Number | None
    etaSeconds: Number | None
    cursor: dict
    error: str | None
    attempt: int
    createdAt: str
    startedAt: str | None
    finishedAt: str | None


class RunStarted(Strict):
    success: Literal[True]
    syncId: str
    status: Literal["started"]


class RunEnvelope(Strict):
    success: Literal[True]
    run: SyncRun


class RunList(Strict):
    success: Literal[True]
    runs: list[SyncRun]


class RunRequest(BaseModel):
    full: bool = False


# --- /v1/syncs: a sync is answered as itself, with no envelope ----------------------------


class SyncReplication(Strict):
    """A change feed's replication slot at the source, as last checked (every minute)."""

    slot: str | None
    publication: str | None
    position: str | None = Field(description="The LSN committed here with the records")
    position_at: str | None
    retained_bytes: int | None = Field(description="WAL the slot keeps the server from removing")
    behind_bytes: int | None
    behind_seconds: int | None = Field(description="How long the slot has stood still with WAL to read")
    reading: bool | None = Field(description="Whether a run holds the slot open now")
    checked_at: str | None
    check_error: str | None


class SyncHealth(Strict):
    status: Literal["healthy", "degraded", "error"]
    last_error: str | None
    last_success_at: str | None
    sync_id: str
    replication: SyncReplication | None = None  # a hookstream extension: logical replication only


class SyncRateLimit(Strict):
    allowed_requests: int
    interval: Number
    max_concurrent_requests: int


class OAuthApp(Strict):
    kind: str


class SyncCredential(Strict):
    id: str
    provider: str
    properties: dict
    oauth_app_id: str | None
    oauth_app: OAuthApp
    metadata: dict | None
    created_at: str
    updated_at: str


class Sync(Strict):
    id: str
    provider: str
    stream_id: str | None
    name: str
    status: Literal["active", "disabled"]
    org_id: str
    env_id: str
    health: SyncHealth
    collection_ids: list[str]
    rate_limit: SyncRateLimit | None
    credential_id: str
    credential: SyncCredential
    config: dict
    max_age_days: int | None
    sync_frequency: str | None
    initial_backfill_completed_at: str | None
    metadata: dict | None
    external_id: str | None
    created_at: str
    updated_at: str


class SyncList(Strict):
    syncs: list[Sync]
    cursor: str | None
    has_more: bool


# --- Ingest, events, records -------------------------------------------------------------


class IngestAccepted(Strict):
    event_id: str
    source_id: str
    duplicate: bool | None = None
    original_event_id: str | None = None


class EventSummary(Strict):
    id: str
    source_id: str
    method: str
    status: Literal["applied", "not_json", "duplicate", "rejected", "failed"]
    verification: Literal["verified", "skipped", "failed"]
    verification_error: str | None
    duplicate: bool
    duplicate_of: str | None
    dedup_key: str | None
    content_type: str | None
    size: int
    source_ip: str | None
    received_at: str
    error: str | None
    outcomes: dict
    event_type: str | None  # the sender's name for what happened, when the delivery says
    sender_event_id: str | None  # the sender's own id for the delivery, when it gives one


class EventDetail(EventSummary):
    headers: dict
    query: dict
    body: str | None
    body_encoding: str


class EventList(Strict):
    events: list[EventSummary]
    cursor: str | None
    has_more: bool


class EventEnvelope(Strict):
    event: EventDetail


class RecordOut(Strict):
    id: str
    collection_id: str
    record_key: str
    data: dict
    event_type: str | None
    source_event_id: str | None
    source_event_at: str | None
    created_at: str
    updated_at: str
    # Who wrote the current version: the source, and its run (a pull; None for an event).
    source_id: str | None
    sync_run_id: str | None


class RecordList(Strict):
    records: list[RecordOut]
    has_more: bool
    next_cursor: str | None


class RecordEnvelope(Strict):
    record: RecordOut


class ChangeOut(Strict):
    seq: int = Field(description="The change's number in its collection's feed")
    op: Literal["insert", "update", "delete"]
    key: str
    record: dict | None = Field(description="The record as this change wrote it; null for a delete")
    event_type: str | None
    event_id: str | None = Field(description="The received event that caused it, if one did")
    run_id: str | None = Field(description="The sync run that caused it, if one did")
    source_id: str | None
    changed_at: str


class ChangeList(Strict):
    changes: list[ChangeOut]
    next_after: int = Field(description="Pass as `after` to read on")
    last_seq: int = Field(description="The collection's newest change now")
    has_more: bool


class SchemaField(Strict):
    path: str
    types: list[str]
    presence: Number = Field(description="Share of the sampled records that hold the path (0 to 1)")
    example: str | int | float | bool | None


class CollectionSchema(Strict):
    sampled: int
    fields: list[SchemaField]


class TypeCount(Strict):
    event_type: str | None
    count: int


class CollectionStats(Strict):
    collection_id: str
    record_count: int
    records_updated_24h: int
    events_received_24h: int
    by_event_type: list[TypeCount]
    newest_update_at: str | None
    oldest_update_at: str | None
    last_sync_at: str | None


class BackfillPart(Strict):
    """One source's part of a backfill: a pull source's full read (its run) or a push
    source's replay of its stored events, and what it changed in the collection."""

    source_id: str
    source_name: str | None
    mode: Literal["read", "replay"] | None
    run_id: str | None
    status: str | None
    inserted: int
    updated: int
    deleted: int
    skipped: int


class Backfill(Strict):
    collection_id: str
    status: str | None
    progress: int | None
    total: int | None
    cursor: str | None
    started_at: str | None
    completed_at: str | None
    error: str | None
    sources: list[BackfillPart]


class BackfillEnvelope(Strict):
    backfill: Backfill


# --- Team: environments, members, invitations, audit log ----------------------------


class EnvironmentOut(Strict):
    id: str
    name: str
    slug: str
    current: bool
    created_at: str


class EnvironmentEnvelope(Strict):
    environment: EnvironmentOut


class EnvironmentList(Strict):
    environments: list[EnvironmentOut]
    cursor: str | None
    has_more: bool


class EnvironmentCreate(BaseModel):
    name: str = Field(min_length=1, max_length=team.ENV_NAME_MAX, pattern=NOT_BLANK)


class Member(Strict):
    user_id: str
    email: str
    role: Literal["owner", "admin", "member", "viewer"]
    joined_at: str


class MemberEnvelope(Strict):
    member: Member


class MemberList(Strict):
    members: list[Member]
    cursor: str | None
    has_more: bool


class MemberUpdate(BaseModel):
    role: Literal["owner", "admin", "member", "viewer"]


class InvitationOut(Strict):
    id: str
    email: str
    role: Literal["owner", "admin", "member", "viewer"]
    expires_at: str
    created_at: str
    url: str | None = None  # the link to send: only in the answer that creates it


class InvitationEnvelope(Strict):
    invitation: InvitationOut


class InvitationList(Strict):
    invitations: list[InvitationOut]
    cursor: str | None
    has_more: bool


class InvitationCreate(BaseModel):
    email: str = Field(json_schema_extra={"format": "email"})
    role: Literal["owner", "admin", "member", "viewer"] = "member"


class AuditEntryOut(Strict):
    id: str
    at: str
    actor: str
    actor_id: str | None
    action: str
    resource_type: str
    resource_id: str | None
    env_id: str | None
    details: dict
    ip: str | None


class AuditLog(Strict):
    entries: list[AuditEntryOut]
    cursor: str | None
    has_more: bool


# --- /v1/destinations ---------------------------------------------------------------------


class DestinationHealth(Strict):
    state: Literal["healthy", "failing", "open", "paused"] = Field(
        description="open: the circuit breaker holds sends until its probe; failing: recent attempts failed"
    )
    consecutive_failures: int
    open_until: str | None
    last_error: str | None
    last_delivered_at: str | None
    backlog: int = Field(description="Changes of its collections it has not reached yet")
    retrying: int
    waiting: int = Field(description="Changes held behind an undelivered earlier change of their key")
    dead: int


class DestinationOut(Strict):
    id: str
    name: str
    kind: str
    status: Literal["active", "paused"]
    config: dict
    secrets: dict = Field(description="Secret values are shown only when made (create, rotate-secret)")
    filters: dict | None
    collection_ids: list[str]
    health: DestinationHealth
    created_at: str
    updated_at: str


class DestinationEnvelope(Strict):
    destination: DestinationOut


class DestinationList(Strict):
    destinations: list[DestinationOut]


class SecretMade(Strict):
    signing_secret: str
    previous_secret_until: str | None


class DeliveryOut(Strict):
    id: str
    collection_id: str
    seq: int
    key: str
    status: Literal["retrying", "waiting", "dead", "delivered"]
    attempts: int
    next_attempt_at: str | None
    last_error: str | None
    created_at: str


class DeliveryList(Strict):
    deliveries: list[DeliveryOut]


class AttemptOut(Strict):
    id: int
    collection_id: str
    seq: int
    key: str
    attempt: int
    ok: bool
    status_code: int | None
    error: str | None
    request: dict
    response: dict | None
    duration_ms: int
    at: str


class AttemptList(Strict):
    attempts: list[AttemptOut]


class Retried(Strict):
    retried: int


class Replayed(Strict):
    places: dict[str, int] = Field(description="Each collection's change number sending starts after")


# --- /v1/alert-rules, /v1/incidents -------------------------------------------------------


class AlertRuleOut(Strict):
    id: str
    name: str
    kind: str
    params: dict
    channel: Literal["http", "email"]
    target: str
    enabled: bool
    signing_secret: str | None = Field(
        None, description="The webhook channel's secret: in the create answer only, never again"
    )
    created_at: str
    updated_at: str


class AlertRuleEnvelope(Strict):
    rule: AlertRuleOut


class AlertRuleList(Strict):
    rules: list[AlertRuleOut]


class IncidentOut(Strict):
    id: str
    rule_id: str
    subject_id: str
    subject: str
    message: str
    opened_at: str
    resolved_at: str | None
    notified_at: str | None
    resolved_notified_at: str | None
    notify_error: str | None


class IncidentList(Strict):
    incidents: list[IncidentOut]
