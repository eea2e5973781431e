"""Browser tests: what the audit log pages show."""

from __future__ import annotations

import pytest

from tests.browser import sign_in
from tests.helpers import make_key, make_user, org_of, production

pytestmark = pytest.mark.browser


def test_audit_log_details_read_as_words_not_raw_json(browser, live_server, app):
    from playwright.sync_api import expect

    with app.app_context():
        owner = make_user("root@example.com", admin=True)
        raw = make_key(production(org_of(owner)), name="deploy")
    api = app.test_client()
    h = {"X-API-Key": raw}
    long_name = "A collection whose name is long enough"
    assert (
        api.post(
            "/v1/collections",
            headers=h,
            json={"name": "Audited", "slug": "audited", "primary_key_path": "$.id"},
        ).status_code
        == 201
    )
    assert (
        api.patch(
            "/v1/collections/audited", headers=h, json={"name": long_name, "description": "now described"}
        ).status_code
        == 200
    )

    for path in ("/settings/audit-log", "/admin/audit-log"):
        context = browser.new_context(viewport={"width": 1280, "height": 900})
        page = context.new_page()
        page.set_default_timeout(10_000)
        sign_in(page, live_server, "root@example.com")
        page.goto(live_server + path)
        row = page.locator("#audit-table tbody tr", has_text="collection.update")
        expect(row).to_have_count(1)
        details = row.locator(".audit-details")
        pairs = details.locator("div")
        expect(pairs.nth(0).locator("dt")).to_have_text("Name")
        expect(pairs.nth(0).locator("dd")).to_have_text(f"Audited → {long_name}")
        expect(pairs.nth(1).locator("dt")).to_have_text("Changed")
        expect(pairs.nth(1).locator("dd")).to_have_text("description")
        expect(pairs.nth(0).locator("dd")).to_be_visible()
        assert "{" not in details.inner_text()
        # Shown whole: nothing clipped out of sight.
        assert details.evaluate("el => el.scrollWidth <= el.clientWidth + 1")
        expect(row).to_contain_text("API key deploy (")
        expect(row).to_contain_text("of root@example.com")
        context.close()


def test_editing_a_collection_keeps_its_sources(browser, live_server, app):
    from playwright.sync_api import expect

    with app.app_context():
        owner = make_user("owner@example.com")
        raw = make_key(production(org_of(owner)))
    api = app.test_client()
    h = {"X-API-Key": raw}
    ids = [
        api.post(
            "/api/v1/source-connections",
            headers=h,
            json={"sourceShortName": "webhook", "name": name, "credentials": {}, "config": {}},
        ).json["sourceConnection"]["id"]
        for name in ("Orders hook", "Other hook")
    ]
    assert (
        api.post(
            "/v1/collections",
            headers=h,
            json={"name": "Orders", "slug": "orders", "source_id": ids[0], "primary_key_path": "$.id"},
        ).status_code
        == 201
    )

    context = browser.new_context(viewport={"width": 1280, "height": 900})
    page = context.new_page()
    page.set_default_timeout(10_000)
    sign_in(page, live_server, "owner@example.com")
    page.goto(live_server + "/collections/orders/edit")
    expect(page.locator("#f-source_id")).to_have_count(0)  # no source to swap: they are added
    page.fill("#f-name", "Orders renamed")
    page.click("button:has-text('Save')")
    expect(page.locator("#source-list")).to_contain_text("Orders hook")
    expect(page.locator("#source-list")).not_to_contain_text("Other hook")
    context.close()
    got = api.get("/v1/collections/orders", headers=h).json["collection"]
    assert (got["name"], got["source_id"]) == ("Orders renamed", ids[0])
    assert [s["source_id"] for s in got["sources"]] == [ids[0]]
