"""The job that turns a collection's word index on: index what is stored, then let searches
use it. Takes an id; the collection's search_index field is the state."""

from __future__ import annotations

from sqlalchemy import update

from ..extensions import db
from ..models import Collection
from ..services import search_index


def reindex_collection(collection_id: str) -> str:
    collection = db.session.get(Collection, collection_id)
    if collection is None or collection.search_index != "building":
        return "skipped"
    count = search_index.index_collection(collection_id)
    # Only if nobody switched it off meanwhile.
    db.session.execute(
        update(Collection)
        .where(Collection.id == collection_id, Collection.search_index == "building")
        .values(search_index="on")
    )
    db.session.commit()
    from ..templating import counted

    return f"indexed {counted(count, 'record')}"
