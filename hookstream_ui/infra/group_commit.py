"""Group commit for ingest: the deliveries waiting in one process share one transaction.

Every delivery is stored and applied before it is answered. One transaction per delivery
made the database the bottleneck (on SQLite, its single writer lock above all), so a writer
thread per process takes whatever deliveries are waiting, writes their events and their
upserts in one transaction, and then wakes each request with its own outcome. A delivery
that arrives alone waits for nobody: the writer starts on it at once.

If a shared transaction fails, each of its deliveries is retried alone, so one bad
delivery cannot fail the others; one that still cannot be applied is stored as `failed`
(a backfill can replay it). Only a database that cannot store the event at all fails the
request.

The writer is shared fairly between sources: each source's deliveries wait in a line of
their own, and a batch takes from every source that has some waiting, in turns, up to
SOURCE_BUDGET bytes each (at least one delivery). A flood from one source fills only its
own line, and another source's delivery is written in the next batch at the latest.

What a batch is written as belongs to the caller (services/ingest_writer.py), given as a
Writer: this module hands deliveries over, batches them, and retries them alone.
"""

from __future__ import annotations

import fcntl
import json
import logging
import os
import threading
import time
from collections import OrderedDict, deque
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from flask import Flask, current_app
from redis import Redis
from redis.exceptions import RedisError, ResponseError

from ..extensions import db, get_redis
from ..observability import metrics

log = logging.getLogger(__name__)
MAX_BATCH = 256
MAX_SOURCES = MAX_BATCH  # sources one batch takes from (any more are first in the next)
SOURCE_BUDGET = 1024 * 1024  # bytes of deliveries one source may put into one batch
WAIT_SECONDS = 30  # how long a request waits for the writer to answer
# A delivery not yet taken by then is withdrawn (503: not stored). One the writer has already
# taken is being written: its request waits up to this much longer for the outcome, so
# that a 503 still means "not stored".
TAKEN_WAIT = WAIT_SECONDS
DEADLINE_MARGIN = 2  # a delivery the writer takes this close to its sender's timeout is refused


@dataclass
class Delivery:
    row: dict  # the event's columns
    document: dict | None  # applied to the bound collections when set
    # The source as the delivery was judged by it (webhook_sources.version); if the source
    # is no longer so when the delivery is written, it is not stored but sent back.
    source_version: str | None = None
    dedup: tuple | None = None  # (key hash, window seconds), claimed when it is stored (services/dedup)
    judged: tuple | None = None  # what a duplicate was before it was found one (retried alone: again)
    done: threading.Event = field(default_factory=threading.Event)
    error: BaseException | None = None
    stale: bool = False
    # Writer thread fallback: "waiting" until the writer takes it ("taken") or its request
    # gives up first ("withdrawn", never written); changed only under _hand_off_lock.
    state: str = "waiting"


@dataclass(frozen=True)
class Writer:
    """What a batch is written as: `write` stores and applies a batch in one transaction (and
    commits); `store_failed` stores one delivery that could not be applied, alone, setting
    its `error` if even that fails."""

    write: Callable[[list[Delivery]], None]
    store_failed: Callable[[Delivery], None]


class Unavailable(Exception):
    """The event could not be stored in time; the sender should retry."""


class NotHanded(Unavailable):
    """Nothing reached the writer process (Redis unreachable): nothing was stored."""


class SourceChanged(Exception):
    """The source changed since the delivery was judged by it; nothing was stored."""

    def __init__(self, event_id: str):
        super().__init__(event_id)
        self.event_id = event_id


def submit(delivery: Delivery, writer: Writer) -> dict:
    """Store (and apply) one delivery with `writer`; returns its event row once committed."""
    app = current_app._get_current_object()  # type: ignore[attr-defined]  # a LocalProxy's, not in Flask's stubs
    if writer_process_alive(app):
        try:
            return _submit_remote(delivery)
        except NotHanded:  # Redis went away: this process writes for itself, as without a writer
            _alive_cache[id(app)] = (time.monotonic() + 1.0, False)
    _local_inbox(app, writer).put(delivery)
    if not delivery.done.wait(WAIT_SECONDS):
        with _hand_off_lock:
            taken = delivery.state == "taken"
            delivery.state = "taken" if taken else "withdrawn"
        if not taken or not delivery.done.wait(TAKEN_WAIT):
            raise Unavailable("the event could not be stored in time")
    if delivery.stale:
        raise SourceChanged(delivery.row["id"])
    if delivery.error is not None:
        raise Unavailable("the event could not be stored") from delivery.error
    return delivery.row


