"""REST readers for each pagination style, and file uploads as syncs, with real workers."""

from __future__ import annotations

import io

import pytest
from sqlalchemy import select

from hookstream_ui.models import Record, db
from tests.fixture_servers import REST_TOKEN
from tests.sync_helpers import start, wait_for


def connect(client, key, short, credentials=None, config=None, stream=None):
    h = {"X-API-Key": key}
    sid = client.post(
        "/api/v1/source-connections",
        headers=h,
        json={
            "sourceShortName": short,
            "name": f"src {short}",
            "credentials": credentials or {},
            "config": config or {},
        },
    ).json["sourceConnection"]["id"]
    cid = client.post(
        "/v1/collections",
        headers=h,
        json={"name": f"coll {short}", "source_id": sid, "stream": stream, "primary_key_path": "$.id"},
    ).json["collection"]["id"]
    return sid, cid


def keys_in(cid):
    db.session.expire_all()
    return {
        r.record_key: r.data for r in db.session.scalars(select(Record).where(Record.collection_id == cid))
    }


@pytest.mark.parametrize(
    "style, config",
    [
        (
            "page",
            {
                "path": "/items/page",
                "records_path": "$.data",
                "pagination": "page",
                "page_param": "page",
                "page_size_param": "limit",
                "page_size": 5,
            },
        ),
        (
            "offset",
            {
                "path": "/items/offset",
                "records_path": "$.results.items",
                "pagination": "offset",
                "page_param": "offset",
                "page_size_param": "limit",
                "page_size": 5,
            },
        ),
        (
            "cursor",
            {
                "path": "/items/cursor",
                "records_path": "$.data",
                "pagination": "cursor",
                "page_param": "cursor",
                "page_size_param": "limit",
                "page_size": 5,
                "next_path": "$.next_cursor",
            },
        ),
        (
            "next_link",
            {
                "path": "/items/link",
                "records_path": "$.data",
                "pagination": "next_link",
                "page_size_param": "limit",
                "page_size": 5,
                "next_path": "$.links.next",
            },
        ),
        # APIs that page their own way: each must still be read whole, and end.
        (
            "page-capped",
            {
                "path": "/items/page-capped",
                "records_path": "$.data",
                "pagination": "page",
                "page_param": "page",
                "page_size_param": "limit",
                "page_size": 5,
            },
        ),
        (
            "page-clamped",
            {
                "path": "/items/page-clamped",
                "records_path": "$.data",
                "pagination": "page",
                "page_param": "page",
            },
        ),
        (
            "cursor-stuck",
            {
                "path": "/items/cursor-stuck",
                "records_path": "$.data",
                "pagination": "cursor",
                "page_param": "cursor",
                "page_size_param": "limit",
                "page_size": 5,
                "next_path": "$.next_cursor",
            },
        ),
    ],
)
def test_rest_pagination_styles(client, key, http_fixture, workers, style, config):
    creds = {"base_url": http_fixture.base, "auth_type": "bearer", "token": REST_TOKEN}
    sid, cid = connect(
        client,
        key,
        "rest_api",
        creds,
        {**config, "updated_since_param": "updated_since", "updated_at_path": "$.updated_at"},
    )
    workers(1)
    run = wait_for(start(client, key, sid))
    assert run.status == "completed", run.error
    data = keys_in(cid)
    assert set(data) == {str(i) for i in range(1, 24)} and data["7"]["name"] == "item 7"
    assert run.records_inserted == 23 and run.progress == 23
    # Incremental: only items updated after the newest one seen (none).
    run = wait_for(start(client, key, sid))
    assert run.status == "completed" and run.mode == "incremental" and run.progress == 0, run.error


def test_rest_errors_fail_the_run_with_the_reason(client, key, http_fixture, workers):
    """Rejected credentials fail the run at once (retrying cannot fix them); a server error
    is retried with backoff, its reason shown meanwhile."""
    from hookstream_ui.sync import jobs

    workers(1)
    sid, _ = connect(
        client,
        key,
        "rest_api",
        {"base_url": http_fixture.base, "auth_type": "bearer", "token": "wrong"},
        {"path": "/items/page", "records_path": "$.data"},
    )
    run = wait_for(start(client, key, sid), timeout=20)
    assert (run.status, run.attempt, run.error) == (
        "failed",
        1,
        "The API rejected the credentials (HTTP 401)",
    )

    sid, _ = connect(
        client,
        key,
        "rest_api",
        {"base_url": http_fixture.base, "auth_type": "none"},
        {"path": "/unavailable", "records_path": "$.data"},
    )
    run = wait_for(start(client, key, sid), statuses=("pending", "failed"), timeout=20, attempted=True)
    assert run.attempt == 1 and run.status == "pending"  # waiting for its backoff
    assert run.error == "The API answered HTTP 503 for " + http_fixture.base + "/unavailable"
    assert jobs.MAX_ATTEMPTS > 1


