"""The HubSpot source, end to end through real sync runs against the fixture HubSpot: the
Syncs API's request, `after` pages, the search API for changes, archived objects removed,
rate limits and refusals."""

from __future__ import annotations

import copy
import itertools
import time

from sqlalchemy import select

from hookstream_ui.models import Collection, SyncRun, db
from hookstream_ui.sources import MASK
from tests.helpers import connect_pull
from tests.helpers import records_of as records
from tests.helpers import run_inline as run
from tests.hubspot_fixture import EPOCH, HUBSPOT, HUBSPOT_TOKEN, PREFIX, stamp

# The contract's example request for creating a sync, for HubSpot: only the provider, its
# streams, its rate limit and the credential differ.
SEED_REQUEST = {
    "provider": "hubspot",
    "stream_id": "f0f70b52-5243-489c-879b-a1ae3f02abfd",
    "name": "Choam Corp - HubSpot Production",
    "collection_ids": ["hubspot:contact", "hubspot:company"],
    "rate_limit": {"allowed_requests": 1000, "interval": 60, "max_concurrent_requests": 0},
    "credential": {
        "properties": {
            "kind": "hubspot_token",
            "secret": HUBSPOT_TOKEN,
            "test": True,
            "name": "Choam Corp - HubSpot [Test]",
        },
        "oauth_app_id": "8ff58ef0-d376-4ae8-b2e2-9f0206aa65b8",
        "metadata": {"custom_credential_property": 42},
    },
    "metadata": {"custom_property": 42},
    "external_id": "{YOUR_EXTERNAL_ID}",
}


def connect(client, key, base: str, stream: str, token: str = HUBSPOT_TOKEN) -> tuple[str, str]:
    return connect_pull(client, key, "HubSpot", {"token": token, "base_url": base + PREFIX}, stream)


def asked(method: str, path: str) -> list[dict]:
    return [r for r in HUBSPOT.requests if r["method"] == method and r["path"] == path]


def ms(second: float) -> str:
    return str(int((EPOCH + second) * 1000))


def test_the_seed_request_for_hubspot_syncs_contacts_and_companies(client, key, http_fixture):
    HUBSPOT.add("contacts", 150, second=10)
    HUBSPOT.add("companies", 3, second=20)
    body = copy.deepcopy(SEED_REQUEST)
    body["credential"]["properties"]["base_url"] = http_fixture.base + PREFIX
    answer = client.post("/v1/syncs", json=body, headers={"Authorization": f"Bearer {key}"})
    assert answer.status_code == 201, answer.json
    sync = answer.json
    assert sync["provider"] == "hubspot" and sync["collection_ids"] == SEED_REQUEST["collection_ids"]
    assert sync["rate_limit"] == SEED_REQUEST["rate_limit"] and sync["external_id"] == "{YOUR_EXTERNAL_ID}"
    assert sync["credential"]["properties"] == {
        "auth_method": "token",  # the default, said back: a private app's token, not OAuth
        "kind": "hubspot_token",
        "secret": MASK,
        "test": True,
        "name": "Choam Corp - HubSpot [Test]",
        "base_url": http_fixture.base + PREFIX,
    }
    assert HUBSPOT_TOKEN not in answer.get_data(as_text=True)
    made = {c.stream: c for c in db.session.scalars(select(Collection))}
    assert {s: c.primary_key_path for s, c in made.items()} == {"contact": "$.id", "company": "$.id"}
    assert made["contact"].slug == "hubspot-contact"

    done = run(sync["id"])
    assert done.status == "completed", done.error
    contacts = records(made["contact"].id)
    assert len(contacts) == 150 and len(records(made["company"].id)) == 3
    some = next(iter(contacts.values()))
    assert some["properties"]["email"].endswith("@example.com") and some["updatedAt"] == stamp(10)
    pages = asked("GET", "/crm/v3/objects/contacts")
    live = [p["query"] for p in pages if p["query"]["archived"] == "false"]
    assert [q.get("after") for q in live] == [None, "201"]  # the first page's paging.next.after
    assert {q["limit"] for q in live} == {"100"} and "email" in live[0]["properties"].split(",")
    assert [p["query"]["archived"] for p in pages] == ["false", "false", "true"]
    assert not asked("POST", "/crm/v3/objects/contacts/search")  # a backfill lists
    assert {r["auth"] for r in HUBSPOT.requests} == {f"Bearer {HUBSPOT_TOKEN}"}
    tested = client.post(f"/api/v1/source-connections/{sync['id']}/test", json={}, headers={"X-API-Key": key})
    assert tested.json["message"] == "Connected to HubSpot", tested.json


