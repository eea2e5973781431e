"""Browser tests for sessions, forms, team, keys and accounts."""

from __future__ import annotations

import re

import pytest

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
        run = SyncRun(
            org_id=env.org_id,
            env_id=env.id,
            source_id=source.id,
            status="running",
            cursor={},
            skip_reasons={},
        )
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
    # The form's own first requests (the key-path preview loads at once) finish signed in.
    page.wait_for_load_state("networkidle")
    _end_sessions(app, "typist@example.com")
    page.type("#f-name", "Shop customers")  # the slug preview asks the server
    page.wait_for_url(re.compile(r"/login\?next=(/|%2F)collections(/|%2F)new$"))
    expect(page.locator("#slug-preview")).to_have_count(0)
    context.close()


def test_test_connection_highlights_the_fields_by_label(browser, live_server, app):
    from playwright.sync_api import expect

    from tests.helpers import make_user

    with app.app_context():
        make_user("tester@example.com")
    context = browser.new_context(viewport={"width": 1280, "height": 900})
    page = context.new_page()
    page.set_default_timeout(10_000)
    sign_in(page, live_server, "tester@example.com")
    page.goto(live_server + "/sources/new/rest_api")
    page.fill("#f-name", "Shop API")
    page.fill("[id='f-credentials.base_url']", "not a url")
    page.click("#test-connection")
    result = page.locator("#test-result .test-result")
    expect(result).to_have_attribute("data-ok", "false")
    expect(result).to_contain_text("Base URL")
    expect(result).not_to_contain_text("base_url")
    expect(page.locator("[id='f-credentials.base_url']")).to_have_attribute("aria-invalid", "true")
    beside = page.locator("[id='e-credentials.base_url']")
    expect(beside).to_be_visible()
    tested = beside.text_content()
    expect(page.locator("[id='f-credentials.base_url']")).to_have_value("not a url")

    # Connect shows the same error beside the same field.
    page.click("button:has-text('Connect source')")
    expect(page.locator("[id='e-credentials.base_url']")).to_have_text(tested)

    # A good value clears the highlight on the next test.
    page.fill("[id='f-credentials.base_url']", "http://127.0.0.1:9")
    page.click("#test-connection")
    expect(page.locator("[id='e-credentials.base_url']")).to_have_count(0)
    expect(page.locator("[id='f-credentials.base_url']")).not_to_have_attribute("aria-invalid", "true")
    context.close()


def test_a_bad_audit_filter_stays_on_the_page_beside_its_field(browser, live_server, app):
    from playwright.sync_api import expect

    from tests.helpers import make_user

    with app.app_context():
        make_user("auditor@example.com")
    context = browser.new_context(viewport={"width": 390, "height": 844})
    page = context.new_page()
    page.set_default_timeout(10_000)
    sign_in(page, live_server, "auditor@example.com")
    page.goto(live_server + "/settings/audit-log")
    page.fill("#f-since", "last tuesday")
    page.click("#audit-filters button[type=submit]")
    expect(page.locator("h1")).to_have_text("Audit log")
    expect(page.locator("#e-since")).to_contain_text("ISO 8601")
    expect(page.locator("#f-since")).to_have_value("last tuesday")
    page.fill("#f-since", "2026-01-01")
    page.click("#audit-filters button[type=submit]")
    expect(page.locator("#e-since")).to_have_count(0)
    expect(page.locator("#audit-table")).to_be_visible()
    context.close()


