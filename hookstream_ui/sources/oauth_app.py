"""The authorization code grant with PKCE (RFC 6749 section 4.1, RFC 7636), by which a person
connects a provider from the dashboard with the instance's own OAuth app.

The app is the instance's: its client id and secret are set by whoever runs hookstream, as
`<SHORT_NAME>_CLIENT_ID` and `<SHORT_NAME>_CLIENT_SECRET` (HUBSPOT_CLIENT_ID, ...), with
`<SHORT_NAME>_AUTHORIZE_URL`, `<SHORT_NAME>_TOKEN_URL` and `<SHORT_NAME>_API_URL` for another
host (a sandbox, a proxy, a test server). The client secret is never stored with a connection: a renewal takes it from
the instance, and only while the connection's token endpoint is the app's own, so that
changing a connection's endpoint cannot carry the instance's secret anywhere else."""

from __future__ import annotations

import base64
import hashlib
import os
import secrets
from dataclasses import dataclass
from urllib.parse import urlencode

from flask import current_app

from . import http
from .base import SourceError


@dataclass(frozen=True)
class AuthorizationCode:
    """What a declaration says of its provider's authorization code grant."""

    authorize_url: str
    token_url: str
    scopes: tuple[str, ...] = ()
    # Extra query parameters of the authorization request (Salesforce's prompt).
    extra: tuple[tuple[str, str], ...] = ()


@dataclass(frozen=True)
class Client:
    """The instance's OAuth app for one provider, as configured."""

    client_id: str
    client_secret: str
    authorize_url: str
    token_url: str
    api_url: str = ""  # where a connection made with it calls the API, when not the default


def _setting(name: str) -> str:
    value = current_app.config.get(name)
    return str(value if value is not None else os.environ.get(name, "")).strip()


def client_of(short_name: str, grant: AuthorizationCode | None) -> Client | None:
    """The configured app, or None when the instance has none for this provider."""
    if grant is None:
        return None
    prefix = short_name.upper()
    client_id, client_secret = _setting(f"{prefix}_CLIENT_ID"), _setting(f"{prefix}_CLIENT_SECRET")
    if not client_id or not client_secret:
        return None
    return Client(
        client_id,
        client_secret,
        _setting(f"{prefix}_AUTHORIZE_URL") or grant.authorize_url,
        _setting(f"{prefix}_TOKEN_URL") or grant.token_url,
        _setting(f"{prefix}_API_URL"),
    )


def instance_secret(short_name: str, grant: AuthorizationCode | None, credentials: dict) -> str | None:
    """The instance's client secret for a renewal of these credentials: only when they were
    issued to the instance's app and are renewed at its token endpoint."""
    client = client_of(short_name, grant)
    if client is None:
        return None
    same = credentials.get("client_id") == client.client_id and (
        str(credentials.get("token_url") or "").rstrip("/") == client.token_url.rstrip("/")
    )
    return client.client_secret if same else None


def verifier() -> str:
    return secrets.token_urlsafe(64)  # 86 characters, within RFC 7636's 43 to 128


def challenge(code_verifier: str) -> str:
    digest = hashlib.sha256(code_verifier.encode("ascii")).digest()
    return base64.urlsafe_b64encode(digest).rstrip(b"=").decode("ascii")


def authorization_url(
    client: Client, grant: AuthorizationCode, redirect_uri: str, state: str, code_verifier: str
) -> str:
    query = {
        "response_type": "code",
        "client_id": client.client_id,
        "redirect_uri": redirect_uri,
        "state": state,
        "code_challenge": challenge(code_verifier),
        "code_challenge_method": "S256",
        **dict(grant.extra),
    }
    if grant.scopes:
        query["scope"] = " ".join(grant.scopes)
    joiner = "&" if "?" in client.authorize_url else "?"
    return client.authorize_url + joiner + urlencode(query)


def exchange(client: Client, code: str, redirect_uri: str, code_verifier: str, speaker: str) -> dict:
    """The token endpoint's answer to the code (through the network guard, as every call)."""
    form = {
        "grant_type": "authorization_code",
        "code": code,
        "redirect_uri": redirect_uri,
        "client_id": client.client_id,
        "client_secret": client.client_secret,
        "code_verifier": code_verifier,
    }
    response = http.request("POST", client.token_url, data=form, headers={"Accept": "application/json"})
    if response.status_code >= 400:
        try:
            body = http.json_of(response)
        except ValueError:
            body = {}
        error = body.get("error") if isinstance(body, dict) else None
        said = error if isinstance(error, str) and len(error) < 100 else f"HTTP {response.status_code}"
        raise SourceError(f"{speaker} refused the authorization ({said}); connect again", retry=False)
    body = http.answer_json(response, client.token_url, speaker)
    if not isinstance(body, dict) or not isinstance(body.get("access_token"), str):
        raise SourceError(f"{speaker}'s token endpoint answered no access token", retry=False)
    if not isinstance(body.get("refresh_token"), str) or not body["refresh_token"]:
        raise SourceError(
            f"{speaker} gave no refresh token, so the connection would end within hours; "
            "allow offline access (the refresh_token scope) and connect again",
            retry=False,
        )
    return body
