"""/v1/syncs: a pull source connection seen as a sync — its credential, the collections it
feeds, its schedule, rate limit and health. One row, two views, so the Sources API and the
Syncs API cannot disagree."""

from __future__ import annotations

from typing import Annotated

from pydantic import BaseModel, ConfigDict, Field, field_validator
from sqlalchemy import select

from ..errors import ValidationFailed, documented, validated
from ..models import Binding, Collection, SourceConnection, db
from ..models.principal import Principal
from ..sources import REGISTRY, SourceType, source_type
from ..values.times import utcnow
from . import bindings
from . import collections as collection_svc
from . import sources as source_svc
from .accounts import slugify
from .names import pydantic_name
from .pagination import Page, paginate
from .runs import ensure_idle

# Properties of a credential that describe it rather than authenticate: kept beside it, in
# the clear, and never passed to the source type.
CREDENTIAL_META = ("kind", "name", "test")
NAME_MAX = source_svc.NAME_MAX
MAX_AGE_DAYS = 36500  # a hundred years; more overflows the database's integer
PULL_PROVIDERS = sorted(k for k, t in REGISTRY.items() if t.pull)
SYNC_STATUSES = ["active", "disabled"]


def _aliases_said() -> str:
    """Each provider's other names for its credential fields, as the documentation says them."""
    said = [
        f"{kind.name}'s {field.label.lower()} may be given as `{theirs}`"
        for kind in REGISTRY.values()
        for theirs, ours in kind.credential_aliases.items()
        for field in kind.auth_fields
        if field.name == ours
    ]
    return "; " + "; ".join(said) if said else ""


ALIASES_SAID = _aliases_said()
# What values.schedule.parse_frequency accepts: continuous, or 1 to 5 digits and a unit, at least 30s.
FREQUENCY_PATTERN = r"^(?:continuous|(?=\d{1,5}[smhd]$)0*(?:(?:[3-9]\d|[1-9]\d{2,})s|[1-9]\d*[mhd]))$"


class RateLimit(BaseModel):
    model_config = ConfigDict(extra="ignore", allow_inf_nan=False)
    allowed_requests: int = Field(gt=0)
    interval: float = Field(gt=0)
    max_concurrent_requests: int = Field(default=0, ge=0)


class Credential(BaseModel):
    model_config = ConfigDict(extra="ignore")
    properties: dict
    oauth_app_id: str | None = None
    metadata: dict | None = None


class _SyncFields(BaseModel):
    model_config = ConfigDict(extra="ignore", str_strip_whitespace=True)
    name: str | None = Field(
        default=None, json_schema_extra=documented(minLength=1, maxLength=NAME_MAX, pattern=r"\S")
    )
    stream_id: str | None = Field(default=None, max_length=200)
    collection_ids: list[Annotated[str, Field(max_length=200)]] | None = Field(
        default=None, json_schema_extra=documented(minItems=1)
    )
    rate_limit: RateLimit | None = None
    credential: Credential | None = Field(
        default=None,
        description=(
            "Required on create unless credential_id is given (not both). properties holds the provider's "
            f"authFields (GET /api/v1/sources/{{shortName}}){ALIASES_SAID}. On change: "
            "rotates the credential this sync uses, for every sync sharing it"
        ),
    )
    credential_id: str | None = Field(
        default=None,
        description="An existing credential (a sync's credential_id) "
        "to use instead of `credential`: shared, not copied",
    )
    # Not in the seed's request: what to read (a GitHub owner and repository, Salesforce's
    # objects), which a sync otherwise could not say without the source API.
    config: dict | None = Field(
        default=None,
        description="The provider's configFields (GET /api/v1/sources/{shortName}); on change, the "
        "fields given replace theirs and the rest stay",
    )
    max_age_days: int | None = Field(default=None, gt=0, le=MAX_AGE_DAYS)
    sync_frequency: str | None = Field(default=None, json_schema_extra=documented(pattern=FREQUENCY_PATTERN))
    metadata: dict | None = None
    external_id: str | None = Field(default=None, max_length=200)

    @field_validator("name")
    @classmethod
    def _name(cls, value: str | None) -> str | None:
        return pydantic_name(value, 1, NAME_MAX)

    @field_validator("sync_frequency")
    @classmethod
    def _frequency(cls, value: str | None) -> str | None:
        from ..values.schedule import parse_frequency

        if value is not None:
            parse_frequency(value)
        return value

    @field_validator("collection_ids")
    @classmethod
    def _collections(cls, value: list[str] | None) -> list[str] | None:
        if value is not None and not value:
            raise ValueError("must name at least one collection")
        return value


