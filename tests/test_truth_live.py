"""Live state in the dashboard tells the truth: one status of a collection everywhere, polls
only while something can change, runs that say what they do."""

from __future__ import annotations

import io
import re

import pytest
from sqlalchemy import select

from hookstream_ui.models import Collection, SyncRun, db
from tests.conftest import BIG_ROWS
from tests.helpers import login, make_user, org_of, production
from tests.sync_helpers import wait_for, wait_for_progress

STOP_POLLING = 286


# A source that can be scheduled (uploads run when a file comes, so files have no schedule).
REST_FIELDS = {
    "credentials.base_url": "https://api.example.com",
    "credentials.auth_type": "none",
    "config.path": "/items",
}


def connect(client, token, short, name="Src", **fields):
    r = client.post(f"/sources/new/{short}", data={"csrf_token": token, "name": name, **fields})
    assert r.status_code == 302, r.get_data(as_text=True)
    return r.location.rsplit("/", 1)[-1]


def new_collection(client, token, slug, source_id="", **fields):
    r = client.post(
        "/collections/new",
        data={
            "csrf_token": token,
            "name": f"Coll {slug}",
            "slug": slug,
            "primary_key_path": "$.id",
            "source_id": source_id,
            **fields,
        },
    )
    assert r.status_code == 302, r.get_data(as_text=True)


def live(client, slug, **params):
    return client.get(f"/collections/{slug}/_live", query_string=params, headers={"HX-Request": "true"})


def text_of(html: str) -> str:
    return re.sub(r"\s+", " ", re.sub(r"<[^>]+>", " ", html))


def test_a_cancelled_backfill_says_cancelled_everywhere(signed_in_with_key, pg_source, table, workers):
    """It said "Backfill · running 2,000 / 10,000" for ever: the cancelled run never told
    its collections, and the title badge, strip and list each read their own column."""
    client, token, key = signed_in_with_key
    creds = {f"credentials.{k}": str(v) for k, v in pg_source.credentials().items()}
    sid = connect(
        client,
        token,
        "postgresql",
        name="Big",
        **creds,
        **{"config.table": table, "config.cursor_column": "updated_at"},
    )
    new_collection(client, token, "big", sid, stream=table)
    workers(1, SYNC_BATCH_SIZE="100")
    r = client.post("/collections/big/backfill", data={"csrf_token": token})
    assert r.status_code == 302
    run = db.session.scalar(select(SyncRun).where(SyncRun.source_id == sid))
    wait_for_progress(run.id, 500)
    page = client.get("/collections/big").get_data(as_text=True)
    assert "Backfill · running" in text_of(page) and 'id="backfill-button" disabled' in page
    assert re.search(r'id="title-status"><span class="badge badge-syncing">Syncing', page)
    client.post(f"/runs/{run.id}/cancel", data={"csrf_token": token})
    assert wait_for(run.id, timeout=15).status == "cancelled"

    db.session.expire_all()
    assert (
        db.session.scalar(select(Collection.backfill_status).where(Collection.slug == "big")) == "cancelled"
    )
    page = text_of(client.get("/collections/big").get_data(as_text=True))
    assert "Backfill · cancelled" in page and "running" not in page.lower().replace("running now", "")
    assert re.search(r"Coll big Active ", page)
    strip = live(client, "big")
    assert (
        strip.status_code == STOP_POLLING
        and "hx-trigger" not in strip.get_data(as_text=True).split("</section>")[0]
    )
    listed = text_of(client.get("/collections").get_data(as_text=True))
    assert re.search(r"Coll big big Big Active", listed)
    assert (
        client.get("/v1/collections/big/backfill", headers={"X-API-Key": key}).json["backfill"]["status"]
        == "cancelled"
    )
    # And the buttons can act again: a new backfill starts, and resumes the polling.
    page = client.get("/collections/big").get_data(as_text=True)
    assert 'id="backfill-button">' in page and 'id="run-now">' in page
    client.post("/collections/big/backfill", data={"csrf_token": token})
    strip = live(client, "big")
    assert strip.status_code == 200 and 'hx-trigger="every 2s"' in strip.get_data(as_text=True)
    run = db.session.scalar(select(SyncRun).where(SyncRun.source_id == sid, SyncRun.status != "cancelled"))
    assert wait_for(run.id, timeout=60).status == "completed"
    page = text_of(client.get("/collections/big").get_data(as_text=True))
    assert f"Backfill · completed {BIG_ROWS:,} / {BIG_ROWS:,}" in page


