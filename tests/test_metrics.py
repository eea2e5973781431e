"""/metrics: what it counts, who may read it, and that it adds up every process's counts
(two web server workers, RQ work horses forked per job)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import time
import urllib.error
import urllib.request
from pathlib import Path

import psutil
import pytest
from prometheus_client.parser import text_string_to_metric_families

from tests.helpers import make_key, make_user, org_of, production

ROOT = Path(__file__).resolve().parent.parent


def samples(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


def value(text: str, name: str, **labels: str) -> float:
    return samples(text).get((name, tuple(sorted(labels.items()))), 0.0)


def webhook_source(client, key: str) -> str:
    h = {"X-API-Key": key}
    sid = client.post(
        "/api/v1/source-connections",
        headers=h,
        json={"sourceShortName": "webhook", "name": "Hook", "credentials": {"verification_type": "none"}},
    ).json["sourceConnection"]["id"]
    client.post(
        "/v1/collections",
        headers=h,
        json={"name": "Orders", "slug": "orders", "source_id": sid, "primary_key_path": "$.id"},
    )
    return sid


def test_ingest_runs_records_and_queues_are_counted(client, ctx):
    sid = webhook_source(client, make_key(production(org_of(make_user("m@example.com")))))
    before = client.get("/metrics").get_data(as_text=True)
    assert client.post(f"/v1/ingest/{sid}", json={"id": "a"}).status_code == 200
    assert client.post(f"/v1/ingest/{sid}", json={"id": "a", "v": 2}).status_code == 200
    assert client.post(f"/v1/ingest/{sid}", data=b"not json").status_code == 200
    assert client.post("/v1/ingest/src_nope", json={}).status_code == 404
    r = client.get("/metrics")
    assert r.status_code == 200 and r.mimetype == "text/plain"
    after = r.get_data(as_text=True)

    def grew(name: str, **labels: str) -> float:
        return value(after, name, **labels) - value(before, name, **labels)

    assert grew("hookstream_ingest_deliveries_total", outcome="applied") == 2
    assert grew("hookstream_ingest_deliveries_total", outcome="not_json") == 1
    assert grew("hookstream_ingest_deliveries_total", outcome="refused") == 1
    assert grew("hookstream_ingest_duration_seconds_count", outcome="applied") == 2
    assert grew("hookstream_records_written_total", via="webhook", change="inserted") == 1
    assert grew("hookstream_records_written_total", via="webhook", change="updated") == 1
    assert grew("hookstream_ingest_writer_batch_size_count") >= 2  # the 404 reached no writer
    assert value(after, "hookstream_redis_up") == 1
    assert value(after, "hookstream_queue_jobs", queue="default") == 0
    assert value(after, "hookstream_workers") == 0
    # No label names a tenant: every label value is one of a few fixed words.
    labels = {v for (_, pairs) in samples(after) for (_, v) in pairs if _.startswith("hookstream")}
    assert sid not in after and all(not v.startswith(("org_", "src_", "col_")) for v in labels)


def test_without_a_token_only_the_configured_networks_may_scrape(client):
    assert client.get("/metrics").status_code == 200  # the test client is 127.0.0.1
    r = client.get("/metrics", environ_overrides={"REMOTE_ADDR": "203.0.113.9"})
    assert r.status_code == 403 and "hookstream" not in r.get_data(as_text=True)
    assert client.get("/metrics", environ_overrides={"REMOTE_ADDR": "::1"}).status_code == 200


def test_with_a_token_only_its_bearer_may_scrape(app, client, monkeypatch):
    monkeypatch.setitem(app.config, "METRICS_TOKEN", "scrape-token-1")
    assert client.get("/metrics").status_code == 401  # from loopback too
    assert client.get("/metrics", headers={"Authorization": "Bearer wrong"}).status_code == 401
    r = client.get(
        "/metrics",
        headers={"Authorization": "Bearer scrape-token-1"},
        environ_overrides={"REMOTE_ADDR": "203.0.113.9"},
    )
    assert r.status_code == 200 and "hookstream_ingest_deliveries_total" in r.get_data(as_text=True)


def scrape(base: str) -> str:
    with urllib.request.urlopen(f"{base}/metrics", timeout=10) as r:
        return r.read().decode()


def deliveries_by_process(folder: Path) -> dict[str, float]:
    """{process id: deliveries it counted}, read from each process's own file."""
    from prometheus_client.mmap_dict import MmapedDict

    found = {}
    for path in folder.glob("counter_*.db"):
        for key, count, *_ in MmapedDict.read_all_values_from_file(str(path)):
            if json.loads(key)[0] == "hookstream_ingest_deliveries" and count:
                process = path.stem.split("_", 1)[1]
                found[process] = found.get(process, 0) + count
    return found


