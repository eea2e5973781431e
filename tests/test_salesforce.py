"""The Salesforce source, end to end through real sync runs against the fixture org and its
token endpoint: SOQL pages by nextRecordsUrl, SystemModstamp changes, deletions from
queryAll, access tokens renewed before they expire and after a 401 and stored back
encrypted, a revoked refresh token that asks for a reconnect, and Salesforce's limits."""

from __future__ import annotations

import copy
from datetime import UTC, datetime, timedelta

from sqlalchemy import select

from hookstream_ui.models import Collection, SourceConnection, SyncRun, db
from hookstream_ui.sources import MASK, secrets
from tests.helpers import connect_pull
from tests.helpers import records_of as records
from tests.helpers import run_inline as run
from tests.salesforce_fixture import (
    CLIENT_ID,
    CLIENT_SECRET,
    DATA,
    REFRESH_TOKEN,
    SALESFORCE,
    TOKEN_PATH,
)

SYNC_REQUEST = {
    "provider": "salesforce",
    "stream_id": "3c1f2a4e-8b7d-4f0a-9e61-2d5b8c7a9f10",
    "name": "Choam Corp - Salesforce Production",
    "collection_ids": ["salesforce:Account", "salesforce:Invoice__c"],
    "rate_limit": {"allowed_requests": 100, "interval": 60, "max_concurrent_requests": 0},
    "credential": {
        "properties": {
            "kind": "salesforce_oauth",
            "client_id": CLIENT_ID,
            "client_secret": CLIENT_SECRET,
            "refresh_token": REFRESH_TOKEN,
            "name": "Choam Corp - Salesforce",
        }
    },
}


def sync_request(base: str, **changes) -> dict:
    body = copy.deepcopy(SYNC_REQUEST)
    body["credential"]["properties"].update(instance_url=base, token_url=base + TOKEN_PATH)
    body.update(changes)
    return body


def connect(client, key, base: str, stream: str = "Account", **credentials) -> tuple[str, str]:
    given = {
        "instance_url": base,
        "token_url": base + TOKEN_PATH,
        "client_id": CLIENT_ID,
        "client_secret": CLIENT_SECRET,
        "refresh_token": REFRESH_TOKEN,
        **credentials,
    }
    return connect_pull(client, key, "Salesforce", given, stream, "$.Id")


def stored(sid: str) -> tuple[str, dict]:
    db.session.expire_all()
    token = db.session.get(SourceConnection, sid).credentials_encrypted
    return token, secrets.decrypt(token)


def test_the_syncs_api_takes_salesforce_objects_and_backfills_them_page_by_page(client, key, http_fixture):
    SALESFORCE.add("Account", 450)
    SALESFORCE.add("Invoice__c", 3)
    SALESFORCE.batch_size = 200
    answer = client.post("/v1/syncs", json=sync_request(http_fixture.base), headers={"X-API-Key": key})
    assert answer.status_code == 201, answer.json
    sync = answer.json
    assert sync["provider"] == "salesforce" and sync["collection_ids"] == SYNC_REQUEST["collection_ids"]
    shown = sync["credential"]["properties"]
    assert shown["client_secret"] == shown["refresh_token"] == MASK and shown["client_id"] == CLIENT_ID
    assert CLIENT_SECRET not in answer.get_data(as_text=True)
    made = {c.stream: c for c in db.session.scalars(select(Collection))}
    assert {s: (c.primary_key_path, c.slug) for s, c in made.items()} == {
        "Account": ("$.Id", "salesforce-account"),
        "Invoice__c": ("$.Id", "salesforce-invoice-c"),
    }

    done = run(sync["id"])
    assert done.status == "completed", done.error
    accounts = records(made["Account"].id)
    assert len(accounts) == 450 and len(records(made["Invoice__c"].id)) == 3
    assert accounts["ACC000000000000007"]["Name"] == "Account 7"
    [token_asked] = SALESFORCE.token_requests  # one session serves the whole run
    assert token_asked == {
        "grant_type": "refresh_token",
        "client_id": CLIENT_ID,
        "client_secret": CLIENT_SECRET,
        "refresh_token": REFRESH_TOKEN,
    }
    [first] = [
        r for r in SALESFORCE.asked(DATA + "/query") if "q" in r["query"] and "Account" in r["query"]["q"]
    ]
    assert first["query"]["q"] == (
        "SELECT Id, IsDeleted, Name, SystemModstamp, BillingCity FROM Account ORDER BY SystemModstamp ASC"
    )  # neither the compound address nor the base64 logo
    pages = [r["path"] for r in SALESFORCE.asked(DATA + "/query/")]
    assert [p.rsplit("-", 1)[1] for p in pages] == ["200", "400"]  # each the page before's nextRecordsUrl
    assert {r["auth"] for r in SALESFORCE.requests} == {f"Bearer {SALESFORCE.issued[0]}"}
    encrypted, credentials = stored(sync["id"])
    assert credentials["access_token"] == SALESFORCE.issued[0] and SALESFORCE.issued[0] not in encrypted
    shown = client.get(f"/v1/syncs/{sync['id']}", headers={"X-API-Key": key}).json["credential"]["properties"]
    assert shown["access_token"] == MASK and SALESFORCE.issued[0] not in str(shown)


