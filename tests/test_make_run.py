"""`make run` smoke test: start it for real, see a live worker, stop it, leave nothing behind."""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import psutil
import pytest

ROOT = Path(__file__).resolve().parent.parent
pytestmark = pytest.mark.slow


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def get(url: str, headers: dict | None = None) -> tuple[int, dict]:
    request = urllib.request.Request(url, headers=headers or {})
    try:
        with urllib.request.urlopen(request, timeout=5) as r:
            return r.status, json.load(r)
    except urllib.error.HTTPError as e:
        return e.code, json.load(e)


class MakeRun:
    def __init__(self, instance: Path, log: Path):
        self.port = free_port()
        self.base = f"http://127.0.0.1:{self.port}"
        env = {k: v for k, v in os.environ.items() if k not in ("REDIS_URL", "DATABASE_URL", "FLASK_APP")}
        env.update(PORT=str(self.port), INSTANCE_PATH=str(instance), WORKERS="2", WEB_CONCURRENCY="1")
        self.log_path = log
        self.log = open(log, "ab")  # noqa: SIM115 (held while make run lives; stop() closes it)
        # Its own session, like a terminal's foreground job: Ctrl-C goes to the whole group.
        self.proc = subprocess.Popen(
            ["make", "-s", "run", f"VENV={sys.prefix}"],
            cwd=ROOT,
            env=env,
            stdout=self.log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )

    def output(self) -> str:
        return self.log_path.read_text(errors="replace")

    def wait_healthy(self, timeout: float = 120) -> dict:
        deadline = time.monotonic() + timeout
        body = {}
        while time.monotonic() < deadline:
            assert self.proc.poll() is None, f"make run exited early:\n{self.output()}"
            with contextlib.suppress(OSError, ValueError):  # not listening yet, or mid-start
                status, body = get(f"{self.base}/healthz")
                if status == 200 and body["workers"]["live"] >= 1:
                    return body
            time.sleep(0.3)
        raise AssertionError(f"no healthy /healthz within {timeout}s: {body}\n{self.output()}")

    def descendants(self) -> list[psutil.Process]:
        return psutil.Process(self.proc.pid).children(recursive=True)

    def running(self, command: str) -> list[psutil.Process]:
        """Live descendants whose command line has `command` (a dead one may linger as a zombie
        until the runner reaps it; psutil refuses to read its command line)."""
        found = []
        for p in self.descendants():
            with contextlib.suppress(psutil.NoSuchProcess):  # gone meanwhile (ZombieProcess is one)
                if p.status() != psutil.STATUS_ZOMBIE and command in " ".join(p.cmdline()):
                    found.append(p)
        return found

    def kill_and_see_replaced(self, command: str, timeout: float = 60) -> None:
        [old] = self.running(command)
        old.kill()
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if [p for p in self.running(command) if p.pid != old.pid]:
                return
            time.sleep(0.3)
        raise AssertionError(f"{command} was not replaced:\n{self.output()}")

    def workers(self) -> list[psutil.Process]:
        """The runner's own `flask worker` children (RQ forks helpers with the same command line)."""
        found = []
        for p in self.descendants():
            with contextlib.suppress(psutil.NoSuchProcess):  # gone meanwhile
                parent = p.parent()
                if (
                    "worker" in p.cmdline()
                    and "flask" in " ".join(p.cmdline())
                    and parent is not None
                    and "hookstream_ui.runner" in " ".join(parent.cmdline())
                ):
                    found.append(p)
        return found

    def stop(self, sig=signal.SIGINT, timeout: float = 40) -> None:
        if self.proc.poll() is not None:
            self.log.close()
            return  # already gone: the test's own failure says why
        os.killpg(self.proc.pid, sig)
        try:
            self.proc.wait(timeout)
        finally:
            self.log.close()


def assert_all_gone(processes: list[psutil.Process]) -> None:
    deadline = time.monotonic() + 10
    alive = processes
    while alive and time.monotonic() < deadline:
        alive = [p for p in alive if p.is_running() and p.status() != psutil.STATUS_ZOMBIE]
        time.sleep(0.2)
    assert not alive, f"processes survived the stop: {[(p.pid, p.cmdline()) for p in alive]}"


