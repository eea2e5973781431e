"""Teams: environments, members and roles, invitations, the audit log, suspension, /admin."""

from __future__ import annotations

import re
from datetime import timedelta

import pytest
from sqlalchemy import select

from hookstream_ui.models import ApiKey, AuditEntry, Invitation, Membership, Org, db
from hookstream_ui.values.times import utcnow
from tests.helpers import PASSWORD, bound_collection, login, make_key, make_user, org_of, production

ROLES = ("viewer", "member", "admin", "owner")


@pytest.fixture
def team(app, ctx):
    """One org with a user of every role, each signed in with their own client."""
    owner = make_user("owner@example.com")
    org = org_of(owner)
    clients = {}
    for role in ROLES:
        email = f"{role}@example.com"
        if role != "owner":
            make_user(email, org=org, role=role)
        client = app.test_client()
        token = login(client, email)
        clients[role] = (client, {"X-CSRFToken": token})
    return {"org": org, "owner": owner, "clients": clients, "key": make_key(production(org))}


def call(team, role, method, path, json=None):
    client, headers = team["clients"][role]
    return client.open(path, method=method, json=json, headers=headers)


def invitation_path(url: str) -> str:
    return re.sub(r"^https?://[^/]+", "", url)


# --- permission matrix -------------------------------------------------------------------


def _fresh_collection(team):
    import secrets

    slug = f"c-{secrets.token_hex(3)}"
    r = call(
        team, "owner", "POST", "/v1/collections", {"name": slug, "slug": slug, "primary_key_path": "$.id"}
    )
    assert r.status_code == 201, r.json
    return slug


def _other_member(team):
    return db.session.scalar(
        select(Membership)
        .join(Membership.user)
        .where(Membership.org_id == team["org"].id, Membership.role == "viewer")
    ).user_id


# (method, path or path maker, body, the least role that may do it)
API_MATRIX = [
    ("POST", "/v1/collections", lambda t: {"name": "New one", "primary_key_path": "$.id"}, "member"),
    ("PATCH", lambda t: f"/v1/collections/{_fresh_collection(t)}", lambda t: {"description": "x"}, "member"),
    ("DELETE", lambda t: f"/v1/collections/{_fresh_collection(t)}", None, "member"),
    (
        "POST",
        "/api/v1/source-connections",
        lambda t: {
            "sourceShortName": "webhook",
            "name": "Hook",
            "credentials": {"verification_type": "none"},
        },
        "member",
    ),
    ("POST", "/v1/environments", lambda t: {"name": f"env {__import__('secrets').token_hex(3)}"}, "admin"),
    (
        "PATCH",
        lambda t: f"/v1/environments/{production(t['org']).id}",
        lambda t: {"name": "production"},
        "admin",
    ),
    (
        "POST",
        "/v1/invitations",
        lambda t: {"email": f"x{__import__('secrets').token_hex(3)}@example.com", "role": "member"},
        "admin",
    ),
    ("PATCH", lambda t: f"/v1/members/{_other_member(t)}", lambda t: {"role": "viewer"}, "admin"),
    ("POST", "/v1/auth/api-keys", lambda t: {"name": "k"}, "admin"),
    ("GET", "/v1/members", None, "admin"),
    ("GET", "/v1/audit-log", None, "admin"),
    ("GET", "/v1/collections", None, "viewer"),
]
DASHBOARD_MATRIX = [
    ("POST", "/settings/team", {"email": "form-invite@example.com", "role": "member"}, "admin"),
    ("POST", "/settings/projects", {"name": "from the form"}, "admin"),
    ("GET", "/settings/audit-log", None, "admin"),
    ("GET", "/settings/api-keys", None, "admin"),
    ("POST", "/settings/org/delete", {"confirm": "not-the-slug"}, "owner"),
]


def _allowed(role: str, least: str) -> bool:
    return ROLES.index(role) >= ROLES.index(least)


@pytest.mark.parametrize("role", ROLES)
def test_permission_matrix_api(team, role):
    for method, path, body, least in API_MATRIX:
        path = path(team) if callable(path) else path
        r = call(team, role, method, path, body(team) if body else None)
        if _allowed(role, least):
            assert r.status_code < 400 or r.status_code == 409, (role, method, path, r.status_code, r.json)
        else:
            assert r.status_code == 403, (role, method, path, r.status_code)
            assert f"needs the {least} role" in str(r.json)