def test_changes_and_deletions_are_read_since_the_newest_system_modstamp(client, key, http_fixture):
    accounts = SALESFORCE.add("Account", 5)
    sid, cid = connect(client, key, http_fixture.base)
    done = run(sid)
    assert done.status == "completed" and done.records_inserted == 5, done.error

    SALESFORCE.requests.clear()
    SALESFORCE.change("Account", accounts[1]["Id"], 100, Name="Renamed")
    SALESFORCE.change("Account", accounts[3]["Id"], 101, IsDeleted=True)  # into the recycle bin
    accounts.append(SALESFORCE.record("Account", 6, second=102))
    done = run(sid)
    assert done.status == "completed" and done.mode == "incremental", done.error
    assert (done.records_inserted, done.records_updated, done.records_deleted) == (1, 1, 1)
    [asked] = SALESFORCE.asked(DATA + "/queryAll")
    assert asked["query"]["q"].endswith(
        "FROM Account WHERE SystemModstamp >= 2026-01-01T00:00:05Z ORDER BY SystemModstamp ASC"
    )
    data = records(cid)
    assert accounts[3]["Id"] not in data and len(data) == 5 and data[accounts[1]["Id"]]["Name"] == "Renamed"

    SALESFORCE.requests.clear()
    done = run(sid)
    assert done.status == "completed" and done.records_inserted == done.records_updated == 0, done.error
    assert done.records_deleted == 0
    assert "SystemModstamp >= 2026-01-01T00:01:42Z" in SALESFORCE.asked(DATA + "/queryAll")[0]["query"]["q"]


def test_an_access_token_ending_mid_read_is_renewed_stored_and_the_call_sent_again(client, key, http_fixture):
    SALESFORCE.add("Account", 500)
    SALESFORCE.batch_size = 100  # a describe and five pages
    SALESFORCE.calls_per_session = 2
    sid, cid = connect(client, key, http_fixture.base)
    before, _ = stored(sid)
    done = run(sid)
    assert done.status == "completed" and len(records(cid)) == 500, done.error
    assert len(SALESFORCE.issued) == 3
    # Each session serves two calls; the third is refused (401), and sent again once renewed.
    sessions = [SALESFORCE.issued.index(r["auth"].removeprefix("Bearer ")) for r in SALESFORCE.requests]
    assert sessions == [0, 0, 0, 1, 1, 1, 2, 2]
    paths = [r["path"].rsplit("/", 1)[-1] for r in SALESFORCE.requests]
    assert paths[2] == paths[3] and paths[5] == paths[6] and len(set(paths[2:])) == 4
    after, credentials = stored(sid)
    assert after != before and credentials["access_token"] == SALESFORCE.issued[-1]
    assert SALESFORCE.issued[-1] not in after and credentials["refresh_token"] == REFRESH_TOKEN
    assert datetime.fromisoformat(credentials["access_token_expires"].replace("Z", "+00:00")) > datetime.now(
        UTC
    )


