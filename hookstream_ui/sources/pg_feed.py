"""A PostgreSQL source's change feed: its slot's transactions, as batches of records per
bound table, each batch ending at a position the engine commits with it."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import psycopg

from ..values.records import Incoming
from . import pg_replication as replication
from .base import ChangeBatch, ChangeFeed, ReadContext, SourceError
from .pgoutput import Change, Relation, Truncate, lsn_of, lsn_text

POLL_SECONDS = 0.1  # between looks at a slot that had nothing: changes arrive within this
# How often a slot with nothing for its tables is moved along the server's WAL anyway.
IDLE_BYTES = 16 * 1024 * 1024
IDLE_SECONDS = 10.0


# A dropped connection is made again for this long before the run fails its attempt.
RECONNECT_SECONDS = 60.0
RECONNECT_PAUSE = 0.5
log = logging.getLogger(__name__)


@dataclass
class _Progress:
    """Where a read stands, kept across the connections it makes."""

    position: dict
    caught_up_since: float | None = None
    moved_at: float = field(default_factory=time.monotonic)


class PgChangeFeed(ChangeFeed):
    def __init__(
        self,
        source_id: str,
        credentials: dict,
        config: dict,
        connect: Callable[[dict], psycopg.Connection[Any]],
        tables_of: Callable[[list[str]], dict[tuple[str, str], str]],
        key: str,
    ) -> None:
        self.slot, self.publication = replication.names(source_id)
        self.credentials, self.config, self.connect = credentials, config, connect
        self.tables_of = tables_of  # (schema, table) -> stream, for the streams given
        self.key = key

    def prepare(self, streams: list[str]) -> dict:
        tables = list(self.tables_of(streams))
        with self.connect(self.credentials) as pg:
            problems = replication.prerequisites(pg, self.slot, self.publication, tables)
            if problems:
                raise SourceError("Logical replication cannot start: " + "; ".join(problems), retry=False)
            try:
                return {"lsn": replication.ensure(pg, self.slot, self.publication, tables)}
            except psycopg.Error as exc:
                raise SourceError(f"PostgreSQL refused the replication slot: {_said(exc)}") from None

    def acknowledge(self, position: dict) -> None:
        if position.get("lsn"):
            with self.connect(self.credentials) as pg:
                replication.advance(pg, self.slot, position["lsn"])

    def lag(self) -> dict | None:
        with self.connect(self.credentials) as pg:
            said = replication.lag(pg, self.slot)
        return None if said is None else {**said, "slot": self.slot, "publication": self.publication}

    def forget(self) -> None:
        with self.connect(self.credentials) as pg:
            replication.drop(pg, self.slot, self.publication)

    def read(
        self, streams: list[str], position: dict, ctx: ReadContext, committed: Callable[[], dict | None]
    ) -> Iterator[ChangeBatch]:
        """Batches until caught up for `ctx.stream_seconds`. A dropped connection (the server
        restarting, the network) is made again from the last batch handed on, for up to
        RECONNECT_SECONDS, before the run's own retries take over."""
        tables = self.tables_of(streams)
        state = _Progress(position)
        lost_since: float | None = None
        while True:
            try:
                with self.connect(self.credentials) as pg:
                    lost_since = None
                    yield from self._look(pg, tables, state, ctx, committed)
                    return
            except (psycopg.OperationalError, SourceError) as exc:
                if isinstance(exc, SourceError) and not exc.retry:
                    raise
                lost_since = lost_since or time.monotonic()
                if time.monotonic() - lost_since >= RECONNECT_SECONDS or ctx.stopping():
                    raise _lost(exc) from None
                log.warning("replication connection lost, connecting again: %s", _said_any(exc))
                time.sleep(RECONNECT_PAUSE)

    def _look(
        self,
        pg: psycopg.Connection[Any],
        tables: dict[tuple[str, str], str],
        state: _Progress,
        ctx: ReadContext,
        committed: Callable[[], dict | None],
    ) -> Iterator[ChangeBatch]:
        """On one connection: look at the slot until caught up long enough, advancing it as
        the engine commits."""
        pg.execute("SET statement_timeout = '15min'")
        acknowledged: str | None = None
        while not ctx.stopping():
            done = committed()
            if done and done.get("lsn") and done["lsn"] != acknowledged:
                replication.advance(pg, self.slot, done["lsn"])
                acknowledged = done["lsn"]
            sent = False
            try:
                # Before the look: every transaction committed before it is in the look.
                floor = str(_one(pg, "SELECT pg_current_wal_lsn()::text"))
                for batch in self._batches(pg, tables, state.position, ctx):
                    state.position, sent = batch.position, True
                    yield batch
            except psycopg.OperationalError:
                raise  # the connection: made again by read()
            except psycopg.Error as exc:
                raise SourceError(f"PostgreSQL could not read the replication slot: {_said(exc)}") from None
            if sent:
                state.caught_up_since = None
                continue
            if _idle_move(state.position, floor, state.moved_at):
                # Nothing for these tables, but the server's WAL goes on (other tables, other
                # databases): the slot is moved to where the look began, or it would keep
                # all of it until one of these tables changes.
                state.position, state.moved_at = {"lsn": floor}, time.monotonic()
                yield ChangeBatch({}, state.position)
            state.caught_up_since = state.caught_up_since or time.monotonic()
            if time.monotonic() - state.caught_up_since >= ctx.stream_seconds:
                return
            time.sleep(POLL_SECONDS)

    def _batches(
        self,
        pg: psycopg.Connection[Any],
        tables: dict[tuple[str, str], str],
        position: dict,
        ctx: ReadContext,
    ) -> Iterator[ChangeBatch]:
        """One look at the slot: its waiting transactions, cut into batches of about
        `ctx.batch_size` changes (a truncate starts a batch of its own)."""
        pending: list[tuple[Relation, Change, Any]] = []
        truncated: list[str] = []
        at = position
        committed_at = None
        for txn in replication.transactions(
            pg, self.slot, self.publication, position, ctx.batch_size * 4, ctx.batch_size
        ):
            for index, change in enumerate(txn.changes):
                if isinstance(change, Truncate):
                    if pending or truncated:
                        yield self._batch(pg, tables, pending, truncated, at, committed_at)
                        pending, truncated = [], []
                    truncated = [
                        tables[t] for t in ((r.schema, r.name) for r in change.relations) if t in tables
                    ]
                    at = _within(position, txn.final_lsn, txn.first + index + 1)
                    continue
                if (change.relation.schema, change.relation.name) in tables:
                    pending.append((change.relation, change, txn.committed_at))
            at = (
                {"lsn": lsn_text(txn.end_lsn)}
                if txn.end_lsn
                else _within(at, txn.final_lsn, txn.first + len(txn.changes))
            )
            committed_at = txn.committed_at
            if len(pending) >= ctx.batch_size or txn.end_lsn is None:
                yield self._batch(pg, tables, pending, truncated, at, committed_at)
                pending, truncated = [], []
        if pending or truncated or at != position:
            yield self._batch(pg, tables, pending, truncated, at, committed_at)

    def _batch(
        self,
        pg: psycopg.Connection[Any],
        tables: dict[tuple[str, str], str],
        pending: list[tuple[Relation, Change, Any]],
        truncated: list[str],
        position: dict,
        committed_at: Any,
    ) -> ChangeBatch:
        """The changes as records: PostgreSQL makes each row's JSON (rows_json), in runs of
        one relation (as last described) at a time, order kept."""
        changes: dict[str, list] = {}
        run: list[tuple[Relation, Change, Any]] = []
        for entry in [*pending, None]:
            # A new Relation message (a column added or dropped) starts a run of its own: the
            # values are zipped with the columns of the relation they were sent with.
            if run and (entry is None or entry[0] is not run[0][0]):
                self._records(pg, tables, run, changes)
                run = []
            if entry is not None:
                run.append(entry)
        return ChangeBatch(changes, position, truncated, committed_at=committed_at)

    def _records(
        self,
        pg: psycopg.Connection[Any],
        tables: dict[tuple[str, str], str],
        run: list[tuple[Relation, Change, Any]],
        into: dict[str, list],
    ) -> None:
        relation = run[0][0]
        stream = tables[(relation.schema, relation.name)]
        values = [(c.new if c.op != "delete" else c.old) or [] for _, c, _ in run]
        made = replication.rows_json(pg, relation, self.key, values)
        items = into.setdefault(stream, [])
        for (_, change, committed_at), (key, raw) in zip(run, made, strict=True):
            items.append(
                Incoming(
                    None,
                    committed_at,
                    raw=raw,
                    key=key,
                    key_path=f"$.{self.key}",
                    event_type="deleted" if change.op == "delete" else None,
                )
            )


