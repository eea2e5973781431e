"""Delivery: each destination's followed collections' changes, sent in order per key, at
least once, with the change's id as the idempotency key.

One round of a destination:
1. Retries that are due: the earliest undelivered change of each key, one per key.
2. New changes after each subscription's place, filtered. A change whose key has one
   undelivered waits behind it (a `waiting` Delivery); a key seen twice in the round is sent
   in a later wave of the same round, after its first change was answered.
3. Each wave is sent concurrently, then every answer is written in one transaction with the
   subscriptions' new places: a failure becomes a Delivery retrying on the schedule (dead
   after the last attempt), a success that was a retry lets the next waiting change of its
   key go.

A process killed before that transaction commits sends the round's changes again (within the
attempt they were in), never skips one. A destination failing BREAKER_FAILURES times in a row
opens its circuit: nothing is sent until a probe (one change) after a pause that doubles each
time, up to PROBE_MAX_SECONDS (PROBE_SLOW_SECONDS once it has been away long); a probe
answered closes it. A probe that fails is not an attempt of its change.
"""

from __future__ import annotations

import logging
import random
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any, NamedTuple

from flask import Flask
from sqlalchemy import bindparam, insert, select, update

from ..destinations import DestinationType, Outcome
from ..extensions import db
from ..models import Delivery, DeliveryAttempt, Destination, RecordChange
from ..models.base import new_id
from ..services import destinations as svc
from ..values import documents, jsonpaths
from ..values.times import as_utc, utcnow

log = logging.getLogger(__name__)

# The retry schedule: attempt n (n >= 1 failed) waits BACKOFF_FIRST * 2**(n-1) seconds, at
# most BACKOFF_MAX, each spread by +-20% (jitter, so a recovering receiver is not hit by
# every retry at once). MAX_ATTEMPTS in all: about 27 hours from the first.
BACKOFF_FIRST, BACKOFF_MAX, MAX_ATTEMPTS, JITTER = 0.1, 3600.0, 40, 0.2
BREAKER_FAILURES = 10  # in a row: a receiver failing one request in five never trips it
# A probe is one request: cheap enough to send every second to a receiver that is away, so
# one that is back is found within PROBE_MAX_SECONDS (at 5 s, the bench's catch-up after a
# 10 s outage began up to 5 s late). After PROBES_QUICK probes (about ten minutes away), one
# each PROBE_SLOW_SECONDS: a receiver away for days is not probed, and logged, 86,400 times a day.
PROBE_FIRST_SECONDS, PROBE_MAX_SECONDS = 0.5, 1.0
PROBES_QUICK, PROBE_SLOW_SECONDS = 600, 30.0
# New changes looked at per subscription and round: a round's answers commit together, so
# this bounds how long a delivered change waits for its round (and what a kill sends again).
WINDOW = 250
SENDERS = 32  # requests in flight per process
IDLE_SECONDS = 0.05  # between rounds with nothing to send


def backoff(attempts: int, rng: Callable[[], float] = random.random) -> float:
    base = min(BACKOFF_FIRST * 2 ** (attempts - 1), BACKOFF_MAX)
    return base * (1 - JITTER + 2 * JITTER * rng())


@dataclass
class _Item:
    change: Any  # a record_changes row
    delivery: Any = None  # a retry: its deliveries row (id, attempts)


@dataclass
class _Round:
    destination: Destination
    now: datetime
    waves: list[list[_Item]] = field(default_factory=list)
    places: dict[str, int] = field(default_factory=dict)  # collection -> its subscription's new place
    waiting: list[Any] = field(default_factory=list)
    expired: list[Any] = field(default_factory=list)  # owed deliveries rows, their change pruned
    probe: bool = False
    # What the answers do to the deliveries table, written by _settle in a statement each.
    new_rows: list[dict] = field(default_factory=list)
    updates: list[dict] = field(default_factory=list)