class SyncCreate(_SyncFields):
    provider: str = Field(json_schema_extra=documented(enum=PULL_PROVIDERS))
    name: str = Field(json_schema_extra=documented(minLength=1, maxLength=NAME_MAX, pattern=r"\S"))
    stream_id: str = Field(max_length=200)
    collection_ids: list[Annotated[str, Field(max_length=200)]] = Field(
        json_schema_extra=documented(minItems=1)
    )


class SyncUpdate(_SyncFields):
    status: str | None = Field(default=None, json_schema_extra=documented(enum=SYNC_STATUSES))

    @field_validator("status")
    @classmethod
    def _status(cls, value: str | None) -> str | None:
        if value is not None and value not in ("active", "disabled"):
            raise ValueError("must be active or disabled")
        return value


def _credentials_from(provider: str, credential: Credential) -> tuple[dict, dict]:
    """The credential's properties as the provider's authFields (under the names the type
    accepts for them), and the non-secret metadata."""
    aliases = REGISTRY[provider].credential_aliases
    auth = {aliases.get(k, k): v for k, v in credential.properties.items() if k not in CREDENTIAL_META}
    meta = {k: credential.properties[k] for k in CREDENTIAL_META if k in credential.properties}
    meta.update(oauth_app_id=credential.oauth_app_id, metadata=credential.metadata)
    return auth, meta


def _check_refs(principal: Principal, provider: str, refs: list[str], source_id: str | None = None) -> None:
    """Validate every ref before anything is created, so bad input changes nothing. A
    collection other sources feed is added to, never taken from them."""
    for ref in refs:
        ref_provider, sep, stream = ref.partition(":")
        if sep:
            if ref_provider != provider or not stream:
                raise ValidationFailed(
                    {"collection_ids": f"{ref!r} is not a {provider} stream (write {provider}:<stream>)"}
                )
            streams = REGISTRY[provider].fixed_streams
            if streams and stream not in streams:
                raise ValidationFailed(
                    {
                        "collection_ids": f"{stream!r} is not a {REGISTRY[provider].name} stream; one of "
                        + ", ".join(streams)
                    }
                )
        else:
            collection_svc.get_collection_or_404(principal, ref)


def _bind(principal: Principal, source: SourceConnection, refs: list[str]) -> None:
    """Each ref is `provider:stream` (created when missing, keyed by the type's key column)
    or a collection id/slug."""
    _check_refs(principal, source.short_name, refs, source.id)
    wanted = []
    for ref in refs:
        provider, sep, stream = ref.partition(":")
        if sep:
            found = db.session.scalar(
                select(Collection)
                .join(Binding, Binding.collection_id == Collection.id)
                .where(
                    Collection.env_id == principal.env.id,
                    Binding.source_id == source.id,
                    Binding.stream == stream,
                )
            )
            if found is None:
                # Lowercase, single hyphens: a stream may be named `Invoice__c`.
                slug = slugify(f"{provider}-{stream}", "collection")
                found = collection_svc.create_collection(
                    principal,
                    {
                        "name": f"{REGISTRY[provider].name} {stream.replace('_', ' ')}"[:64],
                        "slug": None if collection_svc.slug_taken(principal, slug) else slug,
                        "source_id": source.id,
                        "stream": stream,
                        "primary_key_path": f"$.{REGISTRY[provider].key_column(source.config or {}, stream)}",
                    },
                )
        else:
            found = collection_svc.get_collection_or_404(principal, ref)
            if bindings.binding_of(found, source.id) is None:
                bindings.bind(found, source)
                found.modified_by_id = principal.user_id
        wanted.append(found.id)
    for binding in bindings.bindings_of(source):  # this sync's own, no longer asked for
        if binding.collection_id not in wanted:
            collection = binding.collection
            bindings.unbind(collection, binding)
            collection.modified_by_id = principal.user_id
    source.collection_refs = list(refs)


