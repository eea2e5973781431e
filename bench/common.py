"""Shared bench plumbing: a temporary instance served by gunicorn, as in production."""

from __future__ import annotations

import contextlib
import json
import os
import platform
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "bench" / "results"


def machine() -> dict:
    cpu = "unknown"
    with contextlib.suppress(OSError, StopIteration), open("/proc/cpuinfo") as info:
        cpu = next(line.split(":", 1)[1].strip() for line in info if line.startswith("model name"))
    mem_gib = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30
    return {
        "cpu": cpu,
        "cores": os.cpu_count(),
        "memory_gib": round(mem_gib, 1),
        "python": platform.python_version(),
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
    }


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def percentile(sorted_values: list[float], p: float) -> float:
    if not sorted_values:
        return 0.0
    return sorted_values[min(len(sorted_values) - 1, round(p / 100 * (len(sorted_values) - 1)))]


WORKERS = 2
PRODUCTION_SERVER = "granian wsgi 2x16"


def _gunicorn(worker_class: str, threads: int = 1, *extra: str) -> list[str]:
    return [
        sys.executable,
        "-m",
        "gunicorn",
        "-w",
        str(WORKERS),
        "-k",
        worker_class,
        "--threads",
        str(threads),
        "--no-control-socket",
        *extra,
    ]


def _granian(*extra: str) -> list[str]:
    return [
        sys.executable,
        "-m",
        "granian",
        "--interface",
        "wsgi",
        "--workers",
        str(WORKERS),
        "--log-level",
        "warning",
        *extra,
    ]


# The web servers bench/servers.py compares, two processes each as `make run` runs:
# name -> (command without bind and app, how it is told where to listen). Production's,
# hookstream_ui/web_server.py, is granian's with 16 threads a process.
SERVERS: dict[str, tuple[list[str], str]] = {
    "gunicorn gthread 2x16": (_gunicorn("gthread", 16), "gunicorn"),
    "gunicorn gthread 2x4": (_gunicorn("gthread", 4), "gunicorn"),
    "gunicorn gevent 2x1000": (_gunicorn("gevent", 1, "--worker-connections", "1000"), "gunicorn"),
    "gunicorn sync 2": (_gunicorn("sync"), "gunicorn"),
    "granian wsgi 2x32": (_granian("--blocking-threads", "32"), "granian"),
    "granian wsgi 2x16": (_granian("--blocking-threads", "16"), "granian"),
    "granian wsgi 2x4": (_granian("--blocking-threads", "4"), "granian"),
}


def server_command(server: str, port: int, target: str) -> list[str]:
    base, kind = SERVERS[server]
    where = (
        ["-b", f"127.0.0.1:{port}"] if kind == "gunicorn" else ["--host", "127.0.0.1", "--port", str(port)]
    )
    return [*base, *where, target]


_PG_SERVERS: list = []


def database_url(kind: str, tmp: Path) -> str:
    if kind == "sqlite":
        return f"sqlite:///{tmp / 'bench.db'}"
    import pgserver

    server = pgserver.get_server(str(tmp / "pg"), cleanup_mode="stop")
    _PG_SERVERS.append(server)  # it stops when collected: keep it for the whole run (the ceiling too)
    return server.get_uri()


class Instance:
    """Migrated database, embedded Redis, the ingest writer and the web server on a free port."""

    def __init__(
        self,
        tmp: Path,
        db_url: str,
        web_workers: int = 2,
        web_command: Callable[[int], list[str]] | None = None,
    ) -> None:
        """Served as `make run` serves, unless `web_command(port)` says otherwise."""
        from hookstream_ui import embedded_redis, web_server

        self.tmp = tmp
        self.redis, redis_url = embedded_redis.start(tmp / "redis")
        self.env = dict(
            os.environ,
            INSTANCE_PATH=str(tmp / "instance"),
            DATABASE_URL=db_url,
            REDIS_URL=redis_url,
            FLASK_APP="app",
        )
        self.flask(["db", "upgrade"])
        self.port = free_port()
        self.base = f"http://127.0.0.1:{self.port}"
        # Each child keeps its own copy of its log's descriptor.
        with open(tmp / "web.log", "ab") as web_log:
            self.web = subprocess.Popen(
                web_command(self.port)
                if web_command
                else web_server.command(
                    "127.0.0.1", self.port, web_workers, int(os.environ.get("WEB_THREADS", "16"))
                ),
                cwd=ROOT,
                env=self.env,
                stdout=subprocess.DEVNULL,
                stderr=web_log,
            )
        # The ingest writer, as `make run` starts it.
        with open(tmp / "writer.log", "ab") as writer_log:
            self.writers = [
                subprocess.Popen(
                    [sys.executable, "-m", "flask", "--app", "app", "ingest-writer"],
                    cwd=ROOT,
                    env=self.env,
                    stdout=subprocess.DEVNULL,
                    stderr=writer_log,
                )
                for _ in range(int(os.environ.get("INGEST_WRITERS", "1")))
            ]
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            try:
                urllib.request.urlopen(self.base + "/v1/openapi.json", timeout=2)
                break
            except OSError:
                time.sleep(0.2)
        else:
            raise RuntimeError("gunicorn did not start")
        while not redis_client(redis_url).exists("hookstream:ingest:writer"):
            if time.monotonic() > deadline:
                raise RuntimeError("the ingest writer did not start")
            time.sleep(0.2)
        time.sleep(1.1)  # web processes cache the writer's liveness for a second

    def cpu_seconds(self) -> dict:
        """CPU used so far by each part of the server (to see where a run's time went)."""
        return {
            "web": process_cpu(self.web.pid),
            "writer": sum(process_cpu(w.pid) for w in self.writers),
            "redis": process_cpu(self.redis.pid),
        }

    def flask(self, args: list[str]) -> str:
        return subprocess.run(
            [sys.executable, "-m", "flask", "--app", "app", *args],
            cwd=ROOT,
            env=self.env,
            check=True,
            capture_output=True,
            text=True,
        ).stdout.strip()

    def api_key(self) -> str:
        """A new user's API key, made with the CLI as an operator would."""
        self.flask(["create-user", "bench@example.com", "--password", "bench-password-1"])
        return self.flask(["create-api-key", "bench@example.com", "--name", "bench"])

    def problems(self) -> list[str]:
        """The warnings and errors the web and writer processes logged."""
        return [
            line
            for name in ("web.log", "writer.log")
            if (self.tmp / name).exists()
            for line in (self.tmp / name).read_text(errors="replace").splitlines()
            if " WARNING " in line or " ERROR " in line or "Traceback" in line
        ]

    def stop(self) -> None:
        for proc in (self.web, *self.writers):
            proc.terminate()
            proc.wait(20)
        self.redis.terminate()
        self.redis.wait(20)