class Deliverer:
    """Every active destination's rounds, in one process (`flask deliverer`)."""

    def __init__(self, app: Flask) -> None:
        self.app = app
        self.senders: dict[str, tuple[str, DestinationType]] = {}  # id -> (version, sender)
        # Each sending thread in the app's context for good: the network guard reads its config.
        self.pool = ThreadPoolExecutor(SENDERS, thread_name_prefix="deliver", initializer=self._in_app)
        self.stopped = threading.Event()

    def run(self) -> None:
        with self.app.app_context():
            while not self.stopped.is_set():
                sent = self.tick()
                db.session.remove()
                if not sent:
                    self.stopped.wait(IDLE_SECONDS)

    def tick(self) -> int:
        ids = db.session.scalars(select(Destination.id).where(Destination.status == "active")).all()
        sent = 0
        for destination_id in ids:
            try:
                sent += self.round(destination_id)
            except Exception:  # one destination's failure must not stop the others
                db.session.rollback()
                log.exception("delivery round of %s failed", destination_id)
        return sent

    def round(self, destination_id: str) -> int:
        destination = db.session.get(Destination, destination_id)
        if destination is None:
            return 0
        now = utcnow()
        if destination.open_until is not None and as_utc(destination.open_until) > now:
            db.session.rollback()
            return 0
        plan = _plan(destination, now)
        sender = self._sender(destination)
        failed_keys: set[tuple[str, str]] = set()
        outcomes: list[tuple[_Item, Outcome]] = []
        in_a_row = [destination.consecutive_failures or 0]
        # A probe is one change; the rest stays unsent, hence unsettled (_settle).
        waves = [plan.waves[0][:1]] if plan.probe and plan.waves else plan.waves
        for wave in waves:
            items = [i for i in wave if (i.change.collection_id, i.change.record_key) not in failed_keys]
            if not self._send_wave(sender, items, outcomes, failed_keys, in_a_row):
                break  # the rest of the round is left for after the circuit's pause
        _settle(plan, outcomes, failed_keys)
        db.session.commit()
        return len(outcomes)

    def _send_wave(
        self,
        sender: DestinationType,
        items: list[_Item],
        outcomes: list[tuple[_Item, Outcome]],
        failed_keys: set[tuple[str, str]],
        in_a_row: list[int],
    ) -> bool:
        """The wave's changes, SENDERS in flight at a time (no change waits for another's
        answer but its key's earlier one, in an earlier wave); False once BREAKER_FAILURES
        failed in a row, the changes not yet started then left unsent."""
        # Each change's document is made here, not in the sending thread: a retry's change is an
        # ORM object of this thread's session.
        futures = [
            self.pool.submit(sender.send, _document(i.change, sender.takes_raw_record))
            for i in items[:SENDERS]
        ]
        tripped = False
        for index, item in enumerate(items):
            if tripped and index >= len(futures):
                break  # not started: left unsent
            outcome = futures[index].result()
            if not tripped and len(futures) < len(items):  # a sliding window of SENDERS
                nxt = items[len(futures)].change
                futures.append(self.pool.submit(sender.send, _document(nxt, sender.takes_raw_record)))
            outcomes.append((item, outcome))
            in_a_row[0] = 0 if outcome.ok else in_a_row[0] + 1
            if not outcome.ok:
                failed_keys.add((item.change.collection_id, item.change.record_key))
            tripped = tripped or in_a_row[0] >= BREAKER_FAILURES
        return not tripped

    def _in_app(self) -> None:
        self.app.app_context().push()

    def _sender(self, destination: Destination) -> DestinationType:
        """One per destination, kept for its connections; made again once what it sends with
        changes (not its `updated_at`: every round's answers change that)."""
        version = documents.dumps([destination.config, destination.secrets_encrypted])
        held = self.senders.get(destination.id)
        if held is not None and held[0] == version:
            return held[1]
        if held is not None:
            held[1].close()
        sender = svc.kind_of(destination)(destination.id, destination.config, svc.secrets_of(destination))
        self.senders[destination.id] = (version, sender)
        return sender

    def stop(self) -> None:
        self.stopped.set()
        self.pool.shutdown(wait=True)
        for _, sender in self.senders.values():
            sender.close()


