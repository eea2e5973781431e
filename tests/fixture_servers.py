"""Real servers for source tests: a password-protected PostgreSQL on TCP (pgserver's own
binaries) and an HTTP server on 127.0.0.1 that speaks a paginated REST API and Stripe's
documented list and error formats, and GitHub's REST API (tests/github_fixture.py)."""

from __future__ import annotations

import contextlib
import fnmatch
import json
import os
import shutil
import socket
import struct
import subprocess
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import ClassVar
from urllib.parse import parse_qs, urlsplit

from tests import hubspot_fixture, shopify_fixture
from tests.github_fixture import GRAPHQL as GITHUB_GRAPHQL
from tests.github_fixture import PREFIX as GITHUB_PREFIX
from tests.github_fixture import github_get, github_graphql, github_json
from tests.salesforce_fixture import TOKEN_PATH as SALESFORCE_TOKEN
from tests.salesforce_fixture import salesforce_get, salesforce_token

PG_USER, PG_PASSWORD = "hookstream", "pg-canary-Secret-42"
REST_TOKEN = "rest-canary-Token-42"
STRIPE_KEY = "sk_test_canaryStripeKey42"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


# Logical replication, for the change feed's tests (pgoutput is built in).
LOGICAL = "-c wal_level=logical -c max_replication_slots=40 -c max_wal_senders=10"


class PostgresSource:
    def __init__(self, root: Path, settings: str = LOGICAL):
        from pgserver._commands import POSTGRES_BIN_PATH
        from pgserver.utils import ensure_prefix_permissions, ensure_user_exists

        self.bin = Path(POSTGRES_BIN_PATH)
        self.user = None
        self.root = root
        root.mkdir(parents=True, exist_ok=True)
        if os.geteuid() == 0:  # postgres refuses to run as root
            ensure_user_exists("pgserver")
            self.user = "pgserver"
            shutil.chown(root, "pgserver")
            ensure_prefix_permissions(root)
            # It also runs the binaries inside this checkout's .venv, which may sit in a folder
            # only root can enter (mktemp -d): open the way, as pgserver does for its data.
            ensure_prefix_permissions(self.bin / "initdb")
        (root / "pw").write_text(PG_PASSWORD)
        if self.user:
            shutil.chown(root / "pw", "pgserver")
        self.run(
            "initdb",
            "-D",
            str(root / "db"),
            "-U",
            PG_USER,
            "--auth-host=scram-sha-256",
            "--auth-local=trust",
            f"--pwfile={root / 'pw'}",
            "-E",
            "UTF8",
        )
        self.port = free_port()
        self.run(
            "pg_ctl",
            "-D",
            str(root / "db"),
            "-l",
            str(root / "log"),
            "-w",
            "-o",
            f"-p {self.port} -k {root} -c listen_addresses=127.0.0.1 {settings}",
            "start",
        )
        self.sql(
            "CREATE TABLE customers (id integer PRIMARY KEY, email text, updated_at timestamptz DEFAULT now());"
            "INSERT INTO customers (id, email) VALUES (1, 'a@example.com'), (2, 'b@example.com');"
            "CREATE SCHEMA sales; CREATE TABLE sales.orders (id integer PRIMARY KEY);"
        )

    def run(self, tool: str, *args: str) -> str:
        return subprocess.run(
            [str(self.bin / tool), *args],
            check=True,
            capture_output=True,
            text=True,
            user=self.user,
            cwd=self.root,
        ).stdout

    def sql(self, statement: str) -> str:
        return self.run(
            "psql",
            "-h",
            str(self.root),
            "-p",
            str(self.port),
            "-U",
            PG_USER,
            "-d",
            "postgres",
            "-v",
            "ON_ERROR_STOP=1",
            "-c",
            statement,
        )

    def credentials(self, **changes) -> dict:
        return {
            "host": "127.0.0.1",
            "port": self.port,
            "database": "postgres",
            "username": PG_USER,
            "password": PG_PASSWORD,
            "sslmode": "disable",
            **changes,
        }

    def restart(self) -> None:
        """As after a crash: stopped at once, started again with the same settings."""
        db, log = str(self.root / "db"), str(self.root / "log")
        self.run("pg_ctl", "-D", db, "-l", log, "-m", "immediate", "-w", "restart")

    def stop(self) -> None:
        subprocess.run(
            [str(self.bin / "pg_ctl"), "-D", str(self.root / "db"), "-m", "immediate", "stop"],
            capture_output=True,
            user=self.user,
            cwd=self.root,
        )


