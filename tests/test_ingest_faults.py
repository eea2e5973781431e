"""Ingest when things go wrong: answers that failed, a writer killed, Redis gone, one source
flooding the writer, records with a history."""

from __future__ import annotations

import json
import os
import signal
import time
from concurrent.futures import ThreadPoolExecutor

import pytest
from sqlalchemy import select, text

from hookstream_ui.models import DedupClaim, Event, Record, SourceConnection, db, new_id
from hookstream_ui.values.times import utcnow
from tests.helpers import make_key, make_user, org_of, production
from tests.test_ingest import _start_writer, _writer_held, records, webhook


@pytest.fixture
def short_waits(monkeypatch):
    from hookstream_ui.infra import group_commit

    monkeypatch.setattr(group_commit, "WAIT_SECONDS", 2)
    monkeypatch.setattr(group_commit, "DEADLINE_MARGIN", 0.5)
    monkeypatch.setattr(group_commit, "TAKEN_WAIT", 3)
    group_commit._alive_cache.clear()
    yield
    group_commit._alive_cache.clear()


def send(app, sid, n, idempotency=None):
    headers = {"Idempotency-Key": idempotency} if idempotency else {}
    return app.test_client().post(
        f"/v1/ingest/{sid}", json={"type": "order.updated", "data": {"id": f"o{n}", "n": n}}, headers=headers
    )


@pytest.mark.parametrize("writer", ["writer process", "writer thread"])
def test_a_retry_after_a_503_is_applied_not_called_a_duplicate(
    app, client, key, workers, writer, short_waits
):
    """The dedup claim was taken before the event was stored and never released: the sender's
    retry was answered `duplicate` of an event that did not exist, and never applied."""
    sid = webhook(client, key)
    if writer == "writer process":
        _start_writer(workers)
    with ThreadPoolExecutor(2) as pool:
        with _writer_held() as writer_waiting:
            held = pool.submit(send, app, sid, 1)
            writer_waiting()  # the writer has taken it and waits for the lock
            refused = pool.submit(send, app, sid, 2, "delivery-2")  # waits behind it, never taken
            assert refused.result(timeout=30).status_code == 503
        assert held.result(timeout=30).status_code == 200
    retry = send(app, sid, 2, "delivery-2")
    assert retry.status_code == 200 and "duplicate" not in retry.json, retry.json
    assert "o2" in records()
    again = send(app, sid, 2, "delivery-2")  # a duplicate now: of the event that is stored
    assert again.json["duplicate"] is True and again.json["original_event_id"] == retry.json["event_id"]
    assert db.session.get(Event, again.json["original_event_id"]) is not None


def test_a_retry_after_the_writer_was_killed_is_applied(app, client, key, workers, short_waits):
    sid = webhook(client, key)
    writer = _start_writer(workers)
    with ThreadPoolExecutor(1) as pool, _writer_held() as writer_waiting:
        lost = pool.submit(send, app, sid, 1, "delivery-1")
        writer_waiting()  # taken by the writer, which now waits for the lock
        os.killpg(writer.pid, signal.SIGKILL)
        assert lost.result(timeout=30).status_code == 503
    writer.wait(10)
    retry = send(app, sid, 1, "delivery-1")  # no writer now: this web process writes for itself
    assert retry.status_code == 200 and "duplicate" not in retry.json, retry.json
    assert records()["o1"]["data"]["n"] == 1


def test_ingest_needs_no_redis(app, client, key, short_waits, redis_down):
    """With Redis gone, ingest answered 500 (the dedup claim's ConnectionError)."""
    sid = webhook(client, key)
    first = send(app, sid, 1, "delivery-1")
    assert first.status_code == 200, first.json
    again = send(app, sid, 1, "delivery-1")
    assert again.json["duplicate"] is True  # dedup holds: it is in the database
    assert records()["o1"]["data"]["n"] == 1


def test_a_writer_process_lost_with_redis_falls_back_to_the_web_process(
    app, client, key, workers, short_waits, request
):
    from hookstream_ui.infra import group_commit

    sid = webhook(client, key)
    _start_writer(workers)
    assert group_commit.writer_process_alive(app)  # remembered for a second
    request.getfixturevalue("redis_down")
    answer = send(app, sid, 5)
    assert answer.status_code == 200, answer.json
    assert records()["o5"]["data"]["n"] == 5


def _message(source_id, n):
    source = db.session.get(SourceConnection, source_id)
    row = {
        "id": new_id("evt"),
        "org_id": source.org_id,
        "env_id": source.env_id,
        "source_id": source_id,
        "method": "POST",
        "headers": {},
        "query": {},
        "body": json.dumps({"data": {"id": f"k{n}"}}),
        "body_encoding": "utf-8",
        "content_type": "application/json",
        "size": 20,
        "source_ip": None,
        "received_at": utcnow().isoformat(),
        "verification": "skipped",
        "verification_error": None,
        "dedup_key": None,
        "duplicate": False,
        "duplicate_of": None,
        "status": "applied",
        "error": None,
        "outcomes": {},
    }
    reply = f"hookstream:ingest:reply:{row['id']}"
    return (
        row["id"],
        reply,
        json.dumps(
            {
                "row": row,
                "apply": True,
                "version": None,
                "dedup": None,
                "reply": reply,
                "deadline": time.time() + 60,
            }
        ),
    )


