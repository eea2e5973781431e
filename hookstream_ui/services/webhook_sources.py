"""The push sources (webhooks) ingest reads, remembered by each web process.

Reading the source cost a query for every delivery (three round trips on PostgreSQL, with
the pool's ping and the rollback). A remembered source is only ever used on the way to the
writer, which checks in the transaction that stores the delivery that the source is still as
it was remembered (one query per batch); if it changed or is gone, the delivery is not
stored and is received again with the source read afresh. Refusals (unknown source,
suspended organization, address not allowed) are decided on a fresh read only. So every
delivery is judged by the source as it is when the delivery is stored, in every process.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable
from typing import Any

from sqlalchemy import Row, bindparam, or_, select

from ..models import Org, SourceConnection, db
from ..sources import REGISTRY

_SOURCES, _ORGS = SourceConnection.__table__, Org.__table__
PUSH_TYPES = sorted(name for name, kind in REGISTRY.items() if kind.push)
COLUMNS = (
    _SOURCES.c.id,
    _SOURCES.c.org_id,
    _SOURCES.c.env_id,
    _SOURCES.c.config,
    _SOURCES.c.credentials_encrypted,
    _ORGS.c.suspended_at,
    _ORGS.c.suspended_reason,
)
# Built once, from tables rather than entities: building and keying the query per delivery,
# and an ORM session around it, were a fifth of the web processes' time.
_QUERY = (
    select(*COLUMNS)
    .join(_ORGS, _ORGS.c.id == _SOURCES.c.org_id)
    .where(or_(*(_SOURCES.c.short_name == name for name in PUSH_TYPES)))
)
ONE = _QUERY.where(_SOURCES.c.id == bindparam("source_id"))
MANY = _QUERY.where(_SOURCES.c.id.in_(bindparam("ids", expanding=True)))
LIMIT = 1000  # sources remembered per process; past it, all are forgotten and read again

_remembered: dict[str, tuple[Row[Any], str]] = {}


def version(row: Row[Any]) -> str:
    """A digest of everything ingest reads of a source (its secrets only as ciphertext)."""
    return hashlib.blake2b(repr(tuple(row)).encode(), digest_size=12).hexdigest()


def read(source_id: str, fresh: bool = False) -> tuple:
    """(row, version) of a push source, or (None, None) if there is no such source."""
    if not fresh:
        found = _remembered.get(source_id)
        if found is not None:
            return found
    with db.engine.connect() as connection:
        row = connection.execute(ONE, {"source_id": source_id}).first()
    if row is None:
        _remembered.pop(source_id, None)
        return None, None
    if len(_remembered) >= LIMIT:
        _remembered.clear()
    found = _remembered[source_id] = (row, version(row))
    return found


def forget(source_id: str) -> None:
    _remembered.pop(source_id, None)


def current_versions(source_ids: Iterable[str]) -> dict[str, str]:
    """The sources' versions as stored now, read in the caller's transaction."""
    return {row.id: version(row) for row in db.session.execute(MANY, {"ids": sorted(source_ids)})}