def test_a_run_ended_without_its_collections_being_told_is_not_shown_running(signed_in_with_key, pg_source):
    """Rows written before runs settled their collections (or by a worker that died between
    the two) say running; the page says how the run ended."""
    client, token, key = signed_in_with_key
    creds = {f"credentials.{k}": str(v) for k, v in pg_source.credentials().items()}
    sid = connect(client, token, "postgresql", name="Pg", **creds, **{"config.table": "customers"})
    new_collection(client, token, "pg", sid, stream="customers")
    collection = db.session.scalar(select(Collection).where(Collection.slug == "pg"))
    run = SyncRun(
        org_id=collection.org_id,
        env_id=collection.env_id,
        source_id=sid,
        trigger="backfill",
        mode="full",
        status="cancelled",
        cursor={},
        skip_reasons={},
        progress=10_000,
        total=50_000,
    )
    db.session.add(run)
    collection.status, collection.backfill_status = "SYNCING", "running"
    collection.backfill_progress, collection.backfill_total = 10_000, 50_000
    db.session.commit()
    page = text_of(client.get("/collections/pg").get_data(as_text=True))
    assert "Backfill · cancelled 10,000 / 50,000" in page and "Syncing" not in page
    assert live(client, "pg").status_code == STOP_POLLING
    assert "Coll pg pg Pg Active 0" in text_of(client.get("/collections").get_data(as_text=True))
    assert (
        client.get("/v1/collections/pg", headers={"X-API-Key": key}).json["collection"]["status"] == "ACTIVE"
    )
    assert [
        c["status"] for c in client.get("/v1/collections", headers={"X-API-Key": key}).json["collections"]
    ] == ["ACTIVE"]


def test_cancelling_a_queued_or_retrying_run_settles_its_collections(signed_in_with_key):
    """A run cancelled while pending (queued, or waiting for its retry) went straight to
    cancelled, leaving its collections SYNCING."""
    client, token, key = signed_in_with_key
    sid = connect(client, token, "file", **{"config.format": "auto"})
    new_collection(client, token, "files", sid)
    collection = db.session.scalar(select(Collection).where(Collection.slug == "files"))
    run = SyncRun(
        org_id=collection.org_id,
        env_id=collection.env_id,
        source_id=sid,
        trigger="manual",
        mode="full",
        status="pending",
        attempt=1,
        error="Host not found: x",
        cursor={},
        skip_reasons={},
    )
    db.session.add(run)
    collection.status, collection.backfill_status = "SYNCING", "running"
    db.session.commit()
    page = text_of(client.get(f"/runs/{run.id}").get_data(as_text=True))
    assert "Retrying" in page and "Attempt 1 failed; trying again in" in page and "Pending" not in page
    client.post(f"/runs/{run.id}/cancel", data={"csrf_token": token})
    db.session.expire_all()
    collection = db.session.get(Collection, collection.id)
    assert (collection.status, collection.backfill_status) == ("ACTIVE", "cancelled")
    page = text_of(client.get(f"/runs/{run.id}").get_data(as_text=True))
    assert "Cancelled after a failed attempt" in page and "retrying" not in page.lower()
    assert (
        client.get(f"/v1/collections/{collection.id}", headers={"X-API-Key": key}).json["collection"][
            "status"
        ]
        == "ACTIVE"
    )


def test_idle_collections_stop_polling_and_records_reload_only_on_change(signed_in_with_key):
    """The records table polled every 2 s for ever, and the live strip of a finished pull
    collection too; the schema stayed "No records yet" while records arrived."""
    client, token, _key = signed_in_with_key
    new_collection(client, token, "lonely")  # no source: nothing can change
    assert live(client, "lonely").status_code == STOP_POLLING
    sid = connect(client, token, "file", **{"config.format": "auto"})
    new_collection(client, token, "files", sid)
    strip = live(client, "files")
    assert (
        strip.status_code == STOP_POLLING
        and "hx-trigger" not in strip.get_data(as_text=True).split("</section>")[0]
    )
    table = client.get("/collections/files/_records", headers={"HX-Request": "true"}).get_data(as_text=True)
    assert "every 2s" not in table and 'hx-trigger="records-changed from:body"' in table

    hook = connect(client, token, "webhook", name="Hook", **{"credentials.verification_type": "none"})
    new_collection(client, token, "hooked", hook)
    page = client.get("/collections/hooked").get_data(as_text=True)
    seen = re.search(r'hx-get="/collections/hooked/_live\?seen=([^"]+)"', page).group(1)
    schema = client.get("/collections/hooked/_schema", headers={"HX-Request": "true"}).get_data(as_text=True)
    assert "No records yet" in schema and 'hx-trigger="records-changed from:body"' in schema
    # A webhook's collection listens (slowly while no delivery came lately), and says
    # nothing changed until one does.
    strip = live(client, "hooked", seen=seen.replace("%7C", "|"))
    assert strip.status_code == 200 and 'hx-trigger="every 5s"' in strip.get_data(as_text=True)
    assert "HX-Trigger" not in strip.headers
    r = client.post(f"/v1/ingest/{hook}", json={"id": "a1", "name": "Ann"})
    assert r.status_code == 200
    strip = live(client, "hooked", seen=seen.replace("%7C", "|"))
    assert strip.headers.get("HX-Trigger") == "records-changed" and 'hx-trigger="every 2s"' in strip.get_data(
        as_text=True
    )