def test_a_flood_from_one_source_waits_in_its_own_line(app, client, key, workers):
    """A 900 KB body with 60,000 keys cost the single writer seconds; another org's deliveries
    waited behind every one of the flood's (17 ms became 32-41 s). Each source now has its own
    line, and a batch takes from each in turn."""
    from hookstream_ui.extensions import get_redis
    from hookstream_ui.infra import group_commit

    flood = webhook(client, key)
    other_key = make_key(production(org_of(make_user("other@example.com"))))
    other = client.post(
        "/api/v1/source-connections",
        headers={"X-API-Key": other_key},
        json={"sourceShortName": "webhook", "name": "Victim", "credentials": {"verification_type": "none"}},
    ).json["sourceConnection"]["id"]
    redis = get_redis()
    _start_writer(workers)

    def push(source_id, raw):
        redis.eval(
            group_commit.PUSH,
            3,
            group_commit.INBOX + source_id,
            group_commit.READY,
            group_commit.LISTED,
            raw,
            source_id,
        )

    with _writer_held() as writer_waiting:
        first = _message(flood, 0)
        push(flood, first[2])
        writer_waiting()  # the writer has taken it and waits for the lock
        waiting = [_message(flood, n) for n in range(1, 601)]
        for _, _, raw in waiting:
            push(flood, raw)
        victim = _message(other, 0)
        push(other, victim[2])
    for _, reply, _ in [first, *waiting, victim]:
        assert redis.brpop([reply], timeout=60) is not None
    order = "rowid" if db.engine.dialect.name == "sqlite" else "xmin::text::bigint"
    rows = db.session.execute(text(f"SELECT id, {order} FROM events")).all()
    transactions = sorted({position for _, position in rows}) if order != "rowid" else None
    if transactions is None:  # SQLite: one writer, rows in commit order; count the flood's before the victim
        before = sum(1 for event_id, rowid in rows if rowid < dict(rows)[victim[0]])
        assert before <= group_commit.MAX_BATCH, before  # the first batch and part of the second at most
    else:
        victim_tx = dict(rows)[victim[0]]
        assert transactions.index(victim_tx) <= 1, (transactions.index(victim_tx), len(transactions))
    assert len(rows) == 602


def test_the_fallback_inbox_takes_sources_in_turn():
    from hookstream_ui.infra.group_commit import MAX_BATCH, Delivery, FairInbox

    inbox = FairInbox()
    for n in range(600):
        inbox.put(Delivery({"source_id": "flood", "id": f"f{n}", "body": "{}"}, None))
    inbox.put(Delivery({"source_id": "victim", "id": "v", "body": "{}"}, None))
    first = inbox.take()
    assert len(first) == MAX_BATCH and "v" in [d.row["id"] for d in first]
    wide = FairInbox()
    for n in range(20):
        wide.put(Delivery({"source_id": "wide", "id": f"w{n}", "body": "x" * 400_000}, None))
    wide.put(Delivery({"source_id": "small", "id": "s", "body": "{}"}, None))
    batch = [d.row["id"] for d in wide.take()]
    assert batch.count("s") == 1 and len(batch) <= 4  # a source's turn ends at its byte budget


def test_a_claim_whose_event_is_gone_is_taken_over(app, client, key):
    sid = webhook(client, key)
    assert send(app, sid, 2, "other").status_code == 200  # a claim whose event is there
    first = send(app, sid, 1, "k")
    db.session.execute(Event.__table__.delete().where(Event.__table__.c.id == first.json["event_id"]))
    db.session.commit()
    again = send(app, sid, 1, "k")
    assert "duplicate" not in again.json, again.json
    holders = set(db.session.scalars(select(DedupClaim.event_id)))
    assert again.json["event_id"] in holders and first.json["event_id"] not in holders


def test_a_delivery_found_a_duplicate_by_a_failed_attempt_is_judged_again(app, client, key):
    """A shared batch that fails is written again delivery by delivery: a copy marked a
    duplicate of a delivery that then failed must not stay a duplicate of nothing."""
    from hookstream_ui.infra.group_commit import Delivery
    from hookstream_ui.services import dedup

    sid = webhook(client, key)
    source = db.session.get(SourceConnection, sid)

    def delivery(n):
        row = {
            "id": new_id("evt"),
            "source_id": sid,
            "org_id": source.org_id,
            "env_id": source.env_id,
            "status": "applied",
            "error": None,
            "duplicate": False,
            "duplicate_of": None,
            "received_at": utcnow(),
        }
        return Delivery(row, {"data": {"id": f"o{n}"}}, None, ("same-key-hash", 300))

    original, copy = delivery(1), delivery(2)
    dedup.claim([original, copy])
    assert copy.row["status"] == "duplicate" and copy.document is None
    db.session.rollback()  # the shared transaction failed
    dedup.claim([copy])  # written alone, without the original
    assert copy.row["status"] == "applied" and not copy.row["duplicate"] and copy.document is not None
    db.session.rollback()


