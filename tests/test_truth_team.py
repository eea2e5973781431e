"""Team, admin, forms and wording tell the truth."""

from __future__ import annotations

import pytest
from sqlalchemy import select

from hookstream_ui.models import ApiKey, Invitation, Membership, User, db
from tests.helpers import csrf_token, login, make_key, make_user, org_of, production


def _role_of(user):
    db.session.expire_all()
    return db.session.scalar(select(Membership.role).where(Membership.user_id == user.id))


def _live_keys(user):
    db.session.expire_all()
    return db.session.scalars(
        select(ApiKey).where(ApiKey.created_by_id == user.id, ApiKey.revoked_at.is_(None))
    ).all()


@pytest.fixture
def two_owners(app, ctx):
    founder = make_user("founder@example.com", admin=True)
    org = org_of(founder)
    make_user("other@example.com", org=org, role="owner")
    client = app.test_client()
    token = login(client, "other@example.com")
    return client, token, org, founder


# 1. Changes that cannot simply be undone are asked about first, saying what they do.


def test_demoting_an_owner_asks_first_and_names_the_keys_it_revokes(two_owners):
    client, token, org, founder = two_owners
    env = production(org)
    make_key(env, "deploys", owner=founder, role="member")
    make_key(env, "reports", owner=founder, role="viewer")
    asked = client.post(f"/settings/team/{founder.id}/role", data={"csrf_token": token, "role": "viewer"})
    html = asked.get_data(as_text=True)
    assert asked.status_code == 200 and 'id="confirm-role"' in html
    assert "Make founder@example.com a viewer?" in html
    assert "Their 1 API key above the viewer role will be revoked for good" in html
    assert _role_of(founder) == "owner" and len(_live_keys(founder)) == 2
    done = client.post(
        f"/settings/team/{founder.id}/role", data={"csrf_token": token, "role": "viewer", "confirm": "viewer"}
    )
    assert done.status_code == 302 and _role_of(founder) == "viewer"
    assert [k.name for k in _live_keys(founder)] == ["reports"]


def test_a_confirmation_for_another_role_does_not_count(two_owners):
    client, token, _, founder = two_owners
    r = client.post(
        f"/settings/team/{founder.id}/role", data={"csrf_token": token, "role": "viewer", "confirm": "admin"}
    )
    assert r.status_code == 200 and "Make founder@example.com a viewer?" in r.get_data(as_text=True)
    assert _role_of(founder) == "owner"


def test_promoting_below_owner_is_not_asked(two_owners):
    client, token, org, _ = two_owners
    viewer = make_user("viewer@example.com", org=org, role="viewer")
    r = client.post(f"/settings/team/{viewer.id}/role", data={"csrf_token": token, "role": "admin"})
    assert r.status_code == 302 and _role_of(viewer) == "admin"


def test_inviting_an_owner_asks_first(two_owners):
    client, token, _org, _ = two_owners
    asked = client.post(
        "/settings/team", data={"csrf_token": token, "email": "new@example.com", "role": "owner"}
    )
    html = asked.get_data(as_text=True)
    assert asked.status_code == 200 and 'id="invite-owner"' in html and "Invite as owner" in html
    assert 'value="new@example.com"' in html and 'name="confirm" value="owner"' in html
    assert db.session.scalar(select(Invitation).where(Invitation.email == "new@example.com")) is None
    done = client.post(
        "/settings/team",
        data={"csrf_token": token, "email": "new@example.com", "role": "owner", "confirm": "owner"},
    )
    assert done.status_code == 302
    made = db.session.scalar(select(Invitation).where(Invitation.email == "new@example.com"))
    assert made is not None and made.role == "owner"


def test_inviting_a_member_is_not_asked(two_owners):
    client, token, _, _ = two_owners
    r = client.post("/settings/team", data={"csrf_token": token, "email": "m@example.com", "role": "member"})
    assert r.status_code == 302


@pytest.fixture
def root(app, ctx):
    make_user("root@example.com", admin=True)
    client = app.test_client()
    login(client, "root@example.com")
    return client


def test_disabling_a_user_asks_first_saying_sessions_end_and_keys_go(app, root):
    target = make_user("target@example.com")
    make_key(production(org_of(target)), "ci", owner=target)
    asked = root.post(f"/admin/users/{target.id}/disable", data={"csrf_token": csrf_token(root)})
    html = asked.get_data(as_text=True)
    assert asked.status_code == 200 and 'id="confirm-user"' in html
    assert "Their sessions end now" in html and "Their 1 API key will be revoked for good" in html
    db.session.expire_all()
    assert db.session.get(User, target.id).disabled_at is None and len(_live_keys(target)) == 1
    root.post(
        f"/admin/users/{target.id}/disable", data={"csrf_token": csrf_token(root), "confirm": "disable"}
    )
    db.session.expire_all()
    assert db.session.get(User, target.id).disabled_at is not None and _live_keys(target) == []