def test_run_now_needs_a_bound_collection(signed_in_with_key):
    """Run now was offered on a source with no collection, and the run it started failed."""
    client, token, key = signed_in_with_key
    sid = connect(client, token, "file", **{"config.format": "auto"})
    page = client.get(f"/sources/{sid}").get_data(as_text=True)
    assert re.search(r'id="run-now" disabled aria-disabled="true" title="No collection is bound', page)
    assert "No collection is bound to this source: create one first." in text_of(page)
    r = client.post(f"/sources/{sid}/run", data={"csrf_token": token})
    assert r.status_code == 302 and "/runs/" not in r.location
    assert "No collection is bound to this source" in client.get(r.location).get_data(as_text=True)
    r = client.post(f"/api/v1/source-connections/{sid}/run", json={}, headers={"X-API-Key": key})
    assert r.status_code == 409 and r.json["error"] == "needs_collection"
    assert db.session.scalar(select(SyncRun.id)) is None  # nothing started, nothing to fail
    new_collection(client, token, "files", sid)
    page = client.get(f"/sources/{sid}").get_data(as_text=True)
    assert 'id="run-now">' in page


def test_a_finished_run_page_has_no_stale_flash(signed_in_with_key, workers):
    client, token, _ = signed_in_with_key
    sid = connect(client, token, "file", **{"config.format": "auto"})
    new_collection(client, token, "files", sid)
    workers(1)
    r = client.post(
        f"/sources/{sid}/upload",
        data={"csrf_token": token, "file": (io.BytesIO(b"id\n1\n2\n"), "a.csv")},
        content_type="multipart/form-data",
    )
    run_id = r.location.rsplit("/", 1)[-1]
    wait_for(run_id, timeout=30)
    r = client.post(f"/sources/{sid}/run", data={"csrf_token": token})
    run = wait_for(r.location.rsplit("/", 1)[-1], timeout=30)
    assert run.status == "completed", run.error
    page = text_of(client.get(r.location).get_data(as_text=True))
    assert "Sync started" not in page and "Completed" in page


@pytest.mark.parametrize(
    "path, reason",
    [
        ("/html", "The API did not answer JSON for {base}/html"),
        ("/latin1", "The API's answer for {base}/latin1 is not UTF-8 text, so it is not JSON"),
    ],
)
def test_an_answer_that_is_not_json_fails_the_run_at_once(
    signed_in_with_key, http_fixture, workers, path, reason
):
    """Retried four times over minutes: the same endpoint answers the same way next time."""
    client, token, key = signed_in_with_key
    r = client.post(
        "/api/v1/source-connections",
        headers={"X-API-Key": key},
        json={
            "sourceShortName": "rest_api",
            "name": "api",
            "credentials": {"base_url": http_fixture.base, "auth_type": "none"},
            "config": {"path": path, "records_path": "$.data"},
        },
    )
    sid = r.json["sourceConnection"]["id"]
    new_collection(client, token, "api", sid)
    workers(1)
    run_id = client.post(f"/api/v1/source-connections/{sid}/run", json={}, headers={"X-API-Key": key}).json[
        "syncId"
    ]
    run = wait_for(run_id, statuses=("pending", "failed"), timeout=30, attempted=True)
    assert (run.status, run.attempt, run.error) == ("failed", 1, reason.format(base=http_fixture.base))
    page = text_of(client.get(f"/runs/{run_id}").get_data(as_text=True))
    assert "Failed (not retried: trying again cannot help until this is fixed)" in page
    assert re.search(r"Coll api .{0,40} Error ", text_of(client.get("/collections").get_data(as_text=True)))


def test_the_scheduler_starts_no_run_without_a_collection_and_asks_again_at_its_next_time(signed_in_with_key):
    from datetime import timedelta

    from hookstream_ui.models import SourceConnection
    from hookstream_ui.sync.scheduler import enqueue_due
    from hookstream_ui.values.times import as_utc, utcnow

    client, token, _ = signed_in_with_key
    sid = connect(client, token, "file", **{"config.format": "auto"})
    source = db.session.get(SourceConnection, sid)
    source.sync_frequency, source.next_run_at = "1h", utcnow() - timedelta(seconds=1)
    db.session.commit()
    assert enqueue_due() == [] and db.session.scalar(select(SyncRun.id)) is None
    db.session.expire_all()
    assert as_utc(db.session.get(SourceConnection, sid).next_run_at) > utcnow() + timedelta(minutes=59)