class StripeState:
    """Objects and events the fixture Stripe serves, and the times requests arrived."""

    def __init__(self):
        self.customers: list[dict] = []
        self.events: list[dict] = []
        self.request_times: list[float] = []
        self.paths: list[str] = []
        self.raw_customers: bytes | None = None  # served as the customers list instead, when set
        self.fail_status: int | None = None  # every authorised request answers this, when set

    def seed(self, n: int):
        now = int(time.time())
        self.customers = [
            {
                "id": f"cus_{i:05d}",
                "object": "customer",
                "created": now - n + i,
                "email": f"c{i}@example.com",
                "livemode": False,
            }
            for i in range(n)
        ]
        self.events, self.request_times, self.paths, self.raw_customers = [], [], [], None
        self.fail_status = None

    def event(self, kind: str, obj: dict, created: int | None = None):
        self.events.append(
            {
                "id": f"evt_{len(self.events):05d}",
                "object": "event",
                "type": kind,
                "created": created or int(time.time()) + 1,
                "data": {"object": obj},
            }
        )


STRIPE = StripeState()


def stripe_list(items: list[dict], query: dict) -> dict:
    """Stripe's list semantics: newest first, `limit`, `starting_after` an id on the previous page."""
    ordered = sorted(items, key=lambda o: (o["created"], o["id"]), reverse=True)
    after = query.get("starting_after", [None])[0]
    if after:
        ids = [o["id"] for o in ordered]
        ordered = ordered[ids.index(after) + 1 :] if after in ids else []
    limit = min(int(query.get("limit", ["10"])[0]), 100)
    return {"object": "list", "has_more": len(ordered) > limit, "data": ordered[:limit]}


class _Handler(BaseHTTPRequestHandler):
    def log_message(self, *args):  # keep test output clean
        pass

    def _json(self, status: int, body) -> None:
        self._raw(json.dumps(body).encode(), status)

    def _raw(self, data: bytes, status: int = 200) -> None:
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def do_POST(self):
        url = urlsplit(self.path)
        if url.path.startswith(GITHUB_GRAPHQL):
            return github_graphql(self, url.path)
        if url.path.startswith(hubspot_fixture.PREFIX + "/"):
            return hubspot_fixture.hubspot(self, "POST", url.path, parse_qs(url.query))
        if url.path == SALESFORCE_TOKEN:
            return salesforce_token(self)
        return self._json(405, {"message": "GET only"})

    def do_GET(self):
        url = urlsplit(self.path)
        query = parse_qs(url.query)
        auth = self.headers.get("Authorization", "")
        if url.path.startswith("/v1/"):
            return self._stripe_get(url.path, query, auth)
        if url.path.startswith(GITHUB_PREFIX):
            return github_get(self, url.path, query)
        if url.path.startswith(shopify_fixture.PREFIX + "/"):
            return shopify_fixture.shopify_get(self, url.path, query)
        if url.path.startswith(hubspot_fixture.PREFIX + "/"):
            return hubspot_fixture.hubspot(self, "GET", url.path, query)
        if url.path.startswith("/services/"):
            return salesforce_get(self, url.path, query)
        if url.path in self.OPEN_PATHS:
            return getattr(self, self.OPEN_PATHS[url.path])(query, auth)
        if auth != f"Bearer {REST_TOKEN}":
            return self._json(401, {"message": "bad token"})
        if url.path.startswith("/items/"):
            return self._items(url.path.rsplit("/", 1)[-1], query)
        if url.path == "/nothing":  # how some APIs say "no records"
            return self._json(200, {"data": None, "next": None})
        if url.path == "/deep":  # records nested past any sane depth (and Python's recursion limit)
            return self._raw(b'{"data": [{"id": 1, "x": ' + b"[" * 100_000 + b"]" * 100_000 + b"}]}")
        if url.path == "/orders":
            return self._json(200, {"data": [{"id": 1}, {"id": 2}], "next": None})
        return self._json(404, {"message": "no such path"})

    def _stripe_get(self, path, query, auth):
        if auth != f"Bearer {STRIPE_KEY}":
            given = auth.removeprefix("Bearer ")
            # Stripe quotes the key it got (masked); this one quotes it whole, to prove we scrub.
            return self._json(
                401,
                {
                    "error": {
                        "type": "invalid_request_error",
                        "message": f"Invalid API Key provided: {given}",
                    }
                },
            )
        STRIPE.request_times.append(time.time())
        STRIPE.paths.append(path)
        if STRIPE.fail_status is not None:  # Stripe having a bad minute, in its error format
            return self._json(
                STRIPE.fail_status, {"error": {"type": "api_error", "message": "Something went wrong"}}
            )
        if path == "/v1/customers":
            return self._stripe_customers(query)
        if path == "/v1/events":
            return self._stripe_events(query)
        return self._json(200, {"object": "list", "has_more": False, "data": [], "url": path})

    def _stripe_customers(self, query):
        if STRIPE.raw_customers is not None:
            return self._raw(STRIPE.raw_customers)
        if not STRIPE.customers:  # test-connection calls before any data was seeded
            return self._json(
                200,
                {
                    "object": "list",
                    "has_more": False,
                    "data": [{"id": "cus_0", "object": "customer", "livemode": False}],
                },
            )
        return self._json(200, {**stripe_list(STRIPE.customers, query), "url": "/v1/customers"})

    def _stripe_events(self, query):
        after = int(query.get("created[gt]", ["-1"])[0])
        since = int(query.get("created[gte]", [after + 1])[0])
        # As Stripe documents: `type` is a name or a group with a * wildcard; `types[]`
        # holds exact names only.
        kind, names = query.get("type", ["*"])[0], query.get("types[]")
        chosen = [
            e
            for e in STRIPE.events
            if e["created"] >= since
            and (e["type"] in names if names else fnmatch.fnmatchcase(e["type"], kind))
        ]
        return self._json(200, {**stripe_list(chosen, query), "url": "/v1/events"})

    # Paths any caller may read, each a way a server misbehaves or a probe of what was sent.
    OPEN_PATHS: ClassVar[dict[str, str]] = {
        "/slow": "_slow",
        "/trickle": "_trickle",
        "/echo-auth": "_echo_auth",
        "/redirect": "_redirect",
        "/unavailable": "_unavailable",
        "/latin1": "_latin1",
        "/html": "_html",
    }

    def _slow(self, query, auth):
        time.sleep(7)
        return self._json(200, {"data": []})

    def _trickle(self, query, auth):  # a byte every 0.2 s: each read is quick, the answer is not
        body = b'{"data": []}' + b" " * 20
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        for byte in body:
            self.wfile.write(bytes([byte]))
            self.wfile.flush()
            time.sleep(0.2)

    def _echo_auth(self, query, auth):  # what credentials arrived, for the redirect tests
        return self._json(200, {"authorization": auth, "x_api_key": self.headers.get("X-API-Key")})

    def _redirect(self, query, auth):  # to ?to=, which may be another origin
        self.send_response(302)
        self.send_header("Location", query["to"][0])
        self.send_header("Content-Length", "0")
        self.end_headers()

    def _unavailable(self, query, auth):  # a server having a bad minute
        return self._json(503, {"message": "try again later"})

    def _latin1(self, query, auth):  # JSON-looking bytes that are not UTF-8
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.end_headers()
        self.wfile.write(b'{"data": [{"id": 1, "name": "Jos\xe9"}]}')

    def _html(self, query, auth):
        self.send_response(200)
        self.send_header("Content-Type", "text/html")
        self.end_headers()
        self.wfile.write(b"<html>hello</html>")


