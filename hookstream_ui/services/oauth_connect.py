"""Connecting a source through its provider's OAuth consent screen: the authorization code
grant with PKCE, for the source types that declare one, with the instance's OAuth app.

`start` keeps what the callback needs (the PKCE verifier, who asked, for which project and
source) in Redis, encrypted, for ten minutes, under a random `state` that is also kept in
the asker's session: a callback is taken once, only in the session that started it, and
only for the project it was started in. `finish` trades the code for tokens and saves them
as the connection's credentials, through the same create and update as the connect form."""

from __future__ import annotations

import hmac
from dataclasses import dataclass
from urllib.parse import urlsplit

from flask import session

from ..errors import ValidationFailed
from ..models import SourceConnection
from ..models.principal import Principal
from ..sources import SourceError, SourceType, oauth_app
from . import links, once
from . import sources as svc
from .names import clean_name

PENDING_SECONDS = 600  # a consent screen may take a while: a login, a second factor
SESSION_KEY = "oauth_state"


@dataclass(frozen=True)
class Finished:
    source: SourceConnection
    created: bool


def offered(kind: SourceType) -> bool:
    """Whether the dashboard offers "Connect with <provider>" for this type."""
    return oauth_app.client_of(kind.short_name, kind.authorization) is not None


def authorize_origin(kind: SourceType) -> str | None:
    """The origin of the provider's consent page, which the connect page's form is sent on to."""
    client = oauth_app.client_of(kind.short_name, kind.authorization)
    if client is None:
        return None
    parts = urlsplit(client.authorize_url)
    return f"{parts.scheme}://{parts.netloc}" if parts.scheme in ("http", "https") and parts.netloc else None


def redirect_uri(kind: SourceType) -> str:
    """Where the provider sends the person back: registered with the OAuth app as it is."""
    return links.public(f"/sources/oauth/{kind.short_name}/callback")


def start(principal: Principal, kind: SourceType, name: str, source: SourceConnection | None) -> str:
    """The provider's authorization URL to send the person to."""
    client = oauth_app.client_of(kind.short_name, kind.authorization)
    if client is None or kind.authorization is None:
        raise ValidationFailed(
            {"oauth": f"this instance has no {kind.name} OAuth app; enter the credentials instead"}
        )
    if source is None:
        name = clean_name(name, "name", 1, svc.NAME_MAX)
    verifier = oauth_app.verifier()
    pending = {
        "kind": kind.short_name,
        "name": name,
        "source_id": source.id if source is not None else None,
        "org_id": principal.org.id,
        "env_id": principal.env.id,
        "user_id": principal.user_id,
        "verifier": verifier,
    }
    state = once.hold("oauth", pending, ttl=PENDING_SECONDS)
    if state is None:
        raise ValidationFailed({"oauth": "cannot start the connection now (the queue is down); try again"})
    session[SESSION_KEY] = state
    return oauth_app.authorization_url(client, kind.authorization, redirect_uri(kind), state, verifier)


def _pending(principal: Principal, kind: SourceType, state: str) -> dict:
    started = session.pop(SESSION_KEY, None)
    if not state or not isinstance(started, str) or not hmac.compare_digest(started, state):
        raise ValidationFailed({"state": "does not match a connection started here; connect again"})
    pending = once.take("oauth", state)
    if pending is None:
        raise ValidationFailed({"state": "has expired or was used already; connect again"})
    same = (pending["kind"], pending["org_id"], pending["env_id"], pending["user_id"]) == (
        kind.short_name,
        principal.org.id,
        principal.env.id,
        principal.user_id,
    )
    if not same:
        raise ValidationFailed({"state": "was started for another project or source type; connect again"})
    return pending


def finish(principal: Principal, kind: SourceType, args: dict) -> Finished:
    """The callback: check `state`, trade the code, save the credentials."""
    pending = _pending(principal, kind, str(args.get("state") or ""))
    if args.get("error"):
        said = str(args.get("error_description") or args["error"])[:200]
        raise ValidationFailed({"oauth": f"{kind.name} did not authorize the connection: {said}"})
    client = oauth_app.client_of(kind.short_name, kind.authorization)
    if client is None or not args.get("code"):
        raise ValidationFailed({"oauth": f"{kind.name} sent no authorization code; connect again"})
    try:
        answer = oauth_app.exchange(
            client, str(args["code"]), redirect_uri(kind), pending["verifier"], kind.name
        )
        credentials = kind.authorized(answer, client)
    except SourceError as exc:
        raise ValidationFailed({"oauth": str(exc)}) from None
    if pending["source_id"]:
        source = svc.get_source_or_404(principal, pending["source_id"])
        svc.update_source(principal, source, credentials=credentials)
        return Finished(source, created=False)
    payload = {"sourceShortName": kind.short_name, "name": pending["name"], "credentials": credentials}
    return Finished(svc.create_source(principal, payload), created=True)
