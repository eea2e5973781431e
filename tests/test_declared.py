"""The declared-source engine with a declaration made up here, against the fixture GitHub's
GraphQL API: a stream is its declaration, whatever the provider."""

from __future__ import annotations

import pytest

from hookstream_ui.sources import Connection, SourceError
from hookstream_ui.sources.base import ReadContext
from hookstream_ui.sources.declared import Declared, Stream
from hookstream_ui.sources.paging import GraphQLCursor
from tests.github_fixture import GITHUB, GITHUB_TOKEN, GRAPHQL

ISSUES = """query($owner: String!, $name: String!, $first: Int!, $after: String) {
  repository(owner: $owner, name: $name) {
    issues(first: $first, after: $after) { nodes { id number title } pageInfo { hasNextPage endCursor } }
  }
}"""


class GraphIssues(Declared):
    """Not registered: a declaration for this test alone."""

    short_name, name, description = "test_graph_issues", "Graph issues", "A repository's issues by GraphQL."
    speaker = "GitHub"
    streams = (
        Stream(
            "issues",
            "",
            records_path="$.data.repository.issues.nodes",
            paging=GraphQLCursor(
                ISSUES,
                "$.data.repository.issues.pageInfo",
                variables=(("owner", "acme"), ("name", "widgets"), ("first", 40)),
            ),
        ),
    )

    def options(self, credentials: dict) -> dict:
        return {"headers": {"Authorization": f"Bearer {credentials['token']}"}}


def read_all(base: str, token: str = GITHUB_TOKEN) -> list:
    conn = Connection("src_test", {"token": token, "base_url": base + GRAPHQL}, {})
    batches = GraphIssues().read(conn, "issues", None, {}, True, ReadContext())
    return [item.data for batch in batches for item in batch.items]


def test_a_graphql_stream_reads_every_page_by_its_cursor(ctx, http_fixture):
    full = GITHUB.repo("widgets", issues=95)
    issues = read_all(http_fixture.base)
    assert [i["number"] for i in issues] == [i["number"] for i in GITHUB.issues[full]]
    assert [r["query"]["after"] for r in GITHUB.requests] == [None, "cursor:40", "cursor:80"]


def test_graphql_errors_and_refused_tokens_are_said(ctx, http_fixture):
    with pytest.raises(SourceError, match="Could not resolve to a Repository") as missing:
        read_all(http_fixture.base)  # no repository seeded
    assert missing.value.retry is False
    GITHUB.repo("widgets", issues=1)
    with pytest.raises(SourceError) as refused:
        read_all(http_fixture.base, token="wrong")
    assert (str(refused.value), refused.value.retry) == ("GitHub rejected the credentials (HTTP 401)", False)