@pytest.mark.parametrize("role", ROLES)
def test_permission_matrix_dashboard(team, role):
    client, _ = team["clients"][role]
    from tests.helpers import csrf_token

    for method, path, form, least in DASHBOARD_MATRIX:
        data = dict(form or {}, csrf_token=csrf_token(client)) if method == "POST" else None
        r = client.open(path, method=method, data=data)
        if _allowed(role, least):
            # A refused confirmation is shown beside its field (400), not forbidden.
            refused = (400,) if "confirm" in (form or {}) else ()
            assert r.status_code in (200, 302, *refused), (role, path, r.status_code)
        else:
            assert r.status_code == 403, (role, path, r.status_code)
    # The buttons a role cannot use are not shown.
    page = client.get("/").get_data(as_text=True)
    assert ('href="/settings/team"' in page) == _allowed(role, "admin")
    assert ('href="/settings/api-keys"' in page) == _allowed(role, "admin")
    assert ("New collection" in client.get("/collections").get_data(as_text=True)) == _allowed(role, "member")
    assert db.session.get(Org, team["org"].id) is not None  # the wrong confirmation deleted nothing


def test_instance_admin_pages_refuse_org_owners(app, team):
    for path in ("/admin/", "/admin/users", "/admin/system", "/admin/audit-log"):
        assert call(team, "owner", "GET", path).status_code == 403, path
    make_user("root@example.com", admin=True)
    client = app.test_client()
    login(client, "root@example.com")
    for path in ("/admin/", "/admin/users", "/admin/system", "/admin/audit-log"):
        assert client.get(path).status_code == 200, path
    assert team["org"].slug in client.get("/admin/").get_data(as_text=True)


# --- environments and members ------------------------------------------------------------


def test_environments_api_and_switching(team):
    h = {"X-API-Key": team["key"]}
    client, session = team["clients"]["owner"]
    envs = client.get("/v1/environments", headers=h).json["environments"]
    assert [(e["slug"], e["current"]) for e in envs] == [("production", True)]
    assert (
        client.post("/v1/environments", headers=h, json={"name": "Staging"}).status_code == 403
    )  # a key: no
    r = client.post("/v1/environments", headers=session, json={"name": "Staging"})
    assert r.status_code == 201 and r.json["environment"]["slug"] == "staging"
    assert client.post("/v1/environments", headers=session, json={"name": "staging"}).status_code == 409
    bad = client.post("/v1/environments", headers=session, json={"name": ""})
    assert bad.status_code == 400 and "name" in bad.json["errors"]
    staging = r.json["environment"]["id"]
    renamed = client.patch(f"/v1/environments/{staging}", headers=session, json={"name": "Staging EU"})
    assert renamed.json["environment"]["name"] == "Staging EU"
    assert [e["slug"] for e in client.get("/v1/environments", headers=h).json["environments"]] == [
        "production"
    ]
    # Resources stay inside their environment: a collection made in staging is not in production.
    from tests.helpers import csrf_token

    client.post("/switch-project", data={"env_id": staging, "csrf_token": csrf_token(client)})
    made = client.post(
        "/v1/collections",
        json={"name": "Only staging", "primary_key_path": "$.id"},
        headers=team["clients"]["owner"][1],
    )
    assert made.status_code == 201
    assert client.get("/v1/collections", headers=h).json["collections"] == []  # the key is production's
    assert [c["name"] for c in client.get("/v1/collections").json["collections"]] == ["Only staging"]