# The writer process (`flask ingest-writer`). A writer thread inside a busy web process
# waits for the GIL after every database call while request threads hold it, which made
# each batch ten times slower than the same batch written by a process of its own. Web
# processes hand deliveries over through Redis; with no writer process alive they fall
# back to a writer thread of their own, so ingest never depends on it.
INBOX = "hookstream:ingest:inbox:"  # + source id: one line per source
# Sources with deliveries waiting, in turn; the set beside it keeps each listed once.
READY, LISTED = "hookstream:ingest:ready", "hookstream:ingest:listed"
ALIVE = "hookstream:ingest:writer"
STATS = "hookstream:ingest:stats"
SWEEP_SECONDS = 30  # how often the writer lists again any line with deliveries that is not listed
# A delivery joins its source's line, and the source the ready list unless it is on it (one
# command). KEYS: line, ready, listed; ARGV: message, source id.
PUSH = """
redis.call('LPUSH', KEYS[1], ARGV[1])
if redis.call('SADD', KEYS[3], ARGV[2]) == 1 then redis.call('LPUSH', KEYS[2], ARGV[2]) end
"""
# A batch, taken in turns: one delivery from each source waiting (up to MAX_SOURCES), round
# after round, until the batch is full or each source has given its byte budget or all it
# had; a source with more left goes to the back of the ready list. The writer waits for the
# ready list without taking from it (BRPOPLPUSH onto itself), so that a writer stopped
# between the two commands loses no source. KEYS: ready, listed; ARGV: sources, budget,
# batch size, line prefix.
TAKE = """
local sources, spent, open, taken = {}, {}, {}, {}
for i = 1, tonumber(ARGV[1]) do
  local sid = redis.call('RPOP', KEYS[1])
  if not sid then break end
  redis.call('SREM', KEYS[2], sid)
  sources[#sources + 1] = sid
end
for i = 1, #sources do spent[i], open[i] = 0, true end
local more = true
while more and #taken < tonumber(ARGV[3]) do
  more = false
  for i, sid in ipairs(sources) do
    if open[i] and #taken < tonumber(ARGV[3]) then
      local message = redis.call('RPOP', ARGV[4] .. sid)
      if message then
        taken[#taken + 1] = message
        spent[i] = spent[i] + string.len(message)
        open[i] = spent[i] < tonumber(ARGV[2])
        more = more or open[i]
      else
        open[i] = false
      end
    end
  end
end
for _, sid in ipairs(sources) do
  if redis.call('LLEN', ARGV[4] .. sid) > 0 and redis.call('SADD', KEYS[2], sid) == 1 then
    redis.call('LPUSH', KEYS[1], sid)
  end
end
return taken
"""
# A line with deliveries that is not listed (Redis lost a write) is listed again.
# KEYS: line, ready, listed; ARGV: source id.
RELIST = """
if redis.call('LLEN', KEYS[1]) > 0 and redis.call('SADD', KEYS[3], ARGV[1]) == 1 then
  redis.call('LPUSH', KEYS[2], ARGV[1])
  return 1
end
return 0
"""
_alive_cache: dict = {}
# Every reply of a batch, and the writer's counters, in one command: a pipeline of two
# commands per delivery cost the writer a sixth of its time.
ANSWER = """
for i = 2, #KEYS do
  redis.call('LPUSH', KEYS[i], ARGV[i + 1])
  redis.call('EXPIRE', KEYS[i], 60)
end
redis.call('HINCRBY', KEYS[1], 'batches', 1)
redis.call('HINCRBY', KEYS[1], 'events', ARGV[1])
if tonumber(ARGV[2]) > 0 then redis.call('HINCRBY', KEYS[1], 'expired', ARGV[2]) end
"""


EXPIRED_ANSWER = json.dumps({"stored": False, "expired": True})


def writer_process_alive(app: Flask) -> bool:
    now = time.monotonic()
    cached = _alive_cache.get(id(app))
    if cached is None or cached[0] < now:
        try:
            alive = bool(get_redis().exists(ALIVE))
        except RedisError:
            alive = False
        cached = _alive_cache[id(app)] = (now + 1.0, alive)
    return cached[1]


def _submit_remote(delivery: Delivery) -> dict:
    row = delivery.row
    reply = f"hookstream:ingest:reply:{row['id']}"
    line = INBOX + row["source_id"]
    started = time.time()
    message = json.dumps(
        {
            "row": {**row, "received_at": row["received_at"].isoformat()},
            "apply": delivery.document is not None,
            "version": delivery.source_version,
            "dedup": delivery.dedup,
            "reply": reply,
            "deadline": started + WAIT_SECONDS - DEADLINE_MARGIN,
        }
    )
    redis = get_redis(wait=WAIT_SECONDS + TAKEN_WAIT)
    try:
        answer = _hand_over(redis, message, reply, line, row["source_id"])
        if answer is None:  # not answered in time: withdrawn, or being written
            answer = _withdraw_or_wait(redis, message, reply, line, TAKEN_WAIT)
    except NotHanded:
        raise
    except RedisError as exc:
        log.warning("handing event %s to the writer failed: %s", row["id"], type(exc).__name__)
        answer = _withdraw_or_wait(
            redis, message, reply, line, started + WAIT_SECONDS + TAKEN_WAIT - time.time()
        )
    if answer is None:
        log.warning("the writer took event %s but did not answer in time; its outcome is unknown", row["id"])
        raise Unavailable("the event could not be stored in time")
    result = json.loads(answer[1])
    if result.pop("stale", False):
        raise SourceChanged(row["id"])
    if not result.pop("stored"):
        raise Unavailable("the event could not be stored" + (" in time" if result.get("expired") else ""))
    row.update(result)
    return row


