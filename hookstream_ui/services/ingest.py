"""Webhook ingest: verify, filter, dedup, store durably, apply to every bound collection.

The event row and the upserts into bound collections commit in one transaction before
the answer, so an accepted event is both stored and visible. If applying fails, the
event is still stored (status `failed`) and can be replayed by a backfill.
"""
from __future__ import annotations

import base64
import hashlib
import ipaddress
import json
import logging

from flask import abort
from werkzeug.datastructures import Headers
from sqlalchemy import select

from ..extensions import get_redis
from ..models import Collection, Event, SourceConnection, db, new_id, utcnow
from ..sources.webhook import parse_cidrs
from . import jsonpaths, upsert
from .signatures import SignatureError, verify
from .sources import credentials_of

log = logging.getLogger(__name__)
MASKED_HEADERS = {"authorization", "cookie", "x-api-key", "proxy-authorization"}
DEDUP_HEADERS = ("Idempotency-Key", "webhook-id")


def webhook_source_or_404(source_id: str) -> SourceConnection:
    source = db.session.scalar(select(SourceConnection).where(SourceConnection.id == source_id,
                                                              SourceConnection.short_name == "webhook"))
    if source is None:
        abort(404, description="No webhook source with that id")
    return source


def ip_allowed(source: SourceConnection, address: str | None) -> bool:
    config = source.config or {}
    try:
        ip = ipaddress.ip_address((address or "").split("%")[0])
    except ValueError:
        return not config.get("ip_allowlist")
    if any(ip in net for net in parse_cidrs(config.get("ip_denylist"))):
        return False
    allow = parse_cidrs(config.get("ip_allowlist"))
    return not allow or any(ip in net for net in allow)


def _dedup_key(source: SourceConnection, headers, body: bytes, document) -> str:
    configured = ((source.config or {}).get("dedup_key") or "").strip()
    if configured.startswith("$"):
        value = jsonpaths.getter(configured)(document) if isinstance(document, dict) else None
        if value is not None:
            return f"body:{value}"
    elif configured:
        if headers.get(configured):
            return f"header:{headers[configured]}"
    else:
        for name in DEDUP_HEADERS:
            if headers.get(name):
                return f"header:{headers[name]}"
    return "sha256:" + hashlib.sha256(body).hexdigest()


def _stored_body(body: bytes) -> tuple[str, str]:
    try:
        return body.decode("utf-8"), "utf-8"
    except UnicodeDecodeError:
        return base64.b64encode(body).decode(), "base64"


def receive(source: SourceConnection, *, method: str, headers, query: dict, body: bytes,
            content_type: str | None, source_ip: str | None) -> tuple[Event, bool]:
    """Store and apply one delivery. Returns (event, duplicate). Raises SignatureError."""
    headers = Headers(headers)  # HTTP header names are case-insensitive
    received_at = utcnow()
    text, encoding = _stored_body(body)
    event = Event(id=new_id("evt"), org_id=source.org_id, env_id=source.env_id, source_id=source.id, method=method,
                  headers={k: ("***" if k.lower() in MASKED_HEADERS else v) for k, v in headers.items()},
                  query=query, body=text, body_encoding=encoding, content_type=content_type, size=len(body),
                  source_ip=source_ip, received_at=received_at, outcomes={})
    try:
        event.verification = verify(credentials_of(source), body, headers)
    except SignatureError as exc:
        event.verification, event.verification_error, event.status = "failed", str(exc), "rejected"
        db.session.add(event)
        db.session.commit()
        raise
    try:
        document = json.loads(body) if body else None
    except (ValueError, UnicodeDecodeError):
        document = None
    key = _dedup_key(source, headers, body, document)
    event.dedup_key = key[:200]
    window = int((source.config or {}).get("dedup_window_seconds") or 0)
    if window > 0:
        slot = f"hookstream:dedup:{source.id}:{hashlib.sha256(key.encode()).hexdigest()}"
        # SET NX is atomic: of two concurrent deliveries exactly one claims the key.
        if not get_redis().set(slot, event.id, nx=True, ex=window):
            event.duplicate, event.status = True, "duplicate"
            event.duplicate_of = (get_redis().get(slot) or b"").decode() or None
            db.session.add(event)
            db.session.commit()
            return event, True
    if not isinstance(document, dict):
        event.status = "not_json"
        event.error = "the body is not a JSON object, so it was stored but not applied"
        db.session.add(event)
        db.session.commit()
        return event, False
    event.status = "applied"  # the row may be flushed while the upserts run
    db.session.add(event)
    try:
        event.outcomes = apply_to_collections(source, event, document, received_at)
        db.session.commit()
    except Exception as exc:  # store the event anyway; a backfill can replay it
        db.session.rollback()
        log.warning("applying event of %s failed with %s", source.id, type(exc).__name__)
        event.status, event.error, event.outcomes = "failed", f"could not apply: {type(exc).__name__}", {}
        db.session.add(event)
        db.session.commit()
    return event, False


def apply_to_collections(source: SourceConnection, event: Event, document: dict, received_at) -> dict:
    outcomes = {}
    collections = db.session.scalars(select(Collection).where(
        Collection.source_id == source.id, Collection.env_id == source.env_id,
        Collection.status != "PAUSED")).all()
    for collection in collections:
        outcome = upsert.apply(collection, [upsert.Incoming(document, source_event_id=event.id)],
                               received_at=received_at)
        result = ("inserted" if outcome.inserted else "updated" if outcome.updated else
                  "deleted" if outcome.deleted else "skipped")
        outcomes[collection.id] = {"result": result,
                                   "reason": next(iter(outcome.reasons), None) if outcome.skipped else None}
        collection.last_sync_at = received_at
    return outcomes
