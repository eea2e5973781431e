"""/v1/syncs as its contract states it, and Stripe syncs end to end against the fixture server."""

from __future__ import annotations

import copy
import time

import pytest
from sqlalchemy import select

from hookstream_ui.models import Collection, Record, SourceConnection, db
from tests.fixture_servers import STRIPE, STRIPE_KEY
from tests.sync_helpers import wait_for

# The contract's example request for creating a Stripe sync, verbatim.
SEED_REQUEST = {
    "provider": "stripe",
    "stream_id": "f0f70b52-5243-489c-879b-a1ae3f02abfd",
    "name": "Choam Corp - Stripe Production",
    "collection_ids": ["stripe:customer", "stripe:invoice"],
    "rate_limit": {"allowed_requests": 100, "interval": 60, "max_concurrent_requests": 0},
    "credential": {
        "properties": {
            "kind": "stripe_oauth2",
            "secret": "sk_live_7eC39HqLyjWDarjtT1zdp7dc",
            "test": True,
            "name": "Choam Corp - Stripe [Test]",
        },
        "oauth_app_id": "8ff58ef0-d376-4ae8-b2e2-9f0206aa65b8",
        "metadata": {"custom_credential_property": 42},
    },
    "metadata": {"custom_property": 42},
    "external_id": "{YOUR_EXTERNAL_ID}",
}


def test_seed_example_verbatim(client, key):
    r = client.post("/v1/syncs", json=SEED_REQUEST, headers={"Authorization": f"Bearer {key}"})
    assert r.status_code == 201, r.json
    sync = r.json
    assert sync["provider"] == "stripe" and sync["stream_id"] == SEED_REQUEST["stream_id"]
    assert sync["name"] == SEED_REQUEST["name"] and sync["status"] == "active"
    assert sync["health"] == {
        "status": "healthy",
        "last_error": None,
        "last_success_at": None,
        "sync_id": sync["id"],
    }
    assert sync["collection_ids"] == ["stripe:customer", "stripe:invoice"]
    assert sync["rate_limit"] == {"allowed_requests": 100, "interval": 60, "max_concurrent_requests": 0}
    cred = sync["credential"]
    assert sync["credential_id"] == cred["id"] and cred["provider"] == "stripe"
    assert cred["properties"] == {
        "kind": "stripe_oauth2",
        "secret": "***********",
        "test": True,
        "name": "Choam Corp - Stripe [Test]",
        "api_base": "https://api.stripe.com",
    }
    assert cred["oauth_app_id"] == SEED_REQUEST["credential"]["oauth_app_id"]
    assert cred["metadata"] == {"custom_credential_property": 42} and cred["oauth_app"] == {
        "kind": "hookstream"
    }
    assert sync["metadata"] == {"custom_property": 42} and sync["external_id"] == "{YOUR_EXTERNAL_ID}"
    assert sync["max_age_days"] is None and sync["sync_frequency"] == "4h"
    assert sync["initial_backfill_completed_at"] is None
    assert "sk_live_7eC39HqLyjWDarjtT1zdp7dc" not in r.get_data(as_text=True)
    made = {c.stream: c for c in db.session.scalars(select(Collection))}
    assert set(made) == {"customer", "invoice"}
    assert made["customer"].primary_key_path == "$.id" and made["customer"].source_id == sync["id"]
    assert made["customer"].slug == "stripe-customer" and made["customer"].status == "ACTIVE"

    h = {"X-API-Key": key}
    assert client.get(f"/v1/syncs/{sync['id']}", headers=h).json == sync
    listed = client.get("/v1/syncs", headers=h).json
    assert [s["id"] for s in listed["syncs"]] == [sync["id"]] and listed["has_more"] is False
    assert client.get("/v1/syncs?external_id=nope", headers=h).json["syncs"] == []

    r = client.patch(
        f"/v1/syncs/{sync['id']}",
        json={"status": "disabled", "sync_frequency": "15m", "collection_ids": ["stripe:customer"]},
        headers=h,
    )
    assert r.status_code == 200 and r.json["status"] == "disabled" and r.json["sync_frequency"] == "15m"
    assert r.json["collection_ids"] == ["stripe:customer"]
    db.session.expire_all()
    assert db.session.scalar(select(Collection).where(Collection.slug == "stripe-invoice")).source_id is None

    r = client.delete(f"/v1/syncs/{sync['id']}", headers=h)
    assert r.json == {"id": sync["id"], "deleted": True}
    assert client.get(f"/v1/syncs/{sync['id']}", headers=h).status_code == 404