def test_team_roles_are_saved_on_purpose_and_reinviting_asks(browser, live_server, app):
    from playwright.sync_api import expect
    from sqlalchemy import select

    from hookstream_ui.models import Membership, db
    from tests.helpers import make_user, org_of

    with app.app_context():
        member_id = make_user("mate@example.com", org=org_of(make_user("lead@example.com")), role="member").id

    def role():
        with app.app_context():
            return db.session.scalar(select(Membership.role).where(Membership.user_id == member_id))

    context = browser.new_context(viewport={"width": 1280, "height": 900})
    page = context.new_page()
    page.set_default_timeout(10_000)
    sign_in(page, live_server, "lead@example.com")
    page.goto(live_server + "/settings/team")
    page.locator(f"#role-{member_id}").select_option("admin")
    page.wait_for_timeout(500)
    assert role() == "member", "changing the select saved the role"
    page.click(f"form:has(#role-{member_id}) button:has-text('Save role')")
    expect(page.locator(".flash-success")).to_contain_text("mate@example.com is now admin")

    page.locator(f"#role-{member_id}").select_option("owner")
    page.click(f"form:has(#role-{member_id}) button:has-text('Save role')")
    expect(page.locator("#confirm-owner")).to_contain_text("Make mate@example.com an owner?")
    assert role() == "admin"
    page.click("#confirm-owner button:has-text('Make owner')")
    expect(page.locator(".flash-success")).to_contain_text("mate@example.com is now owner")

    page.fill("#f-email", "guest@example.com")
    page.click("#invite-form button[type=submit]")
    expect(page.locator("#invite-link")).to_contain_text("expires in 7 days")
    page.fill("#f-email", "guest@example.com")
    page.click("#invite-form button[type=submit]")
    expect(page.locator("#invite-pending")).to_contain_text("A new invitation withdraws it")
    expect(page.locator("#f-email")).to_have_value("guest@example.com")
    page.click("#invite-form button:has-text('Withdraw it and invite again')")
    expect(page.locator("#invite-replaced")).to_contain_text("its link no longer works")
    context.close()


def test_reloading_the_new_key_page_makes_no_second_key(browser, live_server, app):
    from playwright.sync_api import expect

    from tests.helpers import make_user

    with app.app_context():
        make_user("keys@example.com")
    context = browser.new_context(viewport={"width": 1280, "height": 900})
    page = context.new_page()
    page.set_default_timeout(10_000)
    sign_in(page, live_server, "keys@example.com")
    page.goto(live_server + "/settings/api-keys")
    page.fill("#f-name", "Deploy")
    page.select_option("#f-expires_in", "90")
    page.click("button:has-text('Create key')")
    expect(page.locator("#new-key")).to_have_text(re.compile(r"^hs_live_"))
    secret = page.locator("#new-key").text_content()
    page.reload()  # no "resubmit the form?": the page was reached by a redirect
    expect(page.locator("#new-key")).to_have_count(0)
    assert secret not in page.content()
    rows = page.locator("#keys-table tbody tr")
    expect(rows).to_have_count(1)
    expect(rows.first).to_contain_text("keys@example.com")
    expect(rows.first).to_contain_text("in 90 days")
    page.once("dialog", lambda dialog: dialog.accept())
    page.click("#keys-table button:has-text('Revoke')")
    expect(page.locator("#ended-keys-table tr[data-status=revoked]")).to_contain_text("Deploy")
    context.close()


def test_a_password_reset_link_from_admin_to_a_new_password(browser, live_server, app):
    from playwright.sync_api import expect

    from tests.helpers import make_user

    with app.app_context():
        make_user("root@example.com", admin=True)
        make_user("forgot@example.com")
    context = browser.new_context(viewport={"width": 1280, "height": 900})
    page = context.new_page()
    page.set_default_timeout(10_000)
    sign_in(page, live_server, "root@example.com")
    page.goto(live_server + "/admin/users")
    page.once("dialog", lambda dialog: dialog.accept())
    page.click("tr[data-user='forgot@example.com'] button:has-text('Password-reset link')")
    expect(page.locator("#reset-link")).to_contain_text("expires in 24 hours")
    url = page.locator("#reset-url").text_content().strip()
    page.reload()
    expect(page.locator("#reset-link")).to_have_count(0)

    other = browser.new_context(viewport={"width": 390, "height": 844})
    user_page = other.new_page()
    user_page.set_default_timeout(10_000)
    user_page.goto(url.replace("http://localhost", live_server))
    expect(user_page.locator("h1")).to_have_text("Set a new password")
    user_page.fill("#f-password", "a-brand-new-password")
    user_page.fill("#f-password_confirm", "a-different-password")
    user_page.click("button[type=submit]")
    expect(user_page.locator("#e-password_confirm")).to_have_text("does not match the password")
    user_page.fill("#f-password", "a-brand-new-password")
    user_page.fill("#f-password_confirm", "a-brand-new-password")
    user_page.click("button[type=submit]")
    expect(user_page.locator("h1")).to_have_text("Overview")
    expect(user_page.locator(".flash-success")).to_contain_text("Your password is set")
    other.close()
    context.close()
