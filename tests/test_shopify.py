"""The Shopify source, end to end through real sync runs against the fixture shop: the Syncs
API's request, page_info Link pages, `updated_at_min`, the shop's leaky bucket, deletions
seen by a full read, and refusals."""

from __future__ import annotations

import copy

from sqlalchemy import select

from hookstream_ui.models import Collection, db
from hookstream_ui.sources import MASK, source_type
from tests.helpers import connect_pull
from tests.helpers import records_of as records
from tests.helpers import run_inline as run
from tests.shopify_fixture import API, BAD_TOKEN, PREFIX, SHOPIFY, SHOPIFY_TOKEN, stamp

SEED_REQUEST = {
    "provider": "shopify",
    "stream_id": "f0f70b52-5243-489c-879b-a1ae3f02abfd",
    "name": "Choam Corp - Shopify Production",
    "collection_ids": ["shopify:customers", "shopify:orders", "shopify:products"],
    "rate_limit": {"allowed_requests": 100, "interval": 60, "max_concurrent_requests": 0},
    "credential": {
        "properties": {
            "kind": "shopify_token",
            "secret": SHOPIFY_TOKEN,
            "shop": "acme",
            "test": True,
            "name": "Choam Corp - Shopify [Test]",
        },
        "metadata": {"custom_credential_property": 42},
    },
    "external_id": "{YOUR_EXTERNAL_ID}",
}


def connect(client, key, base: str, stream: str, token: str = SHOPIFY_TOKEN) -> tuple[str, str]:
    credentials = {"shop": "acme", "access_token": token, "base_url": base + PREFIX}
    return connect_pull(client, key, "Shopify", credentials, stream)


def asked(what: str) -> list[dict]:
    return [r for r in SHOPIFY.requests if r["path"] == f"{API}/{what}.json"]


def test_the_seed_request_for_shopify_syncs_each_stream(client, key, http_fixture):
    SHOPIFY.add("customers", 3)
    SHOPIFY.add("orders", 2)
    SHOPIFY.add("products", 4)
    body = copy.deepcopy(SEED_REQUEST)
    body["credential"]["properties"]["base_url"] = http_fixture.base + PREFIX
    answer = client.post("/v1/syncs", json=body, headers={"Authorization": f"Bearer {key}"})
    assert answer.status_code == 201, answer.json
    sync = answer.json
    assert sync["provider"] == "shopify" and sync["collection_ids"] == SEED_REQUEST["collection_ids"]
    assert sync["credential"]["properties"] == {
        "kind": "shopify_token",
        "secret": MASK,
        "shop": "acme",
        "test": True,
        "name": "Choam Corp - Shopify [Test]",
        "api_version": "2025-07",
        "base_url": http_fixture.base + PREFIX,
    }
    assert SHOPIFY_TOKEN not in answer.get_data(as_text=True)
    made = {c.stream: c for c in db.session.scalars(select(Collection))}
    assert {s: c.primary_key_path for s, c in made.items()} == {
        "customers": "$.id",
        "orders": "$.id",
        "products": "$.id",
    }
    done = run(sync["id"])
    assert done.status == "completed", done.error
    assert [len(records(made[s].id)) for s in ("customers", "orders", "products")] == [3, 2, 4]
    assert {r["token"] for r in SHOPIFY.requests} == {SHOPIFY_TOKEN}
    tested = client.post(f"/api/v1/source-connections/{sync['id']}/test", json={}, headers={"X-API-Key": key})
    assert tested.json["message"] == "Connected to Shopify as Acme Store", tested.json