def test_events_list_what_was_sent_and_what_became_of_it(signed_in_with_key):
    """An event every collection skipped ("no usable key") was listed as applied, under
    hookstream's own id only."""
    client, token, key = signed_in_with_key
    hook = connect(client, token, "webhook", name="Hook", **{"credentials.verification_type": "none"})
    new_collection(client, token, "by-data-id", hook, primary_key_path="$.data.id")
    skipped = client.post(
        f"/v1/ingest/{hook}", json={"id": "evt_9", "type": "customer.created", "data": {}}
    ).json
    applied = client.post(
        f"/v1/ingest/{hook}", json={"id": "evt_10", "type": "customer.updated", "data": {"id": "cus_1"}}
    ).json
    github = client.post(
        f"/v1/ingest/{hook}",
        json={"action": "opened", "data": {"id": "pr_1"}},
        headers={"X-GitHub-Event": "pull_request", "X-GitHub-Delivery": "72d3162e"},
    ).json
    bare = client.post(
        f"/v1/ingest/{hook}", json={"id": 5, "data": {"id": "r5"}}
    ).json  # a record, not an envelope

    table = client.get(f"/events/_list?source_id={hook}", headers={"HX-Request": "true"}).get_data(
        as_text=True
    )
    rows = {
        m.group(1): text_of(m.group(2))
        for m in re.finditer(r'<tr data-event="([^"]+)">(.*?)</tr>', table, re.S)
    }
    assert rows[skipped["event_id"]].split()[:3] == ["customer.created", "evt_9", "skipped"]
    assert "no usable key at $.data.id" in rows[skipped["event_id"]]
    assert rows[applied["event_id"]].split()[:3] == ["customer.updated", "evt_10", "applied"]
    assert rows[github["event_id"]].split()[:3] == ["pull_request", "72d3162e", "applied"]
    assert rows[bare["event_id"]].split()[0] == "POST" and "evt_" in rows[bare["event_id"]].split()[1]

    page = text_of(client.get(f"/events/{skipped['event_id']}").get_data(as_text=True))
    assert "customer.created skipped" in page and "Sender's event id evt_9" in page
    events = {e["id"]: e for e in client.get("/v1/events", headers={"X-API-Key": key}).json["events"]}
    assert (events[github["event_id"]]["event_type"], events[github["event_id"]]["sender_event_id"]) == (
        "pull_request",
        "72d3162e",
    )
    assert events[bare["event_id"]]["sender_event_id"] is None


def test_an_event_with_no_collection_says_it_was_only_stored(signed_in_with_key):
    client, token, _ = signed_in_with_key
    hook = connect(client, token, "webhook", name="Hook", **{"credentials.verification_type": "none"})
    event = client.post(f"/v1/ingest/{hook}", json={"id": "evt_1", "type": "ping"}).json
    page = text_of(client.get(f"/events/{event['event_id']}").get_data(as_text=True))
    assert "ping stored" in page and "no collection is bound to its source" in page


def test_schedule_and_rate_limit_are_set_on_the_source_page(signed_in_with_key):
    """Only the API could set them; the page said nothing of when the next run is."""
    from datetime import timedelta

    from hookstream_ui.models import SourceConnection
    from hookstream_ui.values.times import as_utc, utcnow

    client, token, key = signed_in_with_key
    sid = connect(client, token, "rest_api", **REST_FIELDS)
    new_collection(client, token, "files", sid)
    page = text_of(client.get(f"/sources/{sid}").get_data(as_text=True))
    assert "runs only when started" in page
    bad = {
        "csrf_token": token,
        "sync_frequency": "5s",
        "status": "active",
        "rate_limit.allowed_requests": "many",
        "rate_limit.interval": "1",
        "rate_limit.max_concurrent_requests": "",
    }
    r = client.post(f"/sources/{sid}/schedule", data=bad)
    html = r.get_data(as_text=True)
    assert r.status_code == 400 and 'id="e-sync_frequency">must be at least 30s' in html
    assert 'id="e-rate_limit.allowed_requests">must be an integer' in html
    assert 'value="5s"' in html and 'value="many"' in html  # what was typed stays
    db.session.expire_all()
    assert db.session.get(SourceConnection, sid).sync_frequency is None  # nothing changed

    r = client.post(
        f"/sources/{sid}/schedule", data={**bad, "sync_frequency": "15m", "rate_limit.allowed_requests": "5"}
    )
    assert r.status_code == 302
    db.session.expire_all()
    source = db.session.get(SourceConnection, sid)
    assert source.sync_frequency == "15m" and source.rate_limit == {
        "allowed_requests": 5,
        "interval": 1.0,
        "max_concurrent_requests": 0,
    }
    assert utcnow() + timedelta(minutes=14) < as_utc(source.next_run_at) <= utcnow() + timedelta(minutes=15)
    page = text_of(client.get(f"/sources/{sid}").get_data(as_text=True))
    assert re.search(r"every 15m · next run in 1[45] min", page)
    sync = client.get(f"/v1/syncs/{sid}", headers={"X-API-Key": key}).json
    assert (
        sync["sync_frequency"] == "15m" and sync["rate_limit"]["allowed_requests"] == 5
    )  # one row, two views
    listed = text_of(client.get("/sources").get_data(as_text=True))
    assert re.search(r"Src REST API Pending 1 never in 1[45] min", listed)

    client.post(
        f"/sources/{sid}/schedule",
        data={**bad, "sync_frequency": "", "rate_limit.allowed_requests": "", "rate_limit.interval": ""},
    )
    db.session.expire_all()
    source = db.session.get(SourceConnection, sid)
    assert (source.sync_frequency, source.next_run_at, source.rate_limit) == (None, None, None)