def _credential_or_error(principal: Principal, provider: str, credential_id: str) -> SourceConnection:
    """The connection holding credential `credential_id` (a sync's `credential_id`, or the
    id of a connection that holds its own), checked to be one for `provider`."""
    donor = db.session.scalar(
        source_svc.scoped_sources(principal).where(SourceConnection.id == credential_id)
    )
    if donor is None:
        raise ValidationFailed(
            {"credential_id": "is not a credential in this project"},
            status=404,
            code="not_found",
            message="Credential not found",
        )
    if donor.short_name != provider:
        raise ValidationFailed({"credential_id": f"is a {donor.short_name} credential, not {provider}"})
    return source_svc.credential_holder(donor)


def _use_credential(principal: Principal, source: SourceConnection, credential_id: str) -> None:
    """Switch `source` to the shared credential `credential_id`; the one it held stays with
    the syncs that use it."""
    holder = _credential_or_error(principal, source.short_name, credential_id)
    if holder.id == source_svc.credential_holder(source).id:
        return
    if holder.id == source.id:
        raise ValidationFailed({"credential_id": "is this sync, which holds no credential of its own"})
    ensure_idle(source)
    source_svc.rehome_credential(source)
    source.credentials_encrypted, source.credential_meta = None, None
    source.credential_source_id, source.status = holder.id, "pending"


def create_sync(principal: Principal, payload: object) -> SourceConnection:
    data: SyncCreate = validated(SyncCreate, payload)
    kind = source_type(data.provider)
    if kind is None or not kind.pull:
        pulls = sorted(k for k, t in REGISTRY.items() if t.pull)
        raise ValidationFailed({"provider": "must be one of: " + ", ".join(pulls)})
    _refuse_schedule(kind, data.sync_frequency)
    if data.credential is None and not data.credential_id:
        raise ValidationFailed({"credential": "is required (or give credential_id)"})
    _check_refs(principal, data.provider, data.collection_ids)
    if data.credential is not None and data.credential_id:
        raise ValidationFailed({"credential_id": "give either credential or credential_id, not both"})
    if data.credential_id:
        holder = _credential_or_error(principal, data.provider, data.credential_id)
        source = source_svc.create_source(
            principal,
            {"sourceShortName": data.provider, "name": data.name, "config": data.config or {}},
            credential_from=holder,
        )
    elif data.credential is not None:
        credentials, meta = _credentials_from(data.provider, data.credential)
        source = source_svc.create_source(
            principal,
            {
                "sourceShortName": data.provider,
                "name": data.name,
                "credentials": credentials,
                "config": data.config or {},
            },
        )
        source.credential_meta = meta
    source.stream_id = data.stream_id
    source.rate_limit = data.rate_limit.model_dump() if data.rate_limit else dict(kind.default_rate_limit)
    source.sync_frequency = (data.sync_frequency or "4h") if kind.scheduled else None
    source.max_age_days = data.max_age_days
    source.sync_metadata, source.external_id = data.metadata, data.external_id
    source.sync_status, source.next_run_at = "active", utcnow()  # the backfill starts at once
    _bind(principal, source, data.collection_ids)
    db.session.commit()
    return source


def update_sync(principal: Principal, source: SourceConnection, payload: object) -> SourceConnection:
    """PATCH /v1/syncs/<id>, and the schedule form on a source's page."""
    data: SyncUpdate = validated(SyncUpdate, payload)
    given = data.model_fields_set
    if data.credential is not None and data.credential_id:
        raise ValidationFailed({"credential_id": "give either credential or credential_id, not both"})
    if "collection_ids" in given and data.collection_ids:
        # Before anything changes (a credential change commits): a refused ref changes nothing.
        _check_refs(principal, source.short_name, data.collection_ids, source.id)
    if "config" in given and data.config is not None:
        source_svc.check_config(source, data.config)
    _change_credential(principal, source, data)
    if "config" in given and data.config is not None:
        source_svc.update_source(principal, source, config=data.config, partial=True)
    if "name" in given and data.name:
        source.name = data.name
    if "collection_ids" in given and data.collection_ids:
        _bind(principal, source, data.collection_ids)
    if "rate_limit" in given:
        source.rate_limit = data.rate_limit.model_dump() if data.rate_limit else None
    _refuse_schedule(source_svc.type_of(source), data.sync_frequency)
    if "sync_frequency" in given and data.sync_frequency != source.sync_frequency:
        _reschedule(source, data.sync_frequency)
    _change_settings(source, data)
    db.session.commit()
    return source


