"""A run of a source that streams changes (ChangeFeed): every bound stream's changes from
one position, each batch applied to its collections and committed with the position in one
transaction; the source then forgets what is before it (a slot advanced), never sooner.

A worker killed between the commit and the source's acknowledgement reads those changes
again and skips them by the committed position: nothing is lost, nothing counted twice."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, replace
from datetime import datetime

from flask import Flask

from ..extensions import db
from ..models import Binding, Collection, SyncRun
from ..services import upsert
from ..sources.base import ChangeBatch, ChangeFeed, ReadContext
from ..values.times import utcnow

FEED = SyncRun.FEED  # the run's checkpoint of its feed, beside each collection's


@dataclass(frozen=True)
class Target:
    """Where one stream's changes go, as the stream began: a binding removed or changed
    meanwhile ends the stream (`rebound`) rather than changing under it."""

    stream: str
    collection: Collection
    mapping: upsert.Mapping


def targets_of(run: SyncRun, bindings: list[Binding]) -> list[Target]:
    return [
        Target(b.stream or "", b.collection, upsert.Mapping.of(b.collection, b, run.id)) for b in bindings
    ]


def apply_batch(run: SyncRun, batch: ChangeBatch, targets: list[Target], counted: Callable) -> None:
    """One batch into its collections, with the position, in the caller's transaction."""
    applied = 0
    for target in targets:
        collection = target.collection
        if target.stream in batch.truncated:
            removed = upsert.remove_all_of(collection, run.source_id, batch.committed_at or utcnow(), run.id)
            run.records_deleted = (run.records_deleted or 0) + removed
            applied += removed
        items = batch.changes.get(target.stream)
        if items:
            outcome = upsert.apply(
                collection, items, received_at=batch.read_at, mapping=target.mapping, in_order=True
            )
            counted(outcome, len(items))
            applied += len(items)
            collection.last_sync_at = utcnow()
    _live_figures(run, batch, applied)
    # When the feed last moved: a slot whose position stands still while WAL grows is
    # read by nobody (services/feeds.py).
    run.source.feed_position = {**batch.position, "at": utcnow().isoformat()}


def _live_figures(run: SyncRun, batch: ChangeBatch, applied: int) -> None:
    """For the run page: the newest change applied, how long after its commit, and changes
    per second over the last SyncRun.RATE_WINDOW_SECONDS or so."""
    feed = dict((run.cursor or {}).get(FEED) or {})
    now = utcnow()
    if batch.committed_at is not None:
        feed["last_change_at"] = batch.committed_at.isoformat()
        feed["lag_ms"] = max(round((now - batch.committed_at).total_seconds() * 1000), 0)
    began = datetime.fromisoformat(feed["window_from"]) if feed.get("window_from") else None
    counted = feed.get("window_count", 0) + applied
    if began is None:
        feed["window_from"], feed["window_count"] = now.isoformat(), applied
    elif (now - began).total_seconds() >= SyncRun.RATE_WINDOW_SECONDS:
        feed["per_second"] = round(counted / (now - began).total_seconds(), 1)
        feed["rate_at"] = now.isoformat()
        feed["window_from"], feed["window_count"] = now.isoformat(), 0
    else:
        feed["window_count"] = counted
    run.cursor = {**(run.cursor or {}), FEED: feed}


def stream_into(
    app: Flask,
    run: SyncRun,
    feed: ChangeFeed,
    ctx: ReadContext,
    bindings: list[Binding],
    guard: Callable[[], None],
    counted: Callable,
    read_ahead: Callable,
    rebound: Callable[[], bool] = lambda: False,
) -> None:
    """The feed's changes into the bound collections until its read ends, or until the
    source's bindings change (`rebound`): a table added or removed, a collection paused. The
    run then ends with all it applied committed, and the next one starts from the new set."""
    source = run.source
    committed: dict = {"position": dict(source.feed_position or {})}
    targets = targets_of(run, bindings)
    streams = [t.stream for t in targets]
    stopping = ctx.stopping
    reading = replace(ctx, stopping=lambda: stopping() or rebound())
    batches = feed.read(streams, dict(source.feed_position or {}), reading, lambda: committed["position"])
    for batch in read_ahead(app, batches):
        guard()
        if rebound():
            break  # not applied: the next run reads it again from the committed position
        apply_batch(run, batch, targets, counted)
        db.session.commit()
        committed["position"] = dict(batch.position)
    # The reader ends ahead of the last commit (it reads ahead): the source learns of that
    # one here, so a slot does not keep its WAL until the next run.
    feed.acknowledge(committed["position"])
    if rebound():
        # The next run starts at once, whatever the schedule: a table just bound waits for
        # its snapshot.
        run.cursor = {**(run.cursor or {}), FEED: {**(run.cursor or {}).get(FEED, {}), "rebound": True}}
        db.session.commit()
