"""In Chromium against a live server: Back and Forward through the
records and events browsers, and the toolbar's exports following the filters."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from tests.browser import owner_with_hook, send_event, sign_in
from tests.test_browser_browse import _page

pytestmark = pytest.mark.browser


def test_back_and_forward_through_record_and_event_pages_raise_no_errors(browser, live_server, app):
    from playwright.sync_api import expect

    source_id = owner_with_hook(app, "history@example.com")
    for i in range(60):
        send_event(
            live_server, source_id, {"id": f"o{i:03d}", "type": "order.paid" if i % 2 else "order.new"}
        )
    context, page = _page(browser)
    errors = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    sign_in(page, live_server, "history@example.com")
    page.goto(live_server + "/collections/orders")
    page.click("[data-page=next]")
    expect(page.locator("#records-count")).to_contain_text("page 2")
    page.click("[data-page=next]")
    expect(page.locator("#records-count")).to_contain_text("page 3")
    page.go_back()
    expect(page).to_have_url(re.compile(r"cursor="))
    page.go_back()
    page.go_forward()
    page.wait_for_timeout(500)
    page.goto(live_server + "/events")
    page.click("[data-page=next]")
    expect(page).to_have_url(re.compile(r"cursor="))
    page.go_back()
    page.go_forward()
    page.wait_for_timeout(500)
    assert errors == []
    context.close()


def test_the_toolbar_export_follows_the_filter(browser, live_server, app):
    from playwright.sync_api import expect

    source_id = owner_with_hook(app, "toolbar@example.com")
    for i in range(6):
        send_event(
            live_server, source_id, {"id": f"o{i:03d}", "type": "order.new" if i % 3 == 0 else "order.paid"}
        )
    context, page = _page(browser)
    sign_in(page, live_server, "toolbar@example.com")
    page.goto(live_server + "/collections/orders")
    expect(page.locator("#records-count")).to_contain_text("6 records")
    page.fill("input[name=event_type]", "order.new")
    page.press("input[name=event_type]", "Enter")
    expect(page.locator("#records-count")).to_contain_text("2 matches")
    with page.expect_download() as download:
        page.click("[data-export-all=csv]")
    lines = Path(download.value.path()).read_text(encoding="utf-8").splitlines()
    assert sorted(line.split(",")[0] for line in lines[1:]) == ["o000", "o003"]
    context.close()


def test_the_api_reference_curl_carries_the_api_key_given_to_authorize(browser, live_server, app):
    from playwright.sync_api import expect

    from tests.helpers import make_key, make_user, org_of, production

    with app.app_context():
        key = make_key(production(org_of(make_user("curl@example.com"))))
    context, page = _page(browser)
    sign_in(page, live_server, "curl@example.com")
    page.goto(live_server + "/api-reference")
    expect(page.locator("#curl-needs-key")).to_contain_text('-H "X-API-Key: hs_live_…"')
    page.locator("#api-reference button.authorize").first.click()
    dialog = page.locator(".dialog-ux")
    dialog.locator("input[type=text], input[type=password]").first.fill(key)
    dialog.locator("button.authorize").first.click()
    dialog.locator("button.btn-done, button.close-modal").first.click()
    listing = page.locator(
        "#api-reference .opblock-get",
        has=page.locator(".opblock-summary-path", has_text=re.compile(r"^/v1/collections$")),
    )
    listing.locator(".opblock-summary").click()
    listing.locator("button.try-out__btn").click()
    listing.locator("button.execute").click()
    expect(listing.locator(".live-responses-table tbody .response-col_status").first).to_have_text(
        re.compile(r"^200")
    )
    curl = listing.locator(".curl-command").first.inner_text()
    assert f"X-API-Key: {key}" in curl and "X-CSRFToken" not in curl
    context.close()


def test_the_records_toolbar_says_what_is_wrong_and_an_old_link_offers_page_one(browser, live_server, app):
    from playwright.sync_api import expect

    source_id = owner_with_hook(app, "feedback@example.com")
    for i in range(3):
        send_event(live_server, source_id, {"id": f"o{i:03d}", "type": "order.new"})
    context, page = _page(browser)
    sign_in(page, live_server, "feedback@example.com")
    page.goto(live_server + "/collections/orders")
    expect(page.locator("#records-table tbody tr")).to_have_count(3)
    page.fill("input[name=filter_value]", "open")
    page.press("input[name=filter_value]", "Enter")
    expect(page.locator("#e-records-filter_path")).to_have_text("Choose a field to filter by.")
    expect(page.locator("input[name=filter_path]")).to_have_attribute("aria-invalid", "true")
    expect(page.locator("#records")).not_to_contain_text("No records")
    page.goto(live_server + "/collections/orders?cursor=gone&trail=x")
    expect(page.locator("#records-stale")).to_contain_text("This page link is out of date")
    expect(page.locator("[data-page=previous]")).to_have_count(0)
    page.click("[data-page=first]")
    expect(page.locator("#records-table tbody tr")).to_have_count(3)
    expect(page).not_to_have_url(re.compile(r"cursor="))
    context.close()


def test_the_edit_form_warns_of_a_new_key_path_and_a_second_source_writes_beside(browser, live_server, app):
    from playwright.sync_api import expect

    from hookstream_ui.models import User, db
    from hookstream_ui.models.principal import Principal
    from hookstream_ui.services import sources as source_svc
    from tests.helpers import org_of, production

    source_id = owner_with_hook(app, "edit@example.com")
    for i in range(2):
        send_event(
            live_server, source_id, {"id": f"o{i:03d}", "type": "order.new", "email": f"c{i}@example.com"}
        )
    with app.app_context():
        user = db.session.scalar(db.select(User).where(User.email == "edit@example.com"))
        org = org_of(user)
        other = source_svc.create_source(
            Principal(org=org, env=production(org), role="owner", user=user),
            {"sourceShortName": "webhook", "name": "New hooks", "credentials": {"verification_type": "none"}},
        ).id
    context, page = _page(browser)
    sign_in(page, live_server, "edit@example.com")
    page.goto(live_server + "/collections/orders/edit")
    page.fill("#f-primary_key_path", "$.email")
    warning = page.locator("[data-key-state=rekey]")
    expect(warning).to_contain_text("2 records keyed by $.id")
    page.fill("#f-primary_key_path", "$.id")
    expect(warning).to_have_count(0)
    expect(page.locator("#f-source_id")).to_have_count(0)  # sources are added on the collection's page
    page.click('form.card button:has-text("Save")')
    expect(page.locator("h1").first).to_contain_text("Orders")
    # A second source, added from the page, writes beside the first; both show as writers.
    page.click("summary:has-text('Add a source')")
    page.select_option("#add-source #f-source_id", other)
    page.click("#add-source button:has-text('Add source')")
    expect(page.locator("#source-list")).to_contain_text("New hooks")
    expect(page.locator("#source-list")).to_contain_text("Shop hooks")
    send_event(live_server, other, {"id": "o900", "type": "order.new", "email": "new@example.com"})
    send_event(live_server, source_id, {"id": "o901", "type": "order.new", "email": "old@example.com"})
    expect(page.locator("body")).to_contain_text("o900")  # the live records table, no reload
    expect(page.locator("body")).to_contain_text("o901")
    page.reload()
    expect(page.locator(f"#binding-{other}")).to_contain_text("1")  # records it wrote
    context.close()
