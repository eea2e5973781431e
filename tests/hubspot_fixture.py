"""HubSpot's CRM API (v3) as documented, served by the fixture HTTP server under /hs: bearer
tokens, object lists paged by `after` (`paging.next.after`), `properties` and `archived`,
the search API (filterGroups, sorts, its 10,000-result limit), the X-HubSpot-RateLimit-*
headers, 429 with a policy body, and HubSpot's error bodies."""

from __future__ import annotations

import json
import time
import uuid
from datetime import UTC, datetime

HUBSPOT_TOKEN = "pat-na1-canaryHubSpotToken42"
PREFIX = "/hs"
OBJECTS = {"contacts": "lastmodifieddate", "companies": "hs_lastmodifieddate", "deals": "hs_lastmodifieddate",
           "tickets": "hs_lastmodifieddate"}  # fmt: skip
EPOCH = 1_767_225_600  # 2026-01-01


def stamp(second: float) -> str:
    """A time as HubSpot writes them: ISO 8601 in UTC, with milliseconds."""
    return datetime.fromtimestamp(EPOCH + second, UTC).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"


def _epoch_ms(text: str) -> int:
    return int(datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp() * 1000)


class HubSpotState:
    """What the fixture HubSpot holds, and what it was asked."""

    def __init__(self):
        self.reset()

    def reset(self) -> None:
        self.live: dict[str, dict[str, dict]] = {o: {} for o in OBJECTS}  # object -> id -> record
        self.archived: dict[str, dict[str, dict]] = {o: {} for o in OBJECTS}
        self.requests: list[dict] = []  # {at, method, path, query, body, auth}
        self.budget = 1000  # requests per window, as a private app's ten-second window
        self.window_ms = 10_000
        self.window_ends = 0.0
        self.left = 0
        self.refused = 0  # requests answered 429 for a spent window
        self.too_fast: list[int] = []  # Retry-After of the next answers' 429s, one each
        self.search_cap = 10_000
        self.archived_broken = False  # the archived lists answer 502 (HubSpot having a bad minute)
        self.next_id = 100
        # The authorization server (HubSpot's OAuth 2.0, with PKCE): issued codes, refresh
        # tokens and access tokens (token -> epoch it expires), and the forms posted.
        self.codes: dict[str, dict] = {}
        self.refresh_tokens: set[str] = set()
        self.access_tokens: dict[str, float] = {}
        self.token_lifetime = 1800
        self.token_requests: list[dict] = []

    def add(self, plural: str, count: int, second: float = 0) -> list[dict]:
        made = []
        for _ in range(count):
            self.next_id += 1
            oid = str(self.next_id)
            record = {
                "id": oid,
                "properties": {
                    "hs_object_id": oid,
                    "createdate": stamp(second),
                    OBJECTS[plural]: stamp(second),
                },
                "createdAt": stamp(second),
                "updatedAt": stamp(second),
                "archived": False,
            }
            record["properties"].update(self._named(plural, oid))
            self.live[plural][oid] = record
            made.append(record)
        return made

    @staticmethod
    def _named(plural: str, oid: str) -> dict:
        if plural == "contacts":
            return {"email": f"person{oid}@example.com", "firstname": "Person", "lastname": oid}
        if plural == "companies":
            return {"name": f"Company {oid}", "domain": f"c{oid}.example.com"}
        if plural == "deals":
            return {"dealname": f"Deal {oid}", "amount": "100"}
        return {"subject": f"Ticket {oid}"}

    def change(self, plural: str, oid: str, second: float, **properties) -> None:
        record = self.live[plural][oid]
        record["properties"].update(properties, **{OBJECTS[plural]: stamp(second)})
        record["updatedAt"] = stamp(second)

    def archive(self, plural: str, oid: str, second: float) -> None:
        record = self.live[plural].pop(oid)
        self.archived[plural][oid] = {
            **record,
            "archived": True,
            "archivedAt": stamp(second),
            "updatedAt": stamp(second),
        }


HUBSPOT = HubSpotState()


CLIENT_ID = "hs-client-canary-id"
CLIENT_SECRET = "hs-client-canary-secret-Zq81"