@contextmanager
def running(db: str, web_workers: int = 2) -> Iterator[tuple[Instance, str]]:
    """A temporary instance on `db` ("sqlite" or "postgres") and an API key for it; stopped
    and removed afterwards."""
    with tempfile.TemporaryDirectory(prefix="hookstream-bench-", ignore_cleanup_errors=True) as tmp_name:
        tmp = Path(tmp_name)
        instance = Instance(tmp, database_url(db, tmp), web_workers=web_workers)
        try:
            yield instance, instance.api_key()
        finally:
            instance.stop()


def source_and_collection(
    email: str, short_name: str, credentials: dict, config: dict, stream: str, key_path: str, **more: Any
) -> tuple[Any, Any]:
    """A new owner's source and a collection it feeds, made as the API makes them (inside an
    app context): (source, collection)."""
    from hookstream_ui.models.principal import Principal
    from hookstream_ui.services import accounts
    from hookstream_ui.services import collections as collection_svc
    from hookstream_ui.services import sources as source_svc

    user = accounts.create_user(email, "bench-password-1")
    org = user.memberships[0].org
    principal = Principal(org=org, env=org.environments[0], role="owner", user=user)
    source = source_svc.create_source(
        principal,
        {"sourceShortName": short_name, "name": short_name, "credentials": credentials, "config": config},
    )
    collection = collection_svc.create_collection(
        principal,
        {
            "name": f"{short_name} {stream}"[:64],
            "source_id": source.id,
            "stream": stream,
            "primary_key_path": key_path,
            **more,
        },
    )
    return source, collection


def app_env(tmp: Path, db_url: str, redis_url: str, **settings: str) -> dict:
    """The environment of the app's processes (workers, the CLI) on this bench's database
    and Redis, sources on 127.0.0.1 allowed; this process takes it too, for create_app()."""
    own = {
        "INSTANCE_PATH": str(tmp / "instance"),
        "DATABASE_URL": db_url,
        "REDIS_URL": redis_url,
        "ALLOW_PRIVATE_NETWORKS": "1",
        **settings,
    }
    os.environ.update(own)
    return dict(os.environ, FLASK_APP="app", **own)


def migrate(env: dict) -> None:
    """The app's tables in the database `env` names, as `flask db upgrade` makes them."""
    subprocess.run(
        [sys.executable, "-m", "flask", "--app", "app", "db", "upgrade"],
        cwd=ROOT,
        env=env,
        check=True,
        capture_output=True,
    )


def process_cpu(pid: int) -> float:
    """User + system CPU seconds of a process and its live children."""
    import psutil

    try:
        proc = psutil.Process(pid)
        total = 0.0
        for p in (proc, *proc.children(recursive=True)):
            times = p.cpu_times()
            total += times.user + times.system
        return total
    except psutil.NoSuchProcess:
        return 0.0


def cpu_used(before: dict, after: dict) -> dict:
    return {k: round(after[k] - before[k], 1) for k in after}


def redis_client(url: str) -> Any:  # a redis.Redis
    import redis

    return redis.Redis.from_url(url)


def save(name: str, result: dict) -> Path:
    RESULTS.mkdir(parents=True, exist_ok=True)
    path = RESULTS / f"{name}.json"
    path.write_text(json.dumps(result, indent=2) + "\n")
    return path
