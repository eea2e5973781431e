"""What every browser test module shares: Playwright driving Debian's /usr/bin/chromium
against a live server, and a Content-Security-Policy watch on every page.

conftest.py registers this module as a plugin, so its fixtures are everywhere; a browser test
module imports the helpers it calls and sets `pytestmark = pytest.mark.browser`. Skipped when chromium is absent, unless
REQUIRE_BROWSER=1 (as in CI), where that fails.
"""

from __future__ import annotations

import json
import os
import threading
import urllib.request
from pathlib import Path

import pytest
from werkzeug.serving import make_server

CHROMIUM = os.environ.get("CHROMIUM", "/usr/bin/chromium")
ARTIFACTS = Path(__file__).resolve().parent.parent / "test-artifacts"


@pytest.fixture(scope="module")
def browser():
    if not Path(CHROMIUM).exists():
        if os.environ.get("REQUIRE_BROWSER") == "1":
            pytest.fail(f"REQUIRE_BROWSER=1 but {CHROMIUM} is missing (apt-get install chromium)")
        pytest.skip(f"{CHROMIUM} not installed")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as pw:
        browser = pw.chromium.launch(
            executable_path=CHROMIUM,
            args=[
                "--no-sandbox",
                "--disable-gpu",
                "--disable-quic",
                "--no-first-run",
                "--disable-background-networking",
                "--disable-component-update",
                "--disable-sync",
            ],
        )
        yield browser
        browser.close()


@pytest.fixture(autouse=True)
def content_security_policy_holds(request):
    """Every page of every browser test passes the Content-Security-Policy: a violation (an
    inline style, an injected script, htmx evaluating code) appears on the console, and fails
    the test."""
    if "browser" not in request.fixturenames:
        yield
        return
    browser = request.getfixturevalue("browser")
    violations, new_context = [], browser.new_context

    def watched(*args, **kwargs):
        context = new_context(*args, **kwargs)
        context.on(
            "console",
            lambda message: (
                violations.append(message.text) if "Content Security Policy" in message.text else None
            ),
        )
        return context

    browser.new_context = watched
    yield
    browser.new_context = new_context
    assert violations == []


@pytest.fixture
def live_server(app):
    server = make_server("127.0.0.1", 0, app, threaded=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_port}"
    server.shutdown()
    thread.join(5)


def sign_in(page, live_server: str, email: str) -> None:
    from tests.helpers import PASSWORD

    page.goto(live_server + "/login")
    page.fill("#f-email", email)
    page.fill("#f-password", PASSWORD)
    page.click("button[type=submit]")
    page.wait_for_url(live_server + "/")


def no_horizontal_overflow(page) -> bool:
    return page.evaluate("document.documentElement.scrollWidth <= window.innerWidth + 1")


def owner_with_hook(app, email: str, records: int = 0, slug: str = "orders"):
    """A signed-up owner with a webhook source (no signing), a collection bound to it keyed by
    $.id, and `records` events sent through the real ingest path."""
    from hookstream_ui.models.principal import Principal
    from hookstream_ui.services import collections as collection_svc
    from hookstream_ui.services import sources as source_svc
    from tests.helpers import make_user, org_of, production

    with app.app_context():
        user = make_user(email)
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
        if slug:
            collection_svc.create_collection(
                principal,
                {
                    "name": "Orders",
                    "slug": slug,
                    "source_id": source.id,
                    "primary_key_path": "$.id",
                    "event_type_field": "$.type",
                },
            )
        return source.id


def send_event(live_server, source_id, body: dict) -> None:
    request = urllib.request.Request(
        f"{live_server}/v1/ingest/{source_id}",
        data=json.dumps(body).encode(),
        method="POST",
        headers={"Content-Type": "application/json"},
    )
    urllib.request.urlopen(request, timeout=10).close()
