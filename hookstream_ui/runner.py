"""`make run`: one command that starts everything on one machine.

Migrates, then supervises an embedded Redis (when REDIS_URL is unset), the web server
(granian: web_server.py), RQ worker processes, the scheduler, the ingest writer and the deliverer,
restarting any of them that dies, Redis included (on the same socket, from its append-only file). SIGINT or SIGTERM
stops every child, workers and web first, Redis last. Everything it writes in the instance
folder is its user's alone (folder 0700, files 0600). Children get their own session, so
a Ctrl-C reaches them only through this orderly shutdown, and PR_SET_PDEATHSIG so that
they die with the runner even if it is SIGKILLed.
"""

from __future__ import annotations

import contextlib
import ctypes
import logging
import os
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path
from types import FrameType

from . import web_server
from .config import env_int, instance_path
from .observability.logs import configure_logging

log = logging.getLogger("hookstream_ui.runner")

PR_SET_PDEATHSIG = 1
STOP_GRACE_SECONDS = 10


def child_setup() -> None:
    os.setsid()
    with contextlib.suppress(OSError):  # not Linux: the orderly shutdown still stops the children
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGTERM)


class Runner:
    def __init__(self) -> None:
        self.instance = instance_path()
        self.host = os.environ.get("HOST", "127.0.0.1")
        self.port = env_int("PORT", 5000, 1)
        self.worker_count = env_int("WORKERS", 2, 1)
        self.web_workers = env_int("WEB_CONCURRENCY", 2, 1)
        self.env = dict(os.environ, INSTANCE_PATH=str(self.instance), FLASK_APP="app")
        # The embedded default is one machine's: sources on it (a local database) are its own.
        self.env.setdefault("ALLOW_PRIVATE_NETWORKS", "1")
        # Every process counts its metrics here, and /metrics adds them up (observability/metrics).
        self.metrics = Path(self.env.setdefault("PROMETHEUS_MULTIPROC_DIR", str(self.instance / "metrics")))
        self.redis: subprocess.Popen | None = None
        self.web: subprocess.Popen | None = None
        self.workers: dict[int, subprocess.Popen] = {}
        # One of each, by `flask` command; the writer's web-side fallback covers its restarts.
        self.singletons: dict[str, subprocess.Popen] = {}
        self.stopping = False

    def spawn(self, args: list[str]) -> subprocess.Popen:
        return subprocess.Popen(args, env=self.env, preexec_fn=child_setup)  # noqa: S603  (our own command lines)

    def reset_metrics(self) -> None:
        """Counts start at zero with each start: a previous run's files would add to them.
        (Only prometheus_client's files go: the folder may be one the operator named.)"""
        self.metrics.mkdir(mode=0o700, parents=True, exist_ok=True)
        for stale in self.metrics.glob("*.db"):
            stale.unlink()

    def replaced(self, proc: subprocess.Popen, what: str) -> None:
        """`proc` died: its live gauges leave /metrics (its counts stay in the totals)."""
        from prometheus_client import multiprocess

        log.warning("%s %d exited (%s); restarting", what, proc.pid, proc.returncode)
        multiprocess.mark_process_dead(proc.pid, str(self.metrics))

    def flask(self, *args: str) -> list[str]:
        return [sys.executable, "-m", "flask", "--app", "app", *args]

    def start(self) -> None:
        # Migrating counts nothing worth keeping: it gets no metrics folder.
        migrating = {k: v for k, v in self.env.items() if k != "PROMETHEUS_MULTIPROC_DIR"}
        subprocess.run(self.flask("db", "upgrade"), env=migrating, check=True)  # noqa: S603  (as above)
        secure(self.instance)
        self.reset_metrics()
        if not os.environ.get("REDIS_URL"):
            self.start_redis()
        self.web = self.spawn(
            web_server.command(self.host, self.port, self.web_workers, env_int("WEB_THREADS", 16, 1))
        )
        for slot in range(self.worker_count):
            self.workers[slot] = self.spawn(self.flask("worker"))
        for command in ("scheduler", "ingest-writer", "deliverer"):
            self.singletons[command] = self.spawn(self.flask(command))
        self.wait_until_serving()
        print(
            f"\n  hookstream is running at http://{self.host}:{self.port}\n"
            f"  instance folder: {self.instance}\n  Ctrl-C stops it.\n",
            flush=True,
        )

    def start_redis(self) -> None:
        from . import embedded_redis

        self.redis, url = embedded_redis.start(
            self.instance / "redis", {"preexec_fn": child_setup, "env": self.env}
        )
        self.env["REDIS_URL"] = url  # the same socket every time: children reconnect to it

    def wait_until_serving(self) -> None:
        url = f"http://{self.host}:{self.port}/healthz"
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and not self.stopping:
            if self.web is None or self.web.poll() is not None:
                raise RuntimeError("the web server exited while starting")
            try:
                urllib.request.urlopen(url, timeout=2)
                return
            except urllib.error.HTTPError:
                return  # it answers; 503 only means workers are still registering
            except OSError:
                time.sleep(0.2)
        if self.stopping:
            return
        raise RuntimeError(f"nothing answered at {url} within 60 s")

    def supervise(self) -> int:
        while not self.stopping:
            time.sleep(0.5)
            if self.stopping:
                break
            if self.web is None or self.web.poll() is not None:
                log.error("web server exited (%s); stopping", self.web and self.web.returncode)
                return 1
            if self.redis is not None and self.redis.poll() is not None and not self.stopping:
                # Meanwhile ingest writes without it, and the rest waits for it (SECURITY.md).
                log.warning("redis exited (%s); restarting", self.redis.returncode)
                try:
                    self.start_redis()
                except RuntimeError as exc:
                    log.warning("redis did not start again (%s); trying again", exc)
            for slot, proc in list(self.workers.items()):
                if proc.poll() is not None and not self.stopping:
                    self.replaced(proc, "worker")
                    self.workers[slot] = self.spawn(self.flask("worker"))
            for command, proc in list(self.singletons.items()):
                if proc.poll() is not None and not self.stopping:
                    self.replaced(proc, command)
                    self.singletons[command] = self.spawn(self.flask(command))
        return 0

    def stop(self) -> None:
        self.stopping = True
        # The ingest writer stops after the web server, which may still be waiting on it.
        tiers = [
            [
                self.web,
                self.singletons.get("scheduler"),
                self.singletons.get("deliverer"),
                *self.workers.values(),
            ],
            [self.singletons.get("ingest-writer")],
            [self.redis],
        ]
        for tier in tiers:
            procs = [p for p in tier if p is not None and p.poll() is None]
            for proc in procs:
                with contextlib.suppress(ProcessLookupError):
                    proc.send_signal(signal.SIGTERM)
            deadline = time.monotonic() + STOP_GRACE_SECONDS
            for proc in procs:
                try:
                    proc.wait(timeout=max(0.1, deadline - time.monotonic()))
                except subprocess.TimeoutExpired:
                    os.killpg(proc.pid, signal.SIGKILL)
                    proc.wait()


def secure(instance: Path) -> None:
    """The instance folder and the files in it (the database, its WAL, generated keys, Redis's
    append-only file) are readable by their owner only."""
    os.chmod(instance, 0o700)
    for path in [instance, *[p for p in instance.iterdir() if p.is_dir()]]:
        for item in path.iterdir():
            if item.is_file():
                os.chmod(item, 0o600)


def main() -> int:
    os.umask(0o077)  # for everything this and its children create
    configure_logging()
    runner = Runner()

    def on_signal(signum: int, _frame: FrameType | None) -> None:
        runner.stopping = True

    signal.signal(signal.SIGINT, on_signal)
    signal.signal(signal.SIGTERM, on_signal)
    code = 1
    try:
        runner.start()
        code = runner.supervise()
    except (RuntimeError, subprocess.CalledProcessError) as exc:
        log.error("hookstream could not start: %s", exc)
    finally:
        runner.stop()
    print("hookstream stopped.", flush=True)
    return code


if __name__ == "__main__":
    sys.exit(main())
