"""Sign-up, sign-in, sign-out, password changes and the CLI."""

from __future__ import annotations

from sqlalchemy import select

from hookstream_ui.models import ApiKey, Membership, User, db
from hookstream_ui.services.api_keys import hash_key
from tests.helpers import CSRF_META, PASSWORD, login, make_user, org_of


def signup(client, email, password=PASSWORD, confirm=None):
    token = CSRF_META.search(client.get("/signup").get_data(as_text=True)).group(1)
    return client.post(
        "/signup",
        data={
            "email": email,
            "password": password,
            "password_confirm": confirm or password,
            "csrf_token": token,
        },
    )


def test_empty_instance_sends_login_to_signup(client):
    r = client.get("/login")
    assert r.status_code == 302 and r.location.endswith("/signup")
    assert "Set up hookstream" in client.get("/signup").get_data(as_text=True)


def test_first_signup_becomes_instance_admin_with_org_and_production(client, ctx):
    r = signup(client, "First@Example.com")
    assert r.status_code == 302 and r.location.endswith("/")
    user = db.session.scalar(select(User).where(User.email == "first@example.com"))
    assert user.is_instance_admin
    membership = db.session.scalar(select(Membership).where(Membership.user_id == user.id))
    assert membership.role == "owner"
    assert [e.slug for e in membership.org.environments] == ["production"]
    assert membership.org.id.startswith("org_") and len(membership.org.id) == 36
    assert membership.org.environments[0].id.startswith("env_")
    assert client.get("/").status_code == 200


def test_later_signups_refused_unless_allowed(client, app, ctx, monkeypatch):
    make_user("first@example.com")
    page = client.get("/signup")
    assert page.status_code == 403 and "Sign-up is closed" in page.get_data(as_text=True)
    r = signup(client, "second@example.com")
    assert r.status_code == 403
    assert db.session.scalar(select(User).where(User.email == "second@example.com")) is None
    monkeypatch.setitem(app.config, "ALLOW_SIGNUP", True)
    assert signup(client, "second@example.com").status_code == 302
    second = db.session.scalar(select(User).where(User.email == "second@example.com"))
    assert not second.is_instance_admin
    assert (
        org_of(second).id
        != org_of(db.session.scalar(select(User).where(User.email == "first@example.com"))).id
    )


def test_signup_errors_are_shown_beside_fields_and_keep_the_email(client, ctx):
    r = signup(client, "not-an-email")
    body = r.get_data(as_text=True)
    assert r.status_code == 400 and 'id="e-email"' in body and 'value="not-an-email"' in body
    r = signup(client, "ok@example.com", password="short")
    assert r.status_code == 400 and "at least 10 characters" in r.get_data(as_text=True)
    r = signup(client, "ok@example.com", confirm="different-password")
    assert r.status_code == 400 and "does not match" in r.get_data(as_text=True)
    assert "different-password" not in r.get_data(as_text=True)  # secrets are never echoed
    assert db.session.scalar(select(User)) is None


def test_sign_in_wrong_password_and_sign_out(client, ctx):
    make_user("ann@example.com")
    token = CSRF_META.search(client.get("/login").get_data(as_text=True)).group(1)
    r = client.post(
        "/login", data={"email": "ann@example.com", "password": "wrong-password", "csrf_token": token}
    )
    assert r.status_code == 401 and "Email or password is incorrect" in r.get_data(as_text=True)
    assert client.get("/").status_code == 302
    token = login(client, "ann@example.com")
    assert client.get("/").status_code == 200
    assert client.post("/logout", data={"csrf_token": token}).status_code == 302
    assert client.get("/").location.startswith("/login")


def test_forms_need_csrf(client, ctx):
    make_user("ann@example.com")
    r = client.post("/login", data={"email": "ann@example.com", "password": PASSWORD})
    assert r.status_code == 400
    assert client.get("/").status_code == 302


def _cookie(client) -> str:
    return client.get_cookie("session").value


def test_sign_out_ends_the_session_on_the_server(app, client, ctx):
    """The cookie of a signed-out session worked for 31 days."""
    make_user("ann@example.com")
    token = login(client, "ann@example.com")
    copied = _cookie(client)
    thief = app.test_client()
    thief.set_cookie("session", copied)
    assert thief.get("/").status_code == 200
    assert client.post("/logout", data={"csrf_token": token}).status_code == 302
    assert thief.get("/").status_code == 302 and thief.get("/v1/collections").status_code == 401
    again = app.test_client()  # signing in again starts a new session; the old cookie stays dead
    login(again, "ann@example.com")
    assert again.get("/").status_code == 200 and thief.get("/").status_code == 302


