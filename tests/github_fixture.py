"""GitHub's REST API as documented, served by the fixture HTTP server under /gh/api/v3 (the
path a GitHub Enterprise Server gives it): bearer tokens, `per_page`/`page` with a Link
header, `since`, X-RateLimit-* headers, secondary limits (429 with Retry-After) and
GitHub's error bodies; and a repository's issues through its GraphQL API."""

from __future__ import annotations

import json
import math
import time
import zlib
from urllib.parse import urlencode

GITHUB_TOKEN = "github_pat_canaryGitHubToken42"
PREFIX = "/gh/api/v3"
GRAPHQL = "/gh/api/graphql"
DOCS = "https://docs.github.com/rest"


def stamp(second: int) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(1_767_225_600 + second))  # from 2026-01-01


class GitHubState:
    """What the fixture GitHub holds, and what it was asked."""

    def __init__(self):
        self.reset()

    def reset(self) -> None:
        self.owner = "acme"
        self.repos: dict[str, dict] = {}
        self.issues: dict[str, list[dict]] = {}
        self.pulls: dict[str, list[dict]] = {}
        self.releases: dict[str, list[dict]] = {}
        self.commits: dict[str, dict[str, list[dict]]] = {}  # repo -> branch -> commits
        self.requests: list[dict] = []  # {at, path, query, auth, accept, version}
        self.budget: int | None = None  # requests left in the window; None: unlimited
        self.window_seconds = 1.0
        self.window_ends = 0.0
        self.left = 0
        self.refused = 0  # requests answered 403 for a spent budget
        self.too_fast: list[float] = []  # Retry-After of the next requests' 429s, one each
        self.fail_next: list[int] = []  # statuses of the next answers, one each (GitHub having a bad minute)
        self.broken: set[str] = set()  # paths that answer 502 while listed
        self.issues_off: set[str] = set()  # repositories with issues turned off

    def repo(self, name: str, issues: int = 0, pulls: int = 0, releases: int = 0, commits: int = 0):
        full = f"{self.owner}/{name}"
        n = len(self.repos) + 1
        self.repos[full] = {
            "id": 1000 + n,
            "name": name,
            "full_name": full,
            "owner": {"login": self.owner, "type": "Organization"},
            "private": False,
            "default_branch": "main",
            "updated_at": stamp(n),
        }
        self.issues[full] = [self.issue(full, i, pull=(i % 5 == 0)) for i in range(1, issues + 1)]
        self.pulls[full] = [
            {"id": n * 100_000 + i, "number": i, "state": "open", "title": f"PR {i}", "updated_at": stamp(i)}
            for i in range(1, pulls + 1)
        ]
        self.releases[full] = [
            {"id": n * 10_000 + i, "tag_name": f"v{i}.0", "created_at": stamp(i)}
            for i in range(1, releases + 1)
        ]
        self.commits[full] = {
            "main": [self.commit(f"{n:02d}main{i:04d}", i) for i in range(1, commits + 1)],
            "dev": [self.commit(f"{n:02d}dev{i:05d}", i) for i in range(1, 4)],
        }
        return full

    def issue(self, full: str, number: int, pull: bool = False, second: int | None = None) -> dict:
        issue = {
            "id": zlib.crc32(f"{full}#{number}".encode()),
            "number": number,
            "title": f"Issue {number}",
            "state": "open",
            "updated_at": stamp(second if second is not None else number),
        }
        if pull:
            issue["pull_request"] = {"url": f"https://api.github.com/repos/{full}/pulls/{number}"}
        return issue

    @staticmethod
    def commit(sha: str, second: int) -> dict:
        return {
            "sha": sha.ljust(40, "0"),
            "commit": {"message": f"commit {second}", "committer": {"date": stamp(second)}},
        }


GITHUB = GitHubState()


def _page(handler, items: list, query: dict, path: str) -> None:
    """GitHub's paging: `per_page` (30 by default, at most 100) and `page`, with a Link
    header of absolute URLs for next, last, first and prev."""
    per_page = min(int(query.get("per_page", ["30"])[0]), 100)
    page = int(query.get("page", ["1"])[0])
    last = max(1, math.ceil(len(items) / per_page))
    own = {k: v[0] for k, v in query.items() if k != "page"}
    base = f"http://{handler.headers['Host']}{path}"

    def link(n: int, rel: str) -> str:
        return f'<{base}?{urlencode({**own, "page": n})}>; rel="{rel}"'

    links = []
    if page < last:
        links += [link(page + 1, "next"), link(last, "last")]
    if page > 1:
        links += [link(1, "first"), link(page - 1, "prev")]
    handler._github_json(200, items[(page - 1) * per_page : page * per_page], links)


def _changed(items: list, query: dict, at) -> list:
    if "since" in query:
        items = [i for i in items if at(i) >= query["since"][0]]
    if query.get("sort", [""])[0] == "updated":
        items = sorted(items, key=at, reverse=query.get("direction", ["desc"])[0] == "desc")
    return items