def test_roles_and_the_last_owner(team):
    h = team["clients"]["owner"][1]
    owner_id = team["owner"].id
    members = {m["email"]: m for m in call(team, "owner", "GET", "/v1/members").json["members"]}
    assert {m["role"] for m in members.values()} == set(ROLES)
    last = call(team, "owner", "PATCH", f"/v1/members/{owner_id}", {"role": "admin"})
    assert last.status_code == 409 and last.json["code"] == "last_owner"
    leave = call(team, "owner", "DELETE", f"/v1/members/{owner_id}")
    assert leave.status_code == 409
    bad = call(
        team, "owner", "PATCH", f"/v1/members/{members['viewer@example.com']['user_id']}", {"role": "god"}
    )
    assert bad.status_code == 400 and "role" in bad.json["errors"]
    # An admin cannot make an owner or touch one.
    admin_id = members["admin@example.com"]["user_id"]
    assert (
        call(
            team,
            "admin",
            "PATCH",
            f"/v1/members/{members['member@example.com']['user_id']}",
            {"role": "owner"},
        ).status_code
        == 403
    )
    assert call(team, "admin", "DELETE", f"/v1/members/{owner_id}").status_code == 403
    # With a second owner, the first may step down.
    assert (
        call(team, "owner", "PATCH", f"/v1/members/{admin_id}", {"role": "owner"}).json["member"]["role"]
        == "owner"
    )
    assert call(team, "owner", "PATCH", f"/v1/members/{owner_id}", {"role": "admin"}).status_code == 200
    # The first owner is an admin now: they cannot remove the new owner, but can remove a viewer.
    assert call(team, "owner", "DELETE", f"/v1/members/{admin_id}").status_code == 403
    assert (
        call(team, "owner", "DELETE", f"/v1/members/{members['viewer@example.com']['user_id']}").status_code
        == 200
    )
    assert call(team, "viewer", "GET", "/v1/collections").status_code == 403  # no longer in any org
    assert h


# --- invitations -------------------------------------------------------------------------


def test_invitation_accepted_by_a_new_person_then_refused_when_reused(app, team):
    r = call(team, "admin", "POST", "/v1/invitations", {"email": "New.Person@Example.com", "role": "member"})
    assert r.status_code == 201
    inv = r.json["invitation"]
    assert inv["email"] == "new.person@example.com" and inv["url"] and inv["expires_at"]
    assert [i["id"] for i in call(team, "admin", "GET", "/v1/invitations").json["invitations"]] == [inv["id"]]
    path = invitation_path(inv["url"])
    browser = app.test_client()
    page = browser.get(path)
    assert page.status_code == 200 and "Join" in page.get_data(as_text=True)
    from tests.helpers import csrf_token

    token = csrf_token(browser, path)
    short = browser.post(path, data={"password": "short", "password_confirm": "short", "csrf_token": token})
    assert short.status_code == 400 and "at least 10" in short.get_data(as_text=True)
    joined = browser.post(
        path, data={"password": PASSWORD, "password_confirm": PASSWORD, "csrf_token": token}
    )
    assert joined.status_code == 302
    assert browser.get("/v1/collections").status_code == 200  # signed in, in the org
    member = db.session.scalar(
        select(Membership)
        .join(Membership.user)
        .where(
            Membership.org_id == team["org"].id,
            Membership.role == "member",
            Membership.user.has(email=inv["email"]),
        )
    )
    assert member is not None
    again = app.test_client().get(path)
    assert again.status_code == 410 and "already been used" in again.get_data(as_text=True)
    assert call(team, "admin", "GET", "/v1/invitations").json["invitations"] == []


def test_tampered_expired_and_withdrawn_links_are_refused(app, team):
    def invite(email):
        return call(team, "admin", "POST", "/v1/invitations", {"email": email, "role": "viewer"}).json[
            "invitation"
        ]

    client = app.test_client()
    good = invite("t1@example.com")
    path = invitation_path(good["url"])
    tampered = path[:-3] + ("AAA" if not path.endswith("AAA") else "BBB")
    r = client.get(tampered)
    assert r.status_code == 410 and "not valid" in r.get_data(as_text=True)
    assert client.get("/invitations/accept?token=not-a-token").status_code == 410
    assert client.get("/invitations/accept").status_code == 410

    expired = invite("t2@example.com")
    db.session.get(Invitation, expired["id"]).expires_at = utcnow() - timedelta(minutes=1)
    db.session.commit()
    r = client.get(invitation_path(expired["url"]))
    assert r.status_code == 410 and "expired" in r.get_data(as_text=True)

    withdrawn = invite("t3@example.com")
    assert call(team, "admin", "DELETE", f"/v1/invitations/{withdrawn['id']}").status_code == 200
    assert "withdrawn" in client.get(invitation_path(withdrawn["url"])).get_data(as_text=True)
    # Inviting an address again replaces its earlier link.
    second = invite("t1@example.com")
    assert (
        client.get(path).status_code == 410 and client.get(invitation_path(second["url"])).status_code == 200
    )
    assert (
        call(
            team, "admin", "POST", "/v1/invitations", {"email": "member@example.com", "role": "member"}
        ).status_code
        == 409
    )


