"""One `customers` collection fed by two sources: Stripe webhooks (signed as Stripe signs
them, each customer at $.data.object, timed by the event's `created`) and a Stripe pull
source (the list API of the fixture server). Which version of a customer wins, what a full
re-read may remove, who wrote each record, and the status the two sources' health gives."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import time
from dataclasses import dataclass

import pytest
from sqlalchemy import select

from hookstream_ui.models import Binding, Collection, Record, SourceConnection, SyncRun, db
from tests.fixture_servers import STRIPE, STRIPE_KEY
from tests.helpers import auth

SIGNING_SECRET = "whsec_" + base64.b64encode(b"many-sources-signing-key").decode()


def stripe_signature(body: bytes, secret: str = SIGNING_SECRET, ts: int | None = None) -> str:
    """Stripe's scheme: t=<unix time>,v1=<hex HMAC-SHA256 of "<t>.<body>" under the secret>."""
    ts = ts or int(time.time())
    digest = hmac.new(secret.encode(), f"{ts}.".encode() + body, hashlib.sha256).hexdigest()
    return f"t={ts},v1={digest}"


def customer(cid: str, email: str, created: int | None = None) -> dict:
    return {
        "id": cid,
        "object": "customer",
        "created": created or int(time.time()) - 86_400,
        "email": email,
        "livemode": False,
    }


@dataclass
class Setup:
    client: object
    key: str
    webhook_id: str
    pull_id: str
    collection_id: str
    event_n: int = 0

    def send(self, kind: str, obj: dict, created: int) -> dict:
        """Deliver a signed Stripe event to the webhook source, as Stripe would."""
        self.event_n += 1
        event = {
            "id": f"evt_hook_{self.event_n:04d}",
            "object": "event",
            "type": kind,
            "created": created,
            "data": {"object": obj},
        }
        body = json.dumps(event).encode()
        answer = self.client.post(
            f"/v1/ingest/{self.webhook_id}",
            data=body,
            headers={"Stripe-Signature": stripe_signature(body)},
            content_type="application/json",
        )
        assert answer.status_code == 200, answer.json
        return event

    def pull(self, full: bool = True, attempts: int = 1) -> SyncRun:
        """Run the pull source's sync inline (each attempt as a worker would run it)."""
        from hookstream_ui.services.runs import start_run
        from hookstream_ui.sync import jobs

        run = start_run(db.session.get(SourceConnection, self.pull_id), full=full)
        run_id = run.id
        for _ in range(attempts):
            db.session.refresh(run)
            if run.final:
                break
            jobs.run_sync(run_id, run.claim_token)
        db.session.expire_all()
        return db.session.get(SyncRun, run_id)

    def record(self, key: str) -> Record | None:
        db.session.expire_all()
        return db.session.scalar(
            select(Record).where(Record.collection_id == self.collection_id, Record.record_key == key)
        )

    def status(self) -> str:
        answer = self.client.get(f"/v1/collections/{self.collection_id}", headers=auth(self.key))
        assert answer.status_code == 200, answer.json
        return answer.json["collection"]["status"]


def _has_sources_endpoint(app) -> bool:
    return any(rule.rule.endswith("/collections/<ident>/sources") for rule in app.url_map.iter_rules())


def _bind(app, client, key, collection_id: str, source_id: str, **mapping) -> None:
    """Through POST /v1/collections/<id>/sources where it exists, else the service."""
    body = {"source_id": source_id, **mapping}
    if _has_sources_endpoint(app):
        answer = client.post(f"/v1/collections/{collection_id}/sources", headers=auth(key), json=body)
        if answer.status_code != 404:
            assert answer.status_code in (200, 201), answer.json
            return
    from hookstream_ui.services import bindings

    collection = db.session.get(Collection, collection_id)
    bindings.bind(collection, db.session.get(SourceConnection, source_id), **mapping)
    db.session.commit()