def _oauth(handler, method: str, path: str, query: dict) -> None:
    """/oauth/authorize (the consent page, and its Allow), /oauth/v1/token (both grants)."""
    import base64
    import hashlib
    import secrets
    from urllib.parse import parse_qs, urlencode

    state, one = HUBSPOT, {k: v[0] for k, v in query.items()}
    if method == "GET" and path == "/oauth/authorize":
        allow = "/hs/oauth/authorize/allow?" + urlencode(one)
        page = f'<html><body><h1>Allow hookstream?</h1><a id="allow" href="{allow}">Allow</a></body></html>'
        data = page.encode()
        handler.send_response(200)
        handler.send_header("Content-Type", "text/html")
        handler.send_header("Content-Length", str(len(data)))
        handler.end_headers()
        handler.wfile.write(data)
        return None
    if method == "GET" and path == "/oauth/authorize/allow":
        code = "code-" + secrets.token_urlsafe(12)
        state.codes[code] = one
        handler.send_response(302)
        handler.send_header(
            "Location", one["redirect_uri"] + "?" + urlencode({"code": code, "state": one["state"]})
        )
        handler.send_header("Content-Length", "0")
        handler.end_headers()
        return None
    size = int(handler.headers.get("Content-Length") or 0)
    form = {k: v[0] for k, v in parse_qs(handler.rfile.read(size).decode()).items()}
    state.token_requests.append(form)
    if (form.get("client_id"), form.get("client_secret")) != (CLIENT_ID, CLIENT_SECRET):
        return _answer(handler, 400, {"status": "BAD_CLIENT_ID", "message": "missing or unknown client id",
                                      "error": "invalid_client"})  # fmt: skip
    if form.get("grant_type") == "authorization_code":
        asked = state.codes.pop(form.get("code", ""), None)
        verifier = form.get("code_verifier", "")
        digest = base64.urlsafe_b64encode(hashlib.sha256(verifier.encode()).digest()).rstrip(b"=").decode()
        if (
            asked is None
            or asked.get("redirect_uri") != form.get("redirect_uri")
            or (asked.get("code_challenge") != digest or asked.get("code_challenge_method") != "S256")
        ):
            return _answer(handler, 400, {"status": "BAD_AUTH_CODE", "message": "code or verifier is wrong",
                                          "error": "invalid_grant"})  # fmt: skip
        refresh = "hs-refresh-" + secrets.token_urlsafe(12)
        state.refresh_tokens.add(refresh)
    elif form.get("grant_type") == "refresh_token":
        refresh = form.get("refresh_token", "")
        if refresh not in state.refresh_tokens:
            return _answer(handler, 400, {"status": "BAD_REFRESH_TOKEN", "message": "missing or unknown refresh token",
                                          "error": "invalid_grant"})  # fmt: skip
    else:
        return _answer(handler, 400, {"status": "BAD_GRANT_TYPE", "error": "unsupported_grant_type"})
    access = "hs-access-" + secrets.token_urlsafe(16)
    state.access_tokens[access] = time.time() + state.token_lifetime
    return _answer(handler, 200, {"token_type": "bearer", "access_token": access, "refresh_token": refresh,
                                  "expires_in": state.token_lifetime})  # fmt: skip


def _authorized(auth: str) -> bool:
    token = auth.removeprefix("Bearer ")
    return auth == f"Bearer {HUBSPOT_TOKEN}" or HUBSPOT.access_tokens.get(token, 0) > time.time()


def _answer(handler, status: int, body, extra: dict | None = None) -> None:
    """An answer with HubSpot's headers: the window's budget, what is left, and its length."""
    data = json.dumps(body).encode()
    handler.send_response(status)
    handler.send_header("Content-Type", "application/json;charset=utf-8")
    handler.send_header("Content-Length", str(len(data)))
    handler.send_header("X-HubSpot-RateLimit-Max", str(HUBSPOT.budget))
    handler.send_header("X-HubSpot-RateLimit-Remaining", str(max(HUBSPOT.left, 0)))
    handler.send_header("X-HubSpot-RateLimit-Interval-Milliseconds", str(HUBSPOT.window_ms))
    for name, value in (extra or {}).items():
        handler.send_header(name, value)
    handler.end_headers()
    handler.wfile.write(data)


def _error(handler, status: int, category: str, message: str, extra: dict | None = None, **more) -> None:
    body = {"status": "error", "message": message, "correlationId": str(uuid.uuid4()), "category": category}
    _answer(handler, status, {**body, **more}, extra)


def _limited(handler) -> bool:
    """429s the test asked for (with Retry-After), and a spent window: 429 until it ends."""
    state = HUBSPOT
    now = time.time()
    if now >= state.window_ends:
        state.window_ends, state.left = now + state.window_ms / 1000, state.budget
    if state.too_fast:
        _error(handler, 429, "RATE_LIMITS", "You have reached your secondly limit.",
               extra={"Retry-After": str(state.too_fast.pop(0))}, errorType="RATE_LIMIT", policyName="SECONDLY")  # fmt: skip
        return True
    if state.left <= 0:
        state.refused += 1
        _error(handler, 429, "RATE_LIMITS", "You have reached your ten_secondly_rolling limit.",
               errorType="RATE_LIMIT", policyName="TEN_SECONDLY_ROLLING")  # fmt: skip
        return True
    state.left -= 1
    return False