def test_invitation_accepted_by_an_existing_user_adds_a_second_org(app, team):
    make_user("elsewhere@example.com")
    inv = call(
        team, "owner", "POST", "/v1/invitations", {"email": "elsewhere@example.com", "role": "viewer"}
    ).json["invitation"]
    path = invitation_path(inv["url"])
    client = app.test_client()
    page = client.get(path).get_data(as_text=True)
    assert "Sign in to accept" in page
    from tests.helpers import csrf_token

    login(client, "elsewhere@example.com")
    joined = client.post(path, data={"csrf_token": csrf_token(client, path)})
    assert joined.status_code == 302
    home = client.get("/").get_data(as_text=True)
    assert 'id="org-switch"' in home and team["org"].id in home
    me = client.get("/v1/environments").json  # now working in the org just joined
    assert me["environments"][0]["id"] == production(team["org"]).id
    other = next(
        o for o in db.session.scalars(select(Org)) if o.id != team["org"].id and "elsewhere" in o.name
    )
    client.post("/switch-org", data={"org_id": other.id, "csrf_token": csrf_token(client)})
    assert client.get("/v1/environments").json["environments"][0]["id"] != production(team["org"]).id
    # An invitation for someone else is refused to a signed-in user.
    inv2 = call(team, "owner", "POST", "/v1/invitations", {"email": "someone@example.com"}).json["invitation"]
    r = client.post(invitation_path(inv2["url"]), data={"csrf_token": csrf_token(client)})
    assert r.status_code == 403


# --- audit log ---------------------------------------------------------------------------


def test_audit_log_records_who_what_when_and_where(app, team):
    call(
        team,
        "member",
        "POST",
        "/v1/collections",
        {"name": "Audited", "slug": "audited", "primary_key_path": "$.id"},
    )
    call(team, "member", "PATCH", "/v1/collections/audited", {"name": "Audited 2"})
    call(team, "member", "DELETE", "/v1/collections/audited")
    client = app.test_client()
    client.post(
        "/v1/collections",
        headers={"X-API-Key": team["key"]},
        json={"name": "By key", "primary_key_path": "$.id"},
    )
    log = call(team, "admin", "GET", "/v1/audit-log?resource=collection").json["entries"]
    actions = [(e["action"], e["actor"]) for e in log]
    key_label = f"API key test key ({db.session.scalar(select(ApiKey.prefix))}…) of owner@example.com"
    assert actions[:4] == [
        ("collection.create", key_label),
        ("collection.delete", "member@example.com"),
        ("collection.update", "member@example.com"),
        ("collection.create", "member@example.com"),
    ]
    update = log[2]
    assert update["details"]["values"]["name"] == {"from": "Audited", "to": "Audited 2"}
    assert update["ip"] == "127.0.0.1" and update["at"]
    sign_ins = call(team, "admin", "GET", "/v1/audit-log?action=user.sign_in").json["entries"]
    assert {e["actor"] for e in sign_ins} == {f"{r}@example.com" for r in ROLES}
    by_actor = call(team, "admin", "GET", "/v1/audit-log?actor=member@example.com&action=collection").json
    assert len(by_actor["entries"]) == 3
    page = call(team, "admin", "GET", "/v1/audit-log?limit=2").json
    rest = call(team, "admin", "GET", f"/v1/audit-log?limit=100&cursor={page['cursor']}").json
    assert page["has_more"] and not {e["id"] for e in page["entries"]} & {e["id"] for e in rest["entries"]}
    assert call(team, "admin", "GET", "/v1/audit-log?since=yesterday").status_code == 400
    # Secrets are never in it: a source's credentials change is named, not shown.
    sid = call(
        team,
        "member",
        "POST",
        "/api/v1/source-connections",
        {
            "sourceShortName": "webhook",
            "name": "Hook",
            "credentials": {"verification_type": "hmac_sha256", "signing_secret": "canary-secret-123"},
        },
    ).json
    assert "canary-secret-123" not in str(call(team, "admin", "GET", "/v1/audit-log?limit=100").json)
    assert sid
    # Another org sees none of it.
    make_user("outsider@example.com")
    outsider = app.test_client()
    login(outsider, "outsider@example.com")
    theirs = outsider.get("/v1/audit-log").json["entries"]
    assert theirs and all(e["actor"] == "outsider@example.com" for e in theirs)
    # A key, even of this org, does not read the org's audit log.
    assert client.get("/v1/audit-log", headers={"X-API-Key": team["key"]}).status_code == 403
    page = (
        team["clients"]["admin"][0].get("/settings/audit-log?action=collection.delete").get_data(as_text=True)
    )
    assert "collection.delete" in page and "collection.create" not in page
    # Details read as written: no \u escapes (the page escapes HTML itself).
    call(team, "member", "POST", "/v1/collections", {"name": "Kunden's Zürich", "primary_key_path": "$.id"})
    page = (
        team["clients"]["admin"][0].get("/settings/audit-log?action=collection.create").get_data(as_text=True)
    )
    assert "Kunden&#39;s Zürich" in page and "\\u00fc" not in page and "\\u0027" not in page


