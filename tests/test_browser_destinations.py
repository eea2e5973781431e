"""Browser tests: a destination added from its form, its secret shown once, a change sent to
a real receiver, what failed one click away, and deleting it asking first, in Chromium."""

from __future__ import annotations

import pytest

from tests.browser import ARTIFACTS, no_horizontal_overflow, owner_with_hook, send_event, sign_in
from tests.receivers import Receiver

pytestmark = pytest.mark.browser


def _deliver(app) -> None:
    from hookstream_ui.sync import deliver

    with app.app_context():
        worker = deliver.Deliverer(app)
        try:
            worker.tick()
        finally:
            worker.stop()


def test_add_a_destination_see_what_failed_and_delete_it_on_purpose(browser, live_server, app):
    from playwright.sync_api import expect

    app.config["ALLOW_PRIVATE_NETWORKS"] = True
    receiver = Receiver()
    try:
        sid = owner_with_hook(app, "dest@example.com")
        context = browser.new_context(viewport={"width": 390, "height": 844})
        page = context.new_page()
        page.set_default_timeout(15_000)
        sign_in(page, live_server, "dest@example.com")
        page.goto(f"{live_server}/destinations/new")
        page.fill("#f-name", "Warehouse")
        page.fill("#f-url", f"{receiver.url}?token=page-canary-5")
        page.fill("#f-headers", "Authorization: Bearer hdr-canary-6")
        page.get_by_label("Orders").check()
        page.get_by_role("button", name="Add destination").click()
        secret = page.locator("#signing-secret")
        expect(secret).to_contain_text("whsec_")
        shown = secret.inner_text()
        body = page.content()
        assert "page-canary-5" not in body and "hdr-canary-6" not in body
        assert no_horizontal_overflow(page), "the new destination's page scrolls sideways at 390 px"
        page.screenshot(path=str(ARTIFACTS / "destination-new-390.png"), full_page=True)
        page.reload()  # shown once: a reload shows it no more
        expect(page.locator("#secret-once")).to_have_count(0)
        assert shown not in page.content()

        receiver.fail_keys = {"o1"}
        send_event(live_server, sid, {"id": "o1", "total": 5})
        send_event(live_server, sid, {"id": "o2", "total": 6})
        _deliver(app)
        assert receiver.keys() == ["o2"]
        assert receiver.got[0]["path"] == "/hook?token=page-canary-5"
        assert receiver.got[0]["headers"]["Authorization"] == "Bearer hdr-canary-6"
        page.reload()
        expect(page.locator("[data-retrying]")).to_have_text("1")
        page.goto(f"{live_server}/destinations")
        page.locator("a[href$='#undelivered']").first.click()  # one click to what failed
        expect(page.locator("body")).to_contain_text("o1")
        assert no_horizontal_overflow(page), "the attempt log scrolls sideways at 390 px"
        page.screenshot(path=str(ARTIFACTS / "destination-undelivered-390.png"), full_page=True)

        # Deleting asks first, naming what would never be sent; dismissed, nothing changes.
        said: list[str] = []

        def answer(dialog, accept: bool) -> None:
            said.append(dialog.message)
            dialog.accept() if accept else dialog.dismiss()

        page.once("dialog", lambda d: answer(d, False))
        page.get_by_role("button", name="Delete this destination").click()
        assert said and "never be sent" in said[0]
        page.goto(f"{live_server}/destinations")
        expect(page.locator("body")).to_contain_text("Warehouse")
        page.get_by_role("link", name="Warehouse").click()
        page.once("dialog", lambda d: answer(d, True))
        page.get_by_role("button", name="Delete this destination").click()
        page.wait_for_url(f"{live_server}/destinations")
        expect(page.locator("body")).to_contain_text("No destinations yet")
        context.close()
    finally:
        receiver.stop()
