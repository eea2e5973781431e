"""Browser tests: a collection's live state, in Chromium."""

from __future__ import annotations

import re

import pytest

from tests.browser import ARTIFACTS, no_horizontal_overflow, sign_in

pytestmark = pytest.mark.browser


def _owner(app, email):
    from hookstream_ui.models.principal import Principal
    from tests.helpers import make_user, org_of, production

    user = make_user(email)
    org = org_of(user)
    return Principal(org=org, env=production(org), role="owner", user=user)


def test_a_backfill_updates_badge_strip_and_buttons_in_place_then_stops_polling(
    browser, live_server, app, pg_source, table, workers
):
    from playwright.sync_api import expect

    from hookstream_ui.services import collections as collection_svc
    from hookstream_ui.services import sources as source_svc

    with app.app_context():
        principal = _owner(app, "live@example.com")
        source = source_svc.create_source(
            principal,
            {
                "sourceShortName": "postgresql",
                "name": "Big table",
                "credentials": pg_source.credentials(),
                "config": {"table": table, "cursor_column": "updated_at"},
            },
        )
        collection_svc.create_collection(
            principal,
            {
                "name": "Big rows",
                "slug": "big-rows",
                "source_id": source.id,
                "stream": table,
                "primary_key_path": "$.id",
            },
        )
    workers(1, SYNC_BATCH_SIZE="250")
    context = browser.new_context(viewport={"width": 1280, "height": 900})
    page = context.new_page()
    page.set_default_timeout(15_000)
    sign_in(page, live_server, "live@example.com")
    polls = []
    page.on(
        "request",
        lambda req: polls.append(req.url) if "/_live" in req.url or "/_records" in req.url else None,
    )
    page.goto(f"{live_server}/collections/big-rows")
    expect(page.locator("#title-status")).to_have_text("Active", timeout=10_000)
    page.wait_for_timeout(3000)
    assert not [u for u in polls if "/_live" in u], "an idle pull collection polled"

    page.on("dialog", lambda dialog: dialog.accept())
    page.click("#backfill-button")
    expect(page.locator("#title-status")).to_have_text("Syncing", timeout=10_000)
    expect(page.locator("#backfill-button")).to_be_disabled(timeout=10_000)
    assert "A run is in progress" in page.locator("#backfill-button").get_attribute("title")
    expect(page.locator("#action-note")).to_have_text(
        "A run is in progress: wait for it or cancel it first.", timeout=10_000
    )
    ARTIFACTS.mkdir(exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / "live-backfill-running-1280.png"), full_page=True)
    page.evaluate("window.__sameDocument = true")
    expect(page.locator("#backfill-card")).to_have_attribute("data-backfill", "completed", timeout=90_000)
    expect(page.locator("#title-status")).to_have_text("Active", timeout=10_000)
    expect(page.locator("#backfill-button")).to_be_enabled(timeout=10_000)
    expect(page.locator("#action-note")).to_have_count(0, timeout=10_000)
    expect(page.locator("[data-record-count]")).to_have_text("10,000", timeout=10_000)
    expect(page.locator("#records-table tbody tr")).to_have_count(
        25, timeout=10_000
    )  # reloaded because records changed
    expect(page.locator("#schema-table")).to_be_visible(timeout=10_000)  # not "No records yet" any more
    assert page.evaluate("window.__sameDocument === true"), "the page reloaded instead of updating in place"
    settled = len(polls)
    page.wait_for_timeout(4500)
    assert len(polls) == settled, "polling went on after the backfill finished"
    page.screenshot(path=str(ARTIFACTS / "live-backfill-completed-1280.png"), full_page=True)
    page.set_viewport_size({"width": 390, "height": 844})
    assert no_horizontal_overflow(page), "the collection page scrolls sideways at 390 px"
    page.screenshot(path=str(ARTIFACTS / "live-backfill-completed-390.png"), full_page=True)
    context.close()


def test_a_webhook_record_and_its_schema_appear_without_the_table_polling(browser, live_server, app):
    import json
    import urllib.request

    from playwright.sync_api import expect

    from hookstream_ui.services import collections as collection_svc
    from hookstream_ui.services import sources as source_svc

    with app.app_context():
        principal = _owner(app, "hook@example.com")
        source = source_svc.create_source(
            principal,
            {"sourceShortName": "webhook", "name": "Hook", "credentials": {"verification_type": "none"}},
        )
        collection_svc.create_collection(
            principal,
            {"name": "Hooked", "slug": "hooked", "source_id": source.id, "primary_key_path": "$.id"},
        )
        source_id = source.id
    context = browser.new_context(viewport={"width": 1280, "height": 900})
    page = context.new_page()
    page.set_default_timeout(20_000)
    sign_in(page, live_server, "hook@example.com")
    tables = []
    page.on("request", lambda req: tables.append(req.url) if "/_records" in req.url else None)
    page.goto(f"{live_server}/collections/hooked")
    expect(page.locator("#schema")).to_contain_text("No records yet", timeout=10_000)
    page.wait_for_timeout(4000)
    assert len(tables) == 1, "the records table polled while nothing changed"
    request = urllib.request.Request(
        f"{live_server}/v1/ingest/{source_id}",
        method="POST",
        data=json.dumps({"id": "ann", "plan": "pro"}).encode(),
        headers={"Content-Type": "application/json"},
    )
    assert urllib.request.urlopen(request).status == 200
    # The strip of a webhook that has not heard from its sender lately asks every 5 s.
    expect(page.locator("#records-table tr[data-key=ann]")).to_be_visible(timeout=15_000)
    expect(page.locator("#schema-table")).to_contain_text("$.plan", timeout=10_000)
    context.close()


