"""GitHub's REST API (github.com or GitHub Enterprise Server), declared."""

from __future__ import annotations

import re
from types import MappingProxyType
from urllib.parse import quote

import httpx

from . import http
from .base import register
from .declared import Declared, Parent, Stream
from .fields import Field
from .paging import LinkHeader

# What GitHub allows in an account or repository name (and nothing that changes a path).
NAME = re.compile(r"[A-Za-z0-9_.-]{1,100}")
PAGE = MappingProxyType({"per_page": 100})  # GitHub's largest page
CHANGED_FIRST = MappingProxyType({**PAGE, "state": "all", "sort": "updated", "direction": "asc"})

REPOSITORIES = Stream(
    "repositories", "{repos_path}", label="repositories", paging=LinkHeader(), params=PAGE,
    cursor_path="$.updated_at",
)  # fmt: skip
OF_EACH_REPOSITORY = Parent(REPOSITORIES, key="$.full_name", into="repo")


def _flag_pull_request(issue: dict) -> dict:
    # GitHub's issues list holds pull requests too, told apart only by their `pull_request` key.
    return {**issue, "is_pull_request": "pull_request" in issue}


@register
class GitHub(Declared):
    short_name = "github"
    name = "GitHub"
    description = (
        "Repositories, issues, pull requests, releases and commits from GitHub or GitHub Enterprise."
    )
    name_example = "GitHub (acme)"
    auth_methods = ("token",)
    labels = ("developer", "api")
    speaker = "GitHub"
    default_base_url = "https://api.github.com"
    check_path = "/user"
    check_name_path = "$.login"
    # Other sync services call the token `secret`.
    credential_aliases = MappingProxyType({"secret": "token"})
    # Within GitHub's 5,000 requests an hour per token, and under its secondary limit.
    default_rate_limit = MappingProxyType(
        {"allowed_requests": 80, "interval": 60, "max_concurrent_requests": 0}
    )
    auth_fields = (
        Field(
            "token",
            "password",
            "Access token",
            required=True,
            placeholder="github_pat_… or ghp_…",
            description="A fine-grained or classic personal access token with read access to the "
            "repositories (contents, issues, pull requests, metadata).",
            sent_to=("base_url",),
        ),
        Field(
            "base_url",
            "url",
            "API base URL",
            default="https://api.github.com",
            description="For GitHub Enterprise Server: https://HOST/api/v3.",
        ),
    )
    config_fields = (
        Field(
            "owner",
            "string",
            "Owner",
            placeholder="octo-org",
            description="The organization or user whose repositories are read. Empty: every repository "
            "the token can read.",
            max_length=100,
            rules={"pattern": "^" + NAME.pattern + "$"},
        ),
        Field(
            "owner_type",
            "select",
            "Owner is",
            default="organization",
            options=(("organization", "An organization"), ("user", "A user")),
        ),
        Field(
            "repository",
            "string",
            "Repository",
            placeholder="hello-world",
            description="Read issues, pull requests, releases and commits of this repository only. "
            "Empty: of every repository of the owner.",
            max_length=100,
            rules={"pattern": "^" + NAME.pattern + "$"},
        ),
        Field(
            "branch",
            "string",
            "Branch",
            placeholder="main",
            description="Whose commits are read. Empty: the repository's default branch.",
            max_length=250,
        ),
    )
    streams = (
        REPOSITORIES,
        Stream(
            "issues", "/repos/{repo}/issues", paging=LinkHeader(), params=CHANGED_FIRST, since_param="since",
            cursor_path="$.updated_at", parent=OF_EACH_REPOSITORY, shape=_flag_pull_request,
        ),
        # The pulls list has no `since`: every read lists them all.
        Stream(
            "pull_requests", "/repos/{repo}/pulls", label="pull requests", paging=LinkHeader(),
            params=CHANGED_FIRST, cursor_path="$.updated_at", parent=OF_EACH_REPOSITORY,
        ),
        Stream(
            "releases", "/repos/{repo}/releases", paging=LinkHeader(), params=PAGE,
            cursor_path="$.created_at", parent=OF_EACH_REPOSITORY,
        ),
        Stream(
            "commits", "/repos/{repo}/commits", primary_key="sha", paging=LinkHeader(), params=PAGE,
            config_params=MappingProxyType({"sha": "branch"}), since_param="since",
            cursor_path="$.commit.committer.date", parent=OF_EACH_REPOSITORY,
        ),
    )  # fmt: skip

    def check(self, credentials: dict, config: dict) -> dict[str, str]:
        errors = {
            name: "must be a GitHub name: letters, digits, - _ and ."
            for name in ("owner", "repository")
            if config.get(name) and not NAME.fullmatch(config[name])
        }
        if config.get("repository") and not config.get("owner"):
            errors["owner"] = "is required to read one repository"
        return errors

    def options(self, credentials: dict) -> dict:
        return {
            "headers": {
                "Authorization": f"Bearer {credentials.get('token', '')}",
                "Accept": "application/vnd.github+json",
                "X-GitHub-Api-Version": "2022-11-28",
            }
        }

    def variables(self, config: dict) -> dict:
        owner, repository = config.get("owner") or "", config.get("repository") or ""
        found = {"repos_path": "/user/repos"}
        if owner:
            kind = "users" if config.get("owner_type") == "user" else "orgs"
            found["repos_path"] = f"/{kind}/{quote(owner, safe='')}/repos"
        if owner and repository:
            found["repo"] = f"{quote(owner, safe='')}/{quote(repository, safe='')}"
        return found

    def limit_said(self, response: httpx.Response) -> bool:
        # A secondary limit may come as a bare 403 whose message says so, to be waited out.
        return response.status_code == 403 and "rate limit" in (self.reason(response) or "").lower()

    def reason(self, response: httpx.Response) -> str | None:
        try:
            message = http.json_of(response).get("message")
        except (ValueError, AttributeError):
            return None
        return message if isinstance(message, str) else None