def test_making_an_instance_admin_asks_first(app, root):
    target = make_user("target@example.com")
    asked = root.post(f"/admin/users/{target.id}/promote", data={"csrf_token": csrf_token(root)})
    assert asked.status_code == 200 and "Make target@example.com an instance admin?" in asked.get_data(
        as_text=True
    )
    db.session.expire_all()
    assert not db.session.get(User, target.id).is_instance_admin
    root.post(
        f"/admin/users/{target.id}/promote", data={"csrf_token": csrf_token(root), "confirm": "promote"}
    )
    db.session.expire_all()
    assert db.session.get(User, target.id).is_instance_admin


def test_enabling_and_removing_admin_rights_are_not_asked(app, root):
    target = make_user("target@example.com", admin=True)
    r = root.post(f"/admin/users/{target.id}/demote", data={"csrf_token": csrf_token(root)})
    assert r.status_code == 302
    db.session.expire_all()
    assert not db.session.get(User, target.id).is_instance_admin


# 2. A form reports every error at once, not one round per submit.


def _field_error(html, key):
    import re

    m = re.search(rf'id="e-{re.escape(key)}">([^<]*)<', html)
    return m.group(1) if m else None


def test_webhook_connect_reports_the_name_and_every_field_at_once(signed_in):
    client, token, _ = signed_in
    r = client.post(
        "/sources/new/webhook",
        data={
            "csrf_token": token,
            "name": "  ",
            "credentials.verification_type": "hmac_sha256",
            "credentials.signing_secret": "",
            "config.dedup_window_seconds": "9999999",
            "config.ip_allowlist": "not-an-ip",
        },
    )
    html = r.get_data(as_text=True)
    assert r.status_code == 400
    assert "is required" in (_field_error(html, "name") or "")
    assert "required when signature verification is on" in (
        _field_error(html, "credentials.signing_secret") or ""
    )
    assert _field_error(html, "config.dedup_window_seconds") is not None
    assert "not an IP address" in (_field_error(html, "config.ip_allowlist") or "")
    assert 'id="r-credentials.signing_secret"' in html and "type it again" in html


def test_postgres_edit_reports_the_port_beside_the_password_to_type_again(signed_in, pg_source):
    import re

    from hookstream_ui.sources import MASK

    client, token, _ = signed_in
    key = make_key(
        production(org_of(db.session.scalar(select(User).where(User.email == "owner@example.com"))))
    )
    sid = client.post(
        "/api/v1/source-connections",
        headers={"X-API-Key": key},
        json={"sourceShortName": "postgresql", "name": "PG", "credentials": pg_source.credentials()},
    ).json["sourceConnection"]["id"]
    edit = client.get(f"/sources/{sid}/edit").get_data(as_text=True)
    fields = dict(re.findall(r'name="((?:credentials|config)\.[^"]+)"[^>]*value="([^"]*)"', edit))
    assert fields["credentials.password"] == MASK
    fields.update({"csrf_token": token, "name": "PG", "credentials.port": "99999"})
    r = client.post(f"/sources/{sid}/edit", data=fields)
    html = r.get_data(as_text=True)
    assert r.status_code == 400
    assert "must be entered again" in (_field_error(html, "credentials.password") or "")
    assert "1 to 65535" in (_field_error(html, "credentials.port") or "")


def test_sign_up_reports_the_email_and_the_short_password_at_once(app, ctx):
    client = app.test_client()
    page = client.get("/signup").get_data(as_text=True)
    import re

    token = re.search(r'name="csrf-token" content="([^"]+)"', page).group(1)
    r = client.post(
        "/signup",
        data={"csrf_token": token, "email": "not-an-email", "password": "short", "password_confirm": "other"},
    )
    html = r.get_data(as_text=True)
    assert r.status_code == 400
    assert _field_error(html, "email") is not None
    assert "at least 10 characters" in (_field_error(html, "password") or "")
    assert "does not match" in (_field_error(html, "password_confirm") or "")
    assert db.session.scalar(select(User)) is None


def test_password_change_reports_every_field_at_once(signed_in):
    client, token, _ = signed_in
    r = client.post(
        "/settings/account",
        data={
            "csrf_token": token,
            "current_password": "wrong",
            "new_password": "short",
            "new_password_confirm": "other",
        },
    )
    html = r.get_data(as_text=True)
    assert "is incorrect" in (_field_error(html, "current_password") or "")
    assert "at least 10 characters" in (_field_error(html, "new_password") or "")
    assert "does not match" in (_field_error(html, "new_password_confirm") or "")


