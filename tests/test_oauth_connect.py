"""Connect with HubSpot: the authorization code grant with PKCE and `state` against the
fixture HubSpot's authorization server, the tokens it gives stored encrypted and renewed
with the instance's client secret, which no connection stores."""

from __future__ import annotations

from urllib.parse import parse_qs, urlsplit

import pytest
from sqlalchemy import select

from hookstream_ui.models import SourceConnection, SyncRun, db
from hookstream_ui.services.sources import credentials_of
from tests.helpers import auth, records_of, run_inline
from tests.hubspot_fixture import CLIENT_ID, CLIENT_SECRET, HUBSPOT, PREFIX


@pytest.fixture
def hubspot_app(app, http_fixture, monkeypatch):
    """The instance's HubSpot app, at the fixture's authorization server."""
    base = http_fixture.base + PREFIX
    monkeypatch.setitem(app.config, "HUBSPOT_CLIENT_ID", CLIENT_ID)
    monkeypatch.setitem(app.config, "HUBSPOT_CLIENT_SECRET", CLIENT_SECRET)
    monkeypatch.setitem(app.config, "HUBSPOT_AUTHORIZE_URL", base + "/oauth/authorize")
    monkeypatch.setitem(app.config, "HUBSPOT_TOKEN_URL", base + "/oauth/v1/token")
    monkeypatch.setitem(app.config, "HUBSPOT_API_URL", base)
    return base


def _consent(client, token: str, name: str = "HubSpot (acme)") -> tuple[str, dict]:
    """Start, then allow on the provider's page: the callback URL it sends back, and what
    the authorization request asked."""
    started = client.post("/sources/new/hubspot/authorize", data={"csrf_token": token, "name": name})
    assert started.status_code == 302, started.data
    asked = {k: v[0] for k, v in parse_qs(urlsplit(started.location).query).items()}
    import httpx

    allowed = httpx.get(started.location.replace("/oauth/authorize?", "/oauth/authorize/allow?"))
    assert allowed.status_code == 302
    return allowed.headers["location"], asked


def _bind(client, key: str, source_id: str):
    made = client.post(
        "/v1/collections",
        headers=auth(key),
        json={
            "name": "hubspot contacts",
            "source_id": source_id,
            "stream": "contact",
            "primary_key_path": "$.id",
        },
    )
    assert made.status_code == 201, made.json
    return made


def _back(client, callback: str):
    parts = urlsplit(callback)
    return client.get(parts.path + "?" + parts.query)


def test_no_connect_button_without_the_instances_app(signed_in):
    client, _, _ = signed_in
    page = client.get("/sources/new/hubspot").get_data(as_text=True)
    assert 'id="oauth-connect"' not in page
    assert 'name="credentials.token"' in page  # the generated form is still there


def test_connect_with_hubspot_stores_tokens_and_syncs(signed_in, key, hubspot_app):
    client, token, _ = signed_in
    assert "Connect with HubSpot" in client.get("/sources/new/hubspot").get_data(as_text=True)
    callback, asked = _consent(client, token)
    assert asked["code_challenge_method"] == "S256" and len(asked["code_challenge"]) == 43
    assert asked["redirect_uri"].endswith("/sources/oauth/hubspot/callback")
    assert "crm.objects.contacts.read" in asked["scope"].split()
    done = _back(client, callback)
    assert done.status_code == 302 and "/sources/" in done.location
    source = db.session.scalars(
        select(SourceConnection).where(SourceConnection.name == "HubSpot (acme)")
    ).one()
    stored = credentials_of(source)
    assert stored["auth_method"] == "oauth" and stored["refresh_token"] in HUBSPOT.refresh_tokens
    assert "client_secret" not in stored  # the instance's, never the connection's
    assert CLIENT_SECRET not in (source.credentials_encrypted or "")
    shown = client.get(f"/api/v1/source-connections/{source.id}", headers=auth(key)).get_data(as_text=True)
    assert stored["refresh_token"] not in shown and stored["access_token"] not in shown

    HUBSPOT.add("contacts", 3)
    made = _bind(client, key, source.id)
    run = run_inline(source.id)
    assert run.status == "completed", run.error
    assert len(records_of(made.json["collection"]["id"])) == 3