def test_an_expired_stored_access_token_is_renewed_before_it_is_sent(client, key, http_fixture):
    """What is stored is accepted as it is, expired token and all: it must never stand in
    the way of the renewal that replaces it. A rotated refresh token is kept."""
    SALESFORCE.add("Account", 3)
    SALESFORCE.rotate = True
    past = (datetime.now(UTC) - timedelta(hours=1)).strftime("%Y-%m-%dT%H:%M:%SZ")
    sid, cid = connect(
        client, key, http_fixture.base, access_token="00Dexpired!token", access_token_expires=past
    )
    r = client.put(
        f"/api/v1/source-connections/{sid}/credentials",
        headers={"X-API-Key": key},
        json={"credentials": {"access_token_expires": "not a time"}},
    )
    assert r.status_code == 200, r.json
    done = run(sid)
    assert done.status == "completed" and len(records(cid)) == 3, done.error
    assert all(r["auth"] == f"Bearer {SALESFORCE.issued[0]}" for r in SALESFORCE.requests)
    _, credentials = stored(sid)
    [rotated] = SALESFORCE.refresh_tokens
    assert credentials["refresh_token"] == rotated != REFRESH_TOKEN

    SALESFORCE.sessions.clear()  # the session ends early: renewed with the rotated refresh token
    done = run(sid)
    assert done.status == "completed", done.error
    assert SALESFORCE.token_requests[-1]["refresh_token"] == rotated


def test_a_revoked_refresh_token_fails_the_run_asking_for_a_reconnect(client, key, http_fixture):
    SALESFORCE.add("Account", 3)
    SALESFORCE.refresh_tokens, SALESFORCE.quote_token = set(), True
    sid, _ = connect(client, key, http_fixture.base)
    done = run(sid)
    assert (done.status, done.attempt) == ("failed", 1)  # not retried: only a person can help
    assert done.error == (
        "Salesforce refused the refresh token (invalid_grant: expired access/refresh token •••); "
        "reconnect Salesforce"
    )
    assert REFRESH_TOKEN not in done.error and not SALESFORCE.requests
    db.session.expire_all()
    source = db.session.get(SourceConnection, sid)
    assert source.health_status == "error" and "reconnect Salesforce" in source.last_error


def test_a_session_refused_even_when_new_fails_once_renewed(client, key, http_fixture):
    SALESFORCE.add("Account", 3)
    SALESFORCE.reject_sessions = True
    sid, _ = connect(client, key, http_fixture.base)
    done = run(sid)
    assert (done.status, done.attempt) == ("failed", 1)
    assert (
        done.error
        == "Salesforce rejected the credentials (HTTP 401): INVALID_SESSION_ID: Session expired or invalid"
    )
    assert (
        len(SALESFORCE.requests) == 2 and len(SALESFORCE.token_requests) == 2
    )  # renewed once, not in a loop


def test_the_request_limit_fails_the_attempt_to_be_retried_later(client, key, http_fixture):
    from hookstream_ui.sync import jobs

    SALESFORCE.add("Account", 3)
    SALESFORCE.limit_exceeded = 1
    sid, cid = connect(client, key, http_fixture.base)
    failed = run(sid)
    assert (failed.status, failed.attempt) == ("pending", 1), failed.error
    assert failed.error == "Salesforce's rate limit asks us to wait 3600 s; the run will retry"
    assert len(SALESFORCE.requests) == 1  # not waited out holding the worker, nor sent again at once
    jobs.run_sync(failed.id, failed.claim_token)
    db.session.expire_all()
    assert db.session.get(SyncRun, failed.id).status == "completed" and len(records(cid)) == 3


def test_a_read_resumed_past_its_query_locator_asks_again_from_the_newest_stamp(client, key, http_fixture):
    from hookstream_ui.sync import jobs

    SALESFORCE.add("Account", 500)
    SALESFORCE.batch_size = 100
    SALESFORCE.limit_after = 3  # a describe and two pages, then the limit
    sid, cid = connect(client, key, http_fixture.base)
    stopped = run(sid)
    assert (stopped.status, stopped.attempt) == ("pending", 1), stopped.error
    assert len(records(cid)) == 200

    SALESFORCE.expire_locators()  # the next page's URL kept in the checkpoint is no more
    SALESFORCE.requests.clear()
    jobs.run_sync(stopped.id, stopped.claim_token)
    db.session.expire_all()
    done = db.session.get(SyncRun, stopped.id)
    assert done.status == "completed", done.error
    data = records(cid)
    assert len(data) == 500 and data["ACC000000000000500"]["Name"] == "Account 500"
    expired, *_ = [r for r in SALESFORCE.requests if "/describe" not in r["path"]]
    assert expired["path"].startswith(f"{DATA}/query/01g") and expired["path"].endswith("-200")
    [again] = [r["query"]["q"] for r in SALESFORCE.requests if "q" in r["query"]]
    assert again.endswith(
        "FROM Account WHERE SystemModstamp >= 2026-01-01T00:03:20Z ORDER BY SystemModstamp ASC"
    )
    assert done.records_inserted == 500 and done.records_updated == 0  # record 200 read twice, unchanged