def _limited(handler) -> bool:
    """Answers the test asked for; the secondary limit (429 with Retry-After), and the
    primary one: a spent budget answers 403 until its window ends."""
    state = GITHUB
    if state.fail_next:
        handler._github_json(state.fail_next.pop(0), {"message": "Server Error"})
        return True
    if state.too_fast:
        handler._github_json(429, {"message": "You have exceeded a secondary rate limit.", "documentation_url": DOCS},
                             extra={"Retry-After": str(state.too_fast.pop(0))})  # fmt: skip
        return True
    if state.budget is None:
        return False
    now = time.time()
    if now >= state.window_ends:
        state.window_ends, state.left = now + state.window_seconds, state.budget
    if state.left <= 0:
        state.refused += 1
        handler._github_json(403, {"message": "API rate limit exceeded for user.", "documentation_url": DOCS})
        return True
    state.left -= 1
    return False


def github_get(handler, path: str, query: dict) -> None:
    state = GITHUB
    auth = handler.headers.get("Authorization", "")
    state.requests.append(
        {
            "at": time.time(),
            "path": path,
            "query": {k: v[0] for k, v in query.items()},
            "auth": auth,
            "accept": handler.headers.get("Accept"),
            "version": handler.headers.get("X-GitHub-Api-Version"),
        }
    )
    if auth != f"Bearer {GITHUB_TOKEN}":
        return handler._github_json(401, {"message": "Bad credentials", "documentation_url": DOCS})
    if path in state.broken:
        return handler._github_json(502, {"message": "Server Error"})
    if _limited(handler):
        return None
    rest = path.removeprefix(PREFIX)
    parts = rest.strip("/").split("/")
    if rest == "/user":
        return handler._github_json(200, {"login": "octocat", "id": 1, "type": "User"})
    if rest in ("/user/repos", f"/orgs/{state.owner}/repos", f"/users/{state.owner}/repos"):
        return _page(handler, list(state.repos.values()), query, path)
    if len(parts) == 4 and parts[0] == "repos" and f"{parts[1]}/{parts[2]}" in state.repos:
        return _repo_list(handler, f"{parts[1]}/{parts[2]}", parts[3], query, path)
    return handler._github_json(404, {"message": "Not Found", "documentation_url": DOCS})


def _repo_list(handler, full: str, what: str, query: dict, path: str) -> None:
    state = GITHUB
    if what == "issues" and full in state.issues_off:
        return handler._github_json(
            410, {"message": "Issues are disabled for this repo", "documentation_url": DOCS}
        )
    if what == "issues":
        return _page(handler, _changed(state.issues[full], query, lambda i: i["updated_at"]), query, path)
    if what == "pulls":
        return _page(handler, _changed(state.pulls[full], query, lambda i: i["updated_at"]), query, path)
    if what == "releases":
        return _page(handler, state.releases[full], query, path)
    if what == "commits":
        branch = query.get("sha", ["main"])[0]
        if branch not in state.commits[full]:
            return handler._github_json(
                404, {"message": "No commit found for SHA: " + branch, "documentation_url": DOCS}
            )
        commits = _changed(state.commits[full][branch], query, lambda c: c["commit"]["committer"]["date"])
        return _page(handler, commits, query, path)
    return handler._github_json(404, {"message": "Not Found", "documentation_url": DOCS})


def github_json(
    handler, status: int, body, links: list[str] | None = None, extra: dict | None = None
) -> None:
    """An answer with GitHub's headers: the budget left and when it comes back."""
    data = json.dumps(body).encode()
    handler.send_response(status)
    handler.send_header("Content-Type", "application/json; charset=utf-8")
    handler.send_header("Content-Length", str(len(data)))
    if GITHUB.budget is not None:
        handler.send_header("X-RateLimit-Limit", str(GITHUB.budget))
        handler.send_header("X-RateLimit-Remaining", str(max(GITHUB.left, 0)))
        handler.send_header("X-RateLimit-Reset", str(math.ceil(GITHUB.window_ends)))
    if links:
        handler.send_header("Link", ", ".join(links))
    for name, value in (extra or {}).items():
        handler.send_header(name, value)
    handler.end_headers()
    handler.wfile.write(data)


def github_graphql(handler, path: str) -> None:
    """POST /api/graphql (where GitHub Enterprise Server serves it): a repository's issues as a
    connection, `first` at most 100 after the `after` cursor, or GraphQL's errors with 200."""
    state = GITHUB
    size = int(handler.headers.get("Content-Length") or 0)
    request = json.loads(handler.rfile.read(size) or b"{}")
    state.requests.append({"at": time.time(), "path": path, "query": request.get("variables") or {}})
    if handler.headers.get("Authorization", "") != f"Bearer {GITHUB_TOKEN}":
        return handler._github_json(401, {"message": "Bad credentials", "documentation_url": DOCS})
    variables = request.get("variables") or {}
    full = f"{variables.get('owner')}/{variables.get('name')}"
    if "issues(" not in request.get("query", "") or full not in state.repos:
        return handler._github_json(
            200,
            {
                "data": {"repository": None},
                "errors": [
                    {
                        "type": "NOT_FOUND",
                        "message": f"Could not resolve to a Repository with the name '{full}'.",
                    }
                ],
            },
        )
    start = int(variables["after"].removeprefix("cursor:")) if variables.get("after") else 0
    first = min(int(variables.get("first") or 100), 100)
    nodes = state.issues[full][start : start + first]
    more = start + first < len(state.issues[full])
    info = {"hasNextPage": more, "endCursor": f"cursor:{start + len(nodes)}" if nodes else None}
    return handler._github_json(200, {"data": {"repository": {"issues": {"nodes": nodes, "pageInfo": info}}}})