@pytest.mark.parametrize(
    "change, field",
    [
        (lambda b: b.pop("provider"), "provider"),
        (lambda b: b.update(provider="webhook"), "provider"),
        (lambda b: b.pop("name"), "name"),
        (lambda b: b.pop("stream_id"), "stream_id"),
        (lambda b: b.update(collection_ids=[]), "collection_ids"),
        (lambda b: b.update(collection_ids=["hubspot:contact"]), "collection_ids"),
        (lambda b: b.update(collection_ids=["stripe:nonsense"]), "collection_ids"),
        (lambda b: b.update(sync_frequency="hourly"), "sync_frequency"),
        (lambda b: b.update(sync_frequency="5s"), "sync_frequency"),
        (lambda b: b["rate_limit"].update(allowed_requests=0), "rate_limit.allowed_requests"),
        (lambda b: b.update(max_age_days=-1), "max_age_days"),
        (lambda b: b.update(config="acme/widgets"), "config"),
        (lambda b: b.pop("credential"), "credential"),
        (lambda b: b["credential"]["properties"].update(secret="pk_live_nope"), "secret_key"),
    ],
)
def test_bad_requests_name_the_field_and_change_nothing(client, key, change, field):
    body = copy.deepcopy(SEED_REQUEST)
    change(body)
    r = client.post("/v1/syncs", json=body, headers={"X-API-Key": key})
    assert r.status_code == 400, r.json
    assert field in r.json["errors"], r.json
    assert (
        db.session.scalar(select(SourceConnection)) is None and db.session.scalar(select(Collection)) is None
    )


