"""Source connections: create, test, edit, delete — validated against each type's declaration."""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from typing import IO, TypeVar

from flask import abort, current_app
from sqlalchemy import Select, func, select

from ..errors import ValidationFailed
from ..models import CHUNK_SIZE, Collection, Record, SourceConnection, SourceFile, SourceFileChunk, db
from ..models.principal import Principal
from ..sources import REGISTRY, Connection, SourceType, TestResult, secrets, source_type, source_type_or_404
from ..sources import fields as field_rules
from ..values.times import utcnow
from . import audit, bindings, links, renewals, upsert
from .collections import get_collection_or_404
from .names import clean_name

NAME_MAX = 120
T = TypeVar("T")


def ingest_url(source: SourceConnection) -> str | None:
    if not type_of(source).push:
        return None
    return links.public(f"/v1/ingest/{source.id}")


EXAMPLE_EVENT = (
    '{"id": "evt_1", "type": "customer.created", "data": {"id": "cus_1", "email": "ann@example.com"}}'
)


def ingest_command(source: SourceConnection) -> str | None:
    """A shell command that delivers an example event to a webhook source and passes its
    signature check: the signature is computed from $SIGNING_SECRET as the source's scheme
    requires (signatures.shell_recipe), so the secret never appears on the page."""
    from .signatures import shell_recipe

    url = ingest_url(source)
    if url is None:
        return None
    setup, headers = shell_recipe(credentials_of(source))
    lines = (
        ["# Set SIGNING_SECRET to this source's signing secret first (it is not shown again)."]
        if setup
        else []
    )
    lines += [f"BODY='{EXAMPLE_EVENT}'", *setup]
    args = ['-H "Content-Type: application/json"', *headers, '--data-binary "$BODY"']
    lines.append(f"curl -X POST {url} \\\n  " + " \\\n  ".join(args))
    return "\n".join(lines)


def type_of(source: SourceConnection) -> SourceType:
    """A stored connection's type: always a registered one (create_source checks)."""
    return REGISTRY[source.short_name]


def credential_holder(source: SourceConnection) -> SourceConnection:
    """The connection whose stored credential `source` uses: itself, or the one a sync named
    by `credential_id` (always in the same environment)."""
    if source.credential_source_id is None:
        return source
    holder = db.session.scalar(
        select(SourceConnection).where(
            SourceConnection.id == source.credential_source_id, SourceConnection.env_id == source.env_id
        )
    )
    return holder or source


def credential_users(holder: SourceConnection) -> list[SourceConnection]:
    """The other connections that use `holder`'s credential."""
    return list(
        db.session.scalars(
            select(SourceConnection)
            .where(
                SourceConnection.credential_source_id == holder.id, SourceConnection.env_id == holder.env_id
            )
            .order_by(SourceConnection.created_at, SourceConnection.id)
        ).all()
    )


def credentials_of(source: SourceConnection) -> dict:
    return secrets.decrypt(credential_holder(source).credentials_encrypted)


def connection_for(source: SourceConnection) -> Connection:
    latest = db.session.scalar(
        select(SourceFile.id)
        .where(SourceFile.source_id == source.id)
        .order_by(SourceFile.created_at.desc(), SourceFile.id.desc())
        .limit(1)
    )
    holder = credential_holder(source)
    return Connection(
        id=source.id,
        credentials=secrets.decrypt(holder.credentials_encrypted),
        config=dict(source.config or {}),
        ingest_url=ingest_url(source),
        latest_file_id=latest,
        save_credentials=renewals.saver(holder.id),
        stored_credentials=renewals.reader(holder.id),
        renewal_lock=renewals.lock(holder.id),
    )


def masked_credentials(source: SourceConnection) -> dict:
    return field_rules.masked(type_of(source).auth_fields, credentials_of(source))


