"""Browser tests: runs, live state and sources tell the truth."""

from __future__ import annotations

import pytest

from tests.browser import no_horizontal_overflow, sign_in

pytestmark = pytest.mark.browser


def _owner(app, email):
    from hookstream_ui.models.principal import Principal
    from tests.helpers import make_user, org_of, production

    user = make_user(email)
    org = org_of(user)
    return Principal(org=org, env=production(org), role="owner", user=user)


def test_pause_and_resume_a_collection_in_the_browser(browser, live_server, app):
    from playwright.sync_api import expect

    from hookstream_ui.services import collections as collection_svc
    from hookstream_ui.services import sources as source_svc

    with app.app_context():
        principal = _owner(app, "pause@example.com")
        source = source_svc.create_source(
            principal,
            {"sourceShortName": "file", "name": "Uploads", "config": {"format": "auto", "has_header": True}},
        )
        collection_svc.create_collection(
            principal, {"name": "Rows", "slug": "rows", "source_id": source.id, "primary_key_path": "$.id"}
        )
        source_id = source.id
    for width in (1280, 390):
        context = browser.new_context(viewport={"width": width, "height": 900 if width > 400 else 844})
        page = context.new_page()
        page.set_default_timeout(10_000)
        page.on("dialog", lambda d: d.accept())
        sign_in(page, live_server, "pause@example.com")
        page.goto(f"{live_server}/collections/rows")
        expect(page.locator("#run-now")).to_be_enabled()
        page.click("#pause-collection")
        expect(page.locator("#title-status")).to_contain_text("Paused")
        expect(page.locator("#resume-collection")).to_be_visible()
        expect(page.locator("#run-now")).to_be_disabled()
        expect(page.locator("#action-note")).to_contain_text("Every collection of this source is paused")
        assert no_horizontal_overflow(page)
        page.click("#resume-collection")
        expect(page.locator("#pause-collection")).to_be_visible()
        expect(page.locator("#run-now")).to_be_enabled()
        # The file source: no schedule, Yes for a boolean, and a neutral test before any upload.
        page.goto(f"{live_server}/sources/{source_id}")
        expect(page.locator("#schedule")).to_have_count(0)
        expect(page.locator("dl.kv")).to_contain_text("Yes")
        context.close()


def test_the_events_filter_lists_skipped_events_in_the_browser(browser, live_server, app):
    import json
    import urllib.request

    from playwright.sync_api import expect

    from hookstream_ui.services import collections as collection_svc
    from hookstream_ui.services import sources as source_svc

    with app.app_context():
        principal = _owner(app, "events@example.com")
        hook = source_svc.create_source(
            principal,
            {"sourceShortName": "webhook", "name": "Hook", "credentials": {"verification_type": "none"}},
        )
        collection_svc.create_collection(
            principal, {"name": "Hooked", "slug": "hooked", "source_id": hook.id, "primary_key_path": "$.id"}
        )
        hook_id = hook.id
    for body in ({"id": "a1"}, {"name": "no key"}):
        request = urllib.request.Request(
            f"{live_server}/v1/ingest/{hook_id}",
            method="POST",
            data=json.dumps(body).encode(),
            headers={"Content-Type": "application/json"},
        )
        assert urllib.request.urlopen(request).status == 200
    context = browser.new_context(viewport={"width": 1280, "height": 900})
    page = context.new_page()
    page.set_default_timeout(10_000)
    sign_in(page, live_server, "events@example.com")
    expect(page.locator("#events-not-applied")).to_have_text("1 event not applied")
    page.click("#events-not-applied")
    expect(page.locator("#f-status")).to_have_value("not_applied")
    expect(page.locator("#events tbody tr")).to_have_count(1)
    page.select_option("#f-status", "applied")
    expect(page.locator("#events tbody tr")).to_have_count(1)
    page.select_option("#f-status", "skipped")
    expect(page.locator("#events tbody tr")).to_have_count(1)
    expect(page.locator("#events")).to_contain_text("skipped")
    page.goto(f"{live_server}/events?status=bogus")
    expect(page.locator("#e-status")).to_contain_text("Status must be one of")
    context.close()