@pytest.fixture
def make_setup(app, client, key, http_fixture):
    def make(secret_key: str = STRIPE_KEY) -> Setup:
        webhook_id = client.post(
            "/api/v1/source-connections",
            headers=auth(key),
            json={
                "sourceShortName": "webhook",
                "name": "Stripe webhooks",
                "credentials": {"verification_type": "stripe", "signing_secret": SIGNING_SECRET},
                "config": {},
            },
        ).json["sourceConnection"]["id"]
        pulled = client.post(
            "/api/v1/source-connections",
            headers=auth(key),
            json={
                "sourceShortName": "stripe",
                "name": "Stripe API",
                "credentials": {"secret_key": secret_key, "api_base": http_fixture.base},
            },
        )
        assert pulled.status_code in (200, 201), pulled.json
        pull_id = pulled.json["sourceConnection"]["id"]
        made = client.post(
            "/v1/collections",
            headers=auth(key),
            json={"name": "Customers", "slug": "customers", "primary_key_path": "$.id"},
        )
        assert made.status_code == 201, made.json
        collection_id = made.json["collection"]["id"]
        _bind(
            app,
            client,
            key,
            collection_id,
            webhook_id,
            record_path="$.data.object",
            primary_key_path="$.id",
            timestamp_path="$.created",
            event_type_field="$.type",
        )
        _bind(app, client, key, collection_id, pull_id, stream="customer", primary_key_path="$.id")
        db.session.expire_all()
        assert [b.source_id for b in db.session.get(Collection, collection_id).bindings] == [
            webhook_id,
            pull_id,
        ]
        return Setup(client, key, webhook_id, pull_id, collection_id)

    return make


@pytest.fixture
def setup(make_setup) -> Setup:
    return make_setup()


def test_events_out_of_order_keep_the_newer_state(setup):
    now = int(time.time())
    setup.send("customer.updated", customer("cus_A", "newer@example.com"), created=now - 100)
    setup.send("customer.updated", customer("cus_A", "older@example.com"), created=now - 200)
    record = setup.record("cus_A")
    assert record is not None and record.data["email"] == "newer@example.com"
    assert record.source_id == setup.webhook_id


def test_a_webhook_lost_while_down_is_filled_by_the_pull(setup):
    now = int(time.time())
    setup.send("customer.created", customer("cus_seen", "seen@example.com"), created=now - 500)
    # cus_lost was created while the receiver was down: Stripe has it, no webhook came.
    STRIPE.customers = [customer("cus_seen", "seen@example.com"), customer("cus_lost", "lost@example.com")]
    run = setup.pull()
    assert run.status == "completed", run.error
    lost = setup.record("cus_lost")
    assert lost is not None and lost.data["email"] == "lost@example.com"
    assert (lost.source_id, lost.sync_run_id) == (setup.pull_id, run.id)


def test_a_customer_deleted_event_removes_the_record(setup):
    now = int(time.time())
    setup.send("customer.created", customer("cus_D", "doomed@example.com"), created=now - 100)
    assert setup.record("cus_D") is not None
    setup.send("customer.deleted", {"id": "cus_D", "object": "customer", "deleted": True}, created=now - 50)
    assert setup.record("cus_D") is None
    assert db.session.get(Collection, setup.collection_id).record_count == 0


def test_a_full_re_read_keeps_records_only_the_webhook_wrote(setup):
    now = int(time.time())
    setup.send("customer.created", customer("cus_X", "hook-only@example.com"), created=now - 100)
    STRIPE.customers = [customer("cus_Y", "listed@example.com")]  # the list does not have cus_X
    run = setup.pull(full=True)
    assert run.status == "completed" and run.mode == "full", run.error
    assert run.records_deleted == 0
    assert setup.record("cus_X") is not None and setup.record("cus_X").source_id == setup.webhook_id
    assert setup.record("cus_Y") is not None
    assert db.session.get(Collection, setup.collection_id).record_count == 2

    # What the pull wrote and then stopped listing is gone on its next full read.
    STRIPE.customers = [customer("cus_Z", "other@example.com")]
    run = setup.pull(full=True)
    assert run.status == "completed", run.error
    assert setup.record("cus_Y") is None and setup.record("cus_X") is not None
    assert run.records_deleted == 1


def test_a_pull_older_than_a_webhook_does_not_overwrite_it(setup):
    future = int(time.time()) + 3600  # the event is newer than any read made now
    setup.send("customer.updated", customer("cus_W", "from-webhook@example.com"), created=future)
    STRIPE.customers = [customer("cus_W", "from-pull@example.com")]
    run = setup.pull()
    assert run.status == "completed", run.error
    record = setup.record("cus_W")
    assert record.data["email"] == "from-webhook@example.com"
    assert (record.source_id, record.sync_run_id) == (setup.webhook_id, None)


