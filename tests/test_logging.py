"""Logging: configured by each process's entry point, one handler; the request id on every
line of a request and in its answer, the run id on every line of a sync run, run start,
retry and end logged once each, LOG_FORMAT=json, and no secret of a request in the log."""

from __future__ import annotations

import io
import json
import logging
import os
import subprocess
import sys
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from hookstream_ui.observability import logs

ROOT = Path(__file__).resolve().parent.parent
SECRET = "sekret-4c1d-canary-9e7b"


@pytest.fixture
def captured() -> Iterator[io.StringIO]:
    """What the app's loggers write through the text formatter, as a process would."""
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(logs.TextFormatter())
    logger = logging.getLogger("hookstream_ui")
    old_level = logger.level
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    yield stream
    logger.removeHandler(handler)
    logger.setLevel(old_level)


def test_json_lines_carry_the_ids_and_a_traceback():
    record_stream = io.StringIO()
    handler = logging.StreamHandler(record_stream)
    handler.setFormatter(logs.JsonFormatter())
    log = logging.getLogger("test.json")
    log.addHandler(handler)
    log.propagate = False
    request_token, run_token = logs.REQUEST_ID.set("req_1"), logs.RUN_ID.set("sync_1")
    try:
        log.warning("plain %s", "line")
        try:
            raise ValueError("boom")
        except ValueError:
            log.exception("failed")
    finally:
        logs.REQUEST_ID.reset(request_token)
        logs.RUN_ID.reset(run_token)
        log.removeHandler(handler)
    first, second = (json.loads(line) for line in record_stream.getvalue().splitlines())
    assert first["message"] == "plain line" and first["level"] == "WARNING" and first["logger"] == "test.json"
    assert first["request_id"] == "req_1" and first["run_id"] == "sync_1" and first["pid"] == os.getpid()
    assert "ValueError: boom" in second["exc_info"]


def test_a_bad_log_format_stops_the_start(monkeypatch):
    monkeypatch.setenv("LOG_FORMAT", "xml")
    with pytest.raises(SystemExit, match="LOG_FORMAT"):
        logs.formatter()


def test_the_app_factory_configures_no_logging(app):
    from hookstream_ui import create_app

    root = logging.getLogger()
    before = (list(root.handlers), root.level)
    create_app({"TESTING": True})
    assert (list(root.handlers), root.level) == before


def test_every_line_of_a_request_and_its_error_answers_carry_its_id(app, captured):
    from hookstream_ui import create_app

    other = create_app({"TESTING": True})

    @other.get("/v1/_explode")
    def _explode():
        logging.getLogger("hookstream_ui.test").info("about to fail")
        raise RuntimeError(SECRET)

    client = other.test_client()
    r = client.get("/v1/_explode", headers={"X-Request-ID": "trace-42"})
    assert r.status_code == 500 and r.json["request_id"] == "trace-42"
    assert r.headers["X-Request-ID"] == "trace-42"
    lines = captured.getvalue().splitlines()
    assert len(lines) >= 2 and all("request_id=trace-42" in line for line in lines), lines
    assert SECRET not in captured.getvalue()

    # An id that is not plausible is not echoed (it could inject into a log line): a new one.
    r = client.get("/nowhere", headers={"X-Request-ID": "bad id; run_id=forged"})
    given = r.headers["X-Request-ID"]
    assert r.status_code == 404 and given.startswith("req_")
    assert given in r.get_data(as_text=True)  # the HTML error page quotes it


def test_every_answer_has_one_access_line_without_its_query_string(client, captured):
    client.get(f"/v1/collections?token={SECRET}", headers={"X-Request-ID": "trace-7", "User-Agent": 'a"b'})
    client.get(f"/healthz?invite={SECRET}")
    lines = [line for line in captured.getvalue().splitlines() if " hookstream_ui.access" in line]
    assert len(lines) == 2, captured.getvalue()
    assert '[request_id=trace-7]: 127.0.0.1 "GET /v1/collections HTTP/1.1" 401 ' in lines[0]
    assert '"a\'b"' in lines[0]  # a quote in the user agent cannot end its field early
    assert '"GET /healthz HTTP/1.1" 200' in lines[1] or '"GET /healthz HTTP/1.1" 503' in lines[1]
    assert SECRET not in captured.getvalue()