def _document(change: Any, raw: bool) -> dict[str, Any]:
    """The change as destinations take it; the record as its JSON text (`record_json`) for
    one that sends it on as it is, parsed (`record`) for the others."""
    doc = {
        "id": change_id(change),
        "seq": change.seq,
        "op": change.op,
        "key": change.record_key,
        "collection_id": change.collection_id,
        "event_type": change.event_type,
        "event_id": change.event_id,
        "run_id": change.run_id,
        "source_id": change.source_id,
        "changed_at": as_utc(change.changed_at).isoformat(),
    }
    if raw:
        doc["record_json"] = change.data
    else:
        doc["record"] = documents.loads(change.data) if change.data is not None else None
    return doc


def change_id(change: Any) -> str:
    """The change's id: the same on every attempt, for the receiver to drop repeats by."""
    return f"chg_{change.collection_id.removeprefix('col_')}_{change.seq}"


def _plan(destination: Destination, now: datetime) -> _Round:
    plan = _Round(destination, now, probe=destination.open_until is not None)
    waves_of: dict[tuple[str, str], int] = {}  # key -> the wave its last change goes in

    def place(item: _Item) -> None:
        key = (item.change.collection_id, item.change.record_key)
        wave = waves_of.get(key, -1) + 1
        waves_of[key] = wave
        while len(plan.waves) <= wave:
            plan.waves.append([])
        plan.waves[wave].append(item)

    for delivery, change in _due_retries(destination, now):
        if change is None:
            plan.expired.append(delivery)
        else:
            place(_Item(change, delivery))
    held = _held_keys(destination)
    for sub in destination.subscriptions:
        window = _window(destination, sub.collection_id, sub.after)
        for change in window:
            if not _takes(destination.filters or {}, change):
                continue
            if (change.collection_id, change.record_key) in held:
                plan.waiting.append(change)
            else:
                place(_Item(change))
        if window:
            plan.places[sub.collection_id] = window[-1].seq
    return plan


def _window(destination: Destination, collection_id: str, after: int) -> list[Any]:
    """The next new changes of the collection, without those already held as a Delivery (a
    round that stopped short of them settles them again)."""
    # Rows, not ORM objects: a round reads up to a thousand, and only reads them.
    window = list(
        db.session.execute(
            select(RecordChange.__table__)
            .where(RecordChange.collection_id == collection_id, RecordChange.seq > after)
            .order_by(RecordChange.seq)
            .limit(WINDOW)
        ).all()
    )
    if not window:
        return window
    have = set(
        db.session.scalars(
            select(Delivery.seq).where(
                Delivery.destination_id == destination.id,
                Delivery.collection_id == collection_id,
                Delivery.seq > after,
                Delivery.seq <= window[-1].seq,
            )
        )
    )
    return [c for c in window if c.seq not in have] if have else window


class _Owed(NamedTuple):
    """A deliveries row a round acts on: no ORM object, as a round may hold hundreds."""

    id: str
    attempts: int
    collection_id: str
    record_key: str


def _due_retries(destination: Destination, now: datetime) -> list[tuple[_Owed, Any]]:
    """Deliveries due again, with their changes' rows; None for one the feed's retention
    pruned before it was delivered (it can never be sent: it is dead, and its key goes on)."""
    deliveries, changes = Delivery.__table__, RecordChange.__table__
    rows = db.session.execute(
        select(
            deliveries.c.id.label("owed_id"),
            deliveries.c.attempts.label("owed_attempts"),
            deliveries.c.collection_id.label("owed_collection_id"),
            deliveries.c.record_key.label("owed_key"),
            *changes.c,
        )
        .select_from(deliveries)
        .outerjoin(
            changes,
            (changes.c.collection_id == deliveries.c.collection_id) & (changes.c.seq == deliveries.c.seq),
        )
        .where(
            deliveries.c.destination_id == destination.id,
            deliveries.c.status == "retrying",
            deliveries.c.next_attempt_at <= now,
        )
        .order_by(deliveries.c.seq)
        .limit(WINDOW)
    ).all()
    return [
        (
            _Owed(r.owed_id, r.owed_attempts or 0, r.owed_collection_id, r.owed_key),
            r if r.seq is not None else None,
        )
        for r in rows
    ]


def _held_keys(destination: Destination) -> set[tuple[str, str]]:
    """Keys with a change not yet delivered: their later changes wait behind it."""
    rows = db.session.execute(
        select(Delivery.collection_id, Delivery.record_key).where(
            Delivery.destination_id == destination.id, Delivery.status.in_(("retrying", "waiting"))
        )
    ).all()
    return {(c, k) for c, k in rows}


