"""Browser tests: sign-up to teams, in Chromium against a live server."""

from __future__ import annotations

import re

import pytest

from tests.browser import ARTIFACTS, no_horizontal_overflow, sign_in

pytestmark = pytest.mark.browser


def test_sign_up_create_list_delete_a_collection(browser, live_server):
    from playwright.sync_api import expect

    ARTIFACTS.mkdir(exist_ok=True)
    context = browser.new_context(viewport={"width": 1280, "height": 900})
    page = context.new_page()
    page.set_default_timeout(10_000)

    page.goto(live_server + "/")
    expect(page).to_have_url(re.compile(r"/signup$"))
    page.fill("#f-email", "first@example.com")
    page.fill("#f-password", "a-long-password")
    page.fill("#f-password_confirm", "a-long-password")
    page.click("button[type=submit]")
    expect(page.locator("h1")).to_have_text("Overview")

    page.click("text=New collection")
    page.fill("#f-name", "abc")
    page.fill("#f-description", "Customers from the shop")
    page.click("button:has-text('Create collection')")
    expect(page.locator("#e-name")).to_have_text("must be 4 to 64 characters")
    expect(page.locator("#f-name")).to_have_value("abc")
    expect(page.locator("#f-description")).to_have_value("Customers from the shop")

    page.fill("#f-name", "")
    page.type("#f-name", "Shop customers")
    expect(page.locator("#slug-preview [data-slug]")).to_have_text(
        re.compile(r"^shop-customers-[a-z0-9]{6}$")
    )
    page.fill("#f-slug", "shop-customers")
    expect(page.locator("#slug-preview")).to_contain_text("is available")
    page.fill("#f-primary_key_path", "data.id")
    page.screenshot(path=str(ARTIFACTS / "new-collection-1280.png"), full_page=True)
    page.click("button:has-text('Create collection')")
    expect(page.locator("h1")).to_contain_text("Shop customers")
    expect(page.locator(".flash-success")).to_contain_text("created")
    expect(page.locator("dd.mono").nth(1)).to_have_text("$.data.id")

    page.click("nav >> text=Collections")
    row = page.locator("#collections-table tbody tr")
    expect(row).to_have_count(1)
    expect(row).to_contain_text("Shop customers")
    expect(row).to_contain_text("Needs Source")
    assert no_horizontal_overflow(page)
    page.screenshot(path=str(ARTIFACTS / "collections-1280.png"), full_page=True)

    page.set_viewport_size({"width": 390, "height": 844})
    page.reload()
    assert no_horizontal_overflow(page), "the collections page scrolls sideways at 390 px"
    expect(page.locator(".nav")).to_be_hidden()
    page.click("[data-toggle-nav]")
    expect(page.locator(".nav")).to_be_visible()
    page.screenshot(path=str(ARTIFACTS / "collections-390.png"), full_page=True)
    page.set_viewport_size({"width": 1280, "height": 900})

    page.click("text=Shop customers")
    page.click("a:has-text('Delete')")
    page.fill("#f-confirm_slug", "shop-customers")
    page.click("button:has-text('Delete collection')")
    expect(page.locator(".flash-success")).to_contain_text("deleted")
    expect(page.locator(".empty")).to_contain_text("No collections yet")
    context.close()


def test_pages_fit_a_phone(browser, live_server, app):
    from tests.helpers import PASSWORD, make_user

    with app.app_context():
        make_user("phone@example.com", admin=True)
    context = browser.new_context(viewport={"width": 390, "height": 844})
    page = context.new_page()
    page.goto(live_server + "/login")
    assert no_horizontal_overflow(page)
    page.fill("#f-email", "phone@example.com")
    page.fill("#f-password", PASSWORD)
    page.click("button[type=submit]")
    for path in (
        "/",
        "/collections",
        "/collections/new",
        "/settings/api-keys",
        "/settings/account",
        "/sources",
        "/sources/catalog",
        "/sources/new/postgresql",
        "/sources/new/rest_api",
        "/sources/new/webhook",
        "/events",
        "/settings/team",
        "/settings/projects",
        "/settings/audit-log",
        "/admin/",
        "/admin/users",
        "/admin/system",
        "/admin/audit-log",
    ):
        page.goto(live_server + path)
        assert no_horizontal_overflow(page), f"{path} scrolls sideways at 390 px"
    page.screenshot(path=str(ARTIFACTS / "new-collection-390.png"), full_page=True)
    # On a laptop, tables with forms or long ids in their cells fit without scrolling sideways.
    page.set_viewport_size({"width": 1280, "height": 800})
    for path in ("/admin/", "/admin/users", "/settings/audit-log", "/settings/projects", "/settings/team"):
        page.goto(live_server + path)
        wider = page.evaluate(
            "[...document.querySelectorAll('.table-wrap')].some(w => w.scrollWidth > w.clientWidth)"
        )
        assert not wider, f"a table on {path} scrolls sideways at 1280 px"
    context.close()