def test_changes_are_read_through_the_search_api_from_the_newest_seen(client, key, http_fixture):
    made = HUBSPOT.add("contacts", 5, second=10) + HUBSPOT.add("contacts", 3, second=30)
    sid, cid = connect(client, key, http_fixture.base, "contact")
    done = run(sid)
    assert done.status == "completed" and done.records_inserted == 8, done.error

    HUBSPOT.requests.clear()
    HUBSPOT.change("contacts", made[0]["id"], second=100, firstname="Renamed")
    HUBSPOT.add("contacts", 1, second=101)
    done = run(sid)
    assert done.status == "completed" and done.mode == "incremental", done.error
    [search] = asked("POST", "/crm/v3/objects/contacts/search")
    assert search["body"]["filterGroups"] == [
        {"filters": [{"propertyName": "lastmodifieddate", "operator": "GTE", "value": ms(30)}]}
    ]  # the newest modification the backfill saw, in epoch milliseconds
    assert search["body"]["sorts"] == [{"propertyName": "lastmodifieddate", "direction": "ASCENDING"}]
    assert "email" in search["body"]["properties"] and "after" not in search["body"]
    assert not [r for r in asked("GET", "/crm/v3/objects/contacts") if r["query"]["archived"] == "false"]
    assert done.records_inserted == 1 and done.records_updated == 1
    data = records(cid)
    assert len(data) == 9 and data[made[0]["id"]]["properties"]["firstname"] == "Renamed"

    HUBSPOT.requests.clear()
    done = run(sid)
    assert done.status == "completed" and done.records_inserted == done.records_updated == 0, done.error
    [search] = asked("POST", "/crm/v3/objects/contacts/search")
    assert search["body"]["filterGroups"][0]["filters"][0]["value"] == ms(101)


def test_more_properties_are_read_when_the_config_names_them(client, key, http_fixture):
    [contact] = HUBSPOT.add("contacts", 1, second=10)
    contact["properties"].update(
        favourite_colour="teal", hs_analytics_source="ORGANIC_SEARCH", secret_note="x"
    )
    r = client.post(
        "/api/v1/source-connections",
        headers={"X-API-Key": key},
        json={
            "sourceShortName": "hubspot",
            "name": "HubSpot",
            "credentials": {"token": HUBSPOT_TOKEN, "base_url": http_fixture.base + PREFIX},
            "config": {"properties": "email; DROP"},
        },
    )
    assert r.status_code == 400 and "properties" in r.json["errors"], r.json
    sid, cid = connect(client, key, http_fixture.base, "contact")
    r = client.put(
        f"/api/v1/source-connections/{sid}/config",
        headers={"X-API-Key": key},
        json={"config": {"properties": "favourite_colour, hs_analytics_source, email"}},
    )
    assert r.status_code == 200, r.json
    done = run(sid)
    assert done.status == "completed", done.error
    read = records(cid)[contact["id"]]["properties"]
    assert read["favourite_colour"] == "teal" and read["hs_analytics_source"] == "ORGANIC_SEARCH"
    assert read["email"] == contact["properties"]["email"] and "secret_note" not in read  # only those named
    [listed] = [r for r in asked("GET", "/crm/v3/objects/contacts") if r["query"]["archived"] == "false"]
    assert listed["query"]["properties"].count("email") == 1  # named twice, asked once

    HUBSPOT.change("contacts", contact["id"], second=20, favourite_colour="plum")
    done = run(sid)
    assert done.status == "completed" and done.mode == "incremental", done.error
    [search] = asked("POST", "/crm/v3/objects/contacts/search")
    assert "favourite_colour" in search["body"]["properties"]
    assert records(cid)[contact["id"]]["properties"]["favourite_colour"] == "plum"