def test_a_pull_newer_than_a_webhook_overwrites_it(setup):
    long_ago = int(time.time()) - 7 * 86_400
    setup.send("customer.updated", customer("cus_P", "from-webhook@example.com"), created=long_ago)
    STRIPE.customers = [customer("cus_P", "from-pull@example.com")]
    run = setup.pull()
    assert run.status == "completed", run.error
    record = setup.record("cus_P")
    assert record.data["email"] == "from-pull@example.com"
    assert (record.source_id, record.sync_run_id) == (setup.pull_id, run.id)
    assert db.session.get(Collection, setup.collection_id).record_count == 1


def test_each_record_says_which_source_wrote_it(setup):
    setup.send("customer.created", customer("cus_H", "hook@example.com"), created=int(time.time()) - 60)
    STRIPE.customers = [customer("cus_L", "list@example.com")]
    run = setup.pull()
    assert run.status == "completed", run.error
    wrote = {"cus_H": (setup.webhook_id, None), "cus_L": (setup.pull_id, run.id)}
    for key, (source_id, run_id) in wrote.items():
        answer = setup.client.get(
            f"/v1/collections/{setup.collection_id}/records/{key}", headers=auth(setup.key)
        )
        assert answer.status_code == 200, answer.json
        shown = answer.json["record"]
        if "source_id" in shown:
            assert shown["source_id"] == source_id
        if "sync_run_id" in shown:
            assert shown["sync_run_id"] == run_id
        record = setup.record(key)
        assert (record.source_id, record.sync_run_id) == (source_id, run_id)


@pytest.mark.parametrize("failure", ["stripe answers 500", "bad key"])
def test_a_failing_pull_beside_a_working_webhook_is_a_partial_error(make_setup, failure):
    from hookstream_ui.sync import jobs

    setup = make_setup("sk_test_notTheRightKey42" if failure == "bad key" else STRIPE_KEY)
    if failure == "stripe answers 500":
        STRIPE.fail_status = 500
    STRIPE.customers = [customer("cus_F", "f@example.com")]
    setup.send("customer.created", customer("cus_H", "hook@example.com"), created=int(time.time()) - 60)
    run = setup.pull(attempts=jobs.MAX_ATTEMPTS)
    assert run.status == "failed"
    db.session.expire_all()
    pull = db.session.get(SourceConnection, setup.pull_id)
    webhook = db.session.get(SourceConnection, setup.webhook_id)
    assert pull.health_status in ("degraded", "error")
    assert webhook.health_status not in ("degraded", "error")
    from hookstream_ui.services import live

    # Not ERROR: the webhook source still works. The service says so; the API must too.
    assert live.collection_state(db.session.get(Collection, setup.collection_id)).status == "PARTIAL_ERROR"
    assert setup.status() == "PARTIAL_ERROR"
    # The webhook still writes into the collection meanwhile.
    setup.send("customer.updated", customer("cus_H", "still@example.com"), created=int(time.time()))
    assert setup.record("cus_H").data["email"] == "still@example.com"
    assert setup.record("cus_F") is None
    assert setup.status() == "PARTIAL_ERROR"


def _webhook(client, key, verification: str) -> str:
    credentials = {"verification_type": verification}
    if verification != "none":
        credentials["signing_secret"] = SIGNING_SECRET
    made = client.post(
        "/api/v1/source-connections",
        headers=auth(key),
        json={"sourceShortName": "webhook", "name": f"{verification} hooks", "credentials": credentials},
    )
    assert made.status_code in (200, 201), made.json
    return made.json["sourceConnection"]["id"]


