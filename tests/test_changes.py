"""A collection's change feed: every insert, update and delete through the one upsert engine
(webhooks, pulls, deletes through the API, a full read's removals), numbered in commit
order, read on by number, waited for, and pruned with a clear answer for what is gone."""

from __future__ import annotations

import threading
import time
from datetime import timedelta

from hookstream_ui.models import Collection, db
from hookstream_ui.services import changes
from hookstream_ui.values.times import utcnow
from tests.helpers import auth, connect_pull, webhook_orders
from tests.helpers import run_inline as run


def feed(client, key, cid: str, **query) -> dict:
    answer = client.get(f"/v1/collections/{cid}/changes", query_string=query, headers=auth(key))
    assert answer.status_code == 200, answer.json
    return answer.json


def deliver(client, sid: str, body: dict) -> None:
    answer = client.post(f"/v1/ingest/{sid}", json=body)
    assert answer.status_code == 200, answer.json


def test_every_change_is_numbered_in_order_and_an_unchanged_one_is_not(client, key):
    sid, cid = webhook_orders(client, key)
    deliver(client, sid, {"id": "o1", "total": 5})
    deliver(client, sid, {"id": "o2", "total": 7})
    deliver(client, sid, {"id": "o1", "total": 5})  # the same again: no change
    deliver(client, sid, {"id": "o1", "total": 6})
    assert client.delete(f"/v1/collections/{cid}/records/o2", headers=auth(key)).status_code == 200

    got = feed(client, key, cid)
    seen = [(c["seq"], c["op"], c["key"], c["record"]) for c in got["changes"]]
    assert seen == [
        (1, "insert", "o1", {"id": "o1", "total": 5}),
        (2, "insert", "o2", {"id": "o2", "total": 7}),
        (3, "update", "o1", {"id": "o1", "total": 6}),
        (4, "delete", "o2", None),
    ]
    assert got["next_after"] == 4 and got["last_seq"] == 4 and got["has_more"] is False
    first = got["changes"][0]
    assert first["event_id"].startswith("evt_") and first["source_id"] == sid and first["run_id"] is None


def test_a_reader_reads_on_from_where_it_stopped(client, key):
    sid, cid = webhook_orders(client, key)
    for n in range(5):
        deliver(client, sid, {"id": f"o{n}"})
    page = feed(client, key, cid, limit=2)
    assert [c["seq"] for c in page["changes"]] == [1, 2] and page["has_more"] is True
    page = feed(client, key, cid, limit=2, after=page["next_after"])
    assert [c["key"] for c in page["changes"]] == ["o2", "o3"]
    page = feed(client, key, cid, after=4)
    assert [c["key"] for c in page["changes"]] == ["o4"] and page["has_more"] is False
    empty = feed(client, key, cid, after=5)
    assert empty["changes"] == [] and empty["next_after"] == 5  # caught up: ask again from there


def test_a_waiting_reader_gets_the_next_change_when_it_commits(app, client, key):
    sid, cid = webhook_orders(client, key)
    answers: list = []

    def wait() -> None:
        with app.app_context():
            answers.append(app.test_client().get(
                f"/v1/collections/{cid}/changes", query_string={"after": 0, "wait": 20}, headers=auth(key)
            ))  # fmt: skip

    reader = threading.Thread(target=wait)
    reader.start()
    time.sleep(0.3)
    assert answers == []  # still waiting: there is nothing yet
    deliver(client, sid, {"id": "late"})
    reader.join(10)
    assert not reader.is_alive(), "the waiting reader did not wake for the change"
    assert [c["key"] for c in answers[0].json["changes"]] == ["late"]


def test_changes_past_their_retention_are_gone_and_the_reader_is_told(app, client, key):
    sid, cid = webhook_orders(client, key)
    deliver(client, sid, {"id": "old"})
    hours = app.config["CHANGES_RETENTION_HOURS"]
    assert changes.prune(utcnow() + timedelta(hours=hours - 1)) == 0  # not old enough yet
    assert changes.prune(utcnow() + timedelta(hours=hours + 1)) == 1
    deliver(client, sid, {"id": "new"})

    gone = client.get(f"/v1/collections/{cid}/changes?after=0", headers=auth(key))
    assert gone.status_code == 410 and gone.json["code"] == "changes_expired", gone.json
    assert gone.json["errors"]["after"].endswith("the oldest kept is 2")
    assert [c["key"] for c in feed(client, key, cid)["changes"]] == ["new"]  # no after: the oldest kept
    assert [c["key"] for c in feed(client, key, cid, after=1)["changes"]] == ["new"]


