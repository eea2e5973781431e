"""/healthz reports the database, Redis and live RQ workers."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def test_no_workers_is_503_with_the_reason(client):
    r = client.get("/healthz")
    assert r.status_code == 503
    assert r.json["database"]["ok"] and r.json["redis"]["ok"]
    assert r.json["workers"] == {"ok": False, "live": 0}


def test_live_worker_makes_it_healthy(client, redis_url, database_url):
    env = dict(os.environ, REDIS_URL=redis_url, DATABASE_URL=database_url)
    worker = subprocess.Popen(
        [sys.executable, "-m", "flask", "--app", "app", "worker"],
        cwd=ROOT,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            r = client.get("/healthz")
            if r.status_code == 200:
                break
            time.sleep(0.2)
        assert r.status_code == 200, r.json
        assert r.json["workers"]["live"] >= 1 and r.json["status"] == "ok"
    finally:
        worker.terminate()
        worker.wait(15)


def test_redis_down_is_503(app, monkeypatch, tmp_path):
    monkeypatch.setitem(app.config, "REDIS_URL", f"unix://{tmp_path}/nothing.sock")
    app.extensions.pop("hookstream_redis", None)
    try:
        r = app.test_client().get("/healthz")
        assert r.status_code == 503 and r.json["redis"]["ok"] is False
        assert r.json["database"]["ok"] is True
    finally:
        app.extensions.pop("hookstream_redis", None)


def test_database_down_is_503(tmp_path, redis_url):
    from hookstream_ui import create_app

    broken = create_app(
        {"SQLALCHEMY_DATABASE_URI": f"sqlite:///{tmp_path}/missing-dir/x.db", "REDIS_URL": redis_url}
    )
    r = broken.test_client().get("/healthz")
    assert r.status_code == 503 and r.json["database"]["ok"] is False