def test_search_pages_by_after_in_the_body(client, key, http_fixture):
    HUBSPOT.add("deals", 2, second=5)
    sid, cid = connect(client, key, http_fixture.base, "deal")
    assert run(sid).status == "completed"
    HUBSPOT.add("deals", 450, second=50)
    HUBSPOT.requests.clear()
    done = run(sid)
    assert done.status == "completed" and done.records_inserted == 450, done.error
    searches = asked("POST", "/crm/v3/objects/deals/search")
    assert [s["body"].get("after") for s in searches] == [None, "200", "400"]
    assert {s["body"]["filterGroups"][0]["filters"][0]["propertyName"] for s in searches} == {
        "hs_lastmodifieddate"
    }
    assert len(records(cid)) == 452


def test_archived_objects_are_removed_and_not_again(client, key, http_fixture):
    made = HUBSPOT.add("companies", 5, second=10)
    sid, cid = connect(client, key, http_fixture.base, "company")
    assert run(sid).status == "completed" and len(records(cid)) == 5

    HUBSPOT.archive("companies", made[1]["id"], second=60)
    HUBSPOT.archive("companies", made[3]["id"], second=61)
    done = run(sid)
    assert done.status == "completed" and done.mode == "incremental", done.error
    assert done.records_deleted == 2
    assert set(records(cid)) == {made[0]["id"], made[2]["id"], made[4]["id"]}
    archived = [r for r in asked("GET", "/crm/v3/objects/companies") if r["query"]["archived"] == "true"]
    assert len(archived) == 2  # read on the backfill and on this read

    binding = db.session.scalar(select(Collection).where(Collection.id == cid)).bindings[0]
    assert binding.sync_state == {"since": stamp(10), "removed_since": stamp(61)}
    done = run(sid)  # the archived list again: what it removed already is passed over
    assert done.status == "completed" and done.records_deleted == 0, done.error
    # The three searched again (changed at the newest moment seen), and the one archived at
    # the newest archive time seen; not the one archived before it.
    assert done.records_skipped == 4
    assert len(records(cid)) == 3


def test_rate_limits_are_waited_out_not_run_into(client, key, http_fixture):
    """A spent window (X-HubSpot-RateLimit-Remaining: 0) waits out its length before the
    next request; a 429 with Retry-After is sent again after it."""
    HUBSPOT.add("tickets", 350, second=1)  # 4 pages, then the archived list
    HUBSPOT.budget, HUBSPOT.window_ms = 2, 1000
    HUBSPOT.too_fast = [1]
    sid, cid = connect(client, key, http_fixture.base, "ticket")
    done = run(sid)
    assert done.status == "completed" and len(records(cid)) == 350, done.error
    assert HUBSPOT.refused == 0  # never sent while the window was spent
    pages = asked("GET", "/crm/v3/objects/tickets")
    assert len(pages) == 6  # the first page twice: once refused with 429, once after its wait
    assert pages[1]["at"] - pages[0]["at"] >= 1.0 and pages[1]["query"] == pages[0]["query"]
    assert pages[-1]["at"] - pages[1]["at"] >= 2.0  # five answered pages at two a window
    # Spaced evenly within the announced budget (0.51 s apart at 98% of it), not sent in a
    # burst that spends the window. Times are taken as calls arrive, so one that arrived late
    # brings the next nearer: the refusals above are the exact check, this the shape.
    answered = [r["at"] for r in HUBSPOT.requests][2:]
    assert min(b - a for a, b in itertools.pairwise(answered)) >= 0.4


def test_a_rejected_token_fails_the_run_at_once(client, key, http_fixture):
    HUBSPOT.add("contacts", 3)
    sid, _ = connect(client, key, http_fixture.base, "contact", token="pat-na1-wrong")
    done = run(sid)
    assert (done.status, done.attempt) == ("failed", 1)
    assert done.error.startswith(
        "HubSpot rejected the credentials (HTTP 401): Authentication credentials not found."
    ), done.error
    assert len(HUBSPOT.requests) == 1  # not retried: the same token cannot pass next time