def _clean(
    kind: SourceType,
    credentials: object,
    config: object,
    stored: tuple[dict, dict] | None = None,
    partial: tuple[bool, bool] = (False, False),
) -> tuple[dict, dict]:
    """Both halves validated against what is `stored` (credentials, config); `partial`, for
    each half, keeps what it leaves out. Credential errors are `invalid_credentials`, the
    rest `validation_error`."""
    errors, creds, conf = {}, {}, {}
    stored_creds, stored_conf = stored or ({}, {})
    try:
        creds = field_rules.validate(
            kind.auth_fields,
            credentials if credentials is not None else {},
            stored_creds,
            code="invalid_credentials",
            partial=partial[0],
        )
    except ValidationFailed as exc:
        errors.update({("credentials" if k == "body" else k): v for k, v in exc.errors.items()})
        creds = dict(getattr(exc, "clean", {}))
    cred_failed = bool(errors)
    try:
        conf = field_rules.validate(
            kind.config_fields, config if config is not None else {}, stored_conf, partial=partial[1]
        )
    except ValidationFailed as exc:
        errors.update({("config" if k == "body" else k): v for k, v in exc.errors.items()})
        conf = dict(getattr(exc, "clean", {}))
    if "credentials" not in errors and "config" not in errors:
        # Judged on what passed even when some field did not: all errors at once. A field
        # already refused keeps its own error (a cross check may only see it missing).
        cross = {k: v for k, v in kind.check(creds, conf).items() if k not in errors}
        auth_names = {f.name for f in kind.auth_fields}
        cred_failed = cred_failed or any(name in auth_names for name in cross)
        errors.update(cross)
    if errors:
        raise ValidationFailed(errors, code="invalid_credentials" if cred_failed else "validation_error")
    return creds, conf


def _name(value: object) -> str:
    return clean_name(value, "name", 1, NAME_MAX)


def _named(value: object, clean: Callable[[], T], kept: str | None = None) -> tuple[str, T]:
    """The cleaned name (`kept` when none is given) and `clean()`'s result; a bad name is
    reported with the other fields' errors, not alone on a first round."""
    name, name_errors = "", {}
    try:
        name = kept if value is None and kept is not None else _name(value)
    except ValidationFailed as exc:
        name_errors = exc.errors
    try:
        result = clean()
    except ValidationFailed as exc:
        raise ValidationFailed({**name_errors, **exc.errors}, status=exc.status, code=exc.code) from None
    if name_errors:
        raise ValidationFailed(name_errors)
    return name, result


def create_source(
    principal: Principal, payload: object, credential_from: SourceConnection | None = None
) -> SourceConnection:
    if not isinstance(payload, dict):
        raise ValidationFailed({"body": "must be a JSON object"})
    short = payload.get("sourceShortName")
    kind = source_type(short) if isinstance(short, str) else None
    if kind is None:
        raise ValidationFailed(
            {
                "sourceShortName": "is required"
                if not short
                else "must be one of: " + ", ".join(sorted(REGISTRY))
            }
        )
    creds: dict | None
    if credential_from is not None:
        # The credential is used where it is held, not copied: only the config is new.
        name, (_, conf) = _named(
            payload.get("name"),
            lambda: _clean(
                kind,
                None,
                payload.get("config"),
                (credentials_of(credential_from), {}),
                partial=(True, False),
            ),
        )
        creds = None
    else:
        name, (creds, conf) = _named(
            payload.get("name"), lambda: _clean(kind, payload.get("credentials"), payload.get("config"))
        )
    collection = None
    if payload.get("collectionId"):
        if not isinstance(payload["collectionId"], str):
            raise ValidationFailed({"collectionId": "must be a string"})
        collection = get_collection_or_404(principal, payload["collectionId"])
    source = SourceConnection(
        org_id=principal.org.id,
        env_id=principal.env.id,
        short_name=kind.short_name,
        name=name,
        status="pending",
        credentials_encrypted=None if creds is None else secrets.encrypt(creds),
        config=conf,
        created_by_id=principal.user_id,
        credential_source_id=credential_holder(credential_from).id if credential_from is not None else None,
    )
    db.session.add(source)
    if collection is not None:  # added to the collection's sources, beside any it has
        bindings.bind(collection, source)
        collection.modified_by_id = principal.user_id
    db.session.commit()
    return source


