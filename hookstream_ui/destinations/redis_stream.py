"""A Redis stream, for consumers that already speak Redis: each change XADDed with its id,
number, operation, key and record, the stream capped near `max_length` entries. At least
once: a consumer drops a change it already has by its `id`."""

from __future__ import annotations

import json
import socket
import time
from typing import Any, ClassVar

import redis
from pydantic import BaseModel, ConfigDict, Field, field_validator

from ..sources.base import SourceError
from ..sources.netguard import CONNECT_TIMEOUT, READ_TIMEOUT, resolve
from ..sources.postgresql import HOSTNAME
from ..sources.secrets import scrub
from .base import MASK, DestinationType, Outcome, bounded


class _Guarded:
    """Dials the address the network guard checked, for every connection the pool makes;
    TLS still verifies the name given."""

    host: str
    port: int
    socket_connect_timeout: float | None
    socket_timeout: float | None

    def _connect(self) -> socket.socket:
        address = resolve(self.host, self.port)[0]
        sock = socket.create_connection((address, self.port), self.socket_connect_timeout)
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        sock.settimeout(self.socket_timeout)
        return sock


class GuardedConnection(_Guarded, redis.connection.Connection):
    """redis-py's plain TCP connection, dialling only checked addresses."""


class GuardedSSLConnection(redis.connection.SSLConnection):
    def _connect(self) -> socket.socket:
        sock = _Guarded._connect(self)  # type: ignore[arg-type]  # the same attributes, by duck type
        try:
            return self._wrap_socket_with_ssl(sock)
        except Exception:
            sock.close()
            raise


class RedisStreamConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")

    host: str = Field(max_length=253)
    port: int = Field(6379, ge=1, le=65535)
    db: int = Field(0, ge=0, le=15)
    username: str | None = Field(None, max_length=200)
    tls: bool = False
    stream: str = Field(max_length=200, description="the stream's key")
    max_length: int = Field(100_000, ge=1, le=100_000_000, description="about how many entries it keeps")

    @field_validator("host")
    @classmethod
    def _host(cls, value: str) -> str:
        if not HOSTNAME.match(value) and not all(c in "0123456789abcdefABCDEF:." for c in value):
            raise ValueError("must be a host name or an IP address")
        return value


class RedisStream(DestinationType):
    short_name = "redis_stream"
    title = "Redis stream"
    Config: ClassVar[type[BaseModel]] = RedisStreamConfig
    secret_names: ClassVar[tuple[str, ...]] = ("password",)

    def __init__(self, destination_id: str, config: dict, secrets: dict) -> None:
        super().__init__(destination_id, config, secrets)
        self.pool = redis.ConnectionPool(
            connection_class=GuardedSSLConnection if config.get("tls") else GuardedConnection,
            host=config["host"],
            port=config["port"],
            db=config["db"],
            username=config.get("username"),
            password=secrets.get("password"),
            socket_connect_timeout=CONNECT_TIMEOUT,
            socket_timeout=READ_TIMEOUT,
            max_connections=8,
        )
        self.client = redis.Redis(connection_pool=self.pool)

    @classmethod
    def shown_secrets(cls, secrets: dict) -> dict:
        return {"password": MASK if secrets.get("password") else None}

    def send(self, change: dict) -> Outcome:
        fields: dict[Any, Any] = {
            "id": change["id"],
            "collection_id": change.get("collection_id") or "",
            "seq": change["seq"],
            "op": change["op"],
            "key": change["key"],
            "record": json.dumps(change["record"]) if change["record"] is not None else "",
            "changed_at": change["changed_at"],
        }
        logged = {
            "method": "XADD",
            "url": f"redis://{self.config['host']}:{self.config['port']}/{self.config['db']} {self.config['stream']}",
            "headers": {},
            "body": bounded(json.dumps(fields)),
        }
        started = time.monotonic()
        try:
            entry = self.client.xadd(
                self.config["stream"], fields, maxlen=self.config["max_length"], approximate=True
            )
        except SourceError as exc:  # the network guard refused the address
            return Outcome(False, None, str(exc), logged, None, _ms(started))
        except (redis.RedisError, OSError) as exc:
            said = scrub(f"{type(exc).__name__}: {exc}", [self.secrets.get("password") or ""])[:300]
            return Outcome(False, None, said, logged, None, _ms(started))
        said = entry.decode() if isinstance(entry, bytes) else str(entry)
        return Outcome(True, None, None, logged, {"headers": {}, "body": f"entry {said}"}, _ms(started))

    def close(self) -> None:
        self.pool.disconnect()


def _ms(started: float) -> int:
    return round((time.monotonic() - started) * 1000)
