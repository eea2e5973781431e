"""In Chromium against a live server: the slug and key previews, the
records browser's state, every control on a phone, the webhook page's commands, links across
projects and the API reference."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from tests.browser import ARTIFACTS, no_horizontal_overflow, owner_with_hook, send_event, sign_in

pytestmark = pytest.mark.browser


def _page(browser, width=1280, height=900):
    context = browser.new_context(viewport={"width": width, "height": height})
    page = context.new_page()
    page.set_default_timeout(15_000)
    return context, page


def test_the_slug_shown_is_the_one_created_and_the_key_path_is_checked(browser, live_server, app):
    from playwright.sync_api import expect

    ARTIFACTS.mkdir(exist_ok=True)
    source_id = owner_with_hook(app, "slug@example.com", slug=None)
    send_event(
        live_server,
        source_id,
        {"type": "order.paid", "data": {"object": {"id": "ord_42"}}, "created": 1714557600},
    )
    context, page = _page(browser)
    sign_in(page, live_server, "slug@example.com")
    page.goto(live_server + "/collections/new")
    page.type("#f-name", "Ünïcode orders")
    shown = page.locator("#slug-preview [data-slug]")
    expect(shown).to_have_text(re.compile(r"^unicode-orders-[a-z0-9]{6}$"))
    promised = shown.text_content()

    page.select_option("#f-source_id", source_id)
    page.fill("#f-primary_key_path", "")
    page.type("#f-primary_key_path", "$.id")
    warning = page.locator("#key-preview [data-key-state=no-match]")
    expect(warning).to_contain_text("$.id matches nothing usable as a key in the latest event")
    expect(warning).to_contain_text("$.data.object.id")
    page.fill("#f-primary_key_path", "")
    page.type("#f-primary_key_path", "data.object.id")
    expect(page.locator("#key-preview [data-key]")).to_have_text("ord_42")
    page.type("#f-timestamp_path", "$.created")
    expect(page.locator("#timestamp_path-preview [data-key]")).to_have_text("2024-05-01T10:00:00Z")
    page.type("#f-event_type_field", "$.type")
    expect(page.locator("#event_type_field-preview [data-key]")).to_have_text("order.paid")
    page.screenshot(path=str(ARTIFACTS / "new-collection-key-check-1280.png"), full_page=True)
    page.click("button:has-text('Create collection')")
    expect(page.locator(".flash-success")).to_contain_text("created")
    expect(page.locator("header .mono").first).to_have_text(promised)
    assert page.url.endswith(f"/collections/{promised}")

    # Editing checks the path against the collection's newest record.
    send_event(live_server, source_id, {"type": "order.paid", "data": {"object": {"id": "ord_43"}}})
    page.click("a:has-text('Edit')")
    expect(page.locator("#key-preview")).to_contain_text("newest record of this collection")
    expect(page.locator("#key-preview [data-key]")).to_have_text("ord_43")
    context.close()


def test_the_records_browser_keeps_its_state_in_the_url(browser, live_server, app):
    from playwright.sync_api import expect

    source_id = owner_with_hook(app, "rows@example.com")
    for i in range(40):
        send_event(
            live_server,
            source_id,
            {
                "id": f"o{i:03d}",
                "type": "order.new" if i % 4 == 0 else "order.paid",
                "customer": {"email": f"c{i}@example.com"},
                "total": i,
            },
        )
    context, page = _page(browser)
    sign_in(page, live_server, "rows@example.com")
    page.goto(live_server + "/collections/orders")
    expect(page.locator("#records-count")).to_have_text(re.compile(r"^40 records · page 1"))
    first = page.locator("#records-table tbody tr").evaluate_all("rows => rows.map(r => r.dataset.key)")
    page.click("[data-page=next]")
    expect(page.locator("#records-count")).to_contain_text("page 2")
    expect(page).to_have_url(re.compile(r"cursor="))
    page.click("[data-page=previous]")
    expect(page.locator("#records-count")).to_contain_text("page 1")
    assert (
        page.locator("#records-table tbody tr").evaluate_all("rows => rows.map(r => r.dataset.key)") == first
    )

    page.fill("input[name=event_type]", "order.new")
    page.press("input[name=event_type]", "Enter")
    expect(page.locator("#records-count")).to_contain_text("10 matches (exact count)")
    expect(page).to_have_url(re.compile(r"event_type=order\.new"))
    page.click("#column-menu summary")
    page.check("#column-menu input[value='customer.email']")
    expect(page.locator("#records-table thead")).to_contain_text("customer.email")
    expect(page).to_have_url(re.compile(r"cols=customer\.email"))
    page.screenshot(path=str(ARTIFACTS / "records-browser-1280.png"))
    shared = page.url

    with page.expect_download() as download:
        page.click("[data-export=csv]")
    exported = Path(download.value.path()).read_text(encoding="utf-8").splitlines()
    # The columns shown are the export's columns, named as the page names them (browse2).
    shown = page.locator("#records-table thead th.mono").all_text_contents()
    assert len(exported) == 11 and exported[0].split(",")[6:] == shown and "customer.email" in shown
    page.reload()  # and a colleague opening the link sees the same
    expect(page.locator("input[name=event_type]")).to_have_value("order.new")
    expect(page.locator("#records-count")).to_contain_text("10 matches (exact count)")
    expect(page.locator("#records-table thead")).to_contain_text("customer.email")
    expect(page.locator("#records-table tbody")).to_contain_text("c0@example.com")
    page.go_back()
    expect(page).not_to_have_url(shared)

    page.goto(live_server + "/events")
    page.select_option("select[name=status]", "applied")
    expect(page).to_have_url(re.compile(r"/events\?status=applied"))
    # The URL moves at once; the filtered list (whose pager carries the filter) lands after.
    expect(page.locator("[data-page=next]")).to_have_attribute("hx-get", re.compile(r"status=applied"))
    page.click("[data-page=next]")
    expect(page.locator("[data-page=previous]")).to_be_visible()
    page.reload()
    expect(page.locator("select[name=status]")).to_have_value("applied")
    expect(page.locator("[data-page=previous]")).to_be_visible()
    context.close()


def test_every_control_works_on_a_phone(browser, live_server, app):
    from playwright.sync_api import expect

    source_id = owner_with_hook(app, "phone@example.com")
    for i in range(3):
        send_event(
            live_server, source_id, {"id": f"o{i}", "type": "order.paid", "status": "open" if i else "closed"}
        )
    context, page = _page(browser, 390, 844)
    sign_in(page, live_server, "phone@example.com")
    page.goto(live_server + "/collections/orders")
    # A schema field fills a filter the user can see, and the filter works.
    page.click("[data-filter-path='status']")
    expect(page.locator("input[name=filter_path]")).to_be_visible()
    expect(page.locator("input[name=filter_path]")).to_have_value("status")
    expect(page.locator("input[name=filter_value]")).to_be_focused()
    page.keyboard.type("closed")
    page.keyboard.press("Enter")
    expect(page.locator("#records-count")).to_contain_text("1 match (exact count)")
    expect(page.locator("input[name=event_type]")).to_be_visible()
    assert no_horizontal_overflow(page)
    page.screenshot(path=str(ARTIFACTS / "records-filter-390.png"), full_page=True)

    # Placeholders are read whole.
    truncated = """() => { const c = document.createElement('canvas').getContext('2d');
      return [...document.querySelectorAll('input[placeholder]')].filter(i => i.offsetParent).filter(i => {
        const s = getComputedStyle(i); c.font = s.font;
        return c.measureText(i.placeholder).width > i.clientWidth - parseFloat(s.paddingLeft) - parseFloat(s.paddingRight);
      }).map(i => i.placeholder); }"""
    for path in (
        "/collections/orders",
        "/collections",
        "/collections/new",
        "/events",
        "/sources",
        "/settings/team",
        "/settings/api-keys",
    ):
        page.goto(live_server + path)
        assert page.evaluate(truncated) == [], path
    # How a source feeds the collection, edited on its own page: whole, and no wider than the phone.
    page.goto(live_server + f"/collections/orders/sources/{source_id}/edit")
    expect(page.locator("#edit-binding input[name=record_path]")).to_be_visible()
    assert page.evaluate(truncated) == [] and no_horizontal_overflow(page)

    # A short page is the page, not a tall empty top bar.
    page.goto(live_server + "/settings/account")
    assert page.locator(".sidebar").bounding_box()["height"] < 80
    # A skip link is the first thing a keyboard reaches, shows, and lands in the page.
    page.keyboard.press("Tab")
    skip = page.locator(".skip-link")
    expect(skip).to_be_focused()
    box = skip.bounding_box()
    assert box["y"] >= 0 and box["height"] > 0
    page.keyboard.press("Enter")
    expect(page.locator("main#main")).to_be_focused()

    # A row's actions are on screen, however wide the rest of its table.
    with app.app_context():
        from hookstream_ui.models import User, db
        from tests.helpers import make_key, make_user, org_of, production

        org = org_of(db.session.scalars(db.select(User).where(User.email == "phone@example.com")).one())
        make_user("a-rather-long-address-for-a-member@example.com", org=org, role="member")
        make_key(production(org), name="deploy pipeline key")
    offscreen = """() => [...document.querySelectorAll('table .btn, table select')].filter(b => b.offsetParent)
        .filter(b => { const r = b.getBoundingClientRect(); return r.right > window.innerWidth || r.left < 0; })
        .map(b => b.textContent.trim() || b.name)"""
    for path in ("/settings/team", "/settings/api-keys"):
        page.goto(live_server + path)
        assert page.evaluate(offscreen) == [], path
        assert no_horizontal_overflow(page), path
    page.screenshot(path=str(ARTIFACTS / "team-390.png"), full_page=True)

    # The same pages at 1280 px still fit.
    page.set_viewport_size({"width": 1280, "height": 800})
    for path in ("/collections/orders", "/settings/team", "/collections", "/events"):
        page.goto(live_server + path)
        assert no_horizontal_overflow(page), path
        assert page.evaluate(offscreen) == [], path
        assert page.evaluate(truncated) == [], path
    page.goto(live_server + "/collections/orders")
    page.click("#column-menu summary")
    box = page.locator("#column-menu fieldset").bounding_box()
    assert box["x"] >= 0 and box["x"] + box["width"] <= 1280, "the columns menu leaves the screen"
    context.close()


def test_the_webhook_page_shows_a_signed_command_that_works_and_copies(browser, live_server, app):
    import shutil
    import subprocess

    from playwright.sync_api import expect

    from hookstream_ui.models import Event, db
    from hookstream_ui.models.principal import Principal
    from hookstream_ui.services import sources as source_svc
    from tests.helpers import make_user, org_of, production

    if not (shutil.which("openssl") and shutil.which("curl")):
        pytest.skip("needs openssl and curl")
    secret = "whsec_dGhlIHN0cmlwZSBzaWduaW5nIHNlY3JldA"
    with app.app_context():
        user = make_user("signed@example.com")
        org = org_of(user)
        principal = Principal(org=org, env=production(org), role="owner", user=user)
        source_id = source_svc.create_source(
            principal,
            {
                "sourceShortName": "webhook",
                "name": "Stripe hooks",
                "credentials": {"verification_type": "stripe", "signing_secret": secret},
            },
        ).id
    context = browser.new_context(viewport={"width": 1280, "height": 900})
    context.grant_permissions(["clipboard-read", "clipboard-write"], origin=live_server)
    page = context.new_page()
    sign_in(page, live_server, "signed@example.com")
    page.goto(f"{live_server}/sources/{source_id}")
    blocks = page.locator("pre.code")
    expect(blocks.first).to_be_visible()
    assert blocks.count() == page.locator(".code-frame .copy-code").count() >= 1
    shown = page.locator("#curl-line").text_content()
    assert secret not in page.content() and "Stripe-Signature: t=$TS,v1=$SIG" in shown
    page.locator("#curl-line").locator("xpath=ancestor::div[contains(@class,'code-frame')]//button").click()
    expect(page.locator(".copy-code").first).to_have_text("Copied")
    copied = page.evaluate("navigator.clipboard.readText()")
    assert copied == shown
    done = subprocess.run(
        ["bash", "-c", copied],
        capture_output=True,
        text=True,
        timeout=30,
        env={"PATH": "/usr/bin:/bin", "SIGNING_SECRET": secret},
    )
    assert done.returncode == 0 and '"event_id"' in done.stdout, (done.stdout, done.stderr)
    with app.app_context():
        event = db.session.scalar(db.select(Event).where(Event.source_id == source_id))
        assert (event.verification, event.status) == ("verified", "applied")
    page.set_viewport_size({"width": 390, "height": 844})
    assert no_horizontal_overflow(page)
    page.screenshot(path=str(ARTIFACTS / "webhook-command-390.png"), full_page=True)
    context.close()


def test_a_shared_link_into_another_project_switches_and_opens_it(browser, live_server, app):
    from playwright.sync_api import expect

    from hookstream_ui.models.principal import Principal
    from hookstream_ui.services import collections as collection_svc
    from tests.helpers import add_env, make_user, org_of

    with app.app_context():
        org = org_of(make_user("two@example.com"))
        staging = add_env(org, "staging")
        collection_svc.create_collection(
            Principal(org=org, env=staging, role="owner"),
            {"name": "Staging orders", "slug": "staging-orders", "primary_key_path": "$.id"},
        )
        staging_id = staging.id
    context, page = _page(browser)
    sign_in(page, live_server, "two@example.com")
    page.goto(live_server + "/collections/staging-orders?q=abc")
    expect(page.locator("h1")).to_have_text("This collection is in another project")
    page.click("button:has-text('Switch to staging and open it')")
    expect(page.locator("h1")).to_contain_text("Staging orders")
    expect(page).to_have_url(re.compile(r"/collections/staging-orders\?q=abc$"))
    expect(page.locator("input[name=q]")).to_have_value("abc")
    expect(page.locator("#env-select")).to_have_value(staging_id)
    context.close()


def test_the_api_reference_shows_the_operations_under_the_csp(browser, live_server, app):
    from playwright.sync_api import expect

    from tests.helpers import make_user

    with app.app_context():
        make_user("docs@example.com")
    context, page = _page(browser)
    outside = []
    page.on("request", lambda r: outside.append(r.url) if not r.url.startswith(live_server) else None)
    sign_in(page, live_server, "docs@example.com")
    page.click("nav >> text=API reference")
    expect(page.locator("h1").first).to_have_text("API reference")
    operations = page.locator("#api-reference .opblock")
    expect(operations.first).to_be_visible()
    assert operations.count() > 40
    summary = page.locator("#api-reference .opblock-summary-path", has_text="/v1/collections/{ident}/records")
    expect(summary.first).to_be_visible()
    summary.first.click()
    expect(page.locator("#api-reference .opblock.is-open").first).to_contain_text("Parameters")
    page.screenshot(path=str(ARTIFACTS / "api-reference-1280.png"))
    # Try it out runs as the signed-in user: a write passes the CSRF check too.
    create = page.locator(
        "#api-reference .opblock-post",
        has=page.locator(".opblock-summary-path", has_text=re.compile(r"^/v1/collections$")),
    )
    create.locator(".opblock-summary").click()
    create.locator("button.try-out__btn").click()
    create.locator("textarea.body-param__text").fill('{"name": "Tried it", "primary_key_path": "$.id"}')
    create.locator("button.execute").click()
    expect(create.locator(".live-responses-table tbody .response-col_status").first).to_have_text(
        re.compile(r"^201")
    )
    page.set_viewport_size({"width": 390, "height": 844})
    assert no_horizontal_overflow(page)
    assert outside == [], outside
    with app.app_context():
        from hookstream_ui.models import Collection, db

        assert db.session.scalar(db.select(Collection.name)) == "Tried it"
    context.close()


def test_a_bad_records_filter_is_marked_beside_its_field(browser, live_server, app):
    from playwright.sync_api import expect

    source_id = owner_with_hook(app, "filter@example.com")
    send_event(live_server, source_id, {"id": "o1", "type": "order.paid", "status": "open"})
    context, page = _page(browser, 390, 844)
    sign_in(page, live_server, "filter@example.com")
    page.goto(live_server + "/collections/orders")
    page.fill("input[name=filter_path]", "a..b")
    page.fill("input[name=filter_value]", "1")
    page.click("#records-filter button[type=submit]")
    error = page.locator("#e-records-filter_path")
    expect(error).to_have_text(re.compile(r"^Filter field must be a dot path"))
    expect(error).to_be_visible()
    expect(page.locator("input[name=filter_path]")).to_have_attribute("aria-invalid", "true")
    expect(page.locator("input[name=filter_path]")).to_have_value("a..b")
    page.fill("input[name=filter_path]", "status")
    page.fill("input[name=filter_value]", "open")
    page.click("#records-filter button[type=submit]")
    expect(error).to_be_hidden()
    expect(page.locator("input[name=filter_path]")).not_to_have_attribute("aria-invalid", "true")
    context.close()
