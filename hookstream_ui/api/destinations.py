"""/v1/destinations: where collections' changes are sent, what each was sent, and what is
owed (retry, replay)."""

from __future__ import annotations

from flask import request

from ..models import Delivery, DeliveryAttempt, Destination
from ..models.principal import Principal
from ..services import destinations as svc
from ..values.times import isoformat
from . import schemas, v1
from .openapi import endpoint, json_body

TAG = "destinations"


def destination_json(destination: Destination, secrets: dict | None = None) -> schemas.DestinationOut:
    kind = svc.kind_of(destination)
    return schemas.DestinationOut(
        id=destination.id,
        name=destination.name,
        kind=destination.kind,
        status=destination.status,
        config=dict(destination.config or {}),
        secrets=secrets if secrets is not None else kind.shown_secrets(svc.secrets_of(destination)),
        filters=destination.filters,
        collection_ids=[s.collection_id for s in destination.subscriptions],
        health=schemas.DestinationHealth(**svc.health(destination)),
        created_at=isoformat(destination.created_at),
        updated_at=isoformat(destination.updated_at),
    )


@endpoint(
    v1,
    "/destinations",
    "POST",
    summary="Create a destination (its signing secret is shown in this answer only)",
    tag=TAG,
    body=svc.DestinationFields,
    responses={201: schemas.DestinationEnvelope, 400: schemas.Error},
)
def create_destination(principal: Principal) -> schemas.DestinationEnvelope:
    destination, made = svc.create(principal, json_body())
    return schemas.DestinationEnvelope(destination=destination_json(destination, secrets=made))


@endpoint(
    v1, "/destinations", "GET", summary="List destinations", tag=TAG, responses={200: schemas.DestinationList}
)
def list_destinations(principal: Principal) -> schemas.DestinationList:
    return schemas.DestinationList(
        destinations=[destination_json(d) for d in svc.list_destinations(principal)]
    )


@endpoint(
    v1,
    "/destinations/<destination_id>",
    "GET",
    summary="One destination, with its health",
    tag=TAG,
    responses={200: schemas.DestinationEnvelope, 404: schemas.Error},
)
def get_destination(principal: Principal, destination_id: str) -> schemas.DestinationEnvelope:
    return schemas.DestinationEnvelope(
        destination=destination_json(svc.get_destination_or_404(principal, destination_id))
    )


@endpoint(
    v1,
    "/destinations/<destination_id>",
    "PATCH",
    summary="Change a destination (name, config, collections, filters, status)",
    tag=TAG,
    body=svc.DestinationFields,
    responses={200: schemas.DestinationEnvelope, 400: schemas.Error, 404: schemas.Error},
)
def update_destination(principal: Principal, destination_id: str) -> schemas.DestinationEnvelope:
    destination = svc.update(principal, svc.get_destination_or_404(principal, destination_id), json_body())
    return schemas.DestinationEnvelope(destination=destination_json(destination))


@endpoint(
    v1,
    "/destinations/<destination_id>",
    "DELETE",
    summary="Delete a destination and what it logged",
    tag=TAG,
    responses={200: schemas.Deleted, 404: schemas.Error},
)
def delete_destination(principal: Principal, destination_id: str) -> schemas.Deleted:
    svc.delete(principal, svc.get_destination_or_404(principal, destination_id))
    return schemas.Deleted(id=destination_id, deleted=True)


@endpoint(
    v1,
    "/destinations/<destination_id>/rotate-secret",
    "POST",
    summary="A new signing secret, shown once; the old one still signs for 24 hours",
    tag=TAG,
    responses={200: schemas.SecretMade, 400: schemas.Error, 404: schemas.Error},
)
def rotate_destination_secret(principal: Principal, destination_id: str) -> schemas.SecretMade:
    made = svc.rotate_secret(principal, svc.get_destination_or_404(principal, destination_id))
    return schemas.SecretMade(**made)


@endpoint(
    v1,
    "/destinations/<destination_id>/attempts",
    "GET",
    summary="Its newest delivery attempts, with request and response (secrets masked)",
    tag=TAG,
    query={"failed": {"type": "boolean", "description": "only attempts that failed"}},
    responses={200: schemas.AttemptList, 404: schemas.Error},
)
def list_attempts(principal: Principal, destination_id: str) -> schemas.AttemptList:
    destination = svc.get_destination_or_404(principal, destination_id)
    only_failed = request.args.get("failed") in ("true", "1")
    return schemas.AttemptList(attempts=[_attempt(a) for a in svc.attempts(destination, 100, only_failed)])


@endpoint(
    v1,
    "/destinations/<destination_id>/deliveries",
    "GET",
    summary="What is undelivered: retrying, waiting behind its key, or dead",
    tag=TAG,
    responses={200: schemas.DeliveryList, 404: schemas.Error},
)
def list_undelivered(principal: Principal, destination_id: str) -> schemas.DeliveryList:
    destination = svc.get_destination_or_404(principal, destination_id)
    return schemas.DeliveryList(deliveries=[_delivery(d) for d in svc.undelivered(destination)])


@endpoint(
    v1,
    "/destinations/<destination_id>/retry",
    "POST",
    summary="Retry dead deliveries now: one (delivery_id) or all",
    tag=TAG,
    responses={200: schemas.Retried, 404: schemas.Error},
)
def retry_deliveries(principal: Principal, destination_id: str) -> schemas.Retried:
    destination = svc.get_destination_or_404(principal, destination_id)
    body = request.get_json(silent=True) or {}
    delivery_id = body.get("delivery_id") if isinstance(body, dict) else None
    return schemas.Retried(retried=svc.retry(principal, destination, delivery_id))


@endpoint(
    v1,
    "/destinations/<destination_id>/replay",
    "POST",
    summary="Send again every change after a number or from a time",
    tag=TAG,
    body=svc.Replay,
    responses={200: schemas.Replayed, 400: schemas.Error, 404: schemas.Error},
)
def replay_changes(principal: Principal, destination_id: str) -> schemas.Replayed:
    destination = svc.get_destination_or_404(principal, destination_id)
    return schemas.Replayed(places=svc.replay(principal, destination, json_body()))


def _attempt(a: DeliveryAttempt) -> schemas.AttemptOut:
    return schemas.AttemptOut(
        id=a.id,
        collection_id=a.collection_id,
        seq=a.seq,
        key=a.record_key,
        attempt=a.attempt,
        ok=a.ok,
        status_code=a.status_code,
        error=a.error,
        request=a.request,
        response=a.response,
        duration_ms=a.duration_ms,
        at=isoformat(a.at),
    )


def _delivery(d: Delivery) -> schemas.DeliveryOut:
    return schemas.DeliveryOut(
        id=d.id,
        collection_id=d.collection_id,
        seq=d.seq,
        key=d.record_key,
        status=d.status,
        attempts=d.attempts,
        next_attempt_at=isoformat(d.next_attempt_at),
        last_error=d.last_error,
        created_at=isoformat(d.created_at),
    )