def update_source(
    principal: Principal,
    source: SourceConnection,
    *,
    name: object = None,
    credentials: dict | None = None,
    config: dict | None = None,
    partial: bool = False,
) -> SourceConnection:
    """Change what is given: a half left out (None) stays as it is, and with `partial` so do
    the fields a half leaves out. Secrets sent back as the mask keep their stored value while
    their destination is unchanged."""
    from .runs import ensure_idle

    if credentials is not None or config is not None:
        ensure_idle(source)  # a run must not see its credentials or config change under it
    if credentials is not None:
        holder = credential_holder(source)
        for other in {holder, *credential_users(holder)} - {source}:
            ensure_idle(other)  # nor a run of another connection sharing them
    kind = type_of(source)
    stored = credentials_of(source)
    new_name, (creds, conf) = _named(
        name,
        lambda: _clean(
            kind,
            credentials or {},
            config or {},
            (stored, dict(source.config or {})),
            partial=(partial or credentials is None, partial or config is None),
        ),
        kept=source.name,
    )
    source.name = new_name
    if creds != stored:
        # A shared credential is rotated where it is held, so every connection using it
        # gets it; each of them is untested with it now.
        holder = credential_holder(source)
        holder.credentials_encrypted = secrets.encrypt(creds)
        for user in {holder, source, *credential_users(holder)}:
            user.status = "pending"
    was = dict(source.config or {})
    if was.get("replication") != conf.get("replication") or was.get("schema") != conf.get("schema"):
        # The feed as it was (its slot, its tables) is not the feed the new config reads.
        forget_feed(source, was)
        for binding in bindings.bindings_of(source):
            binding.sync_state = None
    source.config = conf
    db.session.commit()
    return source


def check_config(source: SourceConnection, config: dict) -> None:
    """Refuse a config change before anything else of a request changes (ValidationFailed)."""
    _clean(type_of(source), {}, config, (credentials_of(source), dict(source.config or {})), (True, True))


def said(kind: SourceType, credentials: dict, text: str) -> str:
    """What a source said (a test result, an error), as it may be shown or stored: it may
    quote what was sent, so no secret of these credentials is left in it."""
    return secrets.scrub(text, field_rules.secrets_of(kind.auth_fields, credentials))


def _tested(kind: SourceType, conn: Connection, what: str) -> TestResult:
    try:
        result = kind.test(conn)
    except Exception as exc:  # a source type's bug must not leak a traceback or a secret
        current_app.logger.warning("%s test raised %s", what, type(exc).__name__)
        result = TestResult(False, f"Unexpected error while testing: {type(exc).__name__}")
    result.message = said(kind, conn.credentials, result.message)
    return result


def _audit_test(
    source: SourceConnection | None, kind: SourceType, used: list[str], result: TestResult, unsaved: bool
) -> None:
    """A test that sends stored secrets somewhere is on the record: who, which, where."""
    if source is None or not used:
        return
    audit.note(
        "source.test",
        "source",
        source.id,
        org_id=source.org_id,
        env_id=source.env_id,
        details={"secrets_used": used, "unsaved": unsaved, "connected": result.ok},
    )


def test_source(principal: Principal, source: SourceConnection) -> TestResult:
    conn = connection_for(source)
    kind = type_of(source)
    result = _tested(kind, conn, f"{source.id} ({source.short_name})")
    if not result.waiting:
        source.status = "connected" if result.ok else "error"
    source.last_tested_at = utcnow()
    source.last_test_message = result.message
    _audit_test(
        source, kind, field_rules.borrowed(kind.auth_fields, {}, conn.credentials), result, unsaved=False
    )
    db.session.commit()
    return result