def test_connect_postgresql_from_the_catalog(browser, live_server, app, pg_source):
    from playwright.sync_api import expect

    from hookstream_ui.sources import MASK
    from tests.helpers import make_user

    with app.app_context():
        make_user("data@example.com")
    context = browser.new_context(viewport={"width": 1280, "height": 900})
    page = context.new_page()
    page.set_default_timeout(15_000)
    sign_in(page, live_server, "data@example.com")

    page.click("nav >> text=Sources")
    page.click("text=Connect a source")
    page.click("[data-type=postgresql] >> text=Connect PostgreSQL")
    creds = pg_source.credentials()
    page.fill("#f-name", "Customer DB")
    page.fill("[id='f-credentials.host']", creds["host"])
    page.fill("[id='f-credentials.port']", str(creds["port"]))
    page.fill("[id='f-credentials.database']", creds["database"])
    page.fill("[id='f-credentials.username']", creds["username"])
    page.fill("[id='f-credentials.password']", creds["password"])
    page.select_option("[id='f-credentials.sslmode']", "disable")
    page.fill("[id='f-config.table']", "customers")
    page.click("#test-connection")
    expect(page.locator("#test-result .test-result")).to_have_attribute("data-ok", "true")
    expect(page.locator("#test-result")).to_contain_text("public.customers is readable")
    page.screenshot(path=str(ARTIFACTS / "connect-postgresql-1280.png"), full_page=True)
    page.click("button:has-text('Connect source')")

    expect(page.locator("h1")).to_contain_text("Customer DB")
    expect(page.locator("dl.kv").first).to_contain_text(MASK)
    assert creds["password"] not in page.content()
    page.click("nav >> text=Sources")
    expect(page.locator("#sources-table tbody tr")).to_contain_text("Customer DB")

    page.click("text=Customer DB")
    page.click("a:has-text('Edit')")
    expect(page.locator("[id='f-credentials.password']")).to_have_value(MASK)
    page.fill("#f-name", "Customer DB (prod)")
    page.click("button:has-text('Save')")
    expect(page.locator("h1")).to_contain_text("Customer DB (prod)")
    expect(page.locator("#source-status")).to_have_text("Pending")  # never tested since it was saved
    page.click("button:has-text('Test connection')")
    expect(page.locator("#test-result .test-result")).to_have_attribute("data-ok", "true")
    expect(page.locator("#source-status")).to_have_text("Connected")
    page.set_viewport_size({"width": 390, "height": 844})
    assert no_horizontal_overflow(page), "the source page scrolls sideways at 390 px"
    page.screenshot(path=str(ARTIFACTS / "source-detail-390.png"), full_page=True)
    context.close()


def test_source_forms_show_the_fields_the_chosen_options_need(browser, live_server, app):
    from playwright.sync_api import expect

    from tests.helpers import make_user

    with app.app_context():
        make_user("forms@example.com")
    context = browser.new_context(viewport={"width": 1280, "height": 900})
    page = context.new_page()
    sign_in(page, live_server, "forms@example.com")
    # (page, then per step: the select and its value, fields now shown, fields now hidden)
    steps = {
        "rest_api": [
            (
                None,
                {},
                {"credentials.token", "credentials.header_name", "credentials.username", "config.next_path"},
            ),
            (
                ("credentials.auth_type", "basic"),
                {"credentials.username", "credentials.password"},
                {"credentials.token"},
            ),
            (
                ("credentials.auth_type", "header"),
                {"credentials.token", "credentials.header_name"},
                {"credentials.username"},
            ),
            (("config.pagination", "cursor"), {"config.next_path", "config.page_param"}, set()),
            (("config.pagination", "next_link"), set(), {"config.page_param"}),
        ],
        "webhook": [
            (None, set(), {"credentials.signing_secret"}),
            (
                ("credentials.verification_type", "stripe"),
                {"credentials.signing_secret"},
                {"credentials.signature_header"},
            ),
            (("credentials.verification_type", "hmac_sha1"), {"credentials.signature_header"}, set()),
        ],
    }
    for short, script in steps.items():
        page.goto(f"{live_server}/sources/new/{short}")
        for choice, visible, hidden in script:
            if choice:
                page.select_option(f"[id='f-{choice[0]}']", choice[1])
            for name in visible:
                expect(page.locator(f"[id='f-{name}']")).to_be_visible()
            for name in hidden:
                expect(page.locator(f"[id='f-{name}']")).to_be_hidden()
    context.close()


