"""Salesforce's REST API, declared: any object read by SOQL, changes by SystemModstamp,
deletions from the recycle bin, with an OAuth access token renewed from a refresh token."""

from __future__ import annotations

import re
from datetime import datetime
from types import MappingProxyType

import httpx

from ..values.records import parse_time
from . import http, oauth_app
from .base import Batches, Connection, ReadContext, SourceError, register
from .calls import Api
from .declared import Declared, Stream, read_pages, since_text
from .fields import Field
from .oauth import RefreshGrant
from .oauth_app import AuthorizationCode
from .paging import BodyNextUrl

VERSION = "v59.0"
DATA = f"/services/data/{VERSION}"
LOGIN = "https://login.salesforce.com/services/oauth2/token"
DEFAULT_OBJECTS = "Account, Contact, Opportunity"
# An object's API name: standard (Account) or custom (Invoice__c); nothing that changes SOQL.
OBJECT = re.compile(r"[A-Za-z][A-Za-z0-9_]{0,79}")
OBJECTS = re.compile(r"^\s*[A-Za-z][A-Za-z0-9_]*(\s*,\s*[A-Za-z][A-Za-z0-9_]*)*\s*$")
# Fields left out of a query: a base64 field makes Salesforce answer one record per page,
# and a compound field (an address, a location) repeats the fields it is made of.
UNREAD_TYPES = frozenset({"base64", "address", "location"})
NEXT_RECORDS = BodyNextUrl("$.nextRecordsUrl")
# The share of the org's daily API requests past which a read stops, to go on after the
# rolling 24 hours give some back: the rest is left to the org's other integrations and people.
USAGE_CEILING = 0.9
USAGE = re.compile(r"api-usage=(\d+)/(\d+)")


def objects_of(config: dict) -> list[str]:
    return [o.strip() for o in str(config.get("objects") or DEFAULT_OBJECTS).split(",") if o.strip()]


def _deleted(record: dict) -> bool:
    return record.get("IsDeleted") is True


def soql(name: str, fields: list[str], after: datetime | None) -> str:
    # From the newest time read, that time included: a query asked again where an expired
    # locator left off reads the records of that very moment it had not reached yet.
    where = f" WHERE SystemModstamp >= {since_text(after)}" if after is not None else ""
    # Names matched by OBJECT and a time formatted here: nothing of anyone's text.
    return f"SELECT {', '.join(fields)} FROM {name}{where} ORDER BY SystemModstamp ASC"  # noqa: S608


def _later(since: object, floor: datetime | None) -> datetime | None:
    at = parse_time(since)
    if at is None or floor is None:
        return at or floor
    return max(at, floor)


