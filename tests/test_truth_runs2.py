"""Runs, live state and the collection page tell the truth:
a paused collection can be paused and resumed where it is shown, nothing runs into only
paused collections, a running run can be cancelled where the page says to, and a run's
header counts its attempts as its error box does."""

from __future__ import annotations

import re
from datetime import timedelta

import pytest
from sqlalchemy import select

from hookstream_ui.models import AuditEntry, Collection, SourceConnection, SyncRun, User, db
from hookstream_ui.values.times import as_utc, utcnow
from tests.helpers import login, make_user, org_of
from tests.test_truth_live import connect, new_collection, text_of


def test_pause_and_resume_from_the_collection_page(signed_in_with_key):
    client, token, key = signed_in_with_key
    sid = connect(client, token, "file", **{"config.format": "auto"})
    new_collection(client, token, "files", sid)
    page = client.get("/collections/files").get_data(as_text=True)
    assert 'id="pause-collection"' in page and 'id="resume-collection"' not in page
    r = client.post("/collections/files/status", data={"csrf_token": token, "status": "PAUSED"})
    assert r.status_code == 302
    assert db.session.scalar(select(Collection.status).where(Collection.slug == "files")) == "PAUSED"
    entry = db.session.scalar(select(AuditEntry).where(AuditEntry.action == "collection.update"))
    assert entry is not None and entry.actor == "owner@example.com"
    page = client.get(r.location).get_data(as_text=True)
    assert 'id="resume-collection"' in page and 'id="pause-collection"' not in page
    # Run now cannot act (it would read nothing and say Completed): disabled, and why.
    assert re.search(
        r'id="run-now" disabled aria-disabled="true" title="Every collection of this source is paused', page
    )
    assert "resume one to run it" in text_of(page)
    assert '"PAUSED"' in client.get("/v1/collections/files", headers={"X-API-Key": key}).get_data(
        as_text=True
    )
    r = client.post("/collections/files/status", data={"csrf_token": token, "status": "ACTIVE"})
    assert r.status_code == 302
    page = client.get(r.location).get_data(as_text=True)
    assert 'id="run-now">' in page and 'id="pause-collection"' in page


def test_pausing_needs_the_csrf_token_and_a_member(signed_in_with_key, app):
    client, token, _key = signed_in_with_key
    sid = connect(client, token, "file", **{"config.format": "auto"})
    new_collection(client, token, "files", sid)
    r = client.post("/collections/files/status", data={"status": "PAUSED"})
    assert r.status_code in (400, 403)
    owner = db.session.scalar(select(User).where(User.email == "owner@example.com"))
    user = make_user("viewer@example.com", org=org_of(owner), role="viewer")
    viewer = app.test_client()
    vtoken = login(viewer, user.email)
    r = viewer.post("/collections/files/status", data={"csrf_token": vtoken, "status": "PAUSED"})
    assert r.status_code == 403
    assert db.session.scalar(select(Collection.status).where(Collection.slug == "files")) == "ACTIVE"


def test_no_run_starts_into_only_paused_collections(signed_in_with_key):
    """Run now started a run that skipped its paused collection and said "Completed · 0
    records read"; the API and the scheduler started them too."""
    client, token, key = signed_in_with_key
    sid = connect(client, token, "file", **{"config.format": "auto"})
    new_collection(client, token, "files", sid)
    client.post("/collections/files/status", data={"csrf_token": token, "status": "PAUSED"})
    r = client.post(f"/sources/{sid}/run", data={"csrf_token": token})
    assert r.status_code == 302 and "/runs/" not in r.location
    assert "Every collection bound to this source is paused" in client.get(r.location).get_data(as_text=True)
    r = client.post(f"/api/v1/source-connections/{sid}/run", json={}, headers={"X-API-Key": key})
    assert r.status_code == 409 and r.json["error"] == "collections_paused"
    assert "paused" in r.json["message"]
    source = db.session.get(SourceConnection, sid)
    source.sync_frequency, source.sync_status, source.next_run_at = (
        "5m",
        "active",
        utcnow() - timedelta(seconds=1),
    )
    db.session.commit()
    from hookstream_ui.sync.scheduler import enqueue_due

    assert enqueue_due() == []
    assert db.session.scalar(select(SyncRun.id)) is None
    # Its next time is asked again later, not at every tick.
    assert as_utc(db.session.get(SourceConnection, sid).next_run_at) > utcnow()