def test_run_a_sync_and_watch_it_complete(browser, live_server, app, pg_source, table, workers):
    from playwright.sync_api import expect

    from hookstream_ui.models.principal import Principal
    from hookstream_ui.services import collections as collection_svc
    from hookstream_ui.services import sources as source_svc
    from tests.helpers import make_user, org_of, production

    with app.app_context():
        user = make_user("runner@example.com")
        org = org_of(user)
        principal = Principal(org=org, env=production(org), role="owner", user=user)
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
        source_id = source.id
    workers(1, SYNC_BATCH_SIZE="250")

    context = browser.new_context(viewport={"width": 1280, "height": 900})
    page = context.new_page()
    page.set_default_timeout(15_000)
    sign_in(page, live_server, "runner@example.com")
    page.goto(f"{live_server}/sources/{source_id}")
    page.click("#run-now")
    expect(page.locator("h1")).to_have_text("Sync run")
    page.evaluate("window.__sameDocument = true")
    polls = []
    page.on("request", lambda req: polls.append(req.url) if "/_status" in req.url else None)

    expect(page.locator("#run-badge")).to_have_text("Completed", timeout=90_000)
    assert page.evaluate("window.__sameDocument === true"), "the page reloaded instead of updating in place"
    assert polls, "the status never polled"
    expect(page.locator(".progress-text")).to_contain_text("10,000 of 10,000")
    expect(page.locator("[data-count=inserted]")).to_have_text("10,000")
    expect(page.locator(".progress")).to_have_attribute("aria-valuenow", "100.0")
    assert page.locator("#run-status").get_attribute("hx-trigger") is None
    expect(page.locator("#run-status button")).to_have_count(0)  # no Cancel on a finished run
    settled = len(polls)
    page.wait_for_timeout(4500)
    assert len(polls) == settled, "polling continued after the run finished"
    page.screenshot(path=str(ARTIFACTS / "run-completed-1280.png"), full_page=True)
    page.set_viewport_size({"width": 390, "height": 844})
    assert no_horizontal_overflow(page), "the run page scrolls sideways at 390 px"
    page.screenshot(path=str(ARTIFACTS / "run-completed-390.png"), full_page=True)
    page.set_viewport_size({"width": 1280, "height": 900})

    page.goto(f"{live_server}/collections/big-rows")
    expect(page.locator("[data-record-count]")).to_have_text("10,000")
    context.close()