def test_search_past_its_result_limit_asks_again_from_the_newest_seen(client, key, http_fixture):
    """The search API pages through 10,000 results of one query at most: the read asks again
    from the newest modification it read. A sync with max_age_days searches from the start."""
    now = int(time.time()) - EPOCH
    first = HUBSPOT.add("contacts", 9_950, second=now - 3600)
    HUBSPOT.add("contacts", 120, second=now - 60)
    body = copy.deepcopy(SEED_REQUEST)
    body.update(collection_ids=["hubspot:contact"], max_age_days=2)
    body["rate_limit"] = {"allowed_requests": 1000, "interval": 1, "max_concurrent_requests": 0}
    body["credential"]["properties"]["base_url"] = http_fixture.base + PREFIX
    sync = client.post("/v1/syncs", json=body, headers={"X-API-Key": key}).json
    done = run(sync["id"])
    assert done.status == "completed", done.error
    assert len(records(db.session.scalar(select(Collection)).id)) == 10_070
    searches = asked("POST", "/crm/v3/objects/contacts/search")
    assert [s["body"].get("after") for s in searches[48:]] == ["9600", "9800", None]
    floor, again = (s["body"]["filterGroups"][0]["filters"][0]["value"] for s in (searches[0], searches[-1]))
    assert abs(int(floor) / 1000 - (time.time() - 2 * 86400)) < 60  # the age cutoff
    assert again == ms(now - 60)  # the newest the capped query read: its last page held the new ones
    assert first[0]["id"] in records(db.session.scalar(select(Collection)).id)


def test_a_read_that_stopped_in_the_archived_list_resumes_there(client, key, http_fixture):
    from hookstream_ui.sync import jobs

    made = HUBSPOT.add("tickets", 3, second=10)
    HUBSPOT.archive("tickets", made[0]["id"], second=20)
    HUBSPOT.archived_broken = True
    sid, cid = connect(client, key, http_fixture.base, "ticket")
    failed = run(sid)
    assert (failed.status, failed.attempt) == ("pending", 1)  # retried later: a 5xx may pass
    assert failed.error.startswith("HubSpot answered HTTP 502 for "), failed.error
    assert len(records(cid)) == 2  # the live list, kept

    HUBSPOT.archived_broken, HUBSPOT.requests = False, []
    jobs.run_sync(failed.id, failed.claim_token)
    db.session.expire_all()
    done = db.session.get(SyncRun, failed.id)
    assert done.status == "completed", done.error
    assert [(r["method"], r["query"]["archived"]) for r in HUBSPOT.requests] == [("GET", "true")]
    binding = db.session.scalar(select(Collection).where(Collection.id == cid)).bindings[0]
    assert binding.sync_state == {"since": stamp(10), "removed_since": stamp(20)}


def test_a_hubspot_sync_runs_on_a_real_worker_under_its_rate_limit(client, key, http_fixture, workers):
    from hookstream_ui.sync.scheduler import enqueue_due
    from tests.sync_helpers import wait_for

    made = [c for i in range(450) for c in HUBSPOT.add("contacts", 1, second=i)]  # 5 pages, then archived
    body = copy.deepcopy(SEED_REQUEST)
    body.update(collection_ids=["hubspot:contact"], rate_limit={"allowed_requests": 2, "interval": 1})
    body["credential"]["properties"]["base_url"] = http_fixture.base + PREFIX
    sync = client.post("/v1/syncs", json=body, headers={"X-API-Key": key}).json
    [run_id] = enqueue_due()  # a new sync's backfill is due at once
    workers(1)
    done = wait_for(run_id)
    assert done.status == "completed" and done.records_inserted == 450, done.error
    times = [r["at"] for r in HUBSPOT.requests]
    # 6 requests at 2 per 1-second window need 3 windows: more than 1 s from first to last,
    # and never more than 2 x 2 in any second (a burst across a boundary).
    assert len(times) == 6 and times[-1] - times[0] > 1.0
    assert max(sum(1 for t in times if start <= t < start + 1) for start in times) <= 4

    HUBSPOT.change("contacts", made[7]["id"], second=500, lastname="Changed")
    HUBSPOT.archive("contacts", made[8]["id"], second=501)
    HUBSPOT.requests.clear()
    answer = client.post(f"/api/v1/source-connections/{sync['id']}/run", json={}, headers={"X-API-Key": key})
    done = wait_for(answer.json["syncId"])
    assert done.status == "completed" and done.mode == "incremental", done.error
    assert (done.records_updated, done.records_deleted) == (1, 1)
    assert [r["method"] for r in HUBSPOT.requests] == ["POST", "GET"]  # the search, the archived list