def _takes(filters: dict, change: RecordChange) -> bool:
    if filters.get("ops") and change.op not in filters["ops"]:
        return False
    if filters.get("event_types") and change.event_type not in filters["event_types"]:
        return False
    where = filters.get("where") or []
    if not where:
        return True
    record = documents.loads(change.data) if change.data else {}
    for condition in where:
        value = jsonpaths.first_value(condition["path"], record)
        op = condition.get("op", "eq")
        if (op == "exists" and value is None) or (op == "missing" and value is not None):
            return False
        if (op == "eq" and value != condition.get("value")) or (
            op == "ne" and value == condition.get("value")
        ):
            return False
    return True


def _settle(plan: _Round, outcomes: list[tuple[_Item, Outcome]], failed_keys: set[tuple[str, str]]) -> None:
    """Every answer, and each subscription's new place: up to the first new change left
    unsent for no reason of its key (a probe, a round cut short), which the next round takes.
    The deliveries table is written with Core statements, one of each kind a round: the ORM's
    flush of hundreds of rows was most of a busy round's CPU."""
    destination, now = plan.destination, plan.now
    _unsent(plan, {(item.change.collection_id, item.change.seq) for item, _ in outcomes}, failed_keys)
    for change in plan.waiting:
        if change.seq <= plan.places.get(change.collection_id, change.seq - 1):
            plan.new_rows.append(_row(destination, change, "waiting", 0, None, None, now))
    logged = []
    released = _expire(plan)
    answered_at = utcnow()  # a circuit's pause starts when its failures are known, not at the round's start
    for item, outcome in outcomes:
        attempt = (item.delivery.attempts if item.delivery else 0) + 1
        logged.append(_attempt(destination, item.change, attempt, outcome, now))
        _after_answer(plan, item, outcome, attempt, released)
        _breaker(destination, outcome, answered_at)
    connection = db.session.connection()
    if plan.new_rows:  # first: a retry answered this round lets a change waiting on it go
        connection.execute(insert(_DELIVERIES), plan.new_rows)
    if plan.updates:
        connection.execute(_UPDATE, plan.updates)
    _release(destination, released, now)
    if logged:
        connection.execute(insert(DeliveryAttempt.__table__), logged)
    for sub in destination.subscriptions:
        if sub.collection_id in plan.places:
            sub.after = max(sub.after, plan.places[sub.collection_id])


def _unsent(plan: _Round, answered: set[tuple[str, int]], failed_keys: set[tuple[str, str]]) -> None:
    """The round's new changes left unsent: behind their key's failure (waiting), or for the
    next round (their subscription's place stays before them)."""
    for wave in plan.waves:
        for item in wave:
            change = item.change
            if item.delivery is not None or (change.collection_id, change.seq) in answered:
                continue
            if (change.collection_id, change.record_key) in failed_keys:
                plan.waiting.append(change)  # behind its key's failure of this round
            elif change.collection_id in plan.places:
                plan.places[change.collection_id] = min(plan.places[change.collection_id], change.seq - 1)


_DELIVERIES = Delivery.__table__
_UPDATE = (
    update(_DELIVERIES)
    .where(_DELIVERIES.c.id == bindparam("owed"))
    .values(
        status=bindparam("to_status"),
        attempts=bindparam("to_attempts"),
        next_attempt_at=bindparam("to_when"),
        last_error=bindparam("to_error"),
        updated_at=bindparam("to_at"),
    )
)


def _changed(
    row: _Owed, status: str, attempts: int, when: datetime | None, error: str | None, now: datetime
) -> dict:
    return {
        "owed": row.id,
        "to_status": status,
        "to_attempts": attempts,
        "to_when": when,
        "to_error": error,
        "to_at": now,
    }


def _expire(plan: _Round) -> set[tuple[str, str]]:
    """Owed deliveries whose change is gone: dead, and their keys free to go on."""
    error = "its change was pruned from the feed before it could be delivered"
    plan.updates.extend(_changed(row, "dead", row.attempts, None, error, plan.now) for row in plan.expired)
    return {(row.collection_id, row.record_key) for row in plan.expired}