def test_a_backfill_follows_page_info_links_then_reads_changes_since(client, key, http_fixture):
    customers = SHOPIFY.add("customers", 600)
    sid, cid = connect(client, key, http_fixture.base, "customers")
    done = run(sid)
    assert done.status == "completed" and done.records_inserted == 600, done.error
    pages = asked("customers")
    assert pages[0]["query"] == {"limit": "250"}
    # The next pages are their link, whole: page_info with limit, nothing else beside it.
    assert [set(p["query"]) for p in pages[1:]] == [{"limit", "page_info"}] * 2

    SHOPIFY.requests.clear()
    customers[9].update(first_name="Renamed", updated_at=stamp(1000))
    SHOPIFY.add("customers", 1, first_second=1001)
    done = run(sid)
    assert done.status == "completed" and done.mode == "incremental", done.error
    [page] = asked("customers")
    assert page["query"]["updated_at_min"] == stamp(599)  # the newest updated_at the backfill saw
    assert done.records_inserted == 1 and done.records_updated == 1
    data = records(cid)
    assert len(data) == 601 and any(c["first_name"] == "Renamed" for c in data.values())

    SHOPIFY.requests.clear()
    done = run(sid)
    assert done.status == "completed" and done.records_inserted == done.records_updated == 0, done.error
    assert asked("customers")[0]["query"]["updated_at_min"] == stamp(1001)


def test_orders_of_any_status_and_a_full_read_removes_what_is_gone(client, key, http_fixture):
    orders = SHOPIFY.add("orders", 4)
    orders[0]["cancelled_at"] = orders[0]["closed_at"] = stamp(50)
    orders[1]["closed_at"] = stamp(60)
    sid, cid = connect(client, key, http_fixture.base, "orders")
    done = run(sid)
    assert done.status == "completed" and len(records(cid)) == 4, done.error
    assert asked("orders")[0]["query"]["status"] == "any"

    gone = SHOPIFY.lists["orders"].pop(3)
    SHOPIFY.lists["orders"][2].update(cancelled_at=stamp(70), updated_at=stamp(70))
    done = run(sid)  # incremental: Shopify's lists do not say what was deleted
    assert done.status == "completed" and done.records_deleted == 0 and len(records(cid)) == 4, done.error
    done = run(sid, full=True)
    assert done.status == "completed" and done.records_deleted == 1, done.error
    kept = records(cid)
    assert str(gone["id"]) not in kept and len(kept) == 3
    assert kept[str(orders[2]["id"])]["cancelled_at"] == stamp(70)  # cancelled is not deleted


def test_the_leaky_bucket_is_waited_out_not_run_into(client, key, http_fixture):
    """Other clients have nearly filled the shop's bucket: the read slows to its leak rate as
    the call-limit header says, and is never refused for a full bucket."""
    SHOPIFY.add("products", 1100)  # 5 pages
    SHOPIFY.full_at_first_call = 37
    sid, cid = connect(client, key, http_fixture.base, "products")
    done = run(sid)
    assert done.status == "completed" and len(records(cid)) == 1100, done.error
    assert SHOPIFY.too_many == 0  # at full speed the fourth page would find the bucket full
    times = [r["at"] for r in asked("products")]
    assert len(times) == 5
    assert times[1] - times[0] >= 2.0  # drained back below 80% before the second page
    # Then at about the leak rate: the bucket sits at 80%, each call waiting for one to leak.
    assert times[-1] - times[1] >= 1.0


def test_a_429_is_sent_again_after_its_retry_after(client, key, http_fixture):
    SHOPIFY.add("products", 2)
    SHOPIFY.too_fast = ["1.5"]
    sid, cid = connect(client, key, http_fixture.base, "products")
    done = run(sid)
    assert done.status == "completed" and len(records(cid)) == 2, done.error
    refused, again = asked("products")
    assert again["at"] - refused["at"] >= 1.5 and again["query"] == refused["query"]


def test_a_rejected_token_fails_the_run_at_once(client, key, http_fixture):
    SHOPIFY.add("customers", 3)
    sid, _ = connect(client, key, http_fixture.base, "customers", token="shpat_wrong")
    done = run(sid)
    assert (done.status, done.attempt) == ("failed", 1)
    assert done.error == f"Shopify rejected the credentials (HTTP 401): {BAD_TOKEN}"
    assert len(SHOPIFY.requests) == 1  # not retried: the same token cannot pass next time