NOT_HANDED = "the event could not be handed to the writer"


def _hand_over(redis: Redis, message: str, reply: str, line: str, source_id: str) -> Any:
    """Push the delivery and wait for its answer: both commands in one round trip, on a
    connection of our own rather than through a pipeline, which redis-py would send again
    after a broken connection, pushing the delivery twice. A connection that cannot be had
    has sent nothing (the client has retried it); one that breaks later may have delivered."""
    pool = redis.connection_pool
    try:
        connection = pool.get_connection()
    except RedisError as exc:
        raise NotHanded(NOT_HANDED) from exc
    try:
        connection.send_packed_command(
            connection.pack_commands(
                [("EVAL", PUSH, 3, line, READY, LISTED, message, source_id), ("BRPOP", reply, WAIT_SECONDS)]
            )
        )
        try:
            connection.read_response()
        except ResponseError as exc:  # Redis refused the push (out of memory…): nothing to wait for
            raise NotHanded(NOT_HANDED) from exc
        return connection.read_response()
    except BaseException:
        connection.disconnect()  # a reply may still be on its way: never reuse it
        raise
    finally:
        pool.release(connection)


def _withdraw_or_wait(redis: Redis, message: str, reply: str, line: str, wait: float) -> Any:
    """The writer has not answered (in time, or over a hand-off that broke after sending).
    Still in the inbox (or never pushed): withdraw it, and it is not stored; the writer's RPOP
    and this LREM are atomic, so it cannot be taken as well. Gone: the writer took it, and
    answers when written (or refuses it unwritten, past its deadline), so wait. A 503 then
    still means "not stored", unless the writer stalls beyond this wait too or Redis stays
    unreachable: then nobody can tell, and the dedup window keeps the sender's retry from
    being applied twice."""
    try:
        if redis.lrem(line, 1, message):
            raise Unavailable(NOT_HANDED)
        return redis.brpop([reply], timeout=max(1, round(wait)))
    except RedisError as exc:
        raise Unavailable(NOT_HANDED) from exc


def run_writer_process(app: Flask, writer: Writer, stop: threading.Event | None = None) -> None:
    """The loop of `flask ingest-writer`: take every waiting delivery, write them in one
    transaction, answer each. Deliveries taken past their deadline are refused unwritten
    (their senders are about to give up)."""
    stop = stop or threading.Event()
    redis = get_redis()
    answer, take = redis.register_script(ANSWER), redis.register_script(TAKE)
    beat, sweep = 0.0, 0.0
    while not stop.is_set():
        if time.monotonic() >= beat:  # a heartbeat, not a round trip per batch
            redis.set(ALIVE, os.getpid(), ex=5)
            beat = time.monotonic() + 1
        if time.monotonic() >= sweep:
            relist(redis)
            sweep = time.monotonic() + SWEEP_SECONDS
        if redis.brpoplpush(READY, READY, timeout=1) is None:
            continue
        messages = take(keys=[READY, LISTED], args=[MAX_SOURCES, SOURCE_BUDGET, MAX_BATCH, INBOX])
        if not messages:
            continue
        batch, replies, expired = [], [], []
        for raw in messages:
            message = json.loads(raw)
            if message["deadline"] < time.time():
                expired.append(message["reply"])
                continue
            row = message["row"]
            row["received_at"] = datetime.fromisoformat(row["received_at"])
            batch.append(
                Delivery(
                    row,
                    json.loads(row["body"]) if message["apply"] else None,
                    message.get("version"),
                    tuple(message["dedup"]) if message.get("dedup") else None,
                )
            )
            replies.append(message["reply"])
        if batch:
            _process(app, batch, writer)
        answer(
            keys=[STATS, *replies, *expired],
            args=[
                len(batch),
                len(expired),
                *(
                    json.dumps(
                        {
                            "stored": d.error is None and not d.stale,
                            "stale": d.stale,
                            "status": d.row["status"],
                            "error": d.row["error"],
                            "outcomes": d.row["outcomes"],
                            "duplicate": d.row["duplicate"],
                            "duplicate_of": d.row["duplicate_of"],
                        }
                    )
                    for d in batch
                ),
                *[EXPIRED_ANSWER] * len(expired),
            ],
        )
    redis.delete(ALIVE)


