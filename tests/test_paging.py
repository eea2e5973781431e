"""Each pagination style of the HTTP engine once, how it decides a read is over, and how an
answer says to wait: on answers built here, no server needed."""

from __future__ import annotations

import time

import httpx
import pytest

from hookstream_ui.sources import SourceError
from hookstream_ui.sources.calls import BACKOFF, Api, wait_asked
from hookstream_ui.sources.declared import Stream
from hookstream_ui.sources.paging import (
    BodyCursor,
    BodyNextUrl,
    Ending,
    LinkHeader,
    Offset,
    Page,
    PageNumber,
    Paging,
)

URL = "https://api.example.com/items"


def answer(status: int = 200, headers: dict | None = None) -> httpx.Response:
    return httpx.Response(status, headers=headers or {}, request=httpx.Request("GET", URL))


def test_one_page_has_no_next():
    style = Paging()
    assert style.request(URL, {"a": 1}, style.first()) == (URL, {"a": 1})
    assert style.following(None, Page(answer(), {}, [1])) is None


def test_page_numbers_count_from_the_first():
    style = PageNumber("page")
    assert style.first() == 1 and style.request(URL, {"limit": 5}, 3) == (URL, {"limit": 5, "page": 3})
    assert style.following(3, Page(answer(), {}, [1, 2])) == 4


def test_offsets_move_by_the_records_read():
    style = Offset("offset")
    assert style.first() == 0 and style.request(URL, {}, 10) == (URL, {"offset": 10})
    assert style.following(10, Page(answer(), {}, [1, 2, 3])) == 13


def test_a_body_cursor_is_sent_back_until_it_repeats_or_runs_out():
    style = BodyCursor("cursor", "$.meta.next")
    assert style.request(URL, {"limit": 5}, None) == (URL, {"limit": 5})  # the first page has none
    assert style.request(URL, {}, "abc") == (URL, {"cursor": "abc"})
    assert style.following(None, Page(answer(), {"meta": {"next": "abc"}}, [1])) == "abc"
    assert style.following("abc", Page(answer(), {"meta": {"next": "abc"}}, [1])) is None
    assert style.following("abc", Page(answer(), {"meta": {"next": ""}}, [1])) is None


def test_a_next_url_in_the_body_is_followed_whole_on_its_own_origin_only():
    style = BodyNextUrl("$.links.next")
    following = style.following(None, Page(answer(), {"links": {"next": "/items?after=5"}}, [1]))
    assert following == "/items?after=5"
    assert style.request(URL, {"limit": 5}, following) == ("https://api.example.com/items?after=5", {})
    with pytest.raises(SourceError, match="another host") as refused:
        style.request(URL, {}, "https://user:secret@elsewhere.example/items?after=5")
    assert "secret" not in str(refused.value) and refused.value.retry is False


def test_the_link_header_names_the_next_page():
    style = LinkHeader()
    link = '<https://api.example.com/items?page=3>; rel="next", <https://api.example.com/items?page=9>; rel="last"'
    assert style.following(None, Page(answer(headers={"Link": link}), [], [1])) == (
        "https://api.example.com/items?page=3"
    )
    last = '<https://api.example.com/items?page=1>; rel="first", <https://api.example.com/items?page=8>; rel="prev"'
    assert style.following("x", Page(answer(headers={"Link": last}), [], [1])) is None
    assert style.request(URL, {"per_page": 100}, None) == (URL, {"per_page": 100})


def test_a_numbered_read_ends_at_a_short_page_or_the_last_page_again():
    ending = Ending(numbered=True)
    assert ending.fresh([1, 2, 3]) == [1, 2, 3] and not ending.finished([1, 2, 3], 2)
    assert ending.fresh([4, 5, 6]) == [4, 5, 6] and not ending.finished([4, 5, 6], 3)
    assert ending.fresh([4, 5, 6]) == []  # served again past the end
    assert Ending(numbered=True).finished([], 2)
    short = Ending(numbered=True)
    short.finished([1, 2, 3], 2)
    assert short.finished([4], 3)
    assert not Ending(numbered=False).finished([1], "next") and Ending(numbered=False).finished([1], None)