def test_a_new_frequency_moves_the_next_run(signed_in_with_key):
    """24h changed to 15m through the API still waited for the old 24h."""
    from datetime import timedelta

    from hookstream_ui.models import SourceConnection
    from hookstream_ui.values.times import as_utc, utcnow

    client, token, key = signed_in_with_key
    sid = connect(client, token, "rest_api", **REST_FIELDS)
    source = db.session.get(SourceConnection, sid)
    source.sync_frequency, source.next_run_at = "24h", utcnow() + timedelta(hours=23)
    db.session.commit()
    r = client.patch(f"/v1/syncs/{sid}", json={"sync_frequency": "15m"}, headers={"X-API-Key": key})
    assert r.status_code == 200, r.json
    db.session.expire_all()
    assert as_utc(db.session.get(SourceConnection, sid).next_run_at) <= utcnow() + timedelta(minutes=15)


def test_sources_list_shows_the_last_run_and_its_status(signed_in_with_key, workers):
    client, token, _ = signed_in_with_key
    sid = connect(client, token, "file", **{"config.format": "auto"})
    new_collection(client, token, "files", sid)
    workers(1)
    r = client.post(
        f"/sources/{sid}/upload",
        data={"csrf_token": token, "file": (io.BytesIO(b"not,a\n\xff"), "a.csv")},
        content_type="multipart/form-data",
    )
    run = wait_for(r.location.rsplit("/", 1)[-1], timeout=30)
    assert run.status == "failed"
    listed = client.get("/sources").get_data(as_text=True)
    row = re.search(rf'<tr data-source="{sid}">(.*?)</tr>', listed, re.S).group(1)
    assert f'href="/runs/{run.id}" class="badge badge-run-failed"' in row and "Failed" in text_of(row)
    assert "not scheduled" in text_of(row)


def _run(source_id, status, *, minutes_ago=0, error=None, progress=0):
    from datetime import timedelta

    from hookstream_ui.models import SourceConnection
    from hookstream_ui.values.times import utcnow

    source = db.session.get(SourceConnection, source_id)
    at = utcnow() - timedelta(minutes=minutes_ago)
    run = SyncRun(
        org_id=source.org_id,
        env_id=source.env_id,
        source_id=source_id,
        trigger="schedule",
        mode="incremental",
        status=status,
        error=error,
        cursor={},
        skip_reasons={},
        progress=progress,
        created_at=at,
        started_at=at,
        finished_at=at if status in ("completed", "failed", "cancelled") else None,
    )
    db.session.add(run)
    db.session.commit()
    return run.id


def test_the_runs_page_lists_runs_across_sources_by_status(signed_in_with_key, app):
    client, token, _ = signed_in_with_key
    files = connect(client, token, "file", name="Files", **{"config.format": "auto"})
    other = connect(client, token, "file", name="Other files", **{"config.format": "auto"})
    failed = _run(files, "failed", minutes_ago=5, error="a.csv: not UTF-8 text")
    done = _run(other, "completed", minutes_ago=3, progress=12)
    queued = _run(other, "pending", minutes_ago=1)
    # Another org's runs are never listed.
    stranger = make_user("stranger@example.com")
    env = production(org_of(stranger))
    from tests.helpers import make_source

    hidden = _run(make_source(env, "Theirs", "file").id, "failed")

    nav = client.get("/").get_data(as_text=True)
    assert 'href="/runs"' in nav
    page = client.get("/runs").get_data(as_text=True)
    listed = re.findall(r'<tr data-run="([^"]+)">', page)
    assert listed == [queued, done, failed] and hidden not in page
    options = re.findall(r'<option value="(\w*)"', page.split('id="f-status"')[1].split("</select>")[0])
    assert options == ["failed", "active", "completed", "cancelled", ""]  # failures first
    only_failed = client.get("/runs?status=failed").get_data(as_text=True)
    assert re.findall(r'<tr data-run="([^"]+)">', only_failed) == [failed]
    assert "a.csv: not UTF-8 text" in only_failed
    assert re.findall(
        r'<tr data-run="([^"]+)">', client.get("/runs?status=active").get_data(as_text=True)
    ) == [queued]
    assert re.findall(
        r'<tr data-run="([^"]+)">', client.get(f"/runs?source_id={files}").get_data(as_text=True)
    ) == [failed]
    bad = client.get("/runs?status=exploded")
    assert bad.status_code == 400 and 'id="e-status">Status must be failed' in bad.get_data(as_text=True)