def _change_credential(principal: Principal, source: SourceConnection, data: SyncUpdate) -> None:
    """Switch to a shared credential (`credential_id`), or rotate the one this sync uses
    (`credential`), shared or not: every sync using it gets it. Either commits."""
    if data.credential_id:
        _use_credential(principal, source, data.credential_id)
    if "credential" in data.model_fields_set and data.credential is not None:
        credentials, meta = _credentials_from(source.short_name, data.credential)
        source_svc.update_source(principal, source, credentials=credentials)
        source_svc.credential_holder(source).credential_meta = meta


def _refuse_schedule(kind: SourceType, frequency: str | None) -> None:
    if frequency and not kind.scheduled:
        raise ValidationFailed(
            {"sync_frequency": "cannot be set: this source type runs when a file is uploaded"}
        )


def _reschedule(source: SourceConnection, frequency: str | None) -> None:
    """The next run follows the new schedule (it kept the old one's time: 24h changed to 15m
    still waited a day), counted from now; none without a schedule."""
    from ..values.schedule import next_run_after

    source.next_run_at = next_run_after(frequency, utcnow()) if frequency else None


def _change_settings(source: SourceConnection, data: SyncUpdate) -> None:
    """The fields stored as they are given, and the status (resuming a scheduled sync makes
    its next run due now if none was set)."""
    given = data.model_fields_set
    for field in ("stream_id", "max_age_days", "sync_frequency", "external_id"):
        if field in given:
            setattr(source, field, getattr(data, field))
    if "metadata" in given:
        source.sync_metadata = data.metadata
    if "status" in given and data.status:
        source.sync_status = data.status
        if data.status == "active" and source.next_run_at is None and source.sync_frequency:
            source.next_run_at = utcnow()


def delete_sync(principal: Principal, source: SourceConnection) -> None:
    ensure_idle(source)
    source_svc.delete_source(principal, source, delete_data=False)


def list_syncs(
    principal: Principal,
    *,
    cursor: str | None = None,
    limit: str | int | None = None,
    provider: str | None = None,
    status: str | None = None,
    external_id: str | None = None,
) -> Page:
    # A filter that can match nothing is a typo: say so rather than answer an empty list.
    if provider and provider not in PULL_PROVIDERS:
        raise ValidationFailed({"provider": "must be one of: " + ", ".join(PULL_PROVIDERS)})
    if status and status not in SYNC_STATUSES:
        raise ValidationFailed({"status": "must be active or disabled"})
    query = source_svc.scoped_sources(principal).where(SourceConnection.short_name.in_(PULL_PROVIDERS))
    if provider:
        query = query.where(SourceConnection.short_name == provider)
    if status:
        query = query.where(SourceConnection.sync_status == status)
    if external_id:
        query = query.where(SourceConnection.external_id == external_id)
    return paginate(query, SourceConnection, cursor, limit)


def get_sync_or_404(principal: Principal, sync_id: str) -> SourceConnection:
    source = source_svc.get_source_or_404(principal, sync_id)
    if not source_svc.type_of(source).pull:
        from flask import abort

        abort(404, description="Sync not found")
    return source


def credential_properties(source: SourceConnection) -> dict:
    """The credential as the Syncs API shows it, under the names it was given by: every
    secret reads `***********`."""
    reverse = {ours: theirs for theirs, ours in source_svc.type_of(source).credential_aliases.items()}
    masked = source_svc.masked_credentials(source)
    props = {reverse.get(k, k): v for k, v in masked.items()}
    meta = source_svc.credential_holder(source).credential_meta or {}
    props.update({k: meta[k] for k in CREDENTIAL_META if k in meta})
    return props