def test_the_collection_page_cancels_the_run_it_says_to_cancel(signed_in_with_key):
    """ "A run is in progress: wait for it or cancel it first." with no Cancel anywhere."""
    client, token, _key = signed_in_with_key
    sid = connect(client, token, "file", **{"config.format": "auto"})
    new_collection(client, token, "files", sid)
    r = client.post(f"/sources/{sid}/run", data={"csrf_token": token})  # no worker: it waits, pending
    run_id = r.location.rsplit("/", 1)[-1]
    page = client.get("/collections/files").get_data(as_text=True)
    assert "cancel it first" in text_of(page)
    form = re.search(
        r'<form method="post" action="([^"]+)"[^>]*>[^<]*<input[^>]*>\s*<button[^>]*id="cancel-run"', page
    )
    assert form and form.group(1) == f"/runs/{run_id}/cancel"
    r = client.post(form.group(1), data={"csrf_token": token})
    assert r.status_code == 302
    assert db.session.get(SyncRun, run_id).status in ("cancelled", "cancelling")
    assert 'id="cancel-run"' not in client.get("/collections/files").get_data(as_text=True)


@pytest.mark.parametrize(
    "status,attempt,shown,not_shown",
    [
        ("failed", 1, None, "attempt 2"),
        ("failed", 3, "3 attempts", "attempt 4"),
        ("running", 1, "attempt 2", None),
        ("completed", 2, "attempt 3", None),
        ("cancelled", 1, "after 1 failed attempt", "attempt 2"),
    ],
)
def test_the_run_header_counts_attempts_as_the_error_box_does(
    signed_in_with_key, status, attempt, shown, not_shown
):
    """A bad file: "incremental · upload · attempt 2" above "Failed (not retried …)"."""
    client, token, _key = signed_in_with_key
    sid = connect(client, token, "file", **{"config.format": "auto"})
    new_collection(client, token, "files", sid)
    source = db.session.get(SourceConnection, sid)
    run = SyncRun(
        org_id=source.org_id,
        env_id=source.env_id,
        source_id=sid,
        trigger="upload",
        mode="incremental",
        status=status,
        attempt=attempt,
        error="The file is not UTF-8",
        cursor={},
        skip_reasons={},
        started_at=utcnow(),
        finished_at=None if status == "running" else utcnow(),
    )
    db.session.add(run)
    db.session.commit()
    page = text_of(client.get(f"/runs/{run.id}").get_data(as_text=True))
    header = re.search(r"incremental · upload[^A-Z]*", page).group(0)
    if shown:
        assert shown in header
    else:
        assert "attempt" not in header
    if not_shown:
        assert not_shown not in header


def _deliveries(client, token):
    hook = connect(client, token, "webhook", name="Hook", **{"credentials.verification_type": "none"})
    new_collection(client, token, "hooked", hook)
    lone = connect(client, token, "webhook", name="Lone", **{"credentials.verification_type": "none"})
    assert client.post(f"/v1/ingest/{hook}", json={"id": "a1"}).status_code == 200  # applied
    assert client.post(f"/v1/ingest/{hook}", json={"name": "no key"}).status_code == 200  # skipped
    for body in (b"not json", b"{oops"):
        client.post(f"/v1/ingest/{hook}", data=body, content_type="application/json")  # not JSON
    assert client.post(f"/v1/ingest/{lone}", json={"id": "b1"}).status_code == 200  # stored, no collection
    return hook, lone


def _listed(client, **params):
    body = client.get("/events/_list", query_string=params).get_data(as_text=True)
    return set(re.findall(r'href="/events/(evt_[^"]+)"', body))


def test_the_overview_counts_every_event_not_applied_and_links_to_them(signed_in_with_key):
    """ "1 event rejected or not applied" when one was skipped and two were not JSON."""
    client, token, _key = signed_in_with_key
    _deliveries(client, token)
    page = client.get("/").get_data(as_text=True)
    link = re.search(r'<a href="([^"]+)" id="events-not-applied" data-stat="failed-events">([^<]+)</a>', page)
    assert link and link.group(2) == "3 events not applied"
    assert link.group(1) == "/events?status=not_applied"
    # No failed run: the big number is not red.
    assert re.search(r'class="stat-value " data-stat="failed-runs">0<', page)
    listed = _listed(client, status="not_applied")
    assert len(listed) == 3
    page = client.get(link.group(1)).get_data(as_text=True)
    assert re.search(r'<option value="not_applied" selected>', page)


