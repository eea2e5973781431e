"""Salesforce as documented, served by the fixture HTTP server at its root (an instance URL
has no path): the OAuth token endpoint (/services/oauth2/token, the refresh_token grant,
invalid_grant for a revoked refresh token), bearer sessions that expire (401
INVALID_SESSION_ID), describe, SOQL through query and queryAll with nextRecordsUrl pages,
deleted records in the recycle bin (IsDeleted), and its limits: 403 REQUEST_LIMIT_EXCEEDED
and 429 with Retry-After."""

from __future__ import annotations

import json
import re
import secrets
import time
from datetime import UTC, datetime
from urllib.parse import parse_qs

CLIENT_ID = "3MVG9canaryConsumerKey"
CLIENT_SECRET = "sf-canary-ClientSecret-42"
REFRESH_TOKEN = "5Aep861canaryRefreshToken42"
DATA = "/services/data/v59.0"
TOKEN_PATH = "/services/oauth2/token"
SESSION_EXPIRED = [{"message": "Session expired or invalid", "errorCode": "INVALID_SESSION_ID"}]
SOQL = re.compile(
    r"^SELECT (?P<fields>.+?) FROM (?P<object>\w+)(?: WHERE (?P<where>.+?))? ORDER BY SystemModstamp ASC$"
)
# Every object's describe has these; `extra` fields are each object's own.
FIELDS = (
    {"name": "Id", "type": "id"},
    {"name": "IsDeleted", "type": "boolean"},
    {"name": "Name", "type": "string"},
    {"name": "SystemModstamp", "type": "datetime"},
    {"name": "BillingAddress", "type": "address"},  # compound: its parts are fields of their own
    {"name": "BillingCity", "type": "string"},
    {"name": "Logo", "type": "base64"},
)


def stamp(second: int) -> str:
    """A time as Salesforce writes it (from 2026-01-01)."""
    moment = datetime.fromtimestamp(1_767_225_600 + second, UTC)
    return moment.strftime("%Y-%m-%dT%H:%M:%S.000+0000")


def _parse(text: str) -> datetime:
    return datetime.fromisoformat(text.replace("Z", "+00:00"))


class SalesforceState:
    """What the fixture org holds, and what it was asked."""

    def __init__(self):
        self.reset()

    def reset(self) -> None:
        self.objects: dict[str, list[dict]] = {}  # object -> records, deleted ones included
        self.refresh_tokens = {REFRESH_TOKEN}
        self.sessions: dict[str, dict] = {}  # access token -> {"until": epoch, "calls": left}
        self.session_seconds = 7200.0
        self.calls_per_session: int | None = None  # a session ends after this many calls
        self.expires_in: int | None = None  # said in the token answer, when set (Salesforce does not)
        self.rotate = False  # each refresh issues a new refresh token, and the old one stops
        self.token_seconds = 0.0  # how long the token endpoint takes to answer
        self.quote_token = False  # invalid_grant quotes the refresh token it got
        self.reject_sessions = False  # every session is refused (the user lost API access)
        self.batch_size = 2000
        self.limit_exceeded = 0  # the next calls answer 403 REQUEST_LIMIT_EXCEEDED, one each
        self.limit_after: int | None = None  # calls answered before one REQUEST_LIMIT_EXCEEDED
        self.api_used = 0  # the org's calls today before these (Sforce-Limit-Info)
        self.api_allowed = 15000
        self.too_fast: list[float] = []  # Retry-After of the next calls' 429s, one each
        self.requests: list[dict] = []  # {at, path, query, auth}
        self.token_requests: list[dict] = []  # the forms posted
        self.issued: list[str] = []  # access tokens, in order
        self.locators: dict[str, list[dict]] = {}

    def add(self, name: str, n: int, first: int = 1) -> list[dict]:
        records = self.objects.setdefault(name, [])
        for i in range(first, first + n):
            records.append(self.record(name, i, second=i))
        return records

    def record(self, name: str, i: int, second: int) -> dict:
        return {
            "Id": f"{name[:3].upper()}{i:015d}",
            "IsDeleted": False,
            "Name": f"{name} {i}",
            "SystemModstamp": stamp(second),
            "BillingAddress": {"city": "Paris"},
            "BillingCity": "Paris",
            "Logo": "aGVsbG8=",
        }

    def change(self, name: str, record_id: str, second: int, **values) -> None:
        for record in self.objects[name]:
            if record["Id"] == record_id:
                record.update(values, SystemModstamp=stamp(second))

    def expire_locators(self) -> None:
        """Every nextRecordsUrl given so far stops working, as after 15 minutes."""
        self.locators.clear()

    def asked(self, part: str) -> list[dict]:
        return [r for r in self.requests if part in r["path"]]