def test_the_record_page_finds_its_events_by_key(app, client, key, monkeypatch):
    """The record page parsed the bodies of the source's 500 newest events for every view."""
    from hookstream_ui.values import documents
    from tests.helpers import login

    sid = webhook(client, key)
    for n in range(5):  # o0 three times, o1 twice
        client.post(f"/v1/ingest/{sid}", json={"type": "order.updated", "data": {"id": f"o{n % 2}", "n": n}})
    login(client, "owner@example.com")
    parsed = []
    real = documents.loads
    monkeypatch.setattr(documents, "loads", lambda text: parsed.append(1) or real(text))
    page = client.get("/collections/orders/records/o0").get_data(as_text=True)
    assert parsed == []  # no event body was read to find them
    mine = [
        e.id
        for e in db.session.scalars(select(Event).order_by(Event.received_at.desc()))
        if '"o0"' in (e.body or "")
    ]
    assert len(mine) == 3 and all(event_id in page for event_id in mine)
    assert all(e not in page for e in db.session.scalars(select(Event.id)) if e not in mine)
    assert db.session.scalar(select(Record).where(Record.record_key == "o0")) is not None


def test_what_needs_redis_waits_for_it_in_the_database(app, client, key, redis_down):
    """Every Redis call on a request path has a decided failure mode: runs, backfills and
    index passes are accepted and wait in their rows until the scheduler can enqueue them;
    the admin's system page says Redis is down."""
    from datetime import timedelta

    from hookstream_ui.models import Collection, SyncRun
    from hookstream_ui.sync import scheduler
    from tests.helpers import login

    sid = webhook(client, key)
    h = {"X-API-Key": key}
    pull_source = client.post(
        "/api/v1/source-connections",
        headers=h,
        json={"sourceShortName": "stripe", "name": "S", "credentials": {"secret_key": "sk_test_x"}},
    ).json["sourceConnection"]["id"]
    client.post(
        "/v1/collections",
        headers=h,
        json={"name": "Stripe c", "source_id": pull_source, "primary_key_path": "$.id"},
    )
    started = client.post(f"/api/v1/source-connections/{pull_source}/run", headers=h, json={})
    assert started.status_code == 200, started.json
    backfill = client.post("/v1/collections/orders/backfill", headers=h)
    assert backfill.status_code == 202 and backfill.json["backfill"]["status"] == "pending", backfill.json
    make_user("root@example.com", admin=True)
    root = app.test_client()
    login(root, "root@example.com")
    system = root.get("/admin/system")
    assert system.status_code == 200 and "ConnectionError" in system.get_data(as_text=True)

    redis_down()  # Redis is back: the scheduler enqueues what waited
    from rq.job import Job, JobStatus

    from hookstream_ui.extensions import get_redis
    from hookstream_ui.sync.backfill import REPLAY_JOB

    orders = db.session.scalar(select(Collection.id).where(Collection.slug == "orders"))
    finished = Job.create(
        "hookstream_ui.sync.backfill.replay_events",
        args=[orders],
        id=f"{REPLAY_JOB}{orders}",
        connection=get_redis(),
    )  # an earlier replay's job, done: it holds the id
    finished.set_status(JobStatus.FINISHED)
    finished.save()
    past = utcnow() - timedelta(minutes=5)
    db.session.execute(SyncRun.__table__.update().values(updated_at=past))
    db.session.execute(Collection.__table__.update().values(updated_at=past))
    db.session.commit()
    ticked = scheduler.tick()
    assert ticked["requeued"] == [started.json["syncId"]]
    assert ticked["backfills"] == [
        db.session.scalar(select(Collection.id).where(Collection.slug == "orders"))
    ]
    assert sid


def test_a_source_the_ready_list_lost_is_listed_again(app, client, key, workers, short_waits):
    """A line with deliveries that the ready list does not name (a write Redis lost) would
    wait for ever; the writer lists it again."""
    from hookstream_ui.extensions import get_redis
    from hookstream_ui.infra import group_commit

    sid = webhook(client, key)
    redis = get_redis()
    _, _, raw = _message(sid, 1)
    redis.lpush(group_commit.INBOX + sid, raw)  # pushed, but never listed
    assert group_commit.relist(redis) == 1 and redis.lrange(group_commit.READY, 0, -1) == [sid.encode()]
    assert group_commit.relist(redis) == 0  # listed once
    _start_writer(workers)
    assert redis.brpop([json.loads(raw)["reply"]], timeout=30) is not None
    assert records()["k1"]