def test_a_read_stops_once_the_org_has_used_most_of_its_daily_requests(client, key, http_fixture):
    from hookstream_ui.sync import jobs

    SALESFORCE.add("Account", 3)
    SALESFORCE.api_used = 13_499  # the first answer says 13,500 of 15,000: 90%
    sid, cid = connect(client, key, http_fixture.base)
    stopped = run(sid)
    assert (stopped.status, stopped.attempt) == ("pending", 1), stopped.error
    assert stopped.error == "Salesforce's rate limit asks us to wait 3600 s; the run will retry"
    assert len(SALESFORCE.requests) == 1  # the rest is left to the org's other users

    SALESFORCE.api_used = 0  # a day later
    jobs.run_sync(stopped.id, stopped.claim_token)
    db.session.expire_all()
    assert db.session.get(SyncRun, stopped.id).status == "completed" and len(records(cid)) == 3


def test_a_429_is_sent_again_after_its_retry_after(client, key, http_fixture):
    SALESFORCE.add("Account", 3)
    SALESFORCE.too_fast = [1]
    sid, cid = connect(client, key, http_fixture.base)
    done = run(sid)
    assert done.status == "completed" and len(records(cid)) == 3, done.error
    refused, again = SALESFORCE.asked("/describe")
    assert again["at"] - refused["at"] >= 1.0


def test_an_object_the_org_lacks_says_which_stream(client, key, http_fixture):
    SALESFORCE.add("Account", 1)
    sid, _ = connect(client, key, http_fixture.base, stream="Lead")
    done = run(sid)
    assert (done.status, done.attempt) == ("failed", 1)
    assert done.error == (
        f"Salesforce answered HTTP 404 (not found) for the Lead stream at {http_fixture.base}{DATA}"
        "/sobjects/Lead/describe: NOT_FOUND: The requested resource does not exist"
    )


def test_the_connection_test_renews_the_token_and_keeps_it(client, key, http_fixture):
    SALESFORCE.add("Account", 1)
    sid, _ = connect(client, key, http_fixture.base)
    tested = client.post(f"/api/v1/source-connections/{sid}/test", json={}, headers={"X-API-Key": key})
    assert tested.json["message"] == "Connected to Salesforce", tested.json
    assert stored(sid)[1]["access_token"] == SALESFORCE.issued[0]
    streams = client.get(f"/api/v1/source-connections/{sid}/streams", headers={"X-API-Key": key}).json
    assert [s["name"] for s in streams["streams"]] == ["Account", "Contact", "Opportunity"], streams


def test_objects_must_be_api_names(client, key, http_fixture):
    answer = client.post(
        "/api/v1/source-connections",
        headers={"X-API-Key": key},
        json={
            "sourceShortName": "salesforce",
            "name": "Salesforce",
            "credentials": {
                "instance_url": http_fixture.base,
                "client_id": CLIENT_ID,
                "client_secret": CLIENT_SECRET,
                "refresh_token": REFRESH_TOKEN,
            },
            "config": {"objects": "Account; DROP"},
        },
    )
    assert answer.status_code == 400 and "objects" in answer.json["errors"], answer.json


