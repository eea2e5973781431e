"""HubSpot's CRM API (v3), declared: contacts, companies, deals and tickets with their
properties. A backfill pages each object's list; an incremental read asks the search API for
what changed since the newest modification seen; the archived list says what was removed.

Authentication is a bearer token: a private app's access token today. An OAuth access token
goes in the same header, so OAuth adds a way to obtain and refresh it, not another read."""

from __future__ import annotations

import re
import time
from functools import partial
from types import MappingProxyType

import httpx

from ..values.records import parse_time
from . import http, oauth_app
from .base import register
from .declared import Declared, Stream
from .fields import Field
from .oauth import RefreshGrant
from .oauth_app import AuthorizationCode
from .paging import BodyCursor, PostedCursor

LIST_PAGE = 100  # the most the object lists give per page
SEARCH_PAGE = 200  # the most the search API gives per page
# The search API pages through at most 10,000 results of one query (past it: HTTP 400).
SEARCH_RESULTS = 10_000
NEXT = "$.paging.next.after"
TOKEN_URL = "https://api.hubapi.com/oauth/v1/token"  # noqa: S105
# The share of an announced budget a read paces itself to: the rest absorbs the clocks'
# drift between HubSpot's window and our spacing.
PACED_SHARE = 0.98
# Property names as HubSpot makes them (lowercase letters, digits, underscores), listed.
PROPERTIES = re.compile(r"^\s*[A-Za-z0-9_]+(\s*,\s*[A-Za-z0-9_]+)*\s*$")

# Each object: its stream, its name in the API's paths, the property holding when it last
# changed (contacts have their own), and the properties read: the ones most syncs want. A
# record always carries its id, createdAt, updatedAt and archived besides.
OBJECTS = (
    ("contact", "contacts", "lastmodifieddate",
     ("email", "firstname", "lastname", "phone", "company", "jobtitle", "lifecyclestage",
      "hs_lead_status", "createdate", "lastmodifieddate")),
    ("company", "companies", "hs_lastmodifieddate",
     ("name", "domain", "industry", "phone", "city", "state", "country", "numberofemployees",
      "annualrevenue", "lifecyclestage", "createdate", "hs_lastmodifieddate")),
    ("deal", "deals", "hs_lastmodifieddate",
     ("dealname", "amount", "dealstage", "pipeline", "closedate", "hubspot_owner_id", "createdate",
      "hs_lastmodifieddate")),
    ("ticket", "tickets", "hs_lastmodifieddate",
     ("subject", "content", "hs_pipeline", "hs_pipeline_stage", "hs_ticket_priority",
      "hubspot_owner_id", "createdate", "hs_lastmodifieddate")),
)  # fmt: skip


def _changed_since(modified: str, properties: tuple[str, ...], since: str | None) -> dict:
    """A search for what changed at or after `since`, oldest change first, so that where the
    read stops is where the next one starts. Changed at the very moment counts: a record
    read twice is the same version, one missed is lost."""
    moment = parse_time(since)
    filters = []
    if moment is not None:  # the API's own unit for times: epoch milliseconds
        filters.append(
            {"propertyName": modified, "operator": "GTE", "value": str(int(moment.timestamp() * 1000))}
        )
    return {
        "filterGroups": [{"filters": filters}] if filters else [],
        "sorts": [{"propertyName": modified, "direction": "ASCENDING"}],
        "properties": list(properties),
        "limit": SEARCH_PAGE,
    }


def _archived(record: dict) -> bool:
    return True  # the archived list holds nothing else