def test_bad_parameters_are_refused_by_name(client, key):
    _, cid = webhook_orders(client, key)
    for query, field in (
        ("after=-1", "after"),
        ("after=x", "after"),
        ("limit=0", "limit"),
        ("wait=31", "wait"),
    ):
        answer = client.get(f"/v1/collections/{cid}/changes?{query}", headers=auth(key))
        assert answer.status_code == 400, (query, answer.json)
        assert field in str(answer.json), answer.json


def test_another_tenants_feed_is_not_found(client, key, two_tenants):
    alices = db.session.query(Collection).filter_by(slug="alice-users").one()
    answer = client.get(f"/v1/collections/{alices.id}/changes", headers=auth(two_tenants["b_raw"]))
    assert answer.status_code == 404


def test_a_pull_notes_its_run_and_a_full_read_notes_what_is_gone(client, key, pg_source):
    sid, cid = connect_pull(
        client, key, "PostgreSQL", pg_source.credentials(), "customers", table="customers"
    )
    first = run(sid, full=True)
    assert first.status == "completed", first.error
    inserted = feed(client, key, cid)["changes"]
    assert [(c["op"], c["key"], c["run_id"]) for c in inserted] == [
        ("insert", "1", first.id),
        ("insert", "2", first.id),
    ]
    pg_source.sql("DELETE FROM customers WHERE id = 2")
    restore = "INSERT INTO customers (id, email) VALUES (2, 'b@example.com')"
    again = run(sid, full=True)
    assert again.status == "completed", again.error
    later = feed(client, key, cid, after=2)["changes"]
    pg_source.sql(restore)
    assert [(c["op"], c["key"], c["run_id"]) for c in later] == [("delete", "2", again.id)]  # 1: unchanged


def test_large_batches_are_noted_whole(client, key, pg_source):
    """Above the engine's bulk threshold (200 rows: one statement, read back; a backfill into
    an empty collection copies), every change is noted once, in one run of numbers."""
    pg_source.sql(
        "DROP TABLE IF EXISTS many; CREATE TABLE many (id integer PRIMARY KEY, email text);"
        "INSERT INTO many SELECT g, 'c' || g || '@example.com' FROM generate_series(1, 450) g"
    )
    sid, cid = connect_pull(client, key, "PostgreSQL", pg_source.credentials(), "many", table="many")
    assert run(sid, full=True).status == "completed"
    got = feed(client, key, cid, limit=1000)["changes"]
    assert [c["seq"] for c in got] == list(range(1, 451)) and {c["op"] for c in got} == {"insert"}
    pg_source.sql("UPDATE many SET email = 'x' || email")
    assert run(sid, full=True).status == "completed"
    updated = feed(client, key, cid, limit=1000, after=450)["changes"]
    assert len(updated) == 450 and {c["op"] for c in updated} == {"update"}
    assert sorted(int(c["key"]) for c in updated) == list(range(1, 451))
    assert all(c["record"]["email"].startswith("x") for c in updated)
    pg_source.sql("DROP TABLE many")


def test_the_collection_page_shows_the_newest_changes_and_polls_for_more(signed_in_with_key):
    client, _, key = signed_in_with_key
    sid, _ = webhook_orders(client, key)
    deliver(client, sid, {"id": "o1"})
    page = client.get("/collections/orders").get_data(as_text=True)
    assert 'id="collection-changes"' in page and 'data-seq="1"' in page
    hx = {"HX-Request": "true"}
    assert client.get("/collections/orders/_changes?seen=1", headers=hx).status_code == 204  # nothing new
    deliver(client, sid, {"id": "o2"})
    newer = client.get("/collections/orders/_changes?seen=1", headers=hx)
    assert newer.status_code == 200 and 'data-seq="2"' in newer.get_data(as_text=True)