def test_the_overview_shows_recent_runs_failures_and_the_ingest_rate(signed_in_with_key):
    client, token, _ = signed_in_with_key
    files = connect(client, token, "file", name="Files", **{"config.format": "auto"})
    _run(files, "completed", minutes_ago=30, progress=7)
    _run(files, "failed", minutes_ago=2, error="Host not found: nowhere")
    hook = connect(client, token, "webhook", name="Hook", **{"credentials.verification_type": "none"})
    for n in range(12):
        assert client.post(f"/v1/ingest/{hook}", json={"id": n}).status_code == 200
    page = client.get("/").get_data(as_text=True)
    text = text_of(page)
    assert 'data-stat="events-per-minute">0.2' in page and "12 events" in text  # 12 in the last 60 minutes
    assert re.search(r'data-stat="failed-runs">1<', page) and "failed run " in text
    assert "Failed runs All failures → Files Host not found: nowhere" in text
    runs = text_of(page.split('id="overview-runs"')[1])
    assert runs.index("Files schedule · 0 read") < runs.index("Files schedule · 7 read")  # newest first
    assert "Failed" in runs and "Completed" in runs
    assert len(re.findall(r'class="spark" data-height="', page)) == 6


def test_the_events_list_polls_only_while_a_webhook_can_send(signed_in_with_key):
    client, token, _ = signed_in_with_key
    connect(client, token, "file", **{"config.format": "auto"})
    r = client.get("/events/_list", headers={"HX-Request": "true"})
    assert r.status_code == STOP_POLLING and "every 2s" not in r.get_data(as_text=True)
    hook = connect(client, token, "webhook", name="Hook", **{"credentials.verification_type": "none"})
    r = client.get("/events/_list", headers={"HX-Request": "true"})
    assert r.status_code == 200 and 'hx-trigger="every 2s"' in r.get_data(as_text=True)
    r = client.get(f"/events/_list?source_id={hook}&recent=1", headers={"HX-Request": "true"})
    assert r.status_code == 200 and 'hx-trigger="every 2s"' in r.get_data(as_text=True)


def test_a_replay_whose_worker_died_is_resumed_not_left_running(signed_in_with_key):
    """A webhook replay marked running whose job is gone said "running" for ever."""
    from datetime import timedelta

    from hookstream_ui.sync.scheduler import requeue_lost_backfills
    from hookstream_ui.values.times import utcnow

    client, token, _ = signed_in_with_key
    hook = connect(client, token, "webhook", name="Hook", **{"credentials.verification_type": "none"})
    new_collection(client, token, "hooked", hook)
    collection = db.session.scalar(select(Collection).where(Collection.slug == "hooked"))
    collection.backfill_status, collection.backfill_progress, collection.backfill_total = "running", 3, 9
    db.session.commit()
    page = text_of(client.get("/collections/hooked", headers={}).get_data(as_text=True))
    assert "Backfill · running" in page  # it has just written: it is alive
    from sqlalchemy import update

    db.session.execute(
        update(Collection)
        .where(Collection.id == collection.id)
        .values(updated_at=utcnow() - timedelta(minutes=5))
    )
    db.session.commit()
    page = text_of(client.get("/collections/hooked").get_data(as_text=True))
    assert (
        "Backfill · interrupted: Backfill resumes it 3 / 9" in page
        and "disabled"
        not in client.get("/collections/hooked").get_data(as_text=True).split('id="backfill-button"')[1][:30]
    )
    assert requeue_lost_backfills(utcnow() + timedelta(minutes=2)) == [collection.id]
    assert requeue_lost_backfills(utcnow() + timedelta(minutes=2)) == []  # queued now


def test_a_pull_collections_backfill_is_never_taken_for_a_lost_webhook_replay(signed_in_with_key):
    """A pull source's backfill is a run (pending until its first batch, then running); the
    lost-replay sweep took one queued or between slow batches for a dead webhook replay, and
    the replay, finding no events, marked the backfill completed under the running read."""
    from datetime import timedelta

    from hookstream_ui.sync.backfill import replay_events
    from hookstream_ui.sync.scheduler import requeue_lost_backfills
    from hookstream_ui.values.times import utcnow

    client, token, _ = signed_in_with_key
    sid = connect(client, token, "file", **{"config.format": "auto"})
    new_collection(client, token, "files", sid)
    collection = db.session.scalar(select(Collection).where(Collection.slug == "files"))
    collection.backfill_status, collection.backfill_progress = "running", 5
    db.session.commit()
    from sqlalchemy import update

    db.session.execute(
        update(Collection)
        .where(Collection.id == collection.id)
        .values(updated_at=utcnow() - timedelta(minutes=5))
    )
    db.session.commit()
    assert requeue_lost_backfills(utcnow() + timedelta(minutes=2)) == []
    assert replay_events(collection.id) == "skipped"
    assert db.session.get(Collection, collection.id).backfill_status == "running"