SALESFORCE = SalesforceState()


def _json(handler, status: int, body, extra: dict | None = None) -> None:
    data = json.dumps(body).encode()
    handler.send_response(status)
    handler.send_header("Content-Type", "application/json;charset=UTF-8")
    handler.send_header("Content-Length", str(len(data)))
    handler.send_header(
        "Sforce-Limit-Info",
        f"api-usage={SALESFORCE.api_used + len(SALESFORCE.requests)}/{SALESFORCE.api_allowed}",
    )
    for name, value in (extra or {}).items():
        handler.send_header(name, value)
    handler.end_headers()
    handler.wfile.write(data)


def salesforce_token(handler) -> None:
    """POST /services/oauth2/token with the refresh_token grant, as a form."""
    state = SALESFORCE
    size = int(handler.headers.get("Content-Length") or 0)
    form = {k: v[0] for k, v in parse_qs(handler.rfile.read(size).decode()).items()}
    state.token_requests.append(form)
    if form.get("grant_type") != "refresh_token":
        return _json(
            handler, 400, {"error": "unsupported_grant_type", "error_description": "grant type not supported"}
        )
    if form.get("client_id") != CLIENT_ID or form.get("client_secret") != CLIENT_SECRET:
        return _json(
            handler, 400, {"error": "invalid_client", "error_description": "invalid client credentials"}
        )
    given = form.get("refresh_token", "")
    time.sleep(state.token_seconds)
    if given not in state.refresh_tokens:
        said = (
            f"expired access/refresh token {given}" if state.quote_token else "expired access/refresh token"
        )
        return _json(handler, 400, {"error": "invalid_grant", "error_description": said})
    token = f"00D5g00000canary!AQ{secrets.token_urlsafe(24)}"
    state.issued.append(token)
    state.sessions[token] = {"until": time.time() + state.session_seconds, "calls": state.calls_per_session}
    base = f"http://{handler.headers['Host']}"
    body = {
        "access_token": token,
        "signature": secrets.token_urlsafe(16),
        "scope": "refresh_token api",
        "instance_url": base,
        "id": f"{base}/id/00D5g00000canary/0055g00000user",
        "token_type": "Bearer",
        "issued_at": str(int(time.time() * 1000)),
    }
    if state.expires_in is not None:
        body["expires_in"] = state.expires_in
    if state.rotate:
        rotated = f"5Aep861rotated{secrets.token_urlsafe(12)}"
        state.refresh_tokens = {rotated}
        body["refresh_token"] = rotated
    return _json(handler, 200, body)


def _session_ok(auth: str) -> bool:
    state = SALESFORCE
    session = state.sessions.get(auth.removeprefix("Bearer ")) if auth.startswith("Bearer ") else None
    if session is None or state.reject_sessions or session["until"] < time.time():
        return False
    if session["calls"] is not None:
        if session["calls"] <= 0:
            return False
        session["calls"] -= 1
    return True


def _limited(handler) -> bool:
    state = SALESFORCE
    if state.limit_after is not None:
        state.limit_after -= 1
        state.limit_exceeded += state.limit_after < 0
        state.limit_after = None if state.limit_after < 0 else state.limit_after
    if state.limit_exceeded:
        state.limit_exceeded -= 1
        _json(
            handler,
            403,
            [{"message": "TotalRequests Limit exceeded.", "errorCode": "REQUEST_LIMIT_EXCEEDED"}],
        )
        return True
    if state.too_fast:
        _json(
            handler,
            429,
            [{"message": "Too many concurrent requests", "errorCode": "REQUEST_LIMIT_EXCEEDED"}],
            extra={"Retry-After": str(state.too_fast.pop(0))},
        )
        return True
    return False