# --- suspension --------------------------------------------------------------------------


def test_suspension_blocks_sign_in_keys_and_ingest_and_keeps_data(app, team):
    from tests.helpers import csrf_token

    h = {"X-API-Key": team["key"]}
    api = app.test_client()
    sid = api.post(
        "/api/v1/source-connections",
        headers=h,
        json={"sourceShortName": "webhook", "name": "Hook", "credentials": {"verification_type": "none"}},
    ).json["sourceConnection"]["id"]
    api.post(
        "/v1/collections",
        headers=h,
        json={"name": "Kept", "slug": "kept", "source_id": sid, "primary_key_path": "$.id"},
    )
    assert api.post(f"/v1/ingest/{sid}", json={"id": "r1"}).status_code == 200

    make_user("root@example.com", admin=True)
    root = app.test_client()
    login(root, "root@example.com")
    org = team["org"]
    no_reason = root.post(
        f"/admin/orgs/{org.id}/suspend",
        data={"reason": "", "csrf_token": csrf_token(root)},
        follow_redirects=True,
    )
    assert no_reason.status_code == 400
    assert "Reason is required: members see it" in no_reason.get_data(as_text=True)
    root.post(
        f"/admin/orgs/{org.id}/suspend", data={"reason": "Unpaid invoice", "csrf_token": csrf_token(root)}
    )

    fresh = app.test_client()
    fresh.get("/login")
    r = fresh.post(
        "/login",
        data={"email": "member@example.com", "password": PASSWORD, "csrf_token": csrf_token(fresh, "/login")},
    )
    assert r.status_code == 403 and "Unpaid invoice" in r.get_data(as_text=True)
    signed_in = team["clients"]["member"][0].get("/")
    assert signed_in.status_code == 403 and "Unpaid invoice" in signed_in.get_data(as_text=True)
    denied = api.get("/v1/collections", headers=h)
    assert denied.status_code == 403 and "Unpaid invoice" in denied.json["error"]
    assert api.post(f"/v1/ingest/{sid}", json={"id": "r2"}).status_code == 403

    root.post(f"/admin/orgs/{org.id}/unsuspend", data={"csrf_token": csrf_token(root)})
    kept = api.get("/v1/collections/kept/records", headers=h)
    assert kept.status_code == 200 and [r["record_key"] for r in kept.json["records"]] == ["r1"]
    assert api.post(f"/v1/ingest/{sid}", json={"id": "r2"}).status_code == 200
    login(fresh, "member@example.com")
    actions = {e.action for e in db.session.scalars(select(AuditEntry).where(AuditEntry.org_id == org.id))}
    assert {"org.update", "user.sign_in"} <= actions