# 3. The reset link says what it did and what using it will do, alike on both pages.


def _issue(client, user_id):
    import re

    r = client.post(f"/admin/users/{user_id}/reset-link", data={"csrf_token": csrf_token(client)})
    assert r.status_code == 302
    page = client.get("/admin/users").get_data(as_text=True)
    return page, re.search(r'id="reset-url" class="mono">([^<]+)<', page).group(1).replace(
        "http://localhost", ""
    )


def test_a_reset_link_speaks_of_an_earlier_one_only_when_there_was_one(app, root):
    user = make_user("locked@example.com")
    first, _ = _issue(root, user.id)
    assert "no longer works" not in first and 'id="reset-replaced"' not in first
    second, link = _issue(root, user.id)
    assert (
        'id="reset-replaced"' in second and "The earlier link for locked@example.com was withdrawn" in second
    )
    promise = (
        "signs out every session of that account open at that moment, and signs in the browser that used it"
    )
    assert promise in second
    reset_page = app.test_client().get(link).get_data(as_text=True)
    assert "signs out every session of this account open now, and signs you in here" in reset_page
    assert "every other session" not in reset_page


def test_an_expired_earlier_link_is_not_said_to_be_withdrawn(app, root):
    from datetime import timedelta

    from hookstream_ui.models import PasswordReset
    from hookstream_ui.values.times import utcnow

    user = make_user("locked@example.com")
    _issue(root, user.id)
    for reset in db.session.scalars(select(PasswordReset)):
        reset.expires_at = utcnow() - timedelta(minutes=1)
    db.session.commit()
    page, _ = _issue(root, user.id)
    assert 'id="reset-replaced"' not in page and "no longer works" not in page


# 4. Blank names are "required"; invisible ones "must contain a visible character"; the slug
# preview promises nothing for a name that will be refused.


def test_org_rename_says_a_blank_name_is_required(two_owners):
    client, token, org, _ = two_owners
    for typed, said in (("   ", "is required"), ("\u200b\u200b", "must contain a visible character")):
        r = client.post("/settings/org/rename", data={"csrf_token": token, "name": typed})
        html = r.get_data(as_text=True)
        assert r.status_code == 400 and (_field_error(html, "name") or "").startswith(said), typed
        assert "1 to 120 characters" not in html
    db.session.expire_all()
    assert org_of(db.session.scalar(select(User).where(User.email == "founder@example.com"))).name == org.name


def test_admin_org_create_says_a_blank_name_is_required(app, root):
    r = root.post("/admin/orgs", data={"csrf_token": csrf_token(root), "name": "   ", "owner_email": ""})
    html = r.get_data(as_text=True)
    assert r.status_code == 400 and "is required" in html and "1 to 120 characters" not in html


def test_slug_preview_shows_the_name_error_not_a_slug_for_a_refused_name(signed_in):
    client, _, _ = signed_in
    r = client.get("/collections/_slug-preview", query_string={"name": "\u200b\u200b\u200b\u200b"})
    html = r.get_data(as_text=True)
    assert "Will be created as" not in html and "must contain a visible character" in html
    ok = client.get("/collections/_slug-preview", query_string={"name": "Ünïcode orders"}).get_data(
        as_text=True
    )
    assert "Will be created as" in ok and "unicode-orders" in ok


# 5. Wording: what a webhook needs, what a sample gives, whose revocation, plurals.


def _webhook(client, token, **fields):
    r = client.post("/sources/new/webhook", data={"csrf_token": token, "name": "Orders hook", **fields})
    assert r.status_code == 302, r.get_data(as_text=True)
    return r.location.rsplit("/", 1)[-1]


def test_a_signed_webhook_says_which_signature_and_header_it_needs(signed_in):
    client, token, _ = signed_in
    sid = _webhook(
        client,
        token,
        **{"credentials.verification_type": "hmac_sha256", "credentials.signing_secret": "s3cret-value"},
    )
    page = client.get(f"/sources/{sid}").get_data(as_text=True)
    assert "must carry an HMAC-SHA256 signature of the body in its X-Signature header" in page
    assert "X-Signature (default)" in page and "a valid HMAC" not in page
    tested = client.post(f"/sources/{sid}/test", data={"csrf_token": token}).get_data(as_text=True)
    assert "a HMAC" not in tested and "an HMAC-SHA256 signature" in tested


