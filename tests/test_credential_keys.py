"""Credentials are encrypted at rest and survive key rotation."""

from __future__ import annotations

from cryptography.fernet import Fernet
from sqlalchemy import select

from hookstream_ui.models import SourceConnection, db
from hookstream_ui.services import sources as svc
from tests.helpers import make_key, make_user, org_of, production


def test_rotation_reencrypts_with_the_new_key_and_keeps_values(app, client, ctx, monkeypatch):
    key = make_key(production(org_of(make_user("owner@example.com"))))
    r = client.post(
        "/api/v1/source-connections",
        headers={"X-API-Key": key},
        json={
            "sourceShortName": "webhook",
            "name": "Hook",
            "credentials": {"verification_type": "hmac_sha256", "signing_secret": "whsec_rotate_me"},
        },
    )
    sid = r.json["sourceConnection"]["id"]
    old_keys = list(app.config["CREDENTIALS_KEYS"])
    before = db.session.get(SourceConnection, sid).credentials_encrypted
    assert "whsec_rotate_me" not in before

    new_key = Fernet.generate_key().decode()
    monkeypatch.setitem(app.config, "CREDENTIALS_KEYS", [new_key, *old_keys])
    result = app.test_cli_runner().invoke(args=["rotate-credentials-key"])
    assert result.exit_code == 0 and "re-encrypted 1 stored secret" in result.output
    db.session.expire_all()
    after = db.session.get(SourceConnection, sid).credentials_encrypted
    assert after != before
    assert Fernet(new_key).decrypt(after.encode())  # the newest key alone now reads it

    monkeypatch.setitem(app.config, "CREDENTIALS_KEYS", [new_key])  # old key retired
    source = db.session.scalar(select(SourceConnection))
    assert svc.credentials_of(source)["signing_secret"] == "whsec_rotate_me"


def test_generate_refuses_when_keys_come_from_the_environment(app, monkeypatch):
    monkeypatch.setenv("CREDENTIALS_KEYS", Fernet.generate_key().decode())
    result = app.test_cli_runner().invoke(args=["rotate-credentials-key", "--generate"])
    assert result.exit_code != 0 and "CREDENTIALS_KEYS" in result.output


def test_generate_writes_a_new_instance_key_first(app, monkeypatch, tmp_path):
    monkeypatch.delenv("CREDENTIALS_KEYS", raising=False)
    monkeypatch.setattr(app, "instance_path", str(tmp_path))
    old = list(app.config["CREDENTIALS_KEYS"])
    try:
        result = app.test_cli_runner().invoke(args=["rotate-credentials-key", "--generate"])
        assert result.exit_code == 0, result.output
        written = (tmp_path / "credentials.key").read_text().split(",")
        assert written[1:] == old and len(written) == len(old) + 1
        assert (tmp_path / "credentials.key").stat().st_mode & 0o777 == 0o600
    finally:
        app.config["CREDENTIALS_KEYS"] = old