REST_ITEMS = [
    {"id": i, "name": f"item {i}", "updated_at": f"2026-01-01T00:00:{i:02d}Z"} for i in range(1, 24)
]


def _rest_items(self, style: str, query: dict):
    """A paginated JSON API in four styles over the same 23 items, with `updated_since`;
    and APIs that page their own way: `page-capped` serves at most 3 per page whatever was
    asked and answers 404 past the last page (as Django REST framework does),
    `page-clamped` ignores the size asked for (4 per page) and serves its last page for any
    page past it, `cursor-stuck` gives its last page's own cursor as the next one."""
    items = REST_ITEMS
    if "updated_since" in query:
        items = [i for i in items if i["updated_at"] > query["updated_since"][0]]
    limit = int(query.get("limit", ["5"])[0])
    if style == "page-capped":
        page, limit = int(query.get("page", ["1"])[0]), min(limit, 3)
        if page > 1 and (page - 1) * limit >= len(items):
            return self._json(404, {"detail": "Invalid page."})
        return self._json(200, {"data": items[(page - 1) * limit : page * limit]})
    if style == "page-clamped":
        last = max(1, -(-len(items) // 4))
        page = min(int(query.get("page", ["1"])[0]), last)
        return self._json(200, {"data": items[(page - 1) * 4 : page * 4]})
    if style == "cursor-stuck":
        start = int(query.get("cursor", ["0"])[0])
        more = start + limit < len(items)
        return self._json(
            200, {"data": items[start : start + limit], "next_cursor": str(start + limit if more else start)}
        )
    if style == "page":
        page = int(query.get("page", ["1"])[0])
        return self._json(200, {"data": items[(page - 1) * limit : page * limit]})
    if style == "offset":
        offset = int(query.get("offset", ["0"])[0])
        return self._json(200, {"results": {"items": items[offset : offset + limit]}})
    start = int(query.get("cursor", query.get("after", ["0"]))[0])
    chunk = items[start : start + limit]
    more = start + limit < len(items)
    if style == "cursor":
        return self._json(200, {"data": chunk, "next_cursor": str(start + limit) if more else None})
    if style == "link-away":  # its next link leads to another origin (the same server, named otherwise)
        return self._json(
            200,
            {
                "data": chunk,
                "links": {
                    "next": f"http://someone:pa55word@localhost:{self.server.server_port}/items/link?after={start + limit}"
                    f"&limit={limit}"
                },
            },
        )
    return self._json(
        200,
        {
            "data": chunk,
            "links": {"next": f"/items/link?after={start + limit}&limit={limit}" if more else None},
        },
    )


_Handler._items = _rest_items
_Handler._github_json = github_json


class _QuietServer(ThreadingHTTPServer):
    daemon_threads = True

    def handle_error(self, request, client_address):
        pass  # clients that time out on /slow on purpose leave broken pipes behind


class HttpFixture:
    def __init__(self):
        self.server = _QuietServer(("127.0.0.1", 0), _Handler)
        self.base = f"http://127.0.0.1:{self.server.server_port}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def stop(self) -> None:
        self.server.shutdown()


class CaptureServer:
    """An attacker's host on 127.0.0.1: records every HTTP request (method, path, headers,
    body) and answers 200 with an empty list; and, on a second port, speaks just enough of
    PostgreSQL's protocol to ask for a cleartext password and record it."""

    def __init__(self):
        self.requests: list[dict] = []
        self.passwords: list[str] = []
        capture = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):
                """Quiet: the test's output stays its own."""

            def _record(self):
                length = int(self.headers.get("Content-Length") or 0)
                capture.requests.append(
                    {
                        "method": self.command,
                        "path": self.path,
                        "headers": dict(self.headers),
                        "body": self.rfile.read(length) if length else b"",
                    }
                )
                data = b'{"object": "list", "data": [], "has_more": false}'
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            do_GET = do_POST = do_PUT = _record

        self.http = _QuietServer(("127.0.0.1", 0), Handler)
        self.base = f"http://127.0.0.1:{self.http.server_port}"
        threading.Thread(target=self.http.serve_forever, daemon=True).start()
        self.pg = socket.socket()
        self.pg.bind(("127.0.0.1", 0))
        self.pg.listen(8)
        self.pg_port = self.pg.getsockname()[1]
        threading.Thread(target=self._serve_pg, daemon=True).start()

    def _serve_pg(self):
        while True:
            try:
                conn, _ = self.pg.accept()
            except OSError:
                return
            with conn, contextlib.suppress(OSError, struct.error):  # a client that left: the next one
                self._ask_password(conn)

    def _ask_password(self, conn) -> None:
        conn.settimeout(5)
        while True:  # SSLRequest / GSSENCRequest first: say no and read on
            length, code = struct.unpack("!ii", conn.recv(8))
            conn.recv(max(0, length - 8))
            if code not in (80877103, 80877104):
                break
            conn.sendall(b"N")
        conn.sendall(b"R" + struct.pack("!ii", 8, 3))  # AuthenticationCleartextPassword
        kind, length = conn.recv(1), struct.unpack("!i", conn.recv(4))[0]
        if kind == b"p":
            self.passwords.append(conn.recv(length - 4).rstrip(b"\0").decode())
        message = b"SFATAL\0C28P01\0Mpassword authentication failed\0\0"
        conn.sendall(b"E" + struct.pack("!i", len(message) + 4) + message)

    def leaked(self, secret: str) -> bool:
        """Whether `secret` reached this host: as sent, or inside a Basic authorization."""
        import base64

        seen = repr(self.requests) + repr(self.passwords)
        for request in self.requests:
            scheme, _, value = request["headers"].get("Authorization", "").partition(" ")
            if scheme.lower() == "basic":
                seen += base64.b64decode(value + "==").decode(errors="replace")
        return secret in seen

    def stop(self) -> None:
        self.http.shutdown()
        self.pg.close()


ROOT = Path(__file__).resolve().parent.parent


@contextlib.contextmanager
def web_server(env: dict, workers: int = 1, threads: int = 2, log: Path | None = None):
    """The app on its production web server (web_server.command), as `make run` starts it;
    yields (process, port) once /healthz answers, and stops it afterwards."""
    import urllib.error
    import urllib.request

    from hookstream_ui.web_server import command

    port = free_port()
    with open(log or os.devnull, "ab") as out:  # the child keeps its own descriptor
        proc = subprocess.Popen(
            command("127.0.0.1", port, workers, threads),
            cwd=ROOT,
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=2)
                break
            except urllib.error.HTTPError:
                break  # it answers
            except OSError:
                assert proc.poll() is None and time.monotonic() < deadline, "the web server did not start"
                time.sleep(0.1)
        yield proc, port
    finally:
        proc.terminate()
        proc.wait(15)