def _within(position: dict, final_lsn: int, applied: int) -> dict:
    """Part of a transaction committed: where the last whole one ended, and how far in."""
    return {"lsn": position.get("lsn"), "txn": lsn_text(final_lsn), "applied": applied}


def _said(exc: psycopg.Error) -> str:
    return (exc.diag.message_primary or "").strip() or type(exc).__name__


def _said_any(exc: Exception) -> str:
    return _said(exc) if isinstance(exc, psycopg.Error) else str(exc)


def _lost(exc: Exception) -> SourceError:
    return SourceError(
        f"The replication connection to PostgreSQL was lost for {RECONNECT_SECONDS:.0f} s: {_said_any(exc)}"
    )


def _one(pg: psycopg.Connection[Any], query: str) -> Any:
    row = pg.execute(query).fetchone()
    if row is None:
        raise SourceError("PostgreSQL answered no row where one is always expected")
    return row[0]


def _idle_move(position: dict, floor: str, moved_at: float) -> bool:
    """Whether an idle slot should be moved to `floor`: not in the middle of a transaction,
    and far enough on (IDLE_BYTES) or long enough since (IDLE_SECONDS) that the commit is
    worth it."""
    if position.get("txn"):
        return False
    ahead = lsn_of(floor) - lsn_of(position.get("lsn") or "0/0")
    return ahead > 0 and (ahead >= IDLE_BYTES or time.monotonic() - moved_at >= IDLE_SECONDS)