def test_an_unsigned_webhook_shows_no_signature_header_in_use(signed_in):
    client, token, _ = signed_in
    sid = _webhook(client, token, **{"credentials.verification_type": "none"})
    page = client.get(f"/sources/{sid}").get_data(as_text=True)
    assert "X-Signature (default)" not in page and "must carry" not in page


def test_a_revoked_key_says_who_revoked_it_by_role(app, ctx):
    founder = make_user("founder@example.com")
    org = org_of(founder)
    make_user("admin@example.com", org=org, role="admin")
    make_key(production(org), "founder's", owner=founder)
    client = app.test_client()
    token = login(client, "admin@example.com")
    key = db.session.scalar(select(ApiKey))
    client.post(f"/settings/api-keys/{key.id}/revoke", data={"csrf_token": token})
    db.session.expire_all()
    assert db.session.get(ApiKey, key.id).revoked_reason == "revoked by an admin"
    own = make_key(
        production(org),
        "mine",
        owner=db.session.scalar(select(User).where(User.email == "admin@example.com")),
    )
    mine = db.session.scalar(select(ApiKey).where(ApiKey.name == "mine"))
    client.post(f"/settings/api-keys/{mine.id}/revoke", data={"csrf_token": token})
    db.session.expire_all()
    assert db.session.get(ApiKey, mine.id).revoked_reason == "revoked by its owner" and own


def test_the_key_preview_reads_as_a_sentence(signed_in):
    import re

    client, token, _org = signed_in
    sid = _webhook(client, token, **{"credentials.verification_type": "none"})
    from hookstream_ui.models import SourceConnection

    source = db.session.get(SourceConnection, sid)
    app_client = client
    assert app_client.post(f"/v1/ingest/{sid}", json={"id": 1, "name": "x"}).status_code == 200
    r = client.get("/collections/_key-preview", query_string={"primary_key_path": "$.id", "source_id": sid})
    html = r.get_data(as_text=True)
    said = re.sub(r"\s+", " ", re.sub(r"<[^>]+>", "", html)).strip()
    assert f"In the latest event {source.name} received" in said and ", this gives the key 1" in said


def test_delete_confirmation_counts_collections_in_words(signed_in):
    client, token, _ = signed_in
    sid = _webhook(client, token, **{"credentials.verification_type": "none"})
    page = client.get(f"/sources/{sid}/delete").get_data(as_text=True)
    assert "(s)" not in page and "It feeds no collection." in page


def test_a_link_into_another_project_says_another_project(signed_in):
    from hookstream_ui.models.principal import Principal
    from hookstream_ui.services import collections as collection_svc
    from hookstream_ui.templating import counted, with_article
    from tests.helpers import add_env

    client, _, org = signed_in
    staging = add_env(org, "staging")
    collection_svc.create_collection(
        Principal(org=staging.org, env=staging, role="owner"),
        {"name": "Staging orders", "slug": "staging-orders", "primary_key_path": "$.id"},
    )
    body = client.get("/collections/staging-orders").get_data(as_text=True)
    assert "The link leads to a collection of another project" in body and "of this project" not in body
    assert (with_article("event"), with_article("collection")) == ("an event", "a collection")
    assert (counted(0, "collection"), counted(1, "collection"), counted(2, "API key")) == (
        "0 collections",
        "1 collection",
        "2 API keys",
    )


# 6. Every admin error is the app's page, in the app's words, with the way back to /admin.


def test_the_admin_create_address_opened_goes_to_the_list(app, root):
    r = root.get("/admin/orgs")
    assert r.status_code == 302 and r.location.endswith("/admin/")


@pytest.mark.parametrize(
    "path, code, said",
    [
        ("/admin/audit", 404, "There is no page at /admin/audit."),
        (
            "/admin/users/someone/promote",
            405,
            "/admin/users/someone/promote is where a form&#39;s button sends",
        ),
        ("/admin/jobs/j1/requeue", 405, "is not a page to open"),
    ],
)
def test_admin_errors_are_the_apps_page_in_its_words(app, root, path, code, said):
    r = root.get(path)
    html = r.get_data(as_text=True)
    assert r.status_code == code and said in html
    assert "The requested URL" not in html and "The method is not allowed" not in html
    assert 'href="/admin/">Back to instance admin' in html and 'name="csrf-token"' in html


def test_a_dashboard_address_that_is_nothing_says_so_in_our_words(signed_in):
    client, _, _ = signed_in
    r = client.get("/settings/nothing-here")
    html = r.get_data(as_text=True)
    assert r.status_code == 404 and "There is no page at /settings/nothing-here." in html
    assert "The requested URL" not in html and 'href="/">Back to the dashboard' in html
