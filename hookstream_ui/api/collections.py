"""/v1/collections: a project's collections, each answered under `collection`."""

from __future__ import annotations

from typing import Any

from flask import request

from ..models.principal import Principal
from ..services import bindings, live
from ..services import collections as svc
from . import schemas, v1
from .openapi import endpoint, json_body
from .serializers import binding_json, collection_json

TAG = "collections"
LIST_QUERY: dict[str, dict[str, Any]] = {
    "limit": {"type": "integer", "minimum": 1, "maximum": 100, "default": 20},
    "cursor": {"type": "string"},
    "status": {"type": "string"},
    "source_id": {"type": "string"},
    "search": {"type": "string"},
}


@endpoint(
    v1,
    "/collections",
    "POST",
    summary="Create a collection",
    tag=TAG,
    body=svc.CollectionCreate,
    responses={201: schemas.CollectionEnvelope, 404: schemas.Error, 409: schemas.Error},
)
def create_collection(principal: Principal) -> schemas.CollectionEnvelope:
    collection = svc.create_collection(principal, json_body())
    return schemas.CollectionEnvelope(collection=collection_json(collection))


@endpoint(
    v1,
    "/collections",
    "GET",
    summary="List collections",
    tag=TAG,
    query=LIST_QUERY,
    responses={200: schemas.CollectionList},
)
def list_collections(principal: Principal) -> schemas.CollectionList:
    args = request.args
    page = svc.list_collections(
        principal,
        cursor=args.get("cursor"),
        limit=args.get("limit"),
        status=args.get("status"),
        source_id=args.get("source_id"),
        search=args.get("search"),
    )
    states = live.collection_states(page.items)  # the status every page shows
    return schemas.CollectionList(
        collections=[collection_json(c, states[c.id].status) for c in page.items],
        cursor=page.cursor,
        has_more=page.has_more,
    )


@endpoint(
    v1,
    "/collections/<ident>",
    "GET",
    summary="Get a collection by id or slug",
    tag=TAG,
    responses={200: schemas.CollectionEnvelope, 404: schemas.Error},
)
def get_collection(principal: Principal, ident: str) -> schemas.CollectionEnvelope:
    collection = svc.get_collection_or_404(principal, ident)
    return schemas.CollectionEnvelope(collection=collection_json(collection))


@endpoint(
    v1,
    "/collections/<ident>",
    "PATCH",
    summary="Change a collection",
    tag=TAG,
    body=svc.CollectionUpdate,
    responses={200: schemas.CollectionEnvelope, 404: schemas.Error, 409: schemas.Error},
)
def update_collection(principal: Principal, ident: str) -> schemas.CollectionEnvelope:
    collection = svc.get_collection_or_404(principal, ident)
    collection = svc.update_collection(principal, collection, json_body())
    return schemas.CollectionEnvelope(collection=collection_json(collection))


@endpoint(
    v1,
    "/collections/<ident>",
    "DELETE",
    summary="Delete a collection and its records",
    tag=TAG,
    responses={200: schemas.Deleted, 404: schemas.Error},
)
def delete_collection(principal: Principal, ident: str) -> schemas.Deleted:
    collection = svc.get_collection_or_404(principal, ident)
    collection_id = collection.id
    svc.delete_collection(principal, collection)
    return schemas.Deleted(id=collection_id, deleted=True)


@endpoint(
    v1,
    "/collections/<ident>/sources",
    "GET",
    summary="List the sources bound to a collection",
    tag=TAG,
    responses={200: schemas.CollectionSourceList, 404: schemas.Error},
)
def list_collection_sources(principal: Principal, ident: str) -> schemas.CollectionSourceList:
    collection = svc.get_collection_or_404(principal, ident)
    return schemas.CollectionSourceList(sources=[binding_json(b) for b in collection.bindings])


@endpoint(
    v1,
    "/collections/<ident>/sources",
    "POST",
    summary="Add a source to a collection, with how its records map in",
    tag=TAG,
    body=bindings.BindingFields,
    responses={201: schemas.CollectionSourceEnvelope, 404: schemas.Error, 409: schemas.Error},
)
def add_collection_source(principal: Principal, ident: str) -> schemas.CollectionSourceEnvelope:
    collection = svc.get_collection_or_404(principal, ident)
    binding = bindings.add_source(principal, collection, json_body())
    return schemas.CollectionSourceEnvelope(source=binding_json(binding))


@endpoint(
    v1,
    "/collections/<ident>/sources/<source_id>",
    "PATCH",
    summary="Change how a bound source's records map into a collection",
    tag=TAG,
    body=bindings.BindingFields,
    responses={200: schemas.CollectionSourceEnvelope, 404: schemas.Error},
)
def update_collection_source(
    principal: Principal, ident: str, source_id: str
) -> schemas.CollectionSourceEnvelope:
    collection = svc.get_collection_or_404(principal, ident)
    binding = bindings.update_source(
        principal, collection, bindings.binding_or_404(collection, source_id), json_body()
    )
    return schemas.CollectionSourceEnvelope(source=binding_json(binding))


@endpoint(
    v1,
    "/collections/<ident>/sources/<source_id>",
    "DELETE",
    summary="Remove a source from a collection (its records stay)",
    tag=TAG,
    responses={200: schemas.Deleted, 404: schemas.Error, 409: schemas.Error},
)
def remove_collection_source(principal: Principal, ident: str, source_id: str) -> schemas.Deleted:
    collection = svc.get_collection_or_404(principal, ident)
    bindings.remove_source(principal, collection, bindings.binding_or_404(collection, source_id))
    return schemas.Deleted(id=source_id, deleted=True)