def test_an_expired_access_token_is_renewed_with_the_instances_secret(signed_in, key, hubspot_app):
    client, token, _ = signed_in
    _back(client, _consent(client, token)[0])
    source = db.session.scalars(select(SourceConnection)).one()
    HUBSPOT.access_tokens.clear()  # every access token expired
    HUBSPOT.token_requests.clear()
    HUBSPOT.add("contacts", 1)
    made = _bind(client, key, source.id)
    run = run_inline(source.id)
    assert run.status == "completed", run.error
    assert [r["grant_type"] for r in HUBSPOT.token_requests] == ["refresh_token"]
    assert HUBSPOT.token_requests[0]["client_secret"] == CLIENT_SECRET
    assert len(records_of(made.json["collection"]["id"])) == 1


def test_the_instances_secret_goes_only_to_its_own_token_endpoint(signed_in, key, hubspot_app, capture):
    client, token, _ = signed_in
    _back(client, _consent(client, token)[0])
    source = db.session.scalars(select(SourceConnection)).one()
    # The token endpoint moved elsewhere: the refresh token must be typed again, and even
    # then the instance's secret is not sent with it.
    moved = {"token_url": capture.base + "/token", "refresh_token": "typed-again", "access_token": ""}
    refused = client.put(
        f"/api/v1/source-connections/{source.id}/credentials", headers=auth(key), json={"credentials": moved}
    )
    assert refused.status_code == 400 and "client_secret" in refused.json["errors"]
    # With a secret of their own, the run sends that one there, never the instance's.
    mine = {**moved, "client_secret": "my-own-app-secret"}
    saved = client.put(
        f"/api/v1/source-connections/{source.id}/credentials", headers=auth(key), json={"credentials": mine}
    )
    assert saved.status_code == 200, saved.json
    _bind(client, key, source.id)
    run_inline(source.id)
    assert capture.leaked("my-own-app-secret") and not capture.leaked(CLIENT_SECRET)


def test_a_callback_is_taken_once(signed_in, hubspot_app):
    client, token, _ = signed_in
    callback, _ = _consent(client, token)
    done = _back(client, callback)
    assert done.status_code == 302
    again = _back(client, callback)
    assert again.status_code == 302 and again.location.endswith("/sources/new/hubspot")
    assert db.session.scalar(select(db.func.count()).select_from(SourceConnection)) == 1


def test_a_forged_state_creates_nothing(signed_in, hubspot_app):
    client, token, _ = signed_in
    callback, _ = _consent(client, token)
    forged = callback.replace("state=", "state=x")
    refused = _back(client, forged)
    assert refused.status_code == 302 and refused.location.endswith("/sources/new/hubspot")
    page = client.get(refused.location).get_data(as_text=True)
    assert "does not match a connection started here" in page
    assert db.session.scalar(select(db.func.count()).select_from(SourceConnection)) == 0


def test_a_denied_consent_creates_nothing(signed_in, hubspot_app):
    client, token, _ = signed_in
    started = client.post("/sources/new/hubspot/authorize", data={"csrf_token": token, "name": "HubSpot"})
    state = parse_qs(urlsplit(started.location).query)["state"][0]
    refused = client.get(f"/sources/oauth/hubspot/callback?error=access_denied&state={state}")
    assert refused.status_code == 302
    assert "did not authorize the connection" in client.get(refused.location).get_data(as_text=True)
    assert db.session.scalar(select(db.func.count()).select_from(SourceConnection)) == 0


def test_a_revoked_refresh_token_asks_to_reconnect_and_reconnecting_works(signed_in, key, hubspot_app):
    client, token, _ = signed_in
    _back(client, _consent(client, token)[0])
    source = db.session.scalars(select(SourceConnection)).one()
    _bind(client, key, source.id)
    HUBSPOT.refresh_tokens.clear()
    HUBSPOT.access_tokens.clear()
    failed = run_inline(source.id)
    assert failed.status == "failed" and "reconnect HubSpot" in (failed.error or "")
    edit = client.get(f"/sources/{source.id}/edit").get_data(as_text=True)
    assert "Reconnect with HubSpot" in edit
    started = client.post(f"/sources/{source.id}/authorize", data={"csrf_token": token})
    import httpx

    allowed = httpx.get(started.location.replace("/oauth/authorize?", "/oauth/authorize/allow?"))
    done = _back(client, allowed.headers["location"])
    assert done.status_code == 302 and done.location.endswith(f"/sources/{source.id}")
    HUBSPOT.add("contacts", 2)
    run = run_inline(source.id)
    assert run.status == "completed", run.error
    assert db.session.scalar(select(db.func.count()).select_from(SyncRun)) == 2
