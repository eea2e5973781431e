"""A run of a source that streams changes (ChangeFeed): every bound stream's changes from
one position, each batch applied to its collections and committed with the position in one
transaction; the source then forgets what is before it (a slot advanced), never sooner.

A worker killed between the commit and the source's acknowledgement reads those changes
again and skips them by the committed position: nothing is lost, nothing counted twice."""

from __future__ import annotations

from collections.abc import Callable

from flask import Flask

from ..extensions import db
from ..models import Binding, SyncRun
from ..services import upsert
from ..sources.base import ChangeBatch, ChangeFeed, ReadContext
from ..values.times import utcnow

FEED = "changes"  # the run's checkpoint of its feed, beside each collection's


def apply_batch(run: SyncRun, batch: ChangeBatch, bindings: list[Binding], counted: Callable) -> None:
    """One batch into its collections, with the position, in the caller's transaction."""
    for binding in bindings:
        collection = binding.collection
        if (binding.stream or "") in batch.truncated:
            # Every record the source wrote there: no run id is "" (seen_run_id), so none is kept.
            removed = upsert.remove_unseen(collection, "", run.source_id, batch.committed_at or utcnow())
            run.records_deleted = (run.records_deleted or 0) + removed
        items = batch.changes.get(binding.stream or "")
        if items:
            outcome = upsert.apply(
                collection,
                items,
                received_at=batch.read_at,
                mapping=upsert.Mapping.of(collection, binding, run.id),
            )
            counted(outcome, len(items))
            collection.last_sync_at = utcnow()
    if batch.committed_at is not None:
        # For the run page: the newest change applied, and how long after its commit.
        feed = dict((run.cursor or {}).get(FEED) or {})
        feed["last_change_at"] = batch.committed_at.isoformat()
        feed["lag_ms"] = max(round((utcnow() - batch.committed_at).total_seconds() * 1000), 0)
        run.cursor = {**(run.cursor or {}), FEED: feed}
    # When the feed last moved: a slot whose position stands still while WAL grows is
    # read by nobody (services/feeds.py).
    run.source.feed_position = {**batch.position, "at": utcnow().isoformat()}


def stream_into(
    app: Flask,
    run: SyncRun,
    feed: ChangeFeed,
    ctx: ReadContext,
    bindings: list[Binding],
    guard: Callable[[], None],
    counted: Callable,
    read_ahead: Callable,
) -> None:
    """The feed's changes into the bound collections until its read ends."""
    source = run.source
    committed: dict = {"position": dict(source.feed_position or {})}
    streams = [b.stream or "" for b in bindings]
    batches = feed.read(streams, dict(source.feed_position or {}), ctx, lambda: committed["position"])
    for batch in read_ahead(app, batches):
        guard()
        apply_batch(run, batch, bindings, counted)
        db.session.commit()
        committed["position"] = dict(batch.position)
    # The reader ends ahead of the last commit (it reads ahead): the source learns of that
    # one here, so a slot does not keep its WAL until the next run.
    feed.acknowledge(committed["position"])