def test_the_events_filter_tells_skipped_and_stored_from_applied(signed_in_with_key):
    client, token, _key = signed_in_with_key
    _deliveries(client, token)
    page = client.get("/events").get_data(as_text=True)
    assert '<option value="skipped">' in page and '<option value="stored">stored (no collection)' in page
    assert len(_listed(client, status="skipped")) == 1
    assert len(_listed(client, status="stored")) == 1
    assert len(_listed(client, status="applied")) == 1
    assert len(_listed(client, status="not_json")) == 2
    assert len(_listed(client)) == 5


@pytest.mark.parametrize("path", ["/events", "/collections"])
def test_an_unknown_status_filter_is_said_beside_the_field(signed_in_with_key, path):
    client, _token, _key = signed_in_with_key
    r = client.get(path, query_string={"status": "bogus"})
    assert r.status_code == 400
    page = r.get_data(as_text=True)
    assert re.search(r'<p class="field-error" id="e-status">Status must be one of: ', page)
    assert 'aria-invalid="true" aria-describedby="e-status"' in page
    assert "match" not in text_of(page)


def test_the_test_event_button_says_whether_it_writes_a_record(signed_in_with_key):
    """ "Send a test event (writes a record)" above "no record is written"."""
    client, token, _key = signed_in_with_key
    hook = connect(client, token, "webhook", name="Hook", **{"credentials.verification_type": "none"})
    button = re.compile(r'id="send-test-event">([^<]+)</button>')
    page = client.get(f"/sources/{hook}").get_data(as_text=True)
    assert button.search(page).group(1) == "Send a test event (stored as an event only)"
    assert "writes a real record" not in page and "no record is written" in page
    new_collection(client, token, "hooked", hook)
    page = client.get(f"/sources/{hook}").get_data(as_text=True)
    assert button.search(page).group(1) == "Send a test event (writes a record)"
    assert "writes a real record into Coll hooked" in page
    client.post("/collections/hooked/status", data={"csrf_token": token, "status": "PAUSED"})
    page = client.get(f"/sources/{hook}").get_data(as_text=True)
    assert button.search(page).group(1) == "Send a test event (stored as an event only)"
    assert "every collection of this source is paused, so no record is written" in text_of(page)


def test_the_overview_looks_again_when_a_scheduled_run_is_due(signed_in_with_key):
    """It stopped (286) with nothing running, though a source ran every minute: new runs
    appeared only on reload."""
    client, token, _key = signed_in_with_key
    sid = connect(client, token, "file", **{"config.format": "auto"})
    new_collection(client, token, "files", sid)
    hx = {"HX-Request": "true"}
    r = client.get("/_recent-runs", headers=hx)
    assert r.status_code == 286 and "hx-trigger" not in r.get_data(as_text=True)  # nothing scheduled
    source = db.session.get(SourceConnection, sid)
    source.sync_frequency, source.sync_status = "1m", "active"
    source.next_run_at = utcnow() + timedelta(seconds=45)
    db.session.commit()
    page = client.get("/").get_data(as_text=True)
    delay = re.search(r'id="overview-runs" hx-get="/_recent-runs" hx-trigger="load delay:(\d+)s"', page)
    assert delay and 40 <= int(delay.group(1)) <= 47
    r = client.get("/_recent-runs", headers=hx)
    assert r.status_code == 200 and 'hx-trigger="load delay:' in r.get_data(as_text=True)
    source.next_run_at = utcnow() + timedelta(seconds=1)  # due: looks again, but not every 2 s
    db.session.commit()
    assert 'hx-trigger="load delay:10s"' in client.get("/_recent-runs", headers=hx).get_data(as_text=True)
    source.sync_status = "paused"
    db.session.commit()
    assert client.get("/_recent-runs", headers=hx).status_code == 286