@pytest.mark.slow
def test_two_web_workers_are_counted_together(client, ctx, database_url, redis_url, tmp_root, tmp_path):
    from tests.fixture_servers import web_server

    sid = webhook_source(client, make_key(production(org_of(make_user("g@example.com")))))
    folder = tmp_path / "metrics"
    folder.mkdir()
    env = dict(
        os.environ,
        DATABASE_URL=database_url,
        REDIS_URL=redis_url,
        INSTANCE_PATH=str(tmp_root / "instance"),
        PROMETHEUS_MULTIPROC_DIR=str(folder),
    )
    with web_server(env, workers=2, threads=4, log=tmp_path / "web.log") as (proc, port):
        base = f"http://127.0.0.1:{port}"
        sent = 0
        deadline = time.monotonic() + 60
        # Each delivery on a connection of its own, until both workers have answered some.
        while len(deliveries_by_process(folder)) < 2 or sent < 10:
            assert time.monotonic() < deadline, deliveries_by_process(folder)
            body = json.dumps({"id": f"k{sent}"}).encode()
            request = urllib.request.Request(f"{base}/v1/ingest/{sid}", data=body, method="POST")
            with urllib.request.urlopen(request, timeout=10) as r:
                assert r.status == 200
            sent += 1
        # Whichever worker answers the scrape reports both workers' counts.
        for _ in range(6):
            assert value(scrape(base), "hookstream_ingest_deliveries_total", outcome="applied") == sent
        # A worker that dies is replaced, and what it counted stays counted.
        workers = psutil.Process(proc.pid).children()
        assert len(workers) == 2
        workers[0].send_signal(signal.SIGKILL)
        deadline = time.monotonic() + 30
        while len([p for p in psutil.Process(proc.pid).children() if p.pid != workers[0].pid]) < 2:
            assert time.monotonic() < deadline, "the worker was not replaced"
            time.sleep(0.2)
        deadline = time.monotonic() + 30
        while True:  # the new worker answers once it has loaded the app
            try:
                assert value(scrape(base), "hookstream_ingest_deliveries_total", outcome="applied") == sent
                break
            except OSError:
                assert time.monotonic() < deadline
                time.sleep(0.2)


def test_work_horses_of_one_worker_share_its_files(tmp_path):
    """Forked per job, as RQ's work horses are: every job counts, into one set of files."""
    script = textwrap.dedent(
        """
        import os, sys
        from hookstream_ui.observability import metrics
        for _ in range(3):
            pid = os.fork()
            if pid == 0:
                metrics.in_work_horse()
                metrics.run_ended("completed")
                os._exit(0)
            os.waitpid(pid, 0)
        """
    )
    folder = tmp_path / "metrics"
    folder.mkdir()
    env = dict(os.environ, PROMETHEUS_MULTIPROC_DIR=str(folder))
    subprocess.run([sys.executable, "-c", script], cwd=ROOT, env=env, check=True, timeout=60)
    from prometheus_client import CollectorRegistry, generate_latest
    from prometheus_client.multiprocess import MultiProcessCollector

    registry = CollectorRegistry()
    MultiProcessCollector(registry, path=str(folder))
    text = generate_latest(registry).decode()
    assert value(text, "hookstream_runs_total", outcome="completed") == 3
    horses = [p.name for p in folder.iterdir() if "horse" in p.name]
    assert horses and len({name.split("_", 1)[1] for name in horses}) == 1, horses  # one set for 3 jobs


@pytest.mark.slow
def test_a_real_worker_counts_its_jobs_from_its_work_horse(ctx, workers, tmp_path):
    from hookstream_ui.models import SyncRun, db
    from hookstream_ui.services.runs import start_run
    from tests.helpers import bound_collection, make_source

    folder = tmp_path / "metrics"
    folder.mkdir()
    [worker] = workers(1, PROMETHEUS_MULTIPROC_DIR=str(folder))
    env = production(org_of(make_user("w@example.com")))
    source = make_source(env, "Broken API", "rest_api")  # no base URL: the attempt fails
    bound_collection(env, source, "C")
    db.session.commit()
    run_id = start_run(source).id
    deadline = time.monotonic() + 60
    while not (db.session.get(SyncRun, run_id).attempt or 0):
        assert time.monotonic() < deadline and worker.poll() is None, "the job did not run"
        time.sleep(0.2)
        db.session.expire_all()
    from prometheus_client import CollectorRegistry, generate_latest
    from prometheus_client.multiprocess import MultiProcessCollector

    # The work horse counts the retry just after it commits the attempt: wait for the count.
    while True:
        registry = CollectorRegistry()
        MultiProcessCollector(registry, path=str(folder))
        retried = value(generate_latest(registry).decode(), "hookstream_runs_total", outcome="retried")
        if retried or time.monotonic() > deadline:
            break
        time.sleep(0.2)
    assert retried == 1
    assert (folder / f"counter_horse{worker.pid}.db").exists()


@pytest.mark.slow
def test_make_run_serves_every_process_metrics(tmp_path):
    from tests.test_make_run import MakeRun

    run = MakeRun(tmp_path / "instance", tmp_path / "run.log")
    try:
        run.wait_healthy()
        deadline = time.monotonic() + 30
        while True:  # both RQ workers registered
            text = scrape(run.base)
            if value(text, "hookstream_workers") == 2 or time.monotonic() > deadline:
                break
            time.sleep(0.3)
        assert value(text, "hookstream_workers") == 2 and value(text, "hookstream_redis_up") == 1
        assert value(text, "hookstream_queue_jobs", queue="default") == 0
        # Every child counts into the instance's folder: the web worker, the RQ workers, the
        # scheduler and the ingest writer each have their files there.
        pids = {p.stem.split("_", 1)[1] for p in (tmp_path / "instance" / "metrics").glob("*.db")}
        assert len(pids) >= 5, pids
    finally:
        run.stop(signal.SIGINT)
