"""Browser: connect HubSpot through its generated form, and through Connect with HubSpot
against the fixture HubSpot's authorization server."""

from __future__ import annotations

import pytest

from tests.browser import sign_in
from tests.hubspot_fixture import CLIENT_ID, CLIENT_SECRET, HUBSPOT, HUBSPOT_TOKEN, PREFIX

pytestmark = pytest.mark.browser


def test_connect_hubspot_by_its_form_and_by_oauth(browser, live_server, app, http_fixture, monkeypatch):
    from playwright.sync_api import expect

    from tests.helpers import make_user

    base = http_fixture.base + PREFIX
    for name, value in {
        "HUBSPOT_CLIENT_ID": CLIENT_ID,
        "HUBSPOT_CLIENT_SECRET": CLIENT_SECRET,
        "HUBSPOT_AUTHORIZE_URL": base + "/oauth/authorize",
        "HUBSPOT_TOKEN_URL": base + "/oauth/v1/token",
        "HUBSPOT_API_URL": base,
    }.items():
        monkeypatch.setitem(app.config, name, value)
    with app.app_context():
        make_user("hubspot@example.com")
    page = browser.new_context(viewport={"width": 1280, "height": 900}).new_page()
    page.set_default_timeout(10_000)
    sign_in(page, live_server, "hubspot@example.com")

    # The generated form: a private app's token.
    page.goto(f"{live_server}/sources/new/hubspot")
    expect(page.locator('[name="credentials.refresh_token"]')).to_be_hidden()  # OAuth's fields wait
    page.fill("#f-name", "HubSpot by token")
    page.fill('[name="credentials.token"]', HUBSPOT_TOKEN)
    page.fill('[name="credentials.base_url"]', base)
    page.click("#test-connection")
    expect(page.locator("#test-result")).to_contain_text("Connected to HubSpot")
    page.click("#source-form button[type=submit]")
    expect(page.locator("h1")).to_contain_text("HubSpot by token")

    # Connect with HubSpot: off to its consent page, Allow, and back.
    page.goto(f"{live_server}/sources/new/hubspot")
    page.fill("#f-oauth-name", "HubSpot by OAuth")
    page.click("#oauth-connect")
    expect(page.locator("h1")).to_contain_text("Allow hookstream?")
    page.click("#allow")
    expect(page.locator("h1")).to_contain_text("HubSpot by OAuth")
    expect(page.get_by_text("connected with HubSpot")).to_be_visible()
    assert len(HUBSPOT.refresh_tokens) == 1
    page.click("text=Test connection")
    expect(page.locator("#test-result")).to_contain_text("Connected to HubSpot")
