"""/v1/collections/<id>/changes: a collection's change feed, in order, resumable by number."""

from __future__ import annotations

from flask import request

from ..models.principal import Principal
from ..services import changes as svc
from ..services import collections as collection_svc
from . import schemas, v1
from .openapi import endpoint


@endpoint(
    v1,
    "/collections/<ident>/changes",
    "GET",
    summary="A collection's changes, in order",
    tag="records",
    query={
        "after": {
            "type": "integer",
            "minimum": 0,
            "description": "the last number already read (the answer's next_after); none: from the "
            "oldest kept. Changes are kept CHANGES_RETENTION_HOURS (7 days unless configured); from "
            "before the oldest kept answers 410 changes_expired",
        },
        "limit": {"type": "integer", "minimum": 1, "maximum": svc.LIMIT_MAX, "default": svc.LIMIT_DEFAULT},
        "wait": {
            "type": "number",
            "minimum": 0,
            "maximum": svc.WAIT_MAX,
            "default": 0,
            "description": "seconds to wait for a first change when there is none yet",
        },
    },
    responses={200: schemas.ChangeList, 400: schemas.Error, 404: schemas.Error, 410: schemas.Error},
)
def list_changes(principal: Principal, ident: str) -> schemas.ChangeList:
    after, limit, wait = svc.checked_query(request.args)
    collection = collection_svc.get_collection_or_404(principal, ident)
    page = svc.read(collection, after, limit + 1, wait)
    shown = page.changes[:limit]
    return schemas.ChangeList(
        changes=[schemas.ChangeOut(**svc.as_json(c)) for c in shown],
        next_after=shown[-1].seq if shown else page.after,
        last_seq=page.last_seq,
        has_more=len(page.changes) > limit,
    )
