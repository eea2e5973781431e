"""Team, admin, forms and wording tell the truth (issue 19, the team part)."""
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
    return db.session.scalars(select(ApiKey).where(ApiKey.created_by_id == user.id,
                                                   ApiKey.revoked_at.is_(None))).all()


@pytest.fixture
def two_owners(app, ctx):
    founder = make_user("founder@example.com", admin=True)
    org = org_of(founder)
    other = make_user("other@example.com", org=org, role="owner")
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
    done = client.post(f"/settings/team/{founder.id}/role",
                       data={"csrf_token": token, "role": "viewer", "confirm": "viewer"})
    assert done.status_code == 302 and _role_of(founder) == "viewer"
    assert [k.name for k in _live_keys(founder)] == ["reports"]


def test_a_confirmation_for_another_role_does_not_count(two_owners):
    client, token, _, founder = two_owners
    r = client.post(f"/settings/team/{founder.id}/role", data={"csrf_token": token, "role": "viewer",
                                                               "confirm": "admin"})
    assert r.status_code == 200 and "Make founder@example.com a viewer?" in r.get_data(as_text=True)
    assert _role_of(founder) == "owner"


def test_promoting_below_owner_is_not_asked(two_owners):
    client, token, org, _ = two_owners
    viewer = make_user("viewer@example.com", org=org, role="viewer")
    r = client.post(f"/settings/team/{viewer.id}/role", data={"csrf_token": token, "role": "admin"})
    assert r.status_code == 302 and _role_of(viewer) == "admin"


def test_inviting_an_owner_asks_first(two_owners):
    client, token, org, _ = two_owners
    asked = client.post("/settings/team", data={"csrf_token": token, "email": "new@example.com", "role": "owner"})
    html = asked.get_data(as_text=True)
    assert asked.status_code == 200 and 'id="invite-owner"' in html and "Invite as owner" in html
    assert 'value="new@example.com"' in html and 'name="confirm" value="owner"' in html
    assert db.session.scalar(select(Invitation).where(Invitation.email == "new@example.com")) is None
    done = client.post("/settings/team", data={"csrf_token": token, "email": "new@example.com", "role": "owner",
                                               "confirm": "owner"})
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
    root.post(f"/admin/users/{target.id}/disable", data={"csrf_token": csrf_token(root), "confirm": "disable"})
    db.session.expire_all()
    assert db.session.get(User, target.id).disabled_at is not None and _live_keys(target) == []


def test_making_an_instance_admin_asks_first(app, root):
    target = make_user("target@example.com")
    asked = root.post(f"/admin/users/{target.id}/promote", data={"csrf_token": csrf_token(root)})
    assert asked.status_code == 200 and "Make target@example.com an instance admin?" in asked.get_data(as_text=True)
    db.session.expire_all()
    assert not db.session.get(User, target.id).is_instance_admin
    root.post(f"/admin/users/{target.id}/promote", data={"csrf_token": csrf_token(root), "confirm": "promote"})
    db.session.expire_all()
    assert db.session.get(User, target.id).is_instance_admin


def test_enabling_and_removing_admin_rights_are_not_asked(app, root):
    target = make_user("target@example.com", admin=True)
    r = root.post(f"/admin/users/{target.id}/demote", data={"csrf_token": csrf_token(root)})
    assert r.status_code == 302
    db.session.expire_all()
    assert not db.session.get(User, target.id).is_instance_admin