def test_stream_items_keep_the_newest_cursor_shape_and_report_deletes():
    stream = Stream(
        "things",
        "/things",
        cursor_path="$.updated_at",
        shape=lambda r: {**r, "seen": True},
        deleted=lambda r: r.get("archived") is True,
    )
    items, high = stream.items(
        [
            {"id": 1, "updated_at": "2026-01-01T00:00:05Z"},
            {"id": 2, "updated_at": "2026-01-01T00:00:09Z", "archived": True},
            {"id": 3, "updated_at": "2026-01-01T00:00:07Z"},
        ],
        "2026-01-01T00:00:06Z",
    )
    assert high == "2026-01-01T00:00:09Z"
    assert [i.data["seen"] for i in items] == [True] * 3
    assert [i.event_type for i in items] == [None, "deleted", None]
    assert stream.query("2026-01-01T00:00:09Z", {}) == {}  # no since parameter declared


@pytest.mark.parametrize(
    "status, headers, waits",
    [
        (429, {"Retry-After": "7"}, 7.0),
        (403, {"Retry-After": "3"}, 3.0),  # a secondary limit
        (503, {}, BACKOFF[0]),
        (429, {}, BACKOFF[0]),
        (401, {}, None),
        (403, {}, None),  # a refusal, not a limit
        (404, {"Retry-After": "3"}, None),
        (200, {}, None),
    ],
)
def test_what_an_answer_says_about_waiting(status, headers, waits):
    assert wait_asked(answer(status, headers), 0) == waits


def test_a_spent_budget_waits_until_it_resets_and_retries_end():
    reset = int(time.time()) + 20
    spent = answer(403, {"X-RateLimit-Remaining": "0", "X-RateLimit-Reset": str(reset)})
    assert 19 <= wait_asked(spent, 0) <= 21
    assert wait_asked(answer(503), len(BACKOFF)) is None  # the attempt fails, and the run retries


def test_retry_after_as_a_date_and_resets_in_other_units():
    from email.utils import formatdate

    dated = answer(429, {"Retry-After": formatdate(time.time() + 30, usegmt=True)})
    assert 28 <= wait_asked(dated, 0) <= 31
    millis = answer(
        429, {"X-RateLimit-Remaining": "0", "X-RateLimit-Reset": str(int(time.time() + 40) * 1000)}
    )
    assert 38 <= wait_asked(millis, 0) <= 41
    relative = answer(429, {"X-RateLimit-Remaining": "0", "X-RateLimit-Reset": "15"})
    assert 14 <= wait_asked(relative, 0) <= 16


def test_githubs_bare_secondary_limit_is_waited_out_and_other_refusals_are_not():
    from hookstream_ui.sources import REGISTRY
    from hookstream_ui.sources.calls import LIMIT_PAUSE

    github = REGISTRY["github"]
    secondary = httpx.Response(
        403, json={"message": "You have exceeded a secondary rate limit."}, request=answer().request
    )
    refused = httpx.Response(
        403, json={"message": "Resource not accessible by personal access token"}, request=answer().request
    )
    assert wait_asked(secondary, 0, github.limit_said) == LIMIT_PAUSE
    assert wait_asked(refused, 0, github.limit_said) is None


def test_a_graphql_connection_posts_its_cursor_until_it_has_no_next_page():
    from hookstream_ui.sources.paging import GraphQLCursor

    style = GraphQLCursor(
        "query($after: String) { things(after: $after) { nodes { id } } }", "$.data.things.pageInfo"
    )
    assert style.body(None) == {"query": style.query, "variables": {"after": None}}
    more = {"data": {"things": {"pageInfo": {"hasNextPage": True, "endCursor": "Y3Vy"}}}}
    assert style.following(None, Page(answer(), more, [1])) == "Y3Vy"
    assert style.body("Y3Vy")["variables"] == {"after": "Y3Vy"}
    done = {"data": {"things": {"pageInfo": {"hasNextPage": False, "endCursor": "Zm9v"}}}}
    assert style.following("Y3Vy", Page(answer(), done, [1])) is None
    with pytest.raises(SourceError, match="refused the query: Field 'x' doesn't exist") as refused:
        style.following(None, Page(answer(), {"errors": [{"message": "Field 'x' doesn't exist"}]}, []))
    assert refused.value.retry is False


def test_paced_calls_keep_their_spacing_however_late_each_goes():
    """A paced call due at t goes a few ms late (a thread's wake-up): the next is due a pause
    after t, so lateness does not add up; a call much later than that is no credit."""
    api = Api("The API", {}, pause_after=lambda response: 0.1)
    answer = httpx.Response(200)
    due = [api._next_call_at(answer, sent) for sent in (100.0, 100.104, 100.207, 100.6)]
    assert due == pytest.approx([100.1, 100.2, 100.3, 100.69])  # the last: 10 ms made up, not 300
    assert Api("The API", {})._next_call_at(answer, 100.0) == 0.0  # nothing asked: no wait
