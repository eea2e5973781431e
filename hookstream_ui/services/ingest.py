"""Webhook ingest: verify, filter, dedup, store durably, apply to every bound collection.

The event row, its dedup claim (services/dedup) and its upserts into the bound collections
commit in one transaction before the answer (shared with the deliveries that arrived with
it: see infra/group_commit), so an accepted event is both stored and visible. If applying fails,
the event is still stored (status `failed`) and can be replayed by a backfill. Nothing on
this path needs Redis: without it, the web process writes for itself.
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import ipaddress
import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from werkzeug.datastructures import Headers
from werkzeug.exceptions import Forbidden, NotFound

from ..infra import group_commit
from ..models import SourceConnection, db, new_id
from ..observability import metrics
from ..sources import secrets
from ..sources.webhook import parse_cidrs
from ..values import documents, jsonpaths
from ..values.times import utcnow
from . import ingest_writer, upsert, webhook_sources
from .signatures import HeaderMap, SignatureError, verify

log = logging.getLogger(__name__)
MASKED_HEADERS = {"authorization", "cookie", "x-api-key", "proxy-authorization"}
DEDUP_HEADERS = ("Idempotency-Key", "webhook-id")


def accepting_source(source_id: str, address: str | None) -> tuple[SourceConnection, str | None]:
    """(row, version) of the webhook source, if it takes deliveries from `address`; aborts
    with 404 or 403 otherwise, decided on a fresh read (see webhook_sources)."""
    for fresh in (False, True):
        source, version = webhook_sources.read(source_id, fresh=fresh)
        if source is None:
            refusal = (404, "No webhook source with that id")
        elif source.suspended_at is not None:
            refusal = (403, f"The organization is suspended: {source.suspended_reason or 'no reason given'}")
        elif not ip_allowed(source, address):
            refusal = (403, "This address may not send to this source")
        else:
            return source, version
    status, description = refusal
    raise (NotFound if status == 404 else Forbidden)(description=description)


def ip_allowed(source: SourceConnection, address: str | None) -> bool:
    config = source.config or {}
    try:
        deny, allow = parse_cidrs(config.get("ip_denylist")), parse_cidrs(config.get("ip_allowlist"))
    except ValueError:  # rules stored before they were checked: refuse rather than guess
        log.warning("source %s has IP rules that cannot be read; refusing its deliveries", source.id)
        return False
    try:
        ip = ipaddress.ip_address((address or "").split("%")[0])
    except ValueError:
        return not allow
    if any(ip in net for net in deny):
        return False
    return not allow or any(ip in net for net in allow)


def _body_value(path: str, document: Any) -> Any:
    try:
        return jsonpaths.getter(path)(document) if isinstance(document, dict) else None
    except Exception:  # a path stored before paths were checked; the payload hash stands in
        log.warning("dedup key %r is not a usable JSONPath", path[:100])
        return None


def _dedup_key(source: SourceConnection, headers: HeaderMap, body: bytes, document: Any) -> str:
    configured = ((source.config or {}).get("dedup_key") or "").strip()
    if configured.startswith("$"):
        value = _body_value(configured, document)
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


# Where common senders name a delivery and its kind: Standard Webhooks, GitHub, Shopify, and
# the generic ones. A body's own `type` and `id` count only together (an event envelope,
# as Stripe's): a bare record's `id` is the record's, not the delivery's.
SENDER_ID_HEADERS = (
    "webhook-id",
    "X-GitHub-Delivery",
    "X-Shopify-Webhook-Id",
    "Idempotency-Key",
    "X-Event-Id",
)
EVENT_TYPE_HEADERS = ("X-GitHub-Event", "X-Shopify-Topic", "X-Event-Type", "webhook-event-type")
BODY_TYPE_KEYS = ("type", "event_type", "event")


def _short(value: object) -> str | None:
    if isinstance(value, bool) or not isinstance(value, (str, int)):
        return None
    text = upsert.storable(str(value)).strip()[:200]
    return text or None


def sender_facts(
    source: SourceConnection, headers: HeaderMap, document: Any
) -> tuple[str | None, str | None]:
    """(event type, the sender's id for this delivery), as far as the delivery says. The
    source's own dedup key, when it names one, is the sender's id by the user's word."""
    body = document if isinstance(document, dict) else {}
    kind = next((_short(headers[n]) for n in EVENT_TYPE_HEADERS if headers.get(n)), None)
    if kind is None:
        kind = next((_short(body[k]) for k in BODY_TYPE_KEYS if _short(body.get(k))), None)
    configured = ((source.config or {}).get("dedup_key") or "").strip()
    sender_id = None
    if configured.startswith("$"):
        sender_id = _short(_body_value(configured, document))
    elif configured:
        sender_id = _short(headers.get(configured))
    if sender_id is None:
        sender_id = next((_short(headers[n]) for n in SENDER_ID_HEADERS if headers.get(n)), None)
    if sender_id is None and kind is not None and any(_short(body.get(k)) for k in BODY_TYPE_KEYS):
        sender_id = _short(body.get("id"))
    return kind, sender_id


def _stored_body(body: bytes) -> tuple[str, str]:
    # NUL is valid UTF-8, but PostgreSQL cannot store it in text.
    if b"\x00" not in body:
        with contextlib.suppress(UnicodeDecodeError):
            return body.decode("utf-8"), "utf-8"
    return base64.b64encode(body).decode(), "base64"


@dataclass(frozen=True)
class Received:
    id: str
    status: str
    duplicate: bool
    duplicate_of: str | None


ATTEMPTS = 3  # receptions of one delivery whose source changed while it was received


def ingest(
    source_id: str,
    *,
    address: str | None,
    method: str,
    headers: HeaderMap,
    query: dict[str, Any],
    read_body: Callable[[], bytes],
    content_type: str | None,
) -> Received:
    """ANY /v1/ingest/<source_id>: accept, store and apply one delivery. `read_body` is
    called once the source accepts the sender (above MAX_BODY_BYTES it answers 413, before
    anything is stored). Raises SignatureError (after storing the delivery as rejected)."""
    body, event_id = None, None
    for _ in range(ATTEMPTS):
        source, version = accepting_source(source_id, address)
        if body is None:
            body = read_body()
        try:
            return receive(
                source,
                method=method,
                headers=headers,
                query=query,
                body=body,
                content_type=content_type,
                source_ip=address,
                version=version,
                event_id=event_id,
            )
        except group_commit.SourceChanged as changed:
            webhook_sources.forget(source_id)
            event_id = changed.event_id  # the same delivery, received again, keeps its id
    raise group_commit.Unavailable("the source kept changing while the event was received")


def receive(
    source: SourceConnection,
    *,
    method: str,
    headers: HeaderMap,
    query: dict[str, Any],
    body: bytes,
    content_type: str | None,
    source_ip: str | None,
    version: str | None = None,
    event_id: str | None = None,
) -> Received:
    """Store and apply one delivery. Raises SignatureError (after storing it as rejected),
    and SourceChanged (nothing stored) if `version` is no longer the source's."""
    headers = Headers(headers)  # HTTP header names are case-insensitive
    text, encoding = _stored_body(body)
    row: dict[str, Any] = {
        "id": event_id or new_id("evt"),
        "org_id": source.org_id,
        "env_id": source.env_id,
        "source_id": source.id,
        "method": method,
        "headers": {k: ("***" if k.lower() in MASKED_HEADERS else v) for k, v in headers.items()},
        "query": query,
        "body": text,
        "body_encoding": encoding,
        "content_type": (content_type or "")[:200] or None,
        "size": len(body),
        "source_ip": source_ip,
        "received_at": utcnow(),
        "verification": None,
        "verification_error": None,
        "dedup_key": None,
        "duplicate": False,
        "duplicate_of": None,
        "status": "applied",
        "error": None,
        "outcomes": {},
        "event_type": None,
        "sender_event_id": None,
    }
    document = None
    try:
        row["verification"] = verify(_credentials(source), body, headers)
    except SignatureError as exc:
        row.update(verification="failed", verification_error=str(exc)[:300], status="rejected")
        _release_connection()
        ingest_writer.submit(group_commit.Delivery(row, None, version))
        raise
    not_applied = "the body is not a JSON object, so it was stored but not applied"
    try:
        document = documents.loads(body) if body else None
    except documents.Refused as exc:
        document, not_applied = None, f"the body {exc}, so it was stored but not applied"
    except ValueError:  # UnicodeDecodeError too
        document = None
    row["event_type"], row["sender_event_id"] = sender_facts(source, headers, document)
    key = _dedup_key(source, headers, body, document)
    row["dedup_key"] = upsert.storable(key)[:200]
    window = int((source.config or {}).get("dedup_window_seconds") or 0)
    claim = (hashlib.sha256(key.encode("utf-8", "surrogatepass")).hexdigest(), window) if window > 0 else None
    if not isinstance(document, dict):
        row.update(status="not_json", error=not_applied)
        document = None
    _release_connection()
    row = ingest_writer.submit(group_commit.Delivery(row, document, version, claim))
    metrics.webhook_records(row["outcomes"])
    return Received(row["id"], row["status"], row["duplicate"], row["duplicate_of"])


def _release_connection() -> None:
    # Hand this request's connection back before waiting: with many requests waiting on the
    # writer, their idle connections would otherwise starve the writer's pool. (The API's
    # deliveries never open a session; opening one only to close it was not free.)
    if db.session.registry.has():
        db.session.close()


def _credentials(source: SourceConnection) -> dict:
    # Decrypting per delivery costs more than verifying; the ciphertext is the cache key,
    # so a credentials change (or key rotation) is seen by the next delivery.
    token = source.credentials_encrypted
    found = _CREDENTIALS.get(token)
    if found is None:
        if len(_CREDENTIALS) > 1000:
            _CREDENTIALS.clear()
        # A webhook source holds its own credential (only /v1/syncs share one).
        found = _CREDENTIALS[token] = secrets.decrypt(token)
    return found


_CREDENTIALS: dict = {}