@pytest.mark.parametrize(
    ("verification", "key_path", "given", "expected"),
    [
        # A Stripe event keeps its object at data.object, its time in created, its type in type.
        ("stripe", "$.id", {}, ("$.data.object", "$.created", "$.type")),
        # A Standard Webhooks payload: data, timestamp, type.
        ("standard_webhooks", "$.id", {}, ("$.data", "$.timestamp", "$.type")),
        # A key path written for the whole event keeps the event as the record.
        ("stripe", "$.data.object.id", {}, (None, "$.created", "$.type")),
        # What the caller names wins.
        ("stripe", "$.id", {"record_path": "$.data", "timestamp_path": "$.at"}, ("$.data", "$.at", "$.type")),
        # Nothing is known of an unsigned webhook's shape.
        ("none", "$.id", {}, (None, None, None)),
    ],
)
def test_a_webhook_binds_with_its_signing_schemes_event_shape(
    client, key, verification, key_path, given, expected
):
    source_id = _webhook(client, key, verification)
    made = client.post(
        "/v1/collections", headers=auth(key), json={"name": "Shaped", "primary_key_path": key_path}
    )
    assert made.status_code == 201, made.json
    collection_id = made.json["collection"]["id"]
    answer = client.post(
        f"/v1/collections/{collection_id}/sources", headers=auth(key), json={"source_id": source_id, **given}
    )
    assert answer.status_code == 201, answer.json
    binding = db.session.scalar(
        select(Binding).where(Binding.collection_id == collection_id, Binding.source_id == source_id)
    )
    assert (binding.record_path, binding.timestamp_path, binding.event_type_field) == expected


def test_a_stripe_event_lands_under_its_objects_key_with_no_mapping_given(app, client, key):
    """Bound with nothing but its id (as the collection form binds it), a Stripe-signed
    webhook's customer.updated lands as the customer, and customer.deleted removes it."""
    source_id = _webhook(client, key, "stripe")
    made = client.post(
        "/v1/collections",
        headers=auth(key),
        json={"name": "Customers", "primary_key_path": "$.id", "source_id": source_id},
    )
    assert made.status_code == 201, made.json
    setup = Setup(client, key, source_id, "", made.json["collection"]["id"])
    now = int(time.time())
    setup.send("customer.updated", customer("cus_S", "shaped@example.com"), created=now - 10)
    setup.send("customer.updated", customer("cus_S", "stale@example.com"), created=now - 20)
    record = setup.record("cus_S")
    assert record is not None and record.data == customer(
        "cus_S", "shaped@example.com", record.data["created"]
    )
    setup.send("customer.deleted", {"id": "cus_S", "object": "customer", "deleted": True}, created=now)
    assert setup.record("cus_S") is None


def test_a_pull_that_read_before_a_delete_does_not_bring_the_record_back(setup):
    now = int(time.time())
    setup.send("customer.created", customer("cus_G", "gone@example.com"), created=now - 100)
    # Deleted after the list is read (its event is newer than the read time of any pull now).
    setup.send("customer.deleted", {"id": "cus_G", "object": "customer", "deleted": True}, created=now + 3600)
    assert setup.record("cus_G") is None
    STRIPE.customers = [customer("cus_G", "gone@example.com"), customer("cus_K", "kept@example.com")]
    run = setup.pull()
    assert run.status == "completed", run.error
    assert setup.record("cus_G") is None and setup.record("cus_K") is not None
    assert run.records_inserted == 1
    assert db.session.get(Collection, setup.collection_id).record_count == 1


def test_a_pull_newer_than_a_delete_writes_the_record_again(setup):
    long_ago = int(time.time()) - 7 * 86_400
    setup.send("customer.deleted", {"id": "cus_N", "object": "customer", "deleted": True}, created=long_ago)
    STRIPE.customers = [customer("cus_N", "back@example.com")]
    assert setup.pull().status == "completed"
    assert setup.record("cus_N").data["email"] == "back@example.com"


def test_a_delete_that_comes_before_the_create_wins(setup):
    now = int(time.time())
    # Out of order: the deletion is delivered first, of a key not stored yet.
    setup.send("customer.deleted", {"id": "cus_O", "object": "customer", "deleted": True}, created=now - 50)
    setup.send("customer.created", customer("cus_O", "late@example.com"), created=now - 100)
    setup.send("customer.updated", customer("cus_O", "same-second@example.com"), created=now - 50)
    assert setup.record("cus_O") is None
    assert db.session.get(Collection, setup.collection_id).record_count == 0
    # A version newer than the deletion is a new state of the key, and lands.
    setup.send("customer.updated", customer("cus_O", "newer@example.com"), created=now)
    assert setup.record("cus_O").data["email"] == "newer@example.com"