def test_the_shop_can_name_only_a_myshopify_host(client, key):
    kind = source_type("shopify")
    assert kind.base_url({"shop": "Acme-2"}) == "https://acme-2.myshopify.com/admin/api/2025-07"
    assert (
        kind.base_url({"shop": "acme.myshopify.com", "api_version": "2025-01"})
        == "https://acme.myshopify.com/admin/api/2025-01"
    )
    h = {"X-API-Key": key}
    for shop in ("evil.com", "acme.myshopify.com.evil.com", "evil.com/x", "acme@evil.com", "acme:8080", "-a"):
        answer = client.post(
            "/api/v1/source-connections",
            headers=h,
            json={
                "sourceShortName": "shopify",
                "name": "S",
                "credentials": {"shop": shop, "access_token": "t"},
            },
        )
        assert answer.status_code == 400 and "shop" in answer.json["errors"], (shop, answer.json)
    answer = client.post(
        "/api/v1/source-connections",
        headers=h,
        json={
            "sourceShortName": "shopify",
            "name": "S",
            "credentials": {"shop": "acme", "access_token": "t", "api_version": "2024-11"},
        },
    )
    assert answer.status_code == 400 and "api_version" in answer.json["errors"], answer.json
    unstable = client.post(
        "/api/v1/source-connections",
        headers=h,
        json={
            "sourceShortName": "shopify",
            "name": "S",
            "credentials": {"shop": "acme", "access_token": "t", "api_version": "unstable"},
        },
    )
    assert unstable.status_code == 201, unstable.json  # Shopify's preview of the next version


def test_the_token_is_kept_only_while_its_shop_is(client, key, http_fixture):
    sid, _ = connect(client, key, http_fixture.base, "customers")
    h = {"X-API-Key": key}
    shown = client.get(f"/api/v1/source-connections/{sid}", headers=h).json["sourceConnection"]["credentials"]
    assert shown["access_token"] == MASK
    moved = {**shown, "shop": "other"}
    answer = client.put(
        f"/api/v1/source-connections/{sid}/credentials", headers=h, json={"credentials": moved}
    )
    assert answer.status_code == 400 and "access_token" in answer.json["errors"], answer.json
    same = client.put(f"/api/v1/source-connections/{sid}/credentials", headers=h, json={"credentials": shown})
    assert same.status_code == 200, same.json


def test_the_call_limit_header_slows_down_only_past_four_fifths():
    import httpx

    kind = source_type("shopify")

    def pause(said: str) -> float | None:
        return kind.pause_after(httpx.Response(200, headers={"X-Shopify-Shop-Api-Call-Limit": said}))

    assert pause("1/40") is None and pause("31/40") is None and pause("nonsense") is None
    assert pause("32/40") == 0.5  # one leak at 2 a second: the bucket stays where it is
    assert pause("39/40") == 4.0  # back to 32 first
    assert pause("399/400") == 4.0  # a Plus shop's bucket leaks 20 a second


def test_a_shopify_sync_on_a_real_worker_keeps_out_of_a_full_bucket(client, key, http_fixture, workers):
    from hookstream_ui.sync.scheduler import enqueue_due
    from tests.sync_helpers import wait_for

    SHOPIFY.add("orders", 800)  # 4 pages
    SHOPIFY.full_at_first_call = 38
    body = copy.deepcopy(SEED_REQUEST)
    body.update(collection_ids=["shopify:orders"])
    body["credential"]["properties"]["base_url"] = http_fixture.base + PREFIX
    client.post("/v1/syncs", json=body, headers={"X-API-Key": key})
    [run_id] = enqueue_due()  # a new sync's backfill is due at once
    workers(1)
    done = wait_for(run_id)
    assert done.status == "completed" and done.records_inserted == 800, done.error
    assert len(asked("orders")) == 4 and SHOPIFY.too_many == 0