def test_schedule_runs_page_and_overview_in_the_browser(browser, live_server, app):
    """The schedule form names a bad field and keeps it; the runs page filters failures; the
    overview's rate and failures show, at 1280 and 390 px, under the CSP."""
    from playwright.sync_api import expect

    from hookstream_ui.models import SyncRun, db
    from hookstream_ui.services import collections as collection_svc
    from hookstream_ui.services import sources as source_svc

    with app.app_context():
        principal = _owner(app, "sched@example.com")
        source = source_svc.create_source(
            principal, {"sourceShortName": "file", "name": "Uploads", "config": {"format": "auto"}}
        )
        collection_svc.create_collection(
            principal,
            {"name": "Uploaded rows", "slug": "uploaded", "source_id": source.id, "primary_key_path": "$.id"},
        )
        db.session.add(
            SyncRun(
                org_id=source.org_id,
                env_id=source.env_id,
                source_id=source.id,
                trigger="upload",
                mode="full",
                status="failed",
                error="rows.csv: not UTF-8 text",
                attempt=1,
                cursor={},
                skip_reasons={},
            )
        )
        # Uploads are not scheduled (File.scheduled): the schedule form is a REST source's.
        rest = source_svc.create_source(
            principal,
            {
                "sourceShortName": "rest_api",
                "name": "Items API",
                "credentials": {"base_url": "https://api.example.com", "auth_type": "none"},
                "config": {"path": "/items"},
            },
        )
        db.session.commit()
        source_id, rest_id = source.id, rest.id
    context = browser.new_context(viewport={"width": 1280, "height": 900})
    page = context.new_page()
    page.set_default_timeout(10_000)
    sign_in(page, live_server, "sched@example.com")
    expect(page.locator("#failures [data-stat=failed-runs]")).to_have_text("1", timeout=10_000)
    expect(page.locator("#overview-failures")).to_contain_text("rows.csv: not UTF-8 text", timeout=10_000)
    expect(page.locator("#ingest-rate .spark")).to_have_count(6, timeout=10_000)

    page.click("nav[aria-label=Main] >> text=Runs")
    expect(page.locator("h1")).to_have_text("Runs", timeout=10_000)
    page.select_option("#f-status", "completed")
    expect(page.locator(".empty")).to_contain_text("No runs match", timeout=10_000)
    page.select_option("#f-status", "failed")
    expect(page.locator("#runs-table tbody tr")).to_have_count(1, timeout=10_000)
    expect(page.locator("#runs-table")).to_contain_text("rows.csv: not UTF-8 text", timeout=10_000)

    page.goto(f"{live_server}/sources/{rest_id}")
    page.fill("#f-sync_frequency", "every day")
    page.click("#save-schedule")
    expect(page.locator("#e-sync_frequency")).to_contain_text(
        "must be continuous or an interval", timeout=10_000
    )
    expect(page.locator("#f-sync_frequency")).to_have_value("every day", timeout=10_000)
    page.fill("#f-sync_frequency", "4h")
    page.click("#save-schedule")
    expect(page.locator("#schedule-summary")).to_contain_text(
        re.compile(r"every 4h · next run in (3 h 59|4 h 0) min"), timeout=10_000
    )
    page.goto(f"{live_server}/sources")
    expect(page.locator(f"tr[data-source='{source_id}'] [data-last-run]")).to_contain_text(
        "Failed", timeout=10_000
    )
    for name, path in (
        ("overview", "/"),
        ("runs", "/runs"),
        ("source", f"/sources/{source_id}"),
        ("sources", "/sources"),
    ):
        for width in (1280, 390):
            page.set_viewport_size({"width": width, "height": 900 if width > 400 else 844})
            page.goto(live_server + path)
            assert no_horizontal_overflow(page), f"{path} scrolls sideways at {width} px"
            page.screenshot(path=str(ARTIFACTS / f"live-{name}-{width}.png"), full_page=True)
    context.close()


def test_a_collection_page_tails_its_changes_as_they_commit(browser, live_server, app):
    import json
    import urllib.request

    from playwright.sync_api import expect

    from hookstream_ui.services import collections as collection_svc
    from hookstream_ui.services import sources as source_svc

    with app.app_context():
        principal = _owner(app, "tail@example.com")
        source = source_svc.create_source(
            principal,
            {
                "sourceShortName": "webhook",
                "name": "Hook",
                "credentials": {"verification_type": "none"},
                "config": {},
            },
        )
        collection_svc.create_collection(
            principal, {"name": "Tail", "slug": "tail", "source_id": source.id, "primary_key_path": "$.id"}
        )
        sid = source.id

    def deliver(body: dict) -> None:
        request = urllib.request.Request(
            f"{live_server}/v1/ingest/{sid}",
            data=json.dumps(body).encode(),
            headers={"Content-Type": "application/json"},
        )
        with urllib.request.urlopen(request, timeout=10) as answer:
            assert answer.status == 200

    context = browser.new_context(viewport={"width": 390, "height": 844})
    page = context.new_page()
    page.set_default_timeout(15_000)
    sign_in(page, live_server, "tail@example.com")
    page.goto(f"{live_server}/collections/tail")
    changes = page.locator("#collection-changes")
    expect(changes).to_contain_text("No change yet")
    deliver({"id": "t1", "n": 1})
    expect(changes.locator("tr[data-seq='1']")).to_contain_text("insert")  # no reload
    deliver({"id": "t1", "n": 2})
    expect(changes.locator("tr[data-seq='2']")).to_contain_text("update")
    assert changes.locator("tbody tr").first.get_attribute("data-seq") == "2"  # newest first
    assert no_horizontal_overflow(page)
    page.screenshot(path=str(ARTIFACTS / "collection-changes-390.png"), full_page=True)
    context.close()