def test_two_syncs_sharing_a_rotating_refresh_token_do_not_both_renew_it(client, key, http_fixture):
    """Two runs of syncs given one credential find its access token expired at once: the one
    that renews second takes the token the first stored instead of sending the refresh token
    the first's renewal has just made stale (which Salesforce refuses: "reconnect")."""
    from hookstream_ui.services.sources import connection_for
    from hookstream_ui.sources import REGISTRY

    SALESFORCE.add("Account", 3)
    SALESFORCE.rotate = True
    headers = {"X-API-Key": key}
    first = client.post(
        "/v1/syncs",
        json=sync_request(http_fixture.base, collection_ids=["salesforce:Account"]),
        headers=headers,
    ).json
    body = sync_request(
        http_fixture.base, name="Choam Corp - Salesforce Sandbox", credential_id=first["credential_id"]
    )
    body.pop("credential")
    body["collection_ids"] = ["salesforce:Contact"]
    second = client.post("/v1/syncs", json=body, headers=headers)
    assert second.status_code == 201 and second.json["credential_id"] == first["credential_id"], second.json
    # The second run read the credential before the first renewed it.
    seen_before = connection_for(db.session.get(SourceConnection, second.json["id"]))
    done = run(first["id"])
    assert done.status == "completed" and len(SALESFORCE.token_requests) == 1, done.error

    api = REGISTRY["salesforce"].api(seen_before, None)
    answer = api.get(http_fixture.base + DATA + "/sobjects", {}, "objects")
    assert answer.status_code == 200
    assert len(SALESFORCE.token_requests) == 1  # not renewed again with the stale refresh token
    assert SALESFORCE.requests[-1]["auth"] == f"Bearer {SALESFORCE.issued[0]}"
    [rotated] = SALESFORCE.refresh_tokens
    assert seen_before.credentials["refresh_token"] == rotated == stored(first["id"])[1]["refresh_token"]


def test_renewals_of_one_credential_wait_for_each_other_across_threads(app, client, key, http_fixture):
    """Two runs' readers renew the same credential at the same moment: one asks, the other
    waits for it and takes its token."""
    import threading

    from hookstream_ui.services.sources import connection_for
    from hookstream_ui.sources import REGISTRY

    SALESFORCE.add("Account", 1)
    SALESFORCE.rotate, SALESFORCE.token_seconds = True, 0.5
    sid, _ = connect(client, key, http_fixture.base)
    seen = [connection_for(db.session.get(SourceConnection, sid)) for _ in range(2)]
    answers, start = [], threading.Barrier(2)

    def read(conn) -> None:
        with app.app_context():
            api = REGISTRY["salesforce"].api(conn, None)
            start.wait()
            answers.append(api.get(http_fixture.base + DATA + "/sobjects", {}, "objects").status_code)

    threads = [threading.Thread(target=read, args=(conn,)) for conn in seen]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(10)
    assert answers == [200, 200] and len(SALESFORCE.token_requests) == 1
    assert {r["auth"] for r in SALESFORCE.requests} == {f"Bearer {SALESFORCE.issued[0]}"}


def test_the_source_type_scrubs_what_the_token_endpoint_quotes(app, http_fixture):
    """Before any service scrubs it: a source type's own message never carries a secret."""
    from hookstream_ui.sources import REGISTRY, Connection

    SALESFORCE.refresh_tokens, SALESFORCE.quote_token = set(), True
    credentials = {
        "instance_url": http_fixture.base,
        "token_url": http_fixture.base + TOKEN_PATH,
        "client_id": CLIENT_ID,
        "client_secret": CLIENT_SECRET,
        "refresh_token": REFRESH_TOKEN,
    }
    with app.app_context():  # the network guard reads the app's settings
        result = REGISTRY["salesforce"].test(Connection("src_x", credentials, {}))
    assert not result.ok and REFRESH_TOKEN not in result.message
    assert result.message.endswith("reconnect Salesforce"), result.message


def test_a_salesforce_sync_on_a_real_worker_renews_and_stores_its_token(client, key, http_fixture, workers):
    from hookstream_ui.sync.scheduler import enqueue_due
    from tests.sync_helpers import wait_for

    SALESFORCE.add("Account", 300)
    SALESFORCE.batch_size, SALESFORCE.calls_per_session = 100, 2
    body = sync_request(http_fixture.base, collection_ids=["salesforce:Account"])
    sync = client.post("/v1/syncs", json=body, headers={"X-API-Key": key}).json
    [run_id] = enqueue_due()  # a new sync's backfill is due at once
    workers(1)
    done = wait_for(run_id)
    assert done.status == "completed" and done.records_inserted == 300, done.error
    assert len(SALESFORCE.issued) == 2
    encrypted, credentials = stored(sync["id"])
    assert credentials["access_token"] == SALESFORCE.issued[-1] and SALESFORCE.issued[-1] not in encrypted