def test_a_source_being_read_says_so_and_its_buttons_say_why_they_wait(signed_in_with_key):
    """While a run read it, the source's title said only "Pending" (its untested connection),
    and Edit, Clear data and Delete led to a refusal."""
    client, token, _ = signed_in_with_key
    sid = connect(client, token, "file", **{"config.format": "auto"})
    new_collection(client, token, "files", sid)
    run_id = _run(sid, "running", progress=40)
    page = client.get(f"/sources/{sid}").get_data(as_text=True)
    assert f'id="source-run-badge" href="/runs/{run_id}">Running</a>' in page
    for button in ("edit-source", "delete-source", "clear-data"):
        assert re.search(
            rf'<span class="btn[^"]* is-disabled" id="{button}" role="link" aria-disabled="true" '
            r'title="A run is in progress: wait for it or cancel it first.">',
            page,
        ), button
    assert re.search(
        r'id="run-now" disabled aria-disabled="true" title="A run is in progress: wait for it or cancel it first."',
        page,
    )
    assert 'id="upload-file" disabled' in page
    db.session.get(SyncRun, run_id).status = "failed"
    db.session.get(SyncRun, run_id).error = "boom"
    db.session.commit()
    page = client.get(f"/sources/{sid}").get_data(as_text=True)
    assert (
        'id="source-run-badge"' not in page
        and f'<a class="btn" href="/sources/{sid}/edit" id="edit-source">' in page
    )


def test_a_finished_strip_looks_again_when_the_next_scheduled_run_is_due(signed_in_with_key):
    from datetime import timedelta

    from hookstream_ui.models import SourceConnection
    from hookstream_ui.values.times import utcnow

    client, token, _ = signed_in_with_key
    sid = connect(client, token, "file", **{"config.format": "auto"})
    new_collection(client, token, "files", sid)
    source = db.session.get(SourceConnection, sid)
    source.sync_frequency, source.next_run_at = "1h", utcnow() + timedelta(minutes=10)
    db.session.commit()
    strip = live(client, "files")
    delay = int(re.search(r'hx-trigger="load delay:(\d+)s"', strip.get_data(as_text=True)).group(1))
    assert strip.status_code == STOP_POLLING and 595 <= delay <= 601  # once, when the run is due
    source.next_run_at = utcnow() - timedelta(hours=2)  # long overdue: no scheduler is running
    db.session.commit()
    assert 'hx-trigger="load delay:30s"' in live(client, "files").get_data(as_text=True)
    source.sync_status = "disabled"
    db.session.commit()
    assert "hx-trigger" not in live(client, "files").get_data(as_text=True).split("</section>")[0]


def test_the_runs_page_updates_while_a_listed_run_can_change(signed_in_with_key):
    client, token, _ = signed_in_with_key
    files = connect(client, token, "file", name="Files", **{"config.format": "auto"})
    run_id = _run(files, "running", progress=3)
    page = client.get("/runs").get_data(as_text=True)
    assert 'hx-get="/runs/_list" hx-trigger="every 2s"' in page
    part = client.get("/runs/_list", headers={"HX-Request": "true"})
    assert part.status_code == 200 and "every 2s" in part.get_data(as_text=True)
    db.session.get(SyncRun, run_id).status = "completed"
    db.session.commit()
    part = client.get("/runs/_list", headers={"HX-Request": "true"})
    assert part.status_code == STOP_POLLING and "hx-trigger" not in part.get_data(as_text=True)
    assert "Completed" in part.get_data(as_text=True)
    assert client.get("/runs/_list?status=nope", headers={"HX-Request": "true"}).status_code == 400


def test_a_scheduled_source_that_keeps_failing_is_tried_less_often(signed_in_with_key):
    """A continuous source whose runs failed was run again every 5 s, a failed run each time."""
    from datetime import timedelta

    from hookstream_ui.models import SourceConnection
    from hookstream_ui.services import runs
    from hookstream_ui.values.times import as_utc, utcnow

    client, token, _ = signed_in_with_key
    sid = connect(client, token, "file", **{"config.format": "auto"})
    source = db.session.get(SourceConnection, sid)
    source.sync_frequency = "continuous"
    waits = []
    for _ in range(9):
        run = SyncRun(
            org_id=source.org_id,
            env_id=source.env_id,
            source_id=sid,
            status="failed",
            error="x",
            cursor={},
            skip_reasons={},
            mode="incremental",
        )
        runs.record_outcome(source, run)
        waits.append((as_utc(source.next_run_at) - utcnow()).total_seconds())
    assert 25 < waits[0] <= 30 and 55 < waits[1] <= 60 and 115 < waits[2] <= 120
    assert 3590 < waits[-1] <= 3600  # at most hourly
    runs.record_outcome(source, SyncRun(status="completed", mode="incremental"))
    assert as_utc(source.next_run_at) <= utcnow() + timedelta(seconds=5)  # back to its schedule