@pytest.mark.parametrize(
    "filename, content, good, bad_reason",
    [
        (
            "people.csv",
            b"id,name\n1,Ann\n2,Bob,EXTRA\n3,Cy\n",
            2,
            "malformed row: line 3 has more values than the header has columns",
        ),
        (
            "short.csv",
            b"id,name,plan\n1,Ann,pro\n2\n3,Cy,\n",
            2,
            "malformed row: line 3 has fewer values than the header has columns",
        ),
        (
            "people.ndjson",
            b'{"id": 1}\nnot json\n{"id": 3}\n[1]\n',
            2,
            "malformed row: line 2 is not valid JSON",
        ),
        (
            "deep.ndjson",
            b'{"id": 1}\n' + b"[" * 100_000 + b"]" * 100_000 + b'\n{"id": 3}\n',
            2,
            "malformed row: line 2 is nested more than 100 levels deep",
        ),
        (
            "nan.ndjson",
            b'{"id": 1}\n{"id": 2, "x": NaN}\n{"id": 3}\n',
            2,
            "malformed row: line 2 holds NaN or Infinity (or a number too large), which JSON does not allow",
        ),
        (
            "people.json",
            b'[{"id": 1}, 2, {"id": 3}, {"id": 4}]',
            3,
            "malformed row: item 2 is not a JSON object",
        ),
        (
            "deep.json",
            b'[{"id": 1}, {"id": 2, "x": ' + b"[" * 100_000 + b"]" * 100_000 + b'}, {"id": 3}]',
            2,
            "malformed row: item 2 is nested more than 100 levels deep",
        ),  # ijson.items took gigabytes
    ],
)
def test_file_uploads_sync_and_report_malformed_rows(
    client, key, workers, filename, content, good, bad_reason
):
    sid, cid = connect(client, key, "file", config={"format": "auto"})
    workers(1)
    r = client.post(
        f"/api/v1/source-connections/{sid}/files",
        headers={"X-API-Key": key},
        data={"file": (io.BytesIO(content), filename)},
        content_type="multipart/form-data",
    )
    assert r.status_code == 201 and r.json["syncId"], r.json
    run = wait_for(r.json["syncId"])
    assert run.status == "completed" and run.trigger == "upload", run.error
    assert run.records_inserted == good and run.records_skipped >= 1
    assert bad_reason in run.skip_reasons
    assert len(keys_in(cid)) == good


def test_csv_fields_longer_than_csvs_default_limit_are_read(client, key, workers):
    sid, cid = connect(client, key, "file", config={"format": "auto"})
    workers(1)
    long_text = "<p>" + "long description " * 20000 + "</p>"  # 340 KB, csv's default limit is 128 KiB
    content = f'id,body\n1,"{long_text}"\n2,short\n'.encode()
    r = client.post(
        f"/api/v1/source-connections/{sid}/files",
        headers={"X-API-Key": key},
        data={"file": (io.BytesIO(content), "pages.csv")},
        content_type="multipart/form-data",
    )
    run = wait_for(r.json["syncId"])
    assert run.status == "completed" and run.records_inserted == 2, run.error
    assert keys_in(cid)["1"]["body"] == long_text


@pytest.mark.parametrize(
    "filename, content, reason",
    [
        ("dump.json", b'\n {"data": [{"id": 1}, {"id": 2}]}', "holds a JSON object, not an array of records"),
        ("latin1.csv", b"id,name\n1,Jos\xe9\n", "not UTF-8 text"),
        (
            "trailing.json",
            b'[{"id": 1}] and more',
            "not a valid JSON array",
        ),  # what follows the array is read too
        ("text.json", b'"just a string"', "not a JSON array of records"),
    ],
)
def test_a_file_that_cannot_be_read_fails_its_run_at_once_saying_why(
    client, key, workers, filename, content, reason
):
    sid, cid = connect(client, key, "file", config={"format": "auto"})
    workers(1)
    r = client.post(
        f"/api/v1/source-connections/{sid}/files",
        headers={"X-API-Key": key},
        data={"file": (io.BytesIO(content), filename)},
        content_type="multipart/form-data",
    )
    run = wait_for(r.json["syncId"], timeout=20)  # not after retries with backoff: trying again cannot help
    assert run.status == "failed" and run.attempt == 1 and reason in run.error and filename in run.error
    assert keys_in(cid) == {}


