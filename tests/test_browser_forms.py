"""Browser tests for sessions, forms, team, keys and accounts (issue 19, the forms part)."""
from __future__ import annotations

import re

import pytest

from tests.browser import *  # noqa: F403 (the fixtures)
from tests.browser import sign_in

pytestmark = pytest.mark.browser


def _end_sessions(app, email):
    from sqlalchemy import select

    from hookstream_ui.models import User, UserSession, db
    from hookstream_ui.services import accounts

    with app.app_context():
        user = db.session.scalar(select(User).where(User.email == email))
        for opened in db.session.scalars(select(UserSession).where(UserSession.user_id == user.id)).all():
            accounts.end_session(opened.id)


def test_a_poll_after_sign_out_elsewhere_takes_the_page_to_sign_in(browser, live_server, app):
    from playwright.sync_api import expect

    from hookstream_ui.models import SyncRun, db
    from tests.helpers import PASSWORD, make_source, make_user, org_of, production

    with app.app_context():
        env = production(org_of(make_user("poll@example.com")))
        source = make_source(env, "Shop API", "rest_api")
        run = SyncRun(org_id=env.org_id, env_id=env.id, source_id=source.id, status="running", cursor={},
                      skip_reasons={})
        db.session.add(run)
        db.session.commit()
        run_id = run.id
    context = browser.new_context(viewport={"width": 1280, "height": 900})
    page = context.new_page()
    page.set_default_timeout(10_000)
    sign_in(page, live_server, "poll@example.com")
    page.goto(f"{live_server}/runs/{run_id}")
    expect(page.locator("h1")).to_be_visible()

    _end_sessions(app, "poll@example.com")
    # The next 2-second poll takes the whole page to sign-in; no sign-in card inside the run.
    page.wait_for_url(re.compile(r"/login\?next="))
    expect(page.locator("h1")).to_have_count(1)
    page.fill("#f-email", "poll@example.com")
    page.fill("#f-password", PASSWORD)
    page.click("button[type=submit]")
    page.wait_for_url(f"{live_server}/runs/{run_id}")
    context.close()


def test_typing_after_the_session_ended_takes_the_page_to_sign_in(browser, live_server, app):
    from playwright.sync_api import expect

    from tests.helpers import make_user

    with app.app_context():
        make_user("typist@example.com")
    context = browser.new_context(viewport={"width": 1280, "height": 900})
    page = context.new_page()
    page.set_default_timeout(10_000)
    sign_in(page, live_server, "typist@example.com")
    page.goto(live_server + "/collections/new")
    _end_sessions(app, "typist@example.com")
    page.type("#f-name", "Shop customers")  # the slug preview asks the server
    page.wait_for_url(re.compile(r"/login\?next=(/|%2F)collections(/|%2F)new$"))
    expect(page.locator("#slug-preview")).to_have_count(0)
    context.close()