def salesforce_get(handler, path: str, query: dict) -> None:
    state = SALESFORCE
    auth = handler.headers.get("Authorization", "")
    state.requests.append(
        {"at": time.time(), "path": path, "query": {k: v[0] for k, v in query.items()}, "auth": auth}
    )
    if not _session_ok(auth):
        return _json(handler, 401, SESSION_EXPIRED)
    if _limited(handler):
        return None
    rest = path.removeprefix(DATA)
    if rest == "/sobjects":
        return _json(handler, 200, {"encoding": "UTF-8", "maxBatchSize": 200, "sobjects": [
            {"name": name, "label": name, "queryable": True} for name in state.objects
        ]})  # fmt: skip
    found = re.fullmatch(r"/sobjects/(\w+)/describe", rest)
    if found:
        if found.group(1) not in state.objects:
            return _json(
                handler, 404, [{"errorCode": "NOT_FOUND", "message": "The requested resource does not exist"}]
            )
        return _json(handler, 200, {"name": found.group(1), "queryable": True, "fields": list(FIELDS)})
    if rest in ("/query", "/queryAll"):
        return _query(handler, query.get("q", [""])[0], everything=rest == "/queryAll")
    found = re.fullmatch(r"/query(?:All)?/(\w+)-(\d+)", rest)
    if found and found.group(1) in state.locators:
        return _page(handler, found.group(1), int(found.group(2)))
    if found:
        return _json(
            handler, 400, [{"errorCode": "INVALID_QUERY_LOCATOR", "message": "invalid query locator"}]
        )
    return _json(
        handler, 404, [{"errorCode": "NOT_FOUND", "message": "The requested resource does not exist"}]
    )


def _matches(record: dict, where: str | None) -> bool:
    for condition in where.split(" AND ") if where else ():
        after = re.fullmatch(r"SystemModstamp >= (\S+)", condition)
        deleted = re.fullmatch(r"IsDeleted = (true|false)", condition)
        if after and not _parse(record["SystemModstamp"]) >= _parse(after.group(1)):
            return False
        if deleted and record["IsDeleted"] != (deleted.group(1) == "true"):
            return False
    return True


def _query(handler, q: str, everything: bool) -> None:
    """/query leaves out what is in the recycle bin; /queryAll includes it."""
    state = SALESFORCE
    parsed = SOQL.fullmatch(q)
    if parsed is None:
        return _json(
            handler, 400, [{"errorCode": "MALFORMED_QUERY", "message": f"unexpected token in: {q[:60]}"}]
        )
    name, fields = parsed.group("object"), [f.strip() for f in parsed.group("fields").split(",")]
    known = {f["name"] for f in FIELDS}
    unknown = [f for f in fields if f not in known]
    if name not in state.objects or unknown:
        return _json(
            handler,
            400,
            [{"errorCode": "INVALID_FIELD", "message": f"No such column {unknown[:1]} on {name}"}],
        )
    where = parsed.group("where")
    if where and not all(
        re.fullmatch(r"SystemModstamp >= \d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ|IsDeleted = (true|false)", c)
        for c in where.split(" AND ")
    ):
        return _json(handler, 400, [{"errorCode": "MALFORMED_QUERY", "message": f"bad condition: {where}"}])
    chosen = [
        {
            "attributes": {"type": name, "url": f"{DATA}/sobjects/{name}/{r['Id']}"},
            **{f: r[f] for f in fields},
        }
        for r in sorted(state.objects[name], key=lambda r: r["SystemModstamp"])
        if (everything or not r["IsDeleted"]) and _matches(r, where)
    ]
    locator = "01g" + secrets.token_hex(6)
    state.locators[locator] = chosen
    return _page(handler, locator, 0)


def _page(handler, locator: str, start: int) -> None:
    records = SALESFORCE.locators[locator]
    end = start + SALESFORCE.batch_size
    body = {"totalSize": len(records), "done": end >= len(records), "records": records[start:end]}
    if end < len(records):
        body["nextRecordsUrl"] = f"{DATA}/query/{locator}-{end}"
    return _json(handler, 200, body)