def test_admin_users_orgs_and_jobs(app, ctx):
    from tests.helpers import csrf_token

    root_user = make_user("root@example.com", admin=True)
    other = make_user("someone@example.com")
    root = app.test_client()
    login(root, "root@example.com")
    root.post(f"/admin/users/{other.id}/disable", data={"csrf_token": csrf_token(root), "confirm": "disable"})
    r = app.test_client().post("/login", data={"email": "someone@example.com", "password": PASSWORD})
    assert r.status_code in (400, 403)
    assert "disabled" in root.get("/admin/users").get_data(as_text=True)
    root.post(f"/admin/users/{other.id}/enable", data={"csrf_token": csrf_token(root)})
    root.post(f"/admin/users/{other.id}/promote", data={"csrf_token": csrf_token(root), "confirm": "promote"})
    db.session.expire_all()
    assert db.session.get(type(other), other.id).is_instance_admin and other.disabled_at is None
    promoted = db.session.scalar(
        select(AuditEntry)
        .where(AuditEntry.action == "user.update", AuditEntry.resource_id == other.id)
        .order_by(AuditEntry.at.desc())
    )
    assert promoted.details["values"]["is_instance_admin"] == {"from": False, "to": True}
    assert promoted.actor == "root@example.com" and "password" not in str(promoted.details)
    selfish = root.post(
        f"/admin/users/{root_user.id}/disable",
        data={"csrf_token": csrf_token(root), "confirm": "disable"},
        follow_redirects=True,
    )
    assert "cannot disable yourself" in selfish.get_data(as_text=True)

    root.post(
        "/admin/orgs",
        data={"name": "Made by admin", "owner_email": "someone@example.com", "csrf_token": csrf_token(root)},
    )
    made = db.session.scalar(select(Org).where(Org.name == "Made by admin"))
    assert made is not None and made.environments[0].slug == "production"
    root.post(f"/admin/orgs/{made.id}/delete", data={"confirm": "wrong", "csrf_token": csrf_token(root)})
    assert db.session.get(Org, made.id) is not None
    made_id = made.id
    root.post(f"/admin/orgs/{made_id}/delete", data={"confirm": made.slug, "csrf_token": csrf_token(root)})
    db.session.expire_all()
    assert db.session.get(Org, made_id) is None
    deleted = db.session.scalar(select(AuditEntry).where(AuditEntry.action == "org.delete"))
    assert deleted.details["org_id"] == made_id and deleted.actor == "root@example.com"

    # A failed job is listed, requeued, and deleted.
    from rq.registry import FailedJobRegistry

    from hookstream_ui.infra.queues import queue

    q = queue("default")
    job = q.enqueue("os.getcwd")
    FailedJobRegistry(queue=q).add(job, exc_string="Traceback...\nValueError: boom")
    page = root.get("/admin/system").get_data(as_text=True)
    assert job.id in page and "Live workers" in page
    root.post(f"/admin/jobs/{job.id}/requeue", data={"csrf_token": csrf_token(root)})
    assert job.id in q.job_ids
    FailedJobRegistry(queue=q).add(job, exc_string="boom")
    root.post(f"/admin/jobs/{job.id}/delete", data={"csrf_token": csrf_token(root)})
    assert job.id not in FailedJobRegistry(queue=q).get_job_ids()
    assert root.post("/admin/jobs/nope/delete", data={"csrf_token": csrf_token(root)}).status_code == 404


def test_suspended_orgs_syncs_wait_and_cli_changes_are_audited(app, ctx):
    from hookstream_ui.models import SourceConnection
    from hookstream_ui.sync.scheduler import enqueue_due

    result = app.test_cli_runner().invoke(
        args=["create-user", "cli-made@example.com", "--password", PASSWORD]
    )
    assert result.exit_code == 0, result.output
    org = org_of(_user("cli-made@example.com"))
    created = db.session.scalar(
        select(AuditEntry).where(AuditEntry.action == "org.create", AuditEntry.org_id == org.id)
    )
    assert created is not None and created.actor.startswith("cli")

    env = production(org)
    source = SourceConnection(
        org_id=org.id,
        env_id=env.id,
        name="Stripe",
        short_name="stripe",
        config={},
        sync_status="active",
        sync_frequency="1h",
    )
    db.session.add(source)
    db.session.flush()
    # A run needs a collection to read into (the scheduler starts none without one).
    bound_collection(env, source, "Customers", stream="customer")
    org.suspended_at, org.suspended_reason = utcnow(), "testing"
    db.session.commit()
    assert enqueue_due() == []
    org.suspended_at = None
    db.session.commit()
    assert len(enqueue_due()) == 1


def _user(email):
    from hookstream_ui.models import User

    return db.session.scalar(select(User).where(User.email == email))