def test_a_session_ends_after_its_lifetime(app, client, ctx):
    from datetime import timedelta

    from hookstream_ui.models import UserSession
    from hookstream_ui.values.times import utcnow

    make_user("ann@example.com")
    login(client, "ann@example.com")
    signed = db.session.scalar(select(UserSession))
    assert abs(
        signed.expires_at.replace(tzinfo=None) - (utcnow() + timedelta(hours=7 * 24)).replace(tzinfo=None)
    ) < timedelta(minutes=1)
    assert client.get_cookie("session").expires is not None  # the cookie expires with it
    db.session.execute(UserSession.__table__.update().values(expires_at=utcnow() - timedelta(seconds=1)))
    db.session.commit()
    assert client.get("/").status_code == 302


def test_sign_in_checks_a_password_whether_or_not_the_email_exists(client, ctx, monkeypatch):
    """Answering at once for an unknown email told which emails have accounts."""
    from hookstream_ui.services import accounts

    make_user("ann@example.com")
    checked = []
    real = accounts.check_password_hash
    monkeypatch.setattr(accounts, "check_password_hash", lambda *a: checked.append(1) or real(*a))
    token = CSRF_META.search(client.get("/login").get_data(as_text=True)).group(1)
    r = client.post(
        "/login", data={"email": "nobody@example.com", "password": "whatever-it-is", "csrf_token": token}
    )
    assert r.status_code == 401 and checked == [1]


def test_production_hashes_with_scrypt_and_every_hash_follows_the_setting(app, ctx, monkeypatch, tmp_path):
    """Only the test suite's app hashes cheaply: production's setting is scrypt, and each
    place that makes a hash (a user's password, the stand-in checked for unknown emails)
    uses the setting, whichever it is."""
    from hookstream_ui.config import TEST_CONFIG, load_config
    from hookstream_ui.services import accounts

    assert load_config(tmp_path)["PASSWORD_HASH_METHOD"] == "scrypt"
    assert app.config["PASSWORD_HASH_METHOD"] == TEST_CONFIG["PASSWORD_HASH_METHOD"] == "pbkdf2:sha256:1"
    assert make_user("cheap@example.com").password_hash.startswith("pbkdf2:sha256:1$")
    monkeypatch.setitem(app.config, "PASSWORD_HASH_METHOD", "scrypt")
    monkeypatch.delitem(app.extensions, "hookstream_nobody", raising=False)
    user = make_user("ann@example.com")
    assert user.password_hash.startswith("scrypt:") and user.check_password(PASSWORD)
    assert accounts._nobody().startswith("scrypt:")
    monkeypatch.undo()
    app.extensions.pop("hookstream_nobody", None)  # the next test's stand-in is cheap again


def test_login_redirects_only_to_local_paths(client, ctx):
    make_user("ann@example.com")
    for target, expected in [
        ("/collections", "/collections"),
        ("https://evil.example/", "/"),
        ("//evil.example/x", "/"),
        ("/\\evil.example/x", "/"),
        ("/x%0d%0aSet-Cookie:%20a=b", "/"),
        ("/x%0aLocation:%20//evil", "/"),
        ("/collections?q=%E2%9C%93", "/collections?q=%E2%9C%93"),
    ]:
        c = client.application.test_client()
        token = CSRF_META.search(c.get("/login").get_data(as_text=True)).group(1)
        r = c.post(
            f"/login?next={target}",
            data={"email": "ann@example.com", "password": PASSWORD, "csrf_token": token},
        )
        assert r.location == expected


def test_dashboard_requires_sign_in_but_api_answers_json_401(client):
    r = client.get("/collections")
    assert r.status_code == 302 and "/login?next=/collections" in r.location
    r = client.get("/v1/collections")
    assert r.status_code == 401 and r.is_json and r.json["code"] == "unauthorized"


def test_disabled_user_cannot_sign_in(client, ctx):
    from hookstream_ui.values.times import utcnow

    user = make_user("ann@example.com")
    user.disabled_at = utcnow()
    db.session.commit()
    token = CSRF_META.search(client.get("/login").get_data(as_text=True)).group(1)
    r = client.post("/login", data={"email": "ann@example.com", "password": PASSWORD, "csrf_token": token})
    assert r.status_code == 403 and "disabled" in r.get_data(as_text=True)


def test_password_change_ends_other_sessions(app, ctx):
    make_user("ann@example.com")
    laptop, phone = app.test_client(), app.test_client()
    token = login(laptop, "ann@example.com")
    login(phone, "ann@example.com")
    assert phone.get("/v1/collections").status_code == 200
    r = laptop.post(
        "/settings/account",
        data={
            "current_password": "nope-nope-nope",
            "new_password": "brand-new-password",
            "csrf_token": token,
        },
    )
    assert r.status_code == 400 and "is incorrect" in r.get_data(as_text=True)
    r = laptop.post(
        "/settings/account",
        data={
            "current_password": PASSWORD,
            "new_password": "brand-new-password",
            "new_password_confirm": "brand-new-password",
            "csrf_token": token,
        },
    )
    assert r.status_code == 302
    assert laptop.get("/").status_code == 200  # the browser that changed it stays in
    assert phone.get("/").status_code == 302  # every other session is out
    assert phone.get("/v1/collections").status_code == 401
    login(app.test_client(), "ann@example.com", "brand-new-password")