def test_unsaved(
    principal: Principal,
    short_name: str,
    credentials: dict | None,
    config: dict | None,
    existing: SourceConnection | None = None,
) -> TestResult:
    """Test what a form holds before it is saved (the connect form's Test button). A stored
    secret it borrows goes only where it was given (field_rules.validate), and is audited."""
    kind = source_type_or_404(short_name)
    if existing is not None and existing.short_name != short_name:  # its secrets are for another type
        raise ValidationFailed({"source_id": f"is a {existing.short_name} source, not {short_name}"})
    stored = (credentials_of(existing), dict(existing.config or {})) if existing else None
    creds, conf = _clean(kind, credentials, config, stored)
    conn = Connection(
        id=existing.id if existing else "unsaved",
        credentials=creds,
        config=conf,
        ingest_url=ingest_url(existing) if existing else None,
        latest_file_id=connection_for(existing).latest_file_id if existing else None,
    )
    result = _tested(kind, conn, f"unsaved {short_name}")
    _audit_test(
        existing, kind, field_rules.borrowed(kind.auth_fields, credentials or {}, creds), result, unsaved=True
    )
    db.session.commit()
    return result


def list_streams(principal: Principal, source: SourceConnection) -> list[dict]:
    from ..sources import SourceError

    kind = type_of(source)
    try:
        return kind.list_streams(connection_for(source))
    except SourceError as exc:
        message = said(kind, credentials_of(source), str(exc))
        raise ValidationFailed(
            {"source": message}, status=502, code="source_unreachable", message=message
        ) from None


def scoped_sources(principal: Principal) -> Select[tuple[SourceConnection]]:
    return select(SourceConnection).where(
        SourceConnection.org_id == principal.org.id, SourceConnection.env_id == principal.env.id
    )


def list_sources(principal: Principal, collection_id: str | None = None) -> list[SourceConnection]:
    query = scoped_sources(principal)
    if collection_id:
        collection = get_collection_or_404(principal, collection_id)
        query = query.where(SourceConnection.id.in_([b.source_id for b in collection.bindings]))
    return list(
        db.session.scalars(
            query.order_by(SourceConnection.created_at.desc(), SourceConnection.id.desc())
        ).all()
    )


def get_source_or_404(principal: Principal, source_id: str) -> SourceConnection:
    source = db.session.scalar(scoped_sources(principal).where(SourceConnection.id == source_id))
    if source is None:
        abort(404, description="Source connection not found")
    return source


def bound_collections(source: SourceConnection) -> list[Collection]:
    return [binding.collection for binding in bindings.bindings_of(source)]


def readable_collections(source: SourceConnection) -> list[Collection]:
    """The bound collections a run reads into: a paused one takes nothing."""
    return [c for c in bound_collections(source) if c.status != "PAUSED"]


def clear_data(principal: Principal, source: SourceConnection) -> int:
    """Delete every record whose current version the source wrote, in each of its collections;
    the collections, and what other sources wrote into them, stay."""
    from .runs import ensure_idle

    ensure_idle(source)
    collections = bound_collections(source)
    ids = [c.id for c in collections]
    if not ids:
        return 0
    deleted = sum(
        upsert.remove_where(collection, Record.env_id == source.env_id, Record.source_id == source.id)
        for collection in collections
    )
    audit.note(
        "source.clear_data",
        "source",
        source.id,
        org_id=source.org_id,
        env_id=source.env_id,
        details={"name": source.name, "records_deleted": deleted, "collection_ids": ids},
    )
    db.session.commit()
    return deleted


def delete_source(principal: Principal, source: SourceConnection, delete_data: bool) -> None:
    from .runs import ensure_idle

    ensure_idle(source)
    forget_feed(source)
    if delete_data:
        clear_data(principal, source)
    rehome_credential(source)
    for binding in bindings.bindings_of(source):
        bindings.unbind(binding.collection, binding)
    db.session.delete(source)
    db.session.commit()