def test_stripe_sync_backfill_events_and_rate_limit(client, key, http_fixture, workers):
    STRIPE.seed(950)  # 10 list pages
    body = {
        **copy.deepcopy(SEED_REQUEST),
        "collection_ids": ["stripe:customer"],
        "sync_frequency": "24h",
        "rate_limit": {"allowed_requests": 3, "interval": 1, "max_concurrent_requests": 1},
    }
    body["credential"]["properties"].update(secret=STRIPE_KEY, api_base=http_fixture.base)
    sync = client.post("/v1/syncs", json=body, headers={"X-API-Key": key}).json
    from hookstream_ui.sync.scheduler import enqueue_due

    [run_id] = enqueue_due()  # a new sync is due at once: its backfill
    workers(1)
    run = wait_for(run_id)
    assert run.status == "completed", run.error
    assert run.records_inserted == 950 and run.trigger == "schedule" and run.mode == "full"
    coll = db.session.scalar(select(Collection).where(Collection.slug == "stripe-customer"))
    assert coll.record_count == 950
    # 10 requests at 3 per 1-second window (counted in Redis, shared by all workers) need at
    # least 4 windows: more than 2 s from first to last; unthrottled they take milliseconds.
    # A fixed window allows at most 2 x 3 in any 1-second span (a burst across a boundary).
    times = sorted(STRIPE.request_times)
    assert len(times) == 10 and times[-1] - times[0] > 2.0
    assert max(sum(1 for t in times if start <= t < start + 1) for start in times) <= 6
    s = client.get(f"/v1/syncs/{sync['id']}", headers={"X-API-Key": key}).json
    assert (
        s["initial_backfill_completed_at"]
        and s["health"]["status"] == "healthy"
        and s["health"]["last_success_at"]
    )
    assert enqueue_due() == []  # next run in 24h

    STRIPE.event(
        "customer.updated",
        {**STRIPE.customers[5], "email": "first-change@example.com"},
        created=int(time.time()),
    )
    STRIPE.event("customer.updated", {**STRIPE.customers[5], "email": "changed@example.com"})
    STRIPE.event("customer.deleted", {"id": STRIPE.customers[6]["id"], "object": "customer", "deleted": True})
    STRIPE.event(
        "customer.created",
        {"id": "cus_new", "object": "customer", "created": int(time.time()), "email": "new@example.com"},
    )
    r = client.post(f"/api/v1/source-connections/{sync['id']}/run", json={}, headers={"X-API-Key": key})
    run = wait_for(r.json["syncId"])
    assert run.status == "completed" and run.mode == "incremental", run.error
    assert (run.records_inserted, run.records_updated, run.records_deleted) == (1, 1, 1)
    assert run.records_skipped == 0  # only each object's newest event is applied
    db.session.expire_all()
    data = {
        r.record_key: r.data
        for r in db.session.scalars(select(Record).where(Record.collection_id == coll.id))
    }
    assert (
        len(data) == 950 and data["cus_00005"]["email"] == "changed@example.com" and "cus_00006" not in data
    )
    assert data["cus_new"]["email"] == "new@example.com"

    # `created` has whole seconds: an event of the second the last run read up to is still
    # read, and the ones that run applied are not applied again.
    last_second = max(e["created"] for e in STRIPE.events)
    STRIPE.event(
        "customer.updated", {**STRIPE.customers[7], "email": "same-second@example.com"}, created=last_second
    )
    run = wait_for(
        client.post(f"/api/v1/source-connections/{sync['id']}/run", json={}, headers={"X-API-Key": key}).json[
            "syncId"
        ]
    )
    assert run.status == "completed" and run.mode == "incremental", run.error
    assert (run.records_inserted, run.records_updated, run.records_deleted) == (0, 1, 0)
    assert (
        db.session.scalar(select(Record.data).where(Record.record_key == "cus_00007"))["email"]
        == "same-second@example.com"
    )

    # Stripe keeps events for 30 days: a sync last read longer ago reads everything again,
    # which also finds what was deleted meanwhile.
    STRIPE.customers = [c for c in STRIPE.customers if c["id"] not in ("cus_00006", "cus_00010")]
    STRIPE.customers.append(
        {"id": "cus_new", "object": "customer", "created": int(time.time()), "email": "new@example.com"}
    )
    coll = db.session.get(Collection, coll.id)
    coll.bindings[0].sync_state = {
        **coll.bindings[0].sync_state,
        "events_since": int(time.time()) - 31 * 24 * 3600,
    }
    db.session.commit()
    run = wait_for(
        client.post(f"/api/v1/source-connections/{sync['id']}/run", json={}, headers={"X-API-Key": key}).json[
            "syncId"
        ]
    )
    assert run.status == "completed" and run.mode == "full", run.error
    assert run.records_deleted == 1 and db.session.get(Collection, coll.id).record_count == 949