def test_the_overview_recent_runs_update_while_one_can_change(signed_in_with_key):
    client, token, _ = signed_in_with_key
    files = connect(client, token, "file", name="Files", **{"config.format": "auto"})
    run_id = _run(files, "running", progress=3)
    page = client.get("/").get_data(as_text=True)
    assert 'hx-get="/_recent-runs" hx-trigger="every 2s"' in page
    db.session.get(SyncRun, run_id).status = "completed"
    db.session.commit()
    part = client.get("/_recent-runs", headers={"HX-Request": "true"})
    assert part.status_code == STOP_POLLING and "hx-trigger" not in part.get_data(as_text=True)
    assert "Completed" in part.get_data(as_text=True)


def test_schedules_and_runs_of_another_org_are_out_of_reach(signed_in_with_key, app):
    from hookstream_ui.models import SourceConnection

    client, token, _ = signed_in_with_key
    sid = connect(client, token, "rest_api", **REST_FIELDS)
    run_id = _run(sid, "failed", error="secret-ish detail")
    make_user("stranger@example.com")
    stranger = app.test_client()
    stoken = login(stranger, "stranger@example.com")
    r = stranger.post(
        f"/sources/{sid}/schedule", data={"csrf_token": stoken, "sync_frequency": "30s", "status": "active"}
    )
    assert r.status_code == 404
    db.session.expire_all()
    assert db.session.get(SourceConnection, sid).sync_frequency is None
    for path in ("/runs", "/runs/_list", "/_recent-runs", "/"):
        body = stranger.get(path).get_data(as_text=True)
        assert run_id not in body and "secret-ish detail" not in body, path
    # A viewer of the org reads the schedule but cannot change it.
    from hookstream_ui.models import User

    owner = db.session.scalar(select(User).where(User.email == "owner@example.com"))
    make_user("viewer@example.com", org=org_of(owner), role="viewer")
    viewer = app.test_client()
    vtoken = login(viewer, "viewer@example.com")
    page = viewer.get(f"/sources/{sid}").get_data(as_text=True)
    assert 'id="schedule"' in page and 'id="save-schedule"' not in page
    r = viewer.post(
        f"/sources/{sid}/schedule", data={"csrf_token": vtoken, "sync_frequency": "30s", "status": "active"}
    )
    assert r.status_code == 403
    db.session.expire_all()
    assert db.session.get(SourceConnection, sid).sync_frequency is None


def test_a_run_that_failed_after_its_retries_says_how_many(signed_in_with_key):
    client, token, _ = signed_in_with_key
    sid = connect(client, token, "file", **{"config.format": "auto"})
    run_id = _run(sid, "failed", error="Host not found: x")
    db.session.get(SyncRun, run_id).attempt = 4
    db.session.commit()
    page = text_of(client.get(f"/runs/{run_id}").get_data(as_text=True))
    assert "Failed after 4 attempts: Host not found: x" in page and "retrying" not in page.lower()


def test_a_source_being_read_is_connected_not_pending(signed_in_with_key, pg_source, table, workers):
    """The source said "Pending" (never tested) all the while a run read it."""
    from hookstream_ui.models import SourceConnection

    client, token, _ = signed_in_with_key
    creds = {f"credentials.{k}": str(v) for k, v in pg_source.credentials().items()}
    sid = connect(client, token, "postgresql", name="Big", **creds, **{"config.table": table})
    new_collection(client, token, "big", sid, stream=table)
    assert db.session.get(SourceConnection, sid).status == "pending"
    workers(1, SYNC_BATCH_SIZE="100")
    r = client.post(f"/sources/{sid}/run", data={"csrf_token": token})
    run_id = r.location.rsplit("/", 1)[-1]
    wait_for_progress(run_id, 300)
    assert db.session.get(SyncRun, run_id).status == "running"
    page = client.get(f"/sources/{sid}").get_data(as_text=True)
    assert 'class="badge badge-src-connected">Connected</span>' in page and ">Running</a>" in page
    client.post(f"/runs/{run_id}/cancel", data={"csrf_token": token})
    wait_for(run_id, timeout=15)


def test_a_collection_changed_through_the_api_answers_the_status_get_shows(signed_in_with_key):
    """GET read the live status while PATCH answered the stored one: a row left SYNCING by a
    run that ended came back ACTIVE from one and SYNCING from the other."""
    client, token, key = signed_in_with_key
    sid = connect(client, token, "file", **{"config.format": "auto"})
    new_collection(client, token, "files", sid)
    collection = db.session.scalar(select(Collection).where(Collection.slug == "files"))
    collection.status = "SYNCING"
    db.session.commit()
    got = client.get("/v1/collections/files", headers={"X-API-Key": key}).json["collection"]["status"]
    r = client.patch("/v1/collections/files", json={"description": "orders"}, headers={"X-API-Key": key})
    assert r.status_code == 200 and got == "ACTIVE" and r.json["collection"]["status"] == got