def forget_feed(source: SourceConnection, config: dict | None = None) -> None:
    """Drop what the source's change feed holds at the source (a replication slot keeps the
    server's WAL until it is read or dropped), as the source is deleted or its feed turned
    off (`config`: the config it had). A source that cannot be reached is logged, with the
    slot left to drop by hand: deleting it is not held up."""
    conn = connection_for(source)
    if config is not None:
        conn.config = config
    feed = type_of(source).change_feed(conn)
    if feed is None:
        return
    try:
        feed.forget()
    except Exception as exc:  # the source's own failure, whatever it is
        current_app.logger.warning(
            "could not drop source %s's change feed: %s", source.id, type(exc).__name__
        )
    source.feed_position = None
    source.feed_lag = None


def streams_changes(source: SourceConnection) -> bool:
    """Whether the source, as configured, reads a change feed (a replication slot)."""
    return type_of(source).change_feed(connection_for(source)) is not None


def feed_health(source: SourceConnection) -> dict | None:
    """What the source's change feed holds at the source, as last checked (sync/feeds.py):
    its slot and publication, the WAL it keeps, how far behind it is; None without a feed."""
    if source.feed_position is None and source.feed_lag is None:
        return None
    lag, position = source.feed_lag or {}, source.feed_position or {}
    return {
        "slot": lag.get("slot"),
        "publication": lag.get("publication"),
        "position": position.get("lsn"),
        "position_at": position.get("at"),
        "retained_bytes": lag.get("retained_bytes"),
        "behind_bytes": lag.get("behind_bytes"),
        "behind_seconds": lag.get("behind_seconds"),
        "reading": lag.get("active"),
        "checked_at": lag.get("checked_at"),
        "check_error": lag.get("error"),
    }


def rehome_credential(source: SourceConnection) -> None:
    """A deleted connection's credential stays with the others that use it: the oldest of
    them holds it from now on."""
    users = credential_users(source)
    if not users:
        return
    heir, rest = users[0], users[1:]
    heir.credentials_encrypted, heir.credential_meta = source.credentials_encrypted, source.credential_meta
    heir.credential_source_id = None
    for user in rest:
        user.credential_source_id = heir.id
    db.session.flush()


def parse_bool_param(value: str | None, name: str, default: bool = False) -> bool:
    if value is None:
        return default
    if value.lower() in ("true", "1"):
        return True
    if value.lower() in ("false", "0"):
        return False
    raise ValidationFailed({name: "must be true or false"})


def store_file(
    principal: Principal, source: SourceConnection, filename: str, stream: IO[bytes], fmt: str | None = None
) -> SourceFile:
    """Save an upload chunk by chunk, hashing as it goes; never the whole file in memory."""
    kind = type_of(source)
    if not kind.uploads:
        raise ValidationFailed({"file": "only file sources take uploads"})
    formats = dict(kind.upload_formats)
    if fmt and fmt not in formats:
        raise ValidationFailed({"format": f"must be one of {', '.join(formats)}"})
    filename = (filename or "upload").rsplit("/", 1)[-1].replace("\x00", "")[:255] or "upload"
    stored = SourceFile(
        org_id=source.org_id,
        env_id=source.env_id,
        source_id=source.id,
        filename=filename,
        format=fmt or (source.config or {}).get("format") or "auto",
        size=0,
    )
    db.session.add(stored)
    db.session.flush()
    digest, size, seq = hashlib.sha256(), 0, 0
    while True:
        chunk = stream.read(CHUNK_SIZE)
        if not chunk:
            break
        digest.update(chunk)
        size += len(chunk)
        db.session.add(SourceFileChunk(file_id=stored.id, seq=seq, data=chunk))
        db.session.flush()
        seq += 1
    if size == 0:
        db.session.rollback()
        raise ValidationFailed({"file": "is empty"})
    stored.size, stored.sha256 = size, digest.hexdigest()
    db.session.commit()
    return stored


def count_files(source: SourceConnection) -> int:
    return db.session.scalar(select(func.count(SourceFile.id)).where(SourceFile.source_id == source.id)) or 0
