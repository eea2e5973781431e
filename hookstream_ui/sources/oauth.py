"""OAuth 2.0 access tokens renewed with a refresh token (the refresh_token grant), for the
declared sources whose APIs take short-lived bearer tokens.

The stored credential holds the refresh token, the client's id and secret, and the last
access token with its expiry. An access token that is missing, expired or about to expire
is renewed before the call that needs it, and once more after a 401; each renewal is stored
back (encrypted, through Connection.save_credentials), a rotated refresh token with it.
Nothing here ever refuses a credential for its access token: an expired one must not block
the renewal that replaces it."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime

import httpx

from ..values.records import parse_time
from . import http, secrets
from .base import Connection, SourceError

# A token is renewed this long before it expires: clocks differ, and a page takes time.
EARLY = 60.0


@dataclass(frozen=True)
class RefreshGrant:
    """Where a declaration's credential fields are, and how long its tokens live."""

    default_token_url: str
    # Field names, not values.
    token_url_field: str = "token_url"  # noqa: S105
    client_id_field: str = "client_id"
    client_secret_field: str = "client_secret"  # noqa: S105
    refresh_token_field: str = "refresh_token"  # noqa: S105
    access_token_field: str = "access_token"  # noqa: S105
    expires_field: str = "access_token_expires"  # ISO 8601, UTC
    # What a token is taken to live when the token endpoint does not say (expires_in).
    lifetime: float = 3600.0


def expiry_text(epoch: float) -> str:
    return datetime.fromtimestamp(epoch, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def expires_in(value: object) -> float | None:
    """expires_in: a number of seconds, which some servers send as text."""
    try:
        seconds = (
            float(value) if isinstance(value, int | float | str) and not isinstance(value, bool) else 0.0
        )
    except ValueError:
        return None
    return min(seconds, 365 * 86400.0) if seconds > 0 else None  # NaN is not > 0; inf is capped


def _error_of(response: httpx.Response) -> tuple[str, str]:
    """The token endpoint's `error` and `error_description` (RFC 6749 section 5.2)."""
    try:
        body = http.json_of(response)
    except ValueError:
        return "", ""
    if not isinstance(body, dict):
        return "", ""
    error, description = body.get("error"), body.get("error_description")
    return (error if isinstance(error, str) else ""), (description if isinstance(description, str) else "")


@dataclass
class Tokens:
    """The access token of one read or one connection test. `conn.credentials` is kept up
    to date in place, so what is said later (an error message) is scrubbed of the new
    token too."""

    grant: RefreshGrant
    conn: Connection
    speaker: str  # who answers, in messages: "Salesforce"
    provider: str  # what to reconnect, in messages
    options: Callable[[dict], dict]  # the declaration's headers, from the credentials
    # For a connection made with the instance's OAuth app (oauth_app): its client secret,
    # which the connection does not store.
    instance_secret: str | None = None

    def authorize(self, renew: bool) -> dict:
        if renew or not self.fresh():
            self.renew()
        return self.options(self.conn.credentials)

    def fresh(self) -> bool:
        credentials = self.conn.credentials
        until = parse_time(credentials.get(self.grant.expires_field))
        return bool(credentials.get(self.grant.access_token_field)) and (
            until is not None and until.timestamp() - EARLY > time.time()
        )

    def renew(self) -> None:
        with self.conn.renewal_lock():
            if not self.renewed_elsewhere():
                self.ask()

    def renewed_elsewhere(self) -> bool:
        """Whether another run sharing the credential renewed it since it was read: its
        tokens are taken (a rotated refresh token too), and a fresh access token is used
        instead of asking again."""
        grant, credentials = self.grant, self.conn.credentials
        stored = self.conn.stored_credentials() or {}
        fields = (grant.refresh_token_field, grant.access_token_field, grant.expires_field)
        newer = {f: stored[f] for f in fields if stored.get(f) and stored.get(f) != credentials.get(f)}
        credentials.update(newer)
        return grant.access_token_field in newer and self.fresh()

    def ask(self) -> None:
        grant, credentials = self.grant, self.conn.credentials
        url = str(credentials.get(grant.token_url_field) or grant.default_token_url)
        form = {
            "grant_type": "refresh_token",
            "client_id": str(credentials.get(grant.client_id_field) or ""),
            "client_secret": str(credentials.get(grant.client_secret_field) or self.instance_secret or ""),
            "refresh_token": str(credentials.get(grant.refresh_token_field) or ""),
        }
        asked = time.time()
        response = http.request("POST", url, data=form, headers={"Accept": "application/json"})
        if response.status_code >= 400:
            raise self.refused(response, url)
        body = http.answer_json(response, url, self.speaker)
        token = body.get("access_token") if isinstance(body, dict) else None
        if not isinstance(token, str) or not token:
            raise SourceError(f"{self.speaker}'s token endpoint answered no access token", retry=False)
        lifetime = expires_in(body.get("expires_in")) or grant.lifetime
        changes = {grant.access_token_field: token, grant.expires_field: expiry_text(asked + lifetime)}
        rotated = body.get("refresh_token")
        if isinstance(rotated, str) and rotated and rotated != form["refresh_token"]:
            changes[grant.refresh_token_field] = rotated  # the old one may stop working now
        # Stored before it is used: a token sent but never kept would be asked for again by
        # every run, and a rotated refresh token lost would end the connection.
        self.conn.save_credentials(changes)
        credentials.update(changes)

    def secret_fields(self) -> tuple[str, ...]:
        grant = self.grant
        return (grant.client_secret_field, grant.refresh_token_field, grant.access_token_field)

    def secrets(self) -> list[str]:
        credentials = self.conn.credentials
        return [str(credentials.get(name) or "") for name in self.secret_fields()] + [
            self.instance_secret or ""
        ]

    def refused(self, response: httpx.Response, url: str) -> SourceError:
        status = response.status_code
        error, description = _error_of(response)
        said = secrets.scrub(
            f"{error}: {description}" if description else error or f"HTTP {status}",
            self.secrets(),
        )
        if error in ("invalid_grant", "invalid_client", "unauthorized_client"):
            # The refresh token was revoked or expired, or the client was: only a person
            # connecting again can give a new one.
            return SourceError(
                f"{self.speaker} refused the refresh token ({said}); reconnect {self.provider}",
                retry=False,
                reconnect=True,
            )
        return SourceError(
            f"{self.speaker}'s token endpoint {http.shown(url)} answered HTTP {status} ({said})",
            retry=http.may_pass(status),
        )