def relist(redis: Redis) -> int:
    """List again every source line holding deliveries that the ready list does not name."""
    script, listed = redis.register_script(RELIST), 0
    for line in redis.scan_iter(match=INBOX + "*", count=1000):
        source_id = line.decode()[len(INBOX) :]
        listed += script(keys=[line, READY, LISTED], args=[source_id])
    return listed


_start_lock = threading.Lock()
_hand_off_lock = threading.Lock()


class FairInbox:
    """The writer thread's inbox: a line per source, taken in turn as the writer process's
    are (TAKE), so that the fallback is as fair as the writer."""

    def __init__(self) -> None:
        self._lines: OrderedDict[str, deque] = OrderedDict()
        self._ready = threading.Condition()

    def put(self, delivery: Delivery) -> None:
        with self._ready:
            self._lines.setdefault(delivery.row["source_id"], deque()).append(delivery)
            self._ready.notify()

    def take(self) -> list[Delivery]:
        """A batch, waiting for the first delivery: taken in turns from the lines, oldest
        first, as TAKE does; a line with more left goes to the back."""
        with self._ready:
            while not self._lines:
                self._ready.wait()
            sources = list(self._lines)[:MAX_SOURCES]
            lines = [self._lines.pop(source_id) for source_id in sources]
            spent, batch, more = [0] * len(lines), list[Delivery](), True
            while more and len(batch) < MAX_BATCH:
                more = False
                for i, line in enumerate(lines):
                    if line and spent[i] < SOURCE_BUDGET and len(batch) < MAX_BATCH:
                        delivery = line.popleft()
                        batch.append(delivery)
                        spent[i] += len(delivery.row.get("body") or "")
                        more = more or (bool(line) and spent[i] < SOURCE_BUDGET)
            for source_id, line in zip(sources, lines, strict=True):
                if line:
                    self._lines[source_id] = line
            return batch


def _local_inbox(app: Flask, writer: Writer) -> FairInbox:
    # One writer thread per app and process: the web server forks its workers, and a thread does
    # not survive a fork, so a new process starts its own.
    state = app.extensions.get("group_commit")
    if state is None or state[0] != os.getpid():
        with _start_lock:
            state = app.extensions.get("group_commit")
            if state is None or state[0] != os.getpid():
                inbox = FairInbox()
                threading.Thread(
                    target=_run_thread, args=(app, inbox, writer), daemon=True, name="ingest-writer"
                ).start()
                state = app.extensions["group_commit"] = (os.getpid(), inbox)
    return state[1]


def _run_thread(app: Flask, inbox: FairInbox, writer: Writer) -> None:
    while True:
        waiting = inbox.take()
        with _hand_off_lock:  # what its request has withdrawn is not written
            batch = [d for d in waiting if d.state == "waiting"]
            for delivery in batch:
                delivery.state = "taken"
        if batch:
            _process(app, batch, writer)
        for delivery in batch:
            delivery.done.set()


def _process(app: Flask, batch: list[Delivery], writer: Writer) -> None:
    metrics.writer_batch(len(batch))
    with app.app_context(), _sqlite_writer_lock(app):
        try:
            writer.write(batch)
        except Exception:
            db.session.rollback()
            if len(batch) == 1:
                writer.store_failed(batch[0])
            else:
                for delivery in batch:
                    _write_alone(delivery, writer)
        finally:
            db.session.remove()


@contextmanager
def _sqlite_writer_lock(app: Flask) -> Iterator[None]:
    """On SQLite, the writers of every web process queue on one file lock. Without it they
    collide on the database's write lock, and SQLite's busy handler then sleeps in steps of
    milliseconds: that, not the writing, set the latency. An flock wakes the next writer
    the moment the lock is released."""
    path = db.engine.url.database if db.engine.dialect.name == "sqlite" else None
    if not path or path == ":memory:":
        yield
        return
    lock = app.extensions.get("group_commit_lock")
    if lock is None or lock[0] != os.getpid():
        # Held open for the life of the process: every batch locks it.
        handle = open(path + ".write-lock", "a")  # noqa: SIM115 (kept open, not closed after a block)
        lock = app.extensions["group_commit_lock"] = (os.getpid(), handle)
    fcntl.flock(lock[1], fcntl.LOCK_EX)
    try:
        yield
    finally:
        fcntl.flock(lock[1], fcntl.LOCK_UN)


def _write_alone(delivery: Delivery, writer: Writer) -> None:
    try:
        writer.write([delivery])
    except Exception:
        db.session.rollback()
        writer.store_failed(delivery)