def test_stripe_events_reach_the_stream_their_object_belongs_to(client, key, http_fixture, workers):
    """A subscription's events are customer.subscription.*, a dispute's charge.dispute.*:
    each stream asks for its own, and a parent's events carrying another object
    (customer.subscription.created under customer.*) do not land among the parent's."""
    STRIPE.seed(3)
    body = {
        **copy.deepcopy(SEED_REQUEST),
        "collection_ids": ["stripe:customer", "stripe:subscription", "stripe:balance_transaction"],
    }
    body["credential"]["properties"].update(secret=STRIPE_KEY, api_base=http_fixture.base)
    sync = client.post("/v1/syncs", json=body, headers={"X-API-Key": key}).json
    h = {"X-API-Key": key}
    workers(1)
    run = wait_for(
        client.post(f"/api/v1/source-connections/{sync['id']}/run", json={}, headers=h).json["syncId"]
    )
    assert run.status == "completed" and run.records_inserted == 3, run.error

    STRIPE.event(
        "customer.subscription.created",
        {
            "id": "sub_1",
            "object": "subscription",
            "customer": "cus_00001",
            "status": "active",
            "created": int(time.time()),
        },
    )
    STRIPE.event("customer.discount.created", {"id": "di_1", "object": "discount", "customer": "cus_00001"})
    STRIPE.event("customer.updated", {**STRIPE.customers[1], "email": "changed@example.com"})
    before = len(STRIPE.paths)
    run = wait_for(
        client.post(f"/api/v1/source-connections/{sync['id']}/run", json={}, headers=h).json["syncId"]
    )
    assert run.status == "completed" and run.mode == "incremental", run.error
    db.session.expire_all()
    by_stream = {
        c.stream: {
            r.record_key: r.data
            for r in db.session.scalars(select(Record).where(Record.collection_id == c.id))
        }
        for c in db.session.scalars(select(Collection))
    }
    assert set(by_stream["customer"]) == {"cus_00000", "cus_00001", "cus_00002"}
    assert by_stream["customer"]["cus_00001"]["email"] == "changed@example.com"
    assert (
        set(by_stream["subscription"]) == {"sub_1"}
        and by_stream["subscription"]["sub_1"]["status"] == "active"
    )
    # Balance transactions have no events: every read lists them (the fixture serves none).
    assert sorted(STRIPE.paths[before:]) == ["/v1/balance_transactions", "/v1/events", "/v1/events"]


# None is retried: a successful answer that is not a list object will be the same next time
# (an error status, 5xx or 429, is what is retried).
@pytest.mark.parametrize(
    "answer, reason, retried",
    [
        (b"<html>maintenance</html>", "Stripe did not answer JSON for {base}/v1/customers", False),
        (
            b'{"object": "list", "data": [{"id": "caf\xe9"}]}',
            "Stripe's answer for {base}/v1/customers is not UTF-8 text, so it is not JSON",
            False,
        ),
        (
            b'{"object": "list", "data": [{"id": "cus_1", "x": ' + b"[" * 100_000 + b"]" * 100_000 + b"}]}",
            "Stripe's answer for {base}/v1/customers is nested more than 100 levels deep",
            False,
        ),
        (
            b'["not", "a", "list", "object"]',
            "Stripe answered {base}/v1/customers with JSON that is not a list object",
            False,
        ),
        (
            b'{"object": "list", "data": {"id": "cus_1"}}',
            "Stripe answered {base}/v1/customers with JSON that is not a list object",
            False,
        ),
    ],
)
def test_stripe_answers_that_are_not_list_objects_fail_the_run_saying_why(
    client, key, http_fixture, workers, answer, reason, retried
):
    """Each once ended in "Unexpected error" (ValueError, RecursionError, AttributeError), and
    the connection test answered 500."""
    STRIPE.seed(0)
    STRIPE.raw_customers = answer
    body = {**copy.deepcopy(SEED_REQUEST), "collection_ids": ["stripe:customer"]}
    body["credential"]["properties"].update(secret=STRIPE_KEY, api_base=http_fixture.base)
    h = {"X-API-Key": key}
    sync = client.post("/v1/syncs", json=body, headers=h).json
    result = client.post(f"/api/v1/source-connections/{sync['id']}/test", json={}, headers=h)
    assert result.status_code == 200, result.json
    assert (result.json["success"], result.json["message"]) == (False, reason.format(base=http_fixture.base))
    workers(1)
    run_id = client.post(f"/api/v1/source-connections/{sync['id']}/run", json={}, headers=h).json["syncId"]
    run = wait_for(run_id, statuses=("pending", "failed"), timeout=30, attempted=True)
    assert run.error == reason.format(base=http_fixture.base)
    assert (run.status, run.attempt) == (("pending", 1) if retried else ("failed", 1))