def test_cli_create_user_and_api_key(app, client, ctx):
    runner = app.test_cli_runner()
    r = runner.invoke(args=["create-user", "ops@example.com", "--password", "long-enough-pw", "--admin"])
    assert r.exit_code == 0, r.output
    ops = db.session.scalar(select(User).where(User.email == "ops@example.com"))
    assert ops.is_instance_admin
    org = org_of(ops)
    assert [e.slug for e in org.environments] == ["production"]

    r = runner.invoke(
        args=["create-user", "dev@example.com", "--password", "long-enough-pw", "--org", org.slug]
    )
    assert r.exit_code == 0, r.output
    dev = db.session.scalar(select(User).where(User.email == "dev@example.com"))
    assert org_of(dev).id == org.id and not dev.is_instance_admin

    r = runner.invoke(args=["create-user", "dev@example.com", "--password", "long-enough-pw"])
    assert r.exit_code != 0 and "already registered" in r.output
    r = runner.invoke(args=["create-user", "x@example.com", "--password", "short"])
    assert r.exit_code != 0 and "at least 10" in r.output
    r = runner.invoke(args=["create-user", "y@example.com", "--password", "long-enough-pw", "--org", "nope"])
    assert r.exit_code != 0 and db.session.scalar(select(User).where(User.email == "y@example.com")) is None

    r = runner.invoke(args=["create-api-key", "ops@example.com", "--name", "deploy"])
    assert r.exit_code == 0, r.output
    raw = r.output.strip()
    assert raw.startswith("hs_live_")
    stored = db.session.scalar(select(ApiKey).where(ApiKey.name == "deploy"))
    assert stored.key_hash == hash_key(raw) and raw not in (stored.prefix, stored.key_hash)
    assert client.get("/v1/collections", headers={"X-API-Key": raw}).status_code == 200
    r = runner.invoke(args=["create-api-key", "ops@example.com", "--name", "x", "--env", "staging"])
    assert r.exit_code != 0 and "no project" in r.output


def test_repeated_failed_sign_ins_are_refused_for_a_while(app, ctx):
    from hookstream_ui.services import accounts
    from tests.helpers import PASSWORD, csrf_token, make_user

    make_user("target@example.com")
    client = app.test_client()

    def attempt(password):
        return client.post(
            "/login",
            data={
                "email": "target@example.com",
                "password": password,
                "csrf_token": csrf_token(client, "/login"),
            },
        )

    for _ in range(accounts.SIGN_IN_FAILURES):
        assert attempt("wrong-password-1").status_code == 401
    locked = attempt(PASSWORD)  # even the right password, until the window passes
    assert locked.status_code == 429 and "Too many failed sign-ins" in locked.get_data(as_text=True)
    other = app.test_client()  # another account from the same address is not locked out yet
    make_user("bystander@example.com")
    assert (
        other.post(
            "/login",
            data={
                "email": "bystander@example.com",
                "password": PASSWORD,
                "csrf_token": csrf_token(other, "/login"),
            },
        ).status_code
        == 302
    )
    from datetime import timedelta

    from hookstream_ui.models import SignInFailure, db
    from hookstream_ui.values.times import utcnow

    db.session.execute(
        SignInFailure.__table__.update().values(  # the window has passed
            last_failure_at=utcnow() - timedelta(seconds=accounts.SIGN_IN_WINDOW + 1)
        )
    )
    db.session.commit()
    assert attempt(PASSWORD).status_code == 302


def test_throttling_holds_without_redis(app, ctx, monkeypatch, tmp_path):
    """With Redis gone, sign-in throttling failed open."""
    from hookstream_ui.services import accounts
    from tests.helpers import PASSWORD, csrf_token, make_user

    make_user("target@example.com")
    client = app.test_client()
    token = csrf_token(client, "/login")
    monkeypatch.setitem(app.config, "REDIS_URL", f"unix://{tmp_path}/gone.sock")
    app.extensions.pop("hookstream_redis", None)
    try:
        for _ in range(accounts.SIGN_IN_FAILURES):
            assert (
                client.post(
                    "/login",
                    data={"email": "target@example.com", "password": "wrong-password-1", "csrf_token": token},
                ).status_code
                == 401
            )
        locked = client.post(
            "/login", data={"email": "target@example.com", "password": PASSWORD, "csrf_token": token}
        )
        assert locked.status_code == 429
    finally:
        app.extensions.pop("hookstream_redis", None)