def hubspot(handler, method: str, path: str, query: dict) -> None:
    """GET /crm/v3/objects/{object} and POST /crm/v3/objects/{object}/search."""
    state = HUBSPOT
    if path.removeprefix(PREFIX).startswith("/oauth/"):
        return _oauth(handler, method, path.removeprefix(PREFIX), query)
    size = int(handler.headers.get("Content-Length") or 0)
    body = json.loads(handler.rfile.read(size) or b"{}") if method == "POST" else None
    auth = handler.headers.get("Authorization", "")
    state.requests.append({"at": time.time(), "method": method, "path": path.removeprefix(PREFIX),
                           "query": {k: v[0] for k, v in query.items()}, "body": body, "auth": auth})  # fmt: skip
    if not _authorized(auth):
        return _error(handler, 401, "INVALID_AUTHENTICATION",
                      "Authentication credentials not found. This API supports OAuth 2.0 authentication and you "
                      "can find more details at https://developers.hubspot.com/docs/methods/auth/oauth-overview")  # fmt: skip
    if _limited(handler):
        return None
    parts = path.removeprefix(PREFIX).strip("/").split("/")
    if len(parts) < 4 or parts[:3] != ["crm", "v3", "objects"] or parts[3] not in OBJECTS:
        return _error(
            handler, 404, "OBJECT_NOT_FOUND", "Unable to infer object type from: " + "/".join(parts[3:])
        )
    plural = parts[3]
    if method == "GET" and len(parts) == 4:
        return _list(handler, plural, query)
    if method == "POST" and parts[4:] == ["search"]:
        return _search(handler, plural, body or {})
    return _error(handler, 405, "VALIDATION_ERROR", f"{method} is not allowed here")


def _project(record: dict, properties: list[str]) -> dict:
    """A record with the properties asked for (those it has), as HubSpot leaves out the rest."""
    wanted = {k: v for k, v in record["properties"].items() if k in properties or k == "hs_object_id"}
    return {**record, "properties": wanted}


def _list(handler, plural: str, query: dict) -> None:
    """The object list: ordered by id, `limit` at most 100, `after` the id to start at."""
    archived = query.get("archived", ["false"])[0] == "true"
    if archived and HUBSPOT.archived_broken:
        return _error(handler, 502, "INTERNAL_ERROR", "internal error")
    held = HUBSPOT.archived if archived else HUBSPOT.live
    records = sorted(held[plural].values(), key=lambda r: int(r["id"]))
    limit = min(int(query.get("limit", ["10"])[0]), 100)
    after = int(query.get("after", ["0"])[0])
    records = [r for r in records if int(r["id"]) >= after]
    properties = query.get("properties", [""])[0].split(",")
    answer: dict = {"results": [_project(r, properties) for r in records[:limit]]}
    if len(records) > limit:
        following = records[limit]["id"]
        answer["paging"] = {"next": {"after": following, "link": f"?after={following}"}}
    return _answer(handler, 200, answer)


def _matches(record: dict, group: dict) -> bool:
    for f in group.get("filters", []):
        held = record["properties"].get(f["propertyName"])
        if held is None:
            return False
        value, have = int(f["value"]), _epoch_ms(held)
        if not {"GTE": have >= value, "GT": have > value, "LT": have < value, "LTE": have <= value}[
            f["operator"]
        ]:
            return False
    return True


def _search(handler, plural: str, body: dict) -> None:
    """The search API: filterGroups (OR of ANDs), sorts, `limit` at most 200, `after` an offset
    into the results, and no paging past `search_cap` of them."""
    groups = body.get("filterGroups") or [{"filters": []}]
    records = [r for r in HUBSPOT.live[plural].values() if any(_matches(r, g) for g in groups)]
    for sort in body.get("sorts") or []:
        records.sort(key=lambda r, p=sort["propertyName"]: _epoch_ms(r["properties"].get(p) or stamp(0)),
                     reverse=sort.get("direction") == "DESCENDING")  # fmt: skip
    limit = min(int(body.get("limit") or 10), 200)
    after = int(body.get("after") or 0)
    if after + limit > HUBSPOT.search_cap:
        return _error(handler, 400, "VALIDATION_ERROR",
                      f"There was a problem with the request. Only {HUBSPOT.search_cap} results can be paged.")  # fmt: skip
    properties = body.get("properties") or []
    answer: dict = {
        "total": len(records),
        "results": [_project(r, properties) for r in records[after : after + limit]],
    }
    if after + limit < len(records):
        answer["paging"] = {"next": {"after": str(after + limit)}}
    return _answer(handler, 200, answer)