@register
class Salesforce(Declared):
    short_name = "salesforce"
    name = "Salesforce"
    description = "Accounts, contacts, opportunities or any other object of a Salesforce org, by SOQL."
    name_example = "Salesforce (acme)"
    auth_methods = ("oauth",)
    labels = ("crm", "api")
    speaker = "Salesforce"
    base_url_field = "instance_url"
    check_path = DATA + "/sobjects"
    # Sessions last two hours unless the org says otherwise; the token endpoint does not say.
    oauth = RefreshGrant(default_token_url=LOGIN, lifetime=7200.0)
    # Salesforce's request limit is counted over a rolling 24 hours: it does not lift within
    # the minutes a worker may wait, so the attempt fails at once and the run retries later.
    limit_pause = 3600.0
    default_rate_limit = MappingProxyType(
        {"allowed_requests": 100, "interval": 60, "max_concurrent_requests": 0}
    )
    auth_fields = (
        Field(
            "instance_url",
            "url",
            "Instance URL",
            required=True,
            placeholder="https://acme.my.salesforce.com",
            description="Your org's My Domain URL: where its API is called, and the only place its "
            "access token is sent.",
        ),
        Field(
            "client_id",
            "string",
            "Client ID",
            required=True,
            description="The consumer key of the connected app the refresh token was issued to.",
        ),
        Field(
            "client_secret",
            "password",
            "Client secret",
            description="The consumer secret of that connected app; not needed for a connection made "
            "with Connect with Salesforce, which uses the instance's app.",
            sent_to=("token_url",),
        ),
        Field(
            "refresh_token",
            "password",
            "Refresh token",
            required=True,
            description="Issued with the refresh_token scope; hookstream obtains access tokens with it.",
            sent_to=("token_url",),
        ),
        Field(
            "token_url",
            "url",
            "Token endpoint",
            default=LOGIN,
            description="For a sandbox: https://test.salesforce.com/services/oauth2/token.",
        ),
        Field(
            "access_token",
            "password",
            "Access token",
            description="Obtained with the refresh token and renewed before it expires: leave it "
            "empty (and empty it when the instance URL changes).",
            sent_to=("instance_url",),
        ),
        Field(
            "access_token_expires",
            "string",
            "Access token expires",
            description="When the access token expires (UTC), set as it is renewed; a token past it, "
            "or without it, is renewed before it is used.",
            max_length=40,
        ),
    )
    config_fields = (
        Field(
            "objects",
            "string",
            "Objects",
            default=DEFAULT_OBJECTS,
            description="API names of the objects offered as streams, comma-separated (custom ones "
            "end in __c); a collection may name any other.",
            max_length=2000,
            rules={"pattern": OBJECTS.pattern},
        ),
    )

    authorization = AuthorizationCode(
        authorize_url="https://login.salesforce.com/services/oauth2/authorize",
        token_url=LOGIN,
        scopes=("api", "refresh_token"),
    )

    def check(self, credentials: dict, config: dict) -> dict[str, str]:
        errors = {}
        if config.get("objects") and not OBJECTS.match(config["objects"]):
            errors["objects"] = "must be object API names separated by commas (Account, Invoice__c)"
        borrowed = oauth_app.instance_secret(self.short_name, self.authorization, credentials)
        if not credentials.get("client_secret") and borrowed is None:
            errors["client_secret"] = (
                "is required (or connect with Salesforce, which uses this instance's app)"  # noqa: S105 (a message, not a secret)
            )
        return errors

    def authorized(self, answer: dict, client: oauth_app.Client) -> dict:
        """Salesforce's answer names the org's instance, where its API is called."""
        instance = answer.get("instance_url")
        if not isinstance(instance, str) or not instance.startswith(("https://", "http://")):
            raise SourceError("Salesforce's token endpoint named no instance URL", retry=False)
        return {"instance_url": instance, **super().authorized(answer, client)}

    def options(self, credentials: dict) -> dict:
        return {
            "headers": {
                "Authorization": f"Bearer {credentials.get('access_token') or ''}",
                "Accept": "application/json",
            }
        }

    def list_streams(self, conn: Connection) -> list[dict]:
        return [{"name": o, "label": o} for o in objects_of(conn.config)]

    def stream(self, name: str | None, config: dict) -> Stream:
        chosen = name or objects_of(config)[0]
        if not OBJECT.fullmatch(chosen):
            raise SourceError(f"{chosen!r} is not a Salesforce object's API name", retry=False)
        # The path and query are the read's own (read): only the name and key are fixed.
        return Stream(chosen, DATA + "/query", primary_key="Id")

    def fields_of(self, api: Api, base: str, name: str) -> list[str]:
        """The object's fields from its describe, as a query may list them."""
        url = f"{base}{DATA}/sobjects/{name}/describe"
        response = api.get(url, {}, name)
        body = api.json(response, url) if response is not None else None
        if not isinstance(body, dict) or not isinstance(body.get("fields"), list):
            raise SourceError(f"Salesforce's describe of {name} lists no fields", retry=False)
        if body.get("queryable") is False:
            raise SourceError(f"Salesforce does not allow {name} to be queried", retry=False)
        fields = [
            f["name"]
            for f in body["fields"]
            if isinstance(f, dict)
            and isinstance(f.get("name"), str)
            and OBJECT.fullmatch(f["name"])
            and f.get("type") not in UNREAD_TYPES
        ]
        if "SystemModstamp" not in fields:
            raise SourceError(f"{name} has no SystemModstamp, so its changes cannot be read", retry=False)
        return fields

    def read(
        self,
        conn: Connection,
        stream: str | None,
        state: dict | None,
        checkpoint: dict,
        full: bool,
        ctx: ReadContext,
    ) -> Batches:
        """A full read queries every record; an incremental one asks queryAll for what changed
        since the newest SystemModstamp read, which holds the records deleted meanwhile too
        (IsDeleted, while they are in the recycle bin): they come as deletions."""
        name = self.stream(stream, conn.config).name
        api, base = self.api(conn, ctx), self.base_url(conn.credentials)
        since = None if full else (state or {}).get("since")
        fields: list[str] = []

        def query(after: str | None) -> dict:
            # Described once per read (a next page's URL holds its query, but a read resumed
            # there may have to ask it again).
            fields[:] = fields or self.fields_of(api, base, name)
            return {"q": soql(name, fields, _later(after, ctx.not_before))}

        declared = Stream(
            name,
            DATA + ("/queryAll" if since else "/query"),
            records_path="$.records",
            primary_key="Id",
            paging=NEXT_RECORDS,
            since_query=query,
            cursor_path="$.SystemModstamp",
            deleted=_deleted,
        )
        yield from read_pages(api, base + declared.path, declared, since, checkpoint, conn.config)

    def pause_after(self, response: httpx.Response) -> float | None:
        """Every answer says how much of the org's daily allocation is used (Sforce-Limit-Info)."""
        usage = USAGE.search(response.headers.get("sforce-limit-info", ""))
        used, allowed = (int(usage[1]), int(usage[2])) if usage else (0, 0)
        return self.limit_pause if allowed and used >= USAGE_CEILING * allowed else None

    def expired(self, response: httpx.Response) -> bool:
        """A nextRecordsUrl lives about 15 minutes: a read resumed later asks its query again."""
        return response.status_code == 400 and "INVALID_QUERY_LOCATOR" in (self.reason(response) or "")

    def limit_said(self, response: httpx.Response) -> bool:
        return response.status_code == 403 and "REQUEST_LIMIT_EXCEEDED" in (self.reason(response) or "")

    def reason(self, response: httpx.Response) -> str | None:
        """Salesforce's errors are a list of {errorCode, message}; the first says it."""
        try:
            body = http.json_of(response)
        except ValueError:
            return None
        first = body[0] if isinstance(body, list) and body else body
        if not isinstance(first, dict):
            return None
        code, message = first.get("errorCode"), first.get("message")
        said = [str(part) for part in (code, message) if isinstance(part, str) and part]
        return ": ".join(said) or None
