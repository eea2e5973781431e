"""/v1/auth/api-keys: managed only from a signed-in session, never with a key."""

from __future__ import annotations

from flask import request

from ..models.principal import Principal
from ..services import api_keys as svc
from . import schemas, v1
from .openapi import PAGE_QUERY, endpoint, json_body
from .serializers import api_key_json, new_api_key_json

TAG = "api-keys"
KEYS = "API keys"


@endpoint(
    v1,
    "/auth/api-keys",
    "POST",
    summary="Create an API key (shown once)",
    tag=TAG,
    body=schemas.ApiKeyCreate,
    responses={201: schemas.ApiKeyEnvelope},
    role="admin",
    session_only=KEYS,
)
def create_api_key(principal: Principal) -> schemas.ApiKeyEnvelope:
    body = json_body()
    if principal.user is None:  # cannot happen: session_only lets signed-in users in only
        raise RuntimeError("an API key is made by a signed-in user")
    key, raw = svc.create_key(
        principal.env, body.get("name"), principal.user, body.get("role", "member"), body.get("expires_at")
    )
    return schemas.ApiKeyEnvelope(api_key=new_api_key_json(key, raw))


@endpoint(
    v1,
    "/auth/api-keys",
    "GET",
    summary="List this project's API keys, revoked and expired ones too",
    tag=TAG,
    query=PAGE_QUERY,
    responses={200: schemas.ApiKeyList},
    role="admin",
    session_only=KEYS,
)
def list_api_keys(principal: Principal) -> schemas.ApiKeyList:
    page = svc.keys_page(principal, request.args.get("cursor"), request.args.get("limit"))
    return schemas.ApiKeyList(
        api_keys=[api_key_json(k) for k in page.items], cursor=page.cursor, has_more=page.has_more
    )


@endpoint(
    v1,
    "/auth/api-keys/<key_id>",
    "DELETE",
    summary="Revoke an API key",
    tag=TAG,
    responses={200: schemas.Deleted, 404: schemas.Error},
    role="admin",
    session_only=KEYS,
)
def revoke_api_key(principal: Principal, key_id: str) -> schemas.Deleted:
    key = svc.revoke_key(principal, key_id)
    return schemas.Deleted(id=key.id, deleted=True)