@pytest.fixture
def short_tmp(tmp_path: Path) -> Iterator[Path]:
    """A folder whose Redis socket path fits a unix socket's 107 bytes: a long TMPDIR pushed
    instance/redis/redis.sock past it, and redis-server then never answered."""
    if len(str(tmp_path / "instance" / "redis" / "redis.sock")) <= 100:
        yield tmp_path
        return
    short = Path(tempfile.mkdtemp(prefix="hs-", dir="/tmp"))
    yield short
    shutil.rmtree(short, ignore_errors=True)


def test_make_run_starts_supervises_and_stops_cleanly(short_tmp):
    instance = short_tmp / "instance"
    run = MakeRun(instance, short_tmp / "run1.log")
    try:
        health = run.wait_healthy()
        assert health["database"]["backend"] == "sqlite" and health["redis"]["ok"]
        deadline = time.monotonic() + 10  # the runner prints once it has seen the server answer too
        while f"http://127.0.0.1:{run.port}" not in run.output():
            assert time.monotonic() < deadline, run.output()
            time.sleep(0.1)
        children = run.descendants()
        names = " ".join(" ".join(p.cmdline()) for p in children)
        assert "redis-server" in names and "hookstream_ui.web_server" in names and " scheduler" in names
        assert " ingest-writer" in names

        # The ingest writer, killed, is replaced (meanwhile web processes write for themselves:
        # see test_writer_process_takes_over_and_expired_deliveries_are_not_stored).
        run.kill_and_see_replaced("ingest-writer")

        # A worker that dies is replaced.
        victim = run.workers()[0]
        victim.kill()
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            pids = {p.pid for p in run.workers()}
            if len(pids) == 2 and victim.pid not in pids:
                break
            time.sleep(0.3)
        assert victim.pid not in pids and len(pids) == 2, run.output()

        # Redis that dies is started again (make run exited for good before).
        run.kill_and_see_replaced("redis-server")
        assert run.wait_healthy()["redis"]["ok"]
        children = run.descendants()
    finally:
        run.stop(signal.SIGINT)
    assert_all_gone(children)
    assert "hookstream stopped." in run.output()
    secret = (instance / "secret_key").read_text()
    # Nobody else on the machine reads the database, its WAL, the keys or Redis's files.
    assert instance.stat().st_mode & 0o777 == 0o700
    kept = [p for p in [*instance.iterdir(), *(instance / "redis").rglob("*")] if p.is_file()]
    assert {p.name for p in kept} >= {"secret_key", "credentials.key", "hookstream.db", "redis.conf"}
    assert all(p.stat().st_mode & 0o077 == 0 for p in kept), [(p, oct(p.stat().st_mode)) for p in kept]

    # Headless set-up against the same instance, then a second start reuses its data.
    env = {k: v for k, v in os.environ.items() if k not in ("REDIS_URL", "DATABASE_URL")}
    env["INSTANCE_PATH"] = str(instance)
    flask = [sys.executable, "-m", "flask", "--app", "app"]
    subprocess.run(
        [*flask, "create-user", "ops@example.com", "--password", "long-enough-pw"],
        cwd=ROOT,
        env=env,
        check=True,
        capture_output=True,
    )
    key = subprocess.run(
        [*flask, "create-api-key", "ops@example.com", "--name", "smoke"],
        cwd=ROOT,
        env=env,
        check=True,
        capture_output=True,
        text=True,
    ).stdout.strip()

    again = MakeRun(instance, short_tmp / "run2.log")
    try:
        again.wait_healthy()
        status, body = get(f"{again.base}/v1/collections", {"X-API-Key": key})
        assert status == 200 and body["collections"] == []
        children = again.descendants()
    finally:
        again.stop(signal.SIGTERM)
    assert_all_gone(children)
    assert (instance / "secret_key").read_text() == secret