def test_what_a_full_re_read_removed_stays_removed(setup):
    STRIPE.customers = [customer("cus_R", "read@example.com")]
    assert setup.pull().status == "completed"
    STRIPE.customers = []
    second = setup.pull()
    assert second.status == "completed" and second.records_deleted == 1
    started = int(second.started_at.timestamp())
    # A webhook from before that read began, delivered late, is older than the removal.
    setup.send("customer.updated", customer("cus_R", "stale@example.com"), created=started - 60)
    assert setup.record("cus_R") is None
    setup.send("customer.updated", customer("cus_R", "fresh@example.com"), created=started + 60)
    assert setup.record("cus_R").data["email"] == "fresh@example.com"


def test_deletions_are_forgotten_after_thirty_days(setup):
    from datetime import timedelta

    from hookstream_ui.models import RecordDeletion
    from hookstream_ui.services import retention
    from hookstream_ui.values.times import utcnow

    now = int(time.time())
    for n, created in enumerate((now - 31 * 86_400, now - 29 * 86_400)):
        setup.send("customer.deleted", {"id": f"cus_{n}", "object": "customer"}, created=created)
    assert retention.prune_deletions(utcnow()) == 1
    assert db.session.scalars(select(RecordDeletion.record_key)).all() == ["cus_1"]
    assert retention.prune_deletions(utcnow() + timedelta(days=2)) == 1


def test_a_binding_takes_only_the_event_types_it_names(client, key):
    """One Stripe endpoint carries invoices and subscriptions too; `customers` takes the
    customer events, deletions included, by name or under a prefix."""
    source_id = _webhook(client, key, "stripe")
    made = client.post(
        "/v1/collections", headers=auth(key), json={"name": "Customers", "primary_key_path": "$.id"}
    )
    collection_id = made.json["collection"]["id"]
    taken = ["customer.created", "customer.updated", "customer.deleted"]
    bound = client.post(
        f"/v1/collections/{collection_id}/sources",
        headers=auth(key),
        json={"source_id": source_id, "event_types": taken},
    )
    assert bound.status_code == 201 and bound.json["source"]["event_types"] == taken, bound.json
    setup = Setup(client, key, source_id, "", collection_id)
    now = int(time.time())
    setup.send("customer.created", customer("cus_T", "taken@example.com"), created=now - 30)
    setup.send("invoice.paid", {"id": "in_1", "object": "invoice", "customer": "cus_T"}, created=now - 20)
    setup.send("customer.subscription.created", {"id": "sub_1", "object": "subscription"}, created=now - 10)
    db.session.expire_all()
    assert db.session.scalars(select(Record.record_key)).all() == ["cus_T"]
    setup.send("customer.deleted", {"id": "cus_T", "object": "customer", "deleted": True}, created=now)
    assert setup.record("cus_T") is None

    # Under a prefix: every type that starts with it.
    changed = client.patch(
        f"/v1/collections/{collection_id}/sources/{source_id}",
        headers=auth(key),
        json={"event_types": ["invoice.*"]},
    )
    assert changed.status_code == 200 and changed.json["source"]["event_types"] == ["invoice.*"]
    setup.send("invoice.paid", {"id": "in_2", "object": "invoice"}, created=now + 1)
    setup.send("customer.updated", customer("cus_U", "not-now@example.com"), created=now + 2)
    assert setup.record("in_2") is not None and setup.record("cus_U") is None


def test_a_pull_source_has_no_event_types_to_take(client, key, http_fixture):
    pulled = client.post(
        "/api/v1/source-connections",
        headers=auth(key),
        json={
            "sourceShortName": "stripe",
            "name": "Stripe API",
            "credentials": {"secret_key": STRIPE_KEY, "api_base": http_fixture.base},
        },
    ).json["sourceConnection"]["id"]
    made = client.post(
        "/v1/collections", headers=auth(key), json={"name": "Customers", "primary_key_path": "$.id"}
    )
    collection_id = made.json["collection"]["id"]
    refused = client.post(
        f"/v1/collections/{collection_id}/sources",
        headers=auth(key),
        json={"source_id": pulled, "stream": "customer", "event_types": ["customer.created"]},
    )
    assert refused.status_code == 400 and "event_types" in refused.json["errors"], refused.json
    db.session.expire_all()
    assert db.session.get(Collection, collection_id).bindings == []