def test_webhook_record_appears_without_reload(browser, live_server, app):
    import json as jsonlib
    import urllib.request

    from playwright.sync_api import expect

    from hookstream_ui.models.principal import Principal
    from hookstream_ui.services import collections as collection_svc
    from hookstream_ui.services import sources as source_svc
    from tests.helpers import make_user, org_of, production

    with app.app_context():
        user = make_user("hooks@example.com")
        org = org_of(user)
        principal = Principal(org=org, env=production(org), role="owner", user=user)
        source = source_svc.create_source(
            principal,
            {
                "sourceShortName": "webhook",
                "name": "Shop hooks",
                "credentials": {"verification_type": "none"},
            },
        )
        collection_svc.create_collection(
            principal,
            {
                "name": "Shop orders",
                "slug": "shop-orders",
                "source_id": source.id,
                "primary_key_path": "$.order.id",
            },
        )
        source_id = source.id
    context = browser.new_context(viewport={"width": 1280, "height": 900})
    page = context.new_page()
    page.set_default_timeout(15_000)
    sign_in(page, live_server, "hooks@example.com")
    page.goto(live_server + "/collections/shop-orders")
    expect(page.locator("#records")).to_contain_text("No records yet")
    page.evaluate("window.__sameDocument = true")

    body = jsonlib.dumps({"type": "order.paid", "order": {"id": "ord_42", "total": 99}}).encode()
    request = urllib.request.Request(
        f"{live_server}/v1/ingest/{source_id}",
        data=body,
        method="POST",
        headers={"Content-Type": "application/json"},
    )
    with urllib.request.urlopen(request, timeout=10) as response:
        assert response.status == 200 and jsonlib.load(response)["event_id"].startswith("evt_")

    expect(page.locator("#records-table tr[data-key=ord_42]")).to_be_visible(timeout=10_000)
    assert page.evaluate("window.__sameDocument === true"), "the page reloaded"
    expect(page.locator("[data-record-count]")).to_have_text("1")  # the counter is live for a webhook too

    # The schema panel (read when the page loaded, before any record) refreshes on demand, and
    # a field of it fills the records filter.
    body = jsonlib.dumps({"type": "order.paid", "order": {"id": "ord_43", "total": 5}}).encode()
    request = urllib.request.Request(
        f"{live_server}/v1/ingest/{source_id}",
        data=body,
        method="POST",
        headers={"Content-Type": "application/json"},
    )
    urllib.request.urlopen(request, timeout=10).close()
    expect(page.locator("#records-table tr[data-key=ord_43]")).to_be_visible(timeout=10_000)
    page.click("#schema >> xpath=ancestor::section//button[normalize-space()='Refresh']")
    expect(page.locator("#schema")).to_contain_text("From the 2 most recently updated records")
    expect(page.locator("#schema-table tr[data-path='$.order.total']")).to_contain_text("100%")
    page.click("[data-filter-path='order.total']")
    expect(page.locator("input[name=filter_path]")).to_have_value("order.total")
    page.keyboard.type("99")
    page.keyboard.press("Enter")
    expect(page.locator("#records-table tr[data-key=ord_43]")).to_have_count(0)
    expect(page.locator("#records-table tr[data-key=ord_42]")).to_be_visible()
    assert page.evaluate("window.__sameDocument === true"), "the page reloaded"
    page.screenshot(path=str(ARTIFACTS / "records-live-1280.png"), full_page=True)
    page.set_viewport_size({"width": 390, "height": 844})
    assert no_horizontal_overflow(page), "the collection page scrolls sideways at 390 px"

    # The source's page tails its recent events the same way.
    page.set_viewport_size({"width": 1280, "height": 900})
    page.goto(f"{live_server}/sources/{source_id}")
    expect(page.locator("#events-table tbody tr")).to_have_count(2)
    page.evaluate("window.__sameDocument = true")
    urllib.request.urlopen(
        urllib.request.Request(
            f"{live_server}/v1/ingest/{source_id}",
            data=b'{"order": {"id": "ord_44"}}',
            method="POST",
            headers={"Content-Type": "application/json"},
        ),
        timeout=10,
    ).close()
    expect(page.locator("#events-table tbody tr")).to_have_count(3, timeout=10_000)
    assert page.evaluate("window.__sameDocument === true"), "the page reloaded"
    page.set_viewport_size({"width": 390, "height": 844})
    assert no_horizontal_overflow(page), "the webhook source page scrolls sideways at 390 px"
    context.close()


def test_owner_invites_a_member_who_joins_in_another_browser(browser, live_server, app):
    from playwright.sync_api import expect

    from hookstream_ui.models.principal import Principal
    from hookstream_ui.services import collections as collection_svc
    from tests.helpers import PASSWORD, make_user, org_of, production

    with app.app_context():
        owner = make_user("boss@example.com")
        org = org_of(owner)
        collection_svc.create_collection(
            Principal(org=org, env=production(org), role="owner", user=owner),
            {"name": "Team customers", "slug": "team-customers", "primary_key_path": "$.id"},
        )
    owner_ctx = browser.new_context(viewport={"width": 1280, "height": 900})
    page = owner_ctx.new_page()
    page.set_default_timeout(15_000)
    sign_in(page, live_server, "boss@example.com")
    page.click("nav >> text=Team")
    page.fill("#f-email", "newbie@example.com")
    page.select_option("#f-role", "member")
    page.click("#invite-form button[type=submit]")
    link = page.locator("#invite-url").inner_text().strip()
    assert link.startswith(live_server + "/invitations/accept?token=")
    page.screenshot(path=str(ARTIFACTS / "team-invite-1280.png"), full_page=True)

    member_ctx = browser.new_context(
        viewport={"width": 1280, "height": 900}
    )  # a second browser: no shared cookies
    other = member_ctx.new_page()
    other.set_default_timeout(15_000)
    other.goto(link)
    expect(other.locator("h1")).to_contain_text("Join")
    other.fill("#f-password", PASSWORD)
    other.fill("#f-password_confirm", PASSWORD)
    other.click("button[type=submit]")
    expect(other.locator("h1")).to_have_text("Overview")
    other.click("nav >> text=Collections")
    expect(other.locator("body")).to_contain_text("Team customers")
    nav = other.locator("nav.nav")
    expect(nav.locator("text=API keys")).to_have_count(0)
    expect(nav.locator("text=Team")).to_have_count(0)
    expect(nav.locator("text=Audit log")).to_have_count(0)
    assert other.goto(live_server + "/settings/team").status == 403

    page.reload()
    expect(page.locator("#members-table")).to_contain_text("newbie@example.com")
    owner_ctx.close()
    member_ctx.close()