# Every dashboard form and the least role that may submit it. A form added without a row
# here fails test_every_dashboard_form_is_in_the_matrix.
FORMS = {
    "dashboard.collection_new": "member",
    "dashboard.collection_edit": "member",
    "dashboard.collection_delete": "member",
    "dashboard.collection_run": "member",
    "dashboard.run_cancel": "member",
    "dashboard.collection_backfill": "member",
    "dashboard.source_new": "member",
    "dashboard.source_test_form": "member",
    "dashboard.source_edit": "member",
    "dashboard.source_authorize": "member",
    "dashboard.source_reauthorize": "member",
    "dashboard.source_test": "member",
    "dashboard.source_run": "member",
    "dashboard.source_upload": "member",
    "dashboard.source_test_event": "member",
    "dashboard.source_clear": "member",
    "dashboard.source_schedule": "member",
    "dashboard.collection_status": "member",
    "dashboard.collection_source_add": "member",
    "dashboard.collection_source_remove": "member",
    "dashboard.collection_source_edit": "member",
    "dashboard.source_delete": "member",
    "dashboard.destination_new": "member",
    "dashboard.destination_retry": "member",
    "dashboard.destination_replay": "member",
    "dashboard.destination_status": "member",
    "dashboard.destination_rotate": "member",
    "dashboard.destination_delete": "member",
    "dashboard.alert_rule_new": "member",
    "dashboard.alert_rule_enabled": "member",
    "dashboard.alert_rule_delete": "member",
    "dashboard.api_keys_page": "admin",
    "dashboard.api_key_revoke": "admin",
    "dashboard.team_page": "admin",
    "dashboard.member_role": "admin",
    "dashboard.member_remove": "admin",
    "dashboard.invitation_revoke": "admin",
    "dashboard.projects_page": "admin",
    "dashboard.project_rename": "admin",
    "dashboard.org_delete": "owner",
    "dashboard.org_rename": "owner",
    # Anyone in the org: their own password, leaving, and where they are working.
    "dashboard.account_page": "viewer",
    "dashboard.leave_org": "viewer",
    "dashboard.switch_org": "viewer",
    "dashboard.switch_project": "viewer",
    "dashboard.switch_to": "viewer",
}
SELF_ONLY = {"dashboard.account_page", "dashboard.leave_org"}  # exercised by their own tests


def _post_rules(app, prefix):
    for rule in app.url_map.iter_rules():
        if rule.endpoint.startswith(prefix) and "POST" in rule.methods:
            yield rule


def test_every_dashboard_form_is_in_the_matrix(app):
    assert {r.endpoint for r in _post_rules(app, "dashboard.")} == set(FORMS)


@pytest.mark.parametrize("role", ROLES)
def test_every_form_and_mutating_endpoint_checks_the_role_first(app, team, role):
    """Denied roles get 403 before anything is looked up (unknown ids); allowed ones get past
    the check (then 404, 400 or success, never 403)."""
    from hookstream_ui.api.openapi import DOC_ATTR
    from tests.helpers import csrf_token

    client, headers = team["clients"][role]
    checked = 0
    for rule in _post_rules(app, "dashboard."):
        if rule.endpoint in SELF_ONLY:
            continue
        path = re.sub(r"<(?:[^:<>]+:)?([^<>]+)>", "nope", rule.rule)
        r = client.post(path, data={"csrf_token": csrf_token(client)})
        expected_denied = not _allowed(role, FORMS[rule.endpoint])
        assert (r.status_code == 403) == expected_denied and r.status_code < 500, (role, path, r.status_code)
        checked += 1
    for rule in app.url_map.iter_rules():
        doc = getattr(app.view_functions[rule.endpoint], DOC_ATTR, None)
        if not doc or doc["public"] or doc["method"] in ("get", "head"):
            continue
        path = re.sub(r"<(?:[^:<>]+:)?([^<>]+)>", "nope", rule.rule)
        r = client.open(path, method=doc["method"].upper(), json={}, headers=headers)
        expected_denied = not _allowed(role, doc["role"])
        assert (r.status_code == 403) == expected_denied and r.status_code < 500, (
            role,
            rule.rule,
            r.status_code,
        )
        checked += 1
    assert checked > 40