def test_unchanged_rows_are_not_counted_as_skipped(signed_in_with_key):
    """A backfill over unchanged rows said "Skipped 5,000"; the reason was folded away."""
    client, token, _key = signed_in_with_key
    sid = connect(client, token, "file", **{"config.format": "auto"})
    new_collection(client, token, "files", sid)
    source = db.session.get(SourceConnection, sid)
    run = SyncRun(
        org_id=source.org_id,
        env_id=source.env_id,
        source_id=sid,
        trigger="manual",
        mode="full",
        status="completed",
        attempt=0,
        cursor={},
        progress=5003,
        records_skipped=5003,
        skip_reasons={
            "unchanged since it was last written": 5000,
            "no usable key at $.id": 2,
            "not a JSON object": 1,
        },
        started_at=utcnow(),
        finished_at=utcnow(),
    )
    db.session.add(run)
    db.session.commit()
    page = client.get(f"/runs/{run.id}").get_data(as_text=True)
    assert re.search(r'data-count="unchanged"[^>]*>5,000<', page)
    assert re.search(r'data-count="skipped">3<', page)
    assert "Skipped mostly: no usable key at $.id" in page
    reasons = page.split("Why records were skipped")[1]
    assert "unchanged since" not in reasons and "no usable key" in reasons
    run.skip_reasons, run.records_skipped = {"unchanged since it was last written": 5003}, 5003
    db.session.commit()
    page = client.get(f"/runs/{run.id}").get_data(as_text=True)
    assert re.search(r'data-count="skipped">0<', page) and "Why records were skipped" not in page
    assert 'id="skip-top-reason"' not in page


def test_a_file_source_shows_no_schedule_and_says_yes_or_no(signed_in_with_key):
    """Uploads are not scheduled, yet the page offered a schedule and a rate limit; its
    configuration said "First CSV row is a header: True"."""
    client, token, key = signed_in_with_key
    sid = connect(client, token, "file", **{"config.format": "auto", "config.has_header": "true"})
    page = client.get(f"/sources/{sid}").get_data(as_text=True)
    assert 'id="schedule"' not in page and "Requests allowed" not in page
    assert re.search(r"<dt>First CSV row is a header</dt><dd[^>]*>Yes</dd>", page)
    assert ">True<" not in page
    r = client.patch(f"/v1/syncs/{sid}", json={"sync_frequency": "1h"}, headers={"X-API-Key": key})
    assert r.status_code == 400 and "sync_frequency" in r.get_data(as_text=True)
    assert db.session.get(SourceConnection, sid).sync_frequency is None
    rest = connect(
        client,
        token,
        "rest_api",
        name="Rest",
        **{
            "credentials.base_url": "https://api.example.com",
            "credentials.auth_type": "none",
            "config.path": "/items",
        },
    )
    assert 'id="schedule"' in client.get(f"/sources/{rest}").get_data(as_text=True)
    # Its two rate limits say which is which, and that both apply.
    assert "the stricter one sets the pace" in client.get("/sources/new/rest_api").get_data(as_text=True)


def test_testing_a_file_source_before_its_first_upload_is_not_a_failure(signed_in_with_key):
    client, token, _key = signed_in_with_key
    sid = connect(client, token, "file", **{"config.format": "auto"})
    before = db.session.get(SourceConnection, sid).status
    body = client.post(f"/sources/{sid}/test", data={"csrf_token": token}).get_data(as_text=True)
    assert 'class="test-result info"' in body and "ℹ No file uploaded yet" in body and "✕" not in body
    db.session.expire_all()
    assert db.session.get(SourceConnection, sid).status == before != "error"
    body = client.post(
        "/sources/test-form/file", data={"csrf_token": token, "name": "F", "config.format": "auto"}
    ).get_data(as_text=True)
    assert 'class="test-result info"' in body and "✕" not in body


def test_the_rest_rate_limit_setting_paces_requests(monkeypatch):
    """ "Rate limit (requests per second)" was checked on save and never applied."""
    from itertools import pairwise
    from types import SimpleNamespace

    from hookstream_ui.sources import rest_api

    # The pacer reads a clock of the test's own, and its sleeps advance it instead of the
    # machine's: timed for real, "did not wait" was "took under 50 ms", false on a busy machine.
    clock = SimpleNamespace(now=100.0, slept=[])

    def sleep(seconds: float) -> None:
        clock.slept.append(seconds)
        clock.now += seconds

    monkeypatch.setattr(rest_api, "time", SimpleNamespace(monotonic=lambda: clock.now, sleep=sleep))

    def starts(pace, took: float) -> list[float]:
        """When each of five requests starts, each taking `took` s."""
        started, last = [], None
        for _ in range(5):
            last = pace(last)
            started.append(last)
            clock.now += took
        return started

    paced = starts(rest_api._pacer(20), took=0.01)
    assert [round(b - a, 9) for a, b in pairwise(paced)] == [1 / 20] * 4  # start to start
    clock.slept.clear()
    starts(rest_api._pacer(None), took=0)
    assert clock.slept == []  # no rate limit: no waiting, even between instant requests
