"""Browser tests: team and admin tables read on a phone."""

from __future__ import annotations

import pytest

from tests.browser import ARTIFACTS, no_horizontal_overflow, sign_in

pytestmark = pytest.mark.browser

# Is the element wholly inside the viewport, and is it what the page shows at its centre
# and corners (nothing pinned or overflowing on top of it)?
UNCOVERED = """(el) => {
  const r = el.getBoundingClientRect();
  if (r.width === 0 || r.left < 0 || r.right > window.innerWidth + 0.5) return false;
  const y = r.top + r.height / 2, points = [[r.left + r.width / 2, y], [r.left + 3, y], [r.right - 3, y]];
  return points.every(([x, y]) => { const hit = document.elementFromPoint(x, y); return hit && (hit === el || el.contains(hit)); });
}"""


def _uncovered(page, selector):
    locator = page.locator(selector)
    locator.scroll_into_view_if_needed()
    ok = locator.evaluate(UNCOVERED)
    if not ok:  # say what is in the way
        print(
            selector,
            locator.evaluate("""(el) => { const r = el.getBoundingClientRect();
          const hit = document.elementFromPoint(r.left + r.width / 2, r.top + r.height / 2);
          return [r.left, r.right, r.top, r.bottom, window.innerWidth, hit && hit.outerHTML.slice(0, 120)]; }"""),
        )
    return ok


def test_team_and_admin_tables_are_readable_at_390_px(browser, live_server, app):
    from tests.helpers import make_key, make_user, org_of, production

    with app.app_context():
        owner = make_user("founder-with-a-long-address@example.com", admin=True)
        org = org_of(owner)
        mate = make_user("a-teammate-with-a-long-address@example.com", org=org, role="admin")
        make_key(production(org), "deploys", owner=owner)
        mate_id = mate.id
    context = browser.new_context(viewport={"width": 390, "height": 844})
    page = context.new_page()
    page.set_default_timeout(10_000)
    sign_in(page, live_server, "founder-with-a-long-address@example.com")

    page.goto(live_server + "/settings/team")
    page.fill("#f-email", "invited-person@example.com")
    page.select_option("#f-role", "member")
    page.click("#invite-form button[type=submit]")
    page.goto(live_server + "/settings/team")
    assert no_horizontal_overflow(page)
    for selector in (
        f"#role-{mate_id}",
        f"#role-{mate_id} ~ button:has-text('Save role')",
        "#members-table button:has-text('Remove')",
        "#invitations-table button:has-text('Withdraw')",
    ):
        assert _uncovered(page, selector), f"{selector} is cut or covered at 390 px"
    select_box = page.locator(f"#role-{mate_id}").bounding_box()
    save_box = page.locator(f"#role-{mate_id} ~ button").bounding_box()
    overlap = not (
        select_box["x"] + select_box["width"] <= save_box["x"]
        or save_box["x"] + save_box["width"] <= select_box["x"]
        or select_box["y"] + select_box["height"] <= save_box["y"]
        or save_box["y"] + save_box["height"] <= select_box["y"]
    )
    assert not overlap and select_box["width"] >= 80, (select_box, save_box)
    role_cell = page.locator("#invitations-table tbody td", has_text="member").first
    assert role_cell.evaluate(UNCOVERED) and role_cell.inner_text().strip().endswith("member")
    page.screenshot(path=str(ARTIFACTS / "team-390.png"), full_page=True)

    page.goto(live_server + "/admin/users")
    assert no_horizontal_overflow(page)
    for selector in (
        "tr[data-user='a-teammate-with-a-long-address@example.com'] td:nth-child(1)",
        "tr[data-user='a-teammate-with-a-long-address@example.com'] td:nth-child(2)",
        "tr[data-user='a-teammate-with-a-long-address@example.com'] td:nth-child(4)",
        "tr[data-user='a-teammate-with-a-long-address@example.com'] button:has-text('Disable')",
    ):
        assert _uncovered(page, selector), f"{selector} is cut or covered at 390 px"
    email_cell = page.locator("tr[data-user='a-teammate-with-a-long-address@example.com'] td:nth-child(1)")
    assert email_cell.evaluate("(el) => el.scrollWidth <= el.clientWidth + 1")
    status = page.locator("tr[data-user='a-teammate-with-a-long-address@example.com'] td:nth-child(4)")
    assert status.inner_text().strip() == "active"
    assert status.evaluate("(el) => getComputedStyle(el, '::before').content") == '"Status"'  # labelled

    page.goto(live_server + "/admin/")
    assert _uncovered(page, "#orgs-table tbody tr td:nth-child(6)")  # the org's status

    page.goto(live_server + "/settings/api-keys")
    created = page.locator("#keys-table tbody tr td[data-label='Created']")
    assert created.is_visible() and _uncovered(page, "#keys-table tbody tr td[data-label='Created']")
    assert page.locator("#keys-table tbody tr td[data-label='Last used']").is_visible()
    page.screenshot(path=str(ARTIFACTS / "api-keys-390.png"), full_page=True)

    # On a laptop the tables are tables still.
    page.set_viewport_size({"width": 1280, "height": 800})
    page.goto(live_server + "/settings/team")
    assert page.locator("#members-table thead").is_visible()
    context.close()


def test_demoting_an_owner_asks_first_in_the_browser(browser, live_server, app):
    from playwright.sync_api import expect

    from tests.helpers import make_key, make_user, org_of, production

    with app.app_context():
        founder = make_user("founder@example.com", admin=True)
        org = org_of(founder)
        make_user("other-owner@example.com", org=org, role="owner")
        make_key(production(org), "deploys", owner=founder, role="member")
        founder_id = founder.id
    context = browser.new_context(viewport={"width": 1280, "height": 900})
    page = context.new_page()
    page.set_default_timeout(10_000)
    sign_in(page, live_server, "other-owner@example.com")
    page.goto(live_server + "/settings/team")
    page.select_option(f"#role-{founder_id}", "viewer")
    page.click(f"#role-{founder_id} ~ button:has-text('Save role')")
    question = page.locator("#confirm-role")
    expect(question).to_contain_text("Make founder@example.com a viewer?")
    expect(question).to_contain_text("Their 1 API key above the viewer role will be revoked for good")
    page.click("#confirm-role a:has-text('Cancel')")
    expect(page.locator(f"#role-{founder_id}")).to_have_value("owner")  # nothing changed
    page.select_option(f"#role-{founder_id}", "viewer")
    page.click(f"#role-{founder_id} ~ button:has-text('Save role')")
    page.click("#confirm-role button:has-text('Make viewer')")
    expect(page.locator(".flash, [role=status], .alert").first).to_contain_text(
        "founder@example.com is now viewer"
    )
    context.close()