def test_a_run_logs_start_retry_and_end_with_its_id(ctx, captured):
    from hookstream_ui.models import db
    from hookstream_ui.services.runs import start_run
    from hookstream_ui.sync import jobs
    from tests.helpers import bound_collection, make_source, make_user, org_of, production

    env = production(org_of(make_user("runs@example.com")))
    source = make_source(env, "Broken API", "rest_api")  # no base URL: every attempt fails
    bound_collection(env, source, "C")
    db.session.commit()
    run = start_run(source)
    run_id = run.id
    for _ in range(jobs.MAX_ATTEMPTS):
        db.session.refresh(run)
        jobs.run_sync(run_id, run.claim_token)
    db.session.refresh(run)
    assert run.status == "failed"
    lines = [line for line in captured.getvalue().splitlines() if "hookstream_ui.runs" in line]
    assert all(f"run_id={run_id}" in line for line in lines), lines
    assert sum("run started" in line for line in lines) == jobs.MAX_ATTEMPTS
    assert sum("trying again" in line for line in lines) == jobs.MAX_ATTEMPTS - 1
    [end] = [line for line in lines if "run failed after" in line]
    assert f"attempt {jobs.MAX_ATTEMPTS}: 0 inserted, 0 updated, 0 deleted, 0 skipped" in end
    assert logs.RUN_ID.get() is None  # not left behind for whatever the process does next


def test_the_web_server_logs_json_with_request_ids_and_no_secret(
    app, database_url, redis_url, tmp_root, tmp_path
):
    from tests.fixture_servers import web_server

    env = dict(
        os.environ,
        DATABASE_URL=database_url,
        REDIS_URL=redis_url,
        INSTANCE_PATH=str(tmp_root / "instance"),
        LOG_FORMAT="json",
    )
    log_path = tmp_path / "web.log"
    with web_server(env, log=log_path) as (_proc, port):
        base = f"http://127.0.0.1:{port}"
        sent = [
            urllib.request.Request(
                f"{base}/v1/ingest/src_nope?token={SECRET}",
                data=json.dumps({"password": SECRET}).encode(),
                headers={"Authorization": f"Bearer {SECRET}", "X-Webhook-Secret": SECRET},
            ),
            urllib.request.Request(f"{base}/v1/collections", headers={"X-API-Key": SECRET}),
            urllib.request.Request(
                f"{base}/dashboard?invite={SECRET}", headers={"Cookie": f"session={SECRET}"}
            ),
        ]
        ids = []
        for request in sent:
            try:
                urllib.request.urlopen(request, timeout=10)
            except urllib.error.HTTPError as answer:
                ids.append(answer.headers["X-Request-ID"])
        assert len(ids) == 3  # each refused: no such source, a bad key, no such page
    text = log_path.read_text()
    assert SECRET not in text
    lines = [json.loads(line) for line in text.splitlines() if line.strip()]  # every line is JSON
    access = [line for line in lines if line["logger"] == "hookstream_ui.access"]
    logged = [line for line in access if "/healthz" not in line["message"]]
    assert sorted(line["request_id"] for line in logged) == sorted(ids), access
    assert any(line["message"].startswith('127.0.0.1 "GET /dashboard HTTP/1.1" ') for line in logged), access


def test_an_rq_worker_logs_json_through_the_one_handler(app, database_url, redis_url, tmp_root):
    env = dict(
        os.environ,
        DATABASE_URL=database_url,
        REDIS_URL=redis_url,
        INSTANCE_PATH=str(tmp_root / "instance"),
        LOG_FORMAT="json",
    )
    done = subprocess.run(
        [sys.executable, "-m", "flask", "--app", "app", "worker", "--burst"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    lines = [json.loads(line) for line in (done.stdout + done.stderr).splitlines() if line.strip()]
    # RQ adds handlers of its own only to a process without one: its lines are ours.
    assert any(line["logger"].startswith("rq.") for line in lines), lines