def test_rest_records_path_holding_null_is_no_records(client, key, http_fixture, workers):
    from tests.fixture_servers import REST_TOKEN

    sid, cid = connect(
        client,
        key,
        "rest_api",
        {"base_url": http_fixture.base, "auth_type": "bearer", "token": REST_TOKEN},
        {"path": "/nothing", "records_path": "$.data", "pagination": "next_link", "next_path": "$.next"},
    )
    r = client.post(f"/api/v1/source-connections/{sid}/test", headers={"X-API-Key": key}, json={})
    assert r.json["success"] is True and "0 records" in r.json["message"], r.json
    workers(1)
    run = wait_for(start(client, key, sid), timeout=30)
    assert run.status == "completed" and run.progress == 0, run.error
    assert keys_in(cid) == {}


def test_rest_answer_nested_too_deep_fails_the_run_at_once_saying_why(client, key, http_fixture, workers):
    """An answer nested past Python's recursion limit raised RecursionError, which failed the
    run as "Unexpected error: RecursionError" and retried it with backoff, again and again."""
    sid, cid = connect(
        client,
        key,
        "rest_api",
        {"base_url": http_fixture.base, "auth_type": "bearer", "token": REST_TOKEN},
        {"path": "/deep", "records_path": "$.data"},
    )
    r = client.post(f"/api/v1/source-connections/{sid}/test", headers={"X-API-Key": key}, json={})
    assert (r.json["success"], r.json["message"]) == (
        False,
        "The API's answer is nested more than 100 levels deep",
    )
    workers(1)
    run = wait_for(start(client, key, sid), timeout=30)
    assert (run.status, run.attempt) == ("failed", 1)
    assert run.error == f"The API's answer for {http_fixture.base}/deep is nested more than 100 levels deep"
    assert keys_in(cid) == {}


def test_a_cancel_whose_request_then_times_out_ends_cancelled(client, key, workers, http_fixture):
    """The run's in-flight request timed out after the cancel: the failure sent it back to
    pending and it was retried (cancelling, pending, running)."""
    import time

    from rq.job import Job, JobStatus
    from rq.registry import ScheduledJobRegistry

    from hookstream_ui.extensions import get_redis
    from hookstream_ui.infra.queues import queue
    from hookstream_ui.models import SyncRun

    sid, _ = connect(
        client,
        key,
        "rest_api",
        {"base_url": http_fixture.base, "auth_type": "bearer", "token": REST_TOKEN},
        {"path": "/slow", "records_path": "$.data"},
    )
    workers(1)
    run_id = start(client, key, sid)
    wait_for(run_id, statuses=("running",), timeout=30)  # and now waits on /slow (7 s, past the 5 s timeout)
    r = client.post(f"/api/v1/source-connections/{sid}/runs/{run_id}/cancel", headers={"X-API-Key": key})
    assert r.json["run"]["status"] == "cancelling"
    run = wait_for(run_id, timeout=30)
    assert run.status == "cancelled" and run.attempt == 0, (run.status, run.attempt, run.error)
    # Once its job has returned, no job waits to run it again (a retry waits out its backoff
    # in the scheduled registry), and it stays cancelled.
    job = Job.fetch(f"run-{run_id}-{run.claim_token}", connection=get_redis())
    deadline = time.monotonic() + 30
    while job.get_status() not in (JobStatus.FINISHED, JobStatus.FAILED):
        assert time.monotonic() < deadline, f"the run's job is still {job.get_status()}"
        time.sleep(0.05)
    default = queue("default")
    assert (default.count, ScheduledJobRegistry(queue=default).count) == (0, 0), "a retry was enqueued"
    db.session.expire_all()
    assert db.session.get(SyncRun, run_id).status == "cancelled"


def test_a_run_passes_a_paused_collection_by_and_keeps_it_paused(client, key, workers):
    sid, cid = connect(client, key, "file", config={"format": "auto"})
    r = client.patch(f"/v1/collections/{cid}", json={"status": "PAUSED"}, headers={"X-API-Key": key})
    assert r.status_code == 200 and r.json["collection"]["status"] == "PAUSED", r.json
    workers(1)
    r = client.post(
        f"/api/v1/source-connections/{sid}/files",
        headers={"X-API-Key": key},
        data={"file": (io.BytesIO(b"id,name\n1,Ann\n"), "people.csv")},
        content_type="multipart/form-data",
    )
    # The file is stored; no run starts (it would read into nothing and say completed).
    assert r.status_code == 201 and r.json["syncId"] is None and r.json["file"]["filename"] == "people.csv"
    assert keys_in(cid) == {}
    assert (
        client.get(f"/v1/collections/{cid}", headers={"X-API-Key": key}).json["collection"]["status"]
        == "PAUSED"
    )