def _crm_object(name: str, plural: str, modified: str, properties: tuple[str, ...]) -> Stream:
    path = f"/crm/v3/objects/{plural}"
    listed = {"limit": LIST_PAGE, "properties": ",".join(properties), "archived": "false"}
    return Stream(
        name, path, label=plural, records_path="$.results", paging=BodyCursor("after", NEXT),
        params=MappingProxyType(listed), cursor_path="$.updatedAt",
        changes=Stream(
            name, path + "/search", label=plural, records_path="$.results",
            paging=PostedCursor("after", NEXT, cap=SEARCH_RESULTS), cursor_path="$.updatedAt",
            payload=partial(_changed_since, modified, properties),
        ),
        removed=Stream(
            name, path, label=f"archived {plural}", records_path="$.results", paging=BodyCursor("after", NEXT),
            params=MappingProxyType({**listed, "archived": "true"}), cursor_path="$.archivedAt", deleted=_archived,
        ),
    )  # fmt: skip


def _number(value: str | None) -> float | None:
    try:
        return float(value) if value is not None else None
    except ValueError:
        return None


@register
class HubSpot(Declared):
    short_name = "hubspot"
    name = "HubSpot"
    description = "Contacts, companies, deals and tickets from HubSpot's CRM, with their properties."
    name_example = "HubSpot (acme)"
    auth_methods = ("token", "oauth")
    labels = ("crm", "api")
    speaker = "HubSpot"
    default_base_url = "https://api.hubapi.com"
    check_path = "/crm/v3/objects/contacts?limit=1&archived=false"
    # Other sync services call the token `secret`.
    credential_aliases = MappingProxyType({"secret": "token"})
    # A private app may make 100 requests per 10 seconds, and the search API takes only 5 a
    # second: 4 a second stays under both.
    default_rate_limit = MappingProxyType(
        {"allowed_requests": 4, "interval": 1, "max_concurrent_requests": 0}
    )
    auth_fields = (
        Field(
            "auth_method",
            "select",
            "Authentication",
            default="token",
            options=(
                ("token", "Private app access token"),
                ("oauth", "OAuth (a public app's refresh token)"),
            ),
            description="Connect with HubSpot (above, when this instance has a HubSpot "
            "app) fills in the OAuth fields itself.",
        ),
        Field(
            "token",
            "password",
            "Access token",
            placeholder="pat-na1-…",
            description="A private app's access token with read scopes for the CRM objects synced "
            "(crm.objects.contacts.read, crm.objects.companies.read, crm.objects.deals.read, tickets).",
            shown_when=("auth_method", ("token",)),
            sent_to=("base_url",),
        ),
        Field(
            "base_url",
            "url",
            "API base URL",
            default="https://api.hubapi.com",
            description="Where HubSpot's API answers; change it only for a proxy in front of it.",
        ),
        Field(
            "client_id",
            "string",
            "Client ID",
            description="The app's client ID, from its Auth settings.",
            shown_when=("auth_method", ("oauth",)),
        ),
        Field(
            "client_secret",
            "password",
            "Client secret",
            description="The app's client secret; not needed for a connection made with Connect with "
            "HubSpot, which uses the instance's app.",
            shown_when=("auth_method", ("oauth",)),
            sent_to=("token_url",),
        ),
        Field(
            "refresh_token",
            "password",
            "Refresh token",
            description="Issued to the app by HubSpot's OAuth flow; hookstream obtains access tokens with it.",
            shown_when=("auth_method", ("oauth",)),
            sent_to=("token_url",),
        ),
        Field(
            "token_url",
            "url",
            "Token endpoint",
            default=TOKEN_URL,
            shown_when=("auth_method", ("oauth",)),
        ),
        Field(
            "access_token",
            "password",
            "OAuth access token",
            description="Obtained with the refresh token and renewed before it expires: leave it empty.",
            shown_when=("auth_method", ("oauth",)),
            sent_to=("base_url",),
        ),
        Field(
            "access_token_expires",
            "string",
            "Access token expires",
            description="When the OAuth access token expires (UTC), set as it is renewed.",
            shown_when=("auth_method", ("oauth",)),
            max_length=40,
        ),
    )
    config_fields = (
        Field(
            "properties",
            "string",
            "More properties",
            placeholder="hs_analytics_source, my_custom_field",
            description="Internal names of properties to read besides the usual ones, custom "
            "properties too, comma-separated; each object reads those it has.",
            max_length=4000,
            rules={"pattern": PROPERTIES.pattern},
        ),
    )
    # HubSpot's OAuth access tokens live 30 minutes; its answers say so (expires_in).
    oauth = RefreshGrant(default_token_url=TOKEN_URL, lifetime=1800.0)
    authorization = AuthorizationCode(
        authorize_url="https://app.hubspot.com/oauth/authorize",
        token_url=TOKEN_URL,
        scopes=("oauth", "crm.objects.contacts.read", "crm.objects.companies.read",
                "crm.objects.deals.read", "tickets"),
    )  # fmt: skip
    streams = tuple(_crm_object(*declared) for declared in OBJECTS)

    def stream(self, name: str | None, config: dict) -> Stream:
        """The object's stream, reading the config's properties too."""
        declared = super().stream(name, config)
        extra = tuple(p.strip() for p in str(config.get("properties") or "").split(",") if p.strip())
        if not extra:
            return declared
        [(_, plural, modified, usual)] = [o for o in OBJECTS if o[0] == declared.name]
        return _crm_object(declared.name, plural, modified, tuple(dict.fromkeys(usual + extra)))

    def options(self, credentials: dict) -> dict:
        # The same header for both: an OAuth access token, or a private app's token.
        token = credentials.get("access_token") or credentials.get("token") or ""
        return {"headers": {"Authorization": f"Bearer {token}"}}

    def check(self, credentials: dict, config: dict) -> dict[str, str]:
        errors = {}
        if config.get("properties") and not PROPERTIES.match(str(config["properties"])):
            errors["properties"] = (
                "must be property names separated by commas (hs_analytics_source, my_field)"
            )
        if credentials.get("auth_method", "token") == "token":
            return errors if credentials.get("token") else {**errors, "token": "is required"}
        errors.update(
            {name: "is required" for name in ("client_id", "refresh_token") if not credentials.get(name)}
        )
        borrowed = oauth_app.instance_secret(self.short_name, self.authorization, credentials)
        if not credentials.get("client_secret") and borrowed is None:
            errors["client_secret"] = "is required (or connect with HubSpot, which uses this instance's app)"  # noqa: S105 (a message, not a secret)
        return errors

    def authorized(self, answer: dict, client: oauth_app.Client) -> dict:
        return {"auth_method": "oauth", **super().authorized(answer, client)}

    def pause_after(self, response: httpx.Response) -> float | None:
        """Calls spaced evenly within every budget HubSpot announces (its window's, and the
        per second one), a little under: a window spent in a burst would be waited out
        whole, since HubSpot does not say when it ends."""
        headers, spacing = response.headers, []
        budget = _number(headers.get("x-hubspot-ratelimit-max"))
        interval = _number(headers.get("x-hubspot-ratelimit-interval-milliseconds"))
        if budget and interval:
            spacing.append(interval / 1000 / budget)
        secondly = _number(headers.get("x-hubspot-ratelimit-secondly"))
        if secondly:
            spacing.append(1 / secondly)
        return max(spacing) / PACED_SHARE if spacing else None

    def spent_until(self, response: httpx.Response) -> float | None:
        """HubSpot says its budget in headers of its own: what is left of the window and how
        long the window is, not when it ends; a spent window is waited out whole. The per
        second budget (its -Secondly headers) comes back within a second."""
        headers, windows = response.headers, []
        if headers.get("x-hubspot-ratelimit-remaining", "").strip() == "0":
            interval = _number(headers.get("x-hubspot-ratelimit-interval-milliseconds"))
            windows.append((interval or 10_000) / 1000)
        if headers.get("x-hubspot-ratelimit-secondly-remaining", "").strip() == "0":
            windows.append(1.0)
        own = time.time() + max(windows) if windows else None
        return max((t for t in (super().spent_until(response), own) if t is not None), default=None)

    def reason(self, response: httpx.Response) -> str | None:
        try:
            message = http.json_of(response).get("message")
        except (ValueError, AttributeError):
            return None
        return message if isinstance(message, str) else None