def _after_answer(plan: _Round, item: _Item, outcome: Outcome, attempt: int, released: set) -> None:
    """The change's delivery as the answer leaves it; `released` gets the key when the key's
    next waiting change may go."""
    change, row, now = item.change, item.delivery, plan.now
    if outcome.ok:
        plan.destination.last_delivered_at = now
        if row is not None:
            plan.updates.append(_changed(row, "delivered", attempt, None, None, now))
            released.add((change.collection_id, change.record_key))
        return
    when: datetime | None
    if plan.probe:
        # A probe tests the destination, not the change: its failure is the circuit's (whose
        # pause grows), so the change keeps its attempts and is the next probe. Counted, a
        # receiver away for minutes made its probe change dead, and its backoff (the same row
        # probed again and again) held its key back long after the receiver returned.
        attempt, dead, when = attempt - 1, False, now
    else:
        dead = attempt >= MAX_ATTEMPTS
        when = None if dead else now + timedelta(seconds=backoff(attempt))
    status = "dead" if dead else "retrying"
    if row is None:
        plan.new_rows.append(_row(plan.destination, change, status, attempt, when, outcome.error, now))
    else:
        plan.updates.append(_changed(row, status, attempt, when, outcome.error, now))
    if dead:
        released.add((change.collection_id, change.record_key))  # it goes on without it


def _release(destination: Destination, released: set[tuple[str, str]], now: datetime) -> None:
    """For each key, its next waiting change goes now: one query for the round's keys."""
    if not released:
        return
    keys = sorted({k for _, k in released})
    waiting = db.session.execute(
        select(_DELIVERIES.c.id, _DELIVERIES.c.collection_id, _DELIVERIES.c.record_key)
        .where(
            _DELIVERIES.c.destination_id == destination.id,
            _DELIVERIES.c.status == "waiting",
            _DELIVERIES.c.record_key.in_(keys),
        )
        .order_by(_DELIVERIES.c.seq)
    )
    go = []
    for row in waiting:
        key = (row.collection_id, row.record_key)
        if key in released:
            go.append(row.id)
            released.discard(key)
    if go:
        db.session.execute(
            update(_DELIVERIES)
            .where(_DELIVERIES.c.id.in_(go))
            .values(status="retrying", next_attempt_at=now, updated_at=now)
        )


def _breaker(destination: Destination, outcome: Outcome, now: datetime) -> None:
    if outcome.ok:
        destination.consecutive_failures, destination.open_until, destination.opened_count = 0, None, 0
        destination.last_error = None
        return
    destination.consecutive_failures = (destination.consecutive_failures or 0) + 1
    destination.last_error = outcome.error
    if destination.consecutive_failures >= BREAKER_FAILURES or destination.open_until is not None:
        opened = destination.opened_count or 0
        pause = (
            PROBE_SLOW_SECONDS
            if opened >= PROBES_QUICK
            else min(PROBE_FIRST_SECONDS * 2 ** min(opened, 8), PROBE_MAX_SECONDS)
        )
        destination.open_until = now + timedelta(seconds=pause)
        destination.opened_count = (destination.opened_count or 0) + 1


def _row(
    destination: Destination,
    change: Any,
    status: str,
    attempts: int,
    when: datetime | None,
    error: str | None,
    now: datetime,
) -> dict:
    return {
        "id": new_id("dlv"),
        "destination_id": destination.id,
        "collection_id": change.collection_id,
        "seq": change.seq,
        "record_key": change.record_key,
        "status": status,
        "attempts": attempts,
        "next_attempt_at": when,
        "last_error": error,
        "created_at": now,
        "updated_at": now,
    }


def _attempt(destination: Destination, change: Any, attempt: int, outcome: Outcome, now: datetime) -> dict:
    return {
        "destination_id": destination.id,
        "collection_id": change.collection_id,
        "seq": change.seq,
        "record_key": change.record_key,
        "attempt": attempt,
        "ok": outcome.ok,
        "status_code": outcome.status_code,
        "error": outcome.error,
        "request": outcome.request,
        "response": outcome.response,
        "duration_ms": outcome.duration_ms,
        "at": now,
    }
