"""A PostgreSQL table in the user's own database, kept equal to the collection: upserted on
the key, deleted on delete, created if missing. Each row holds the number of the change that
wrote it, and a change older than that is not applied: a change sent twice, or a key's
changes sent again by a replay, leave the table as the newest one left it."""

from __future__ import annotations

import json
import re
import threading
import time
from typing import Any, ClassVar

import psycopg
from psycopg import sql
from pydantic import BaseModel, ConfigDict, Field, field_validator

from ..sources.base import SourceError
from ..sources.postgresql import HOSTNAME, SSL_MODES, connect, explain
from .base import MASK, DestinationType, Outcome, bounded

IDENTIFIER = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,62}$")


class PostgresConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")

    host: str = Field(max_length=253)
    port: int = Field(5432, ge=1, le=65535)
    database: str = Field(max_length=63)
    username: str = Field(max_length=63)
    sslmode: str = "prefer"
    schema_name: str = Field("public", alias="schema", description="the table's schema")
    table: str = Field(
        description="created if missing: key text primary key, record jsonb, seq bigint, changed_at"
    )

    @field_validator("host")
    @classmethod
    def _host(cls, value: str) -> str:
        if not HOSTNAME.match(value) and not re.match(r"^[0-9A-Fa-f:.]+$", value):
            raise ValueError("must be a host name or an IP address")
        return value

    @field_validator("sslmode")
    @classmethod
    def _sslmode(cls, value: str) -> str:
        if value not in SSL_MODES:
            raise ValueError(f"must be one of {', '.join(SSL_MODES)}")
        return value

    @field_validator("schema_name", "table")
    @classmethod
    def _identifier(cls, value: str) -> str:
        if not IDENTIFIER.match(value):
            raise ValueError("must be a plain identifier: letters, digits and _, not starting with a digit")
        return value


class PostgresTable(DestinationType):
    short_name = "postgres"
    title = "PostgreSQL table"
    Config: ClassVar[type[BaseModel]] = PostgresConfig
    secret_names: ClassVar[tuple[str, ...]] = ("password",)

    def __init__(self, destination_id: str, config: dict, secrets: dict) -> None:
        super().__init__(destination_id, config, secrets)
        self.lock = threading.Lock()  # one connection, one statement at a time
        self.pg: psycopg.Connection[Any] | None = None
        self.made = False

    @classmethod
    def shown_secrets(cls, secrets: dict) -> dict:
        return {"password": MASK if secrets.get("password") else None}

    def _connection(self) -> psycopg.Connection[Any]:
        if self.pg is None or self.pg.closed:
            credentials = {
                "host": self.config["host"],
                "port": self.config["port"],
                "database": self.config["database"],
                "username": self.config["username"],
                "password": self.secrets.get("password") or "",
                "sslmode": self.config["sslmode"],
            }
            self.pg = connect(credentials)
            self.made = False
        if not self.made:
            self.pg.execute(
                sql.SQL(
                    "CREATE TABLE IF NOT EXISTS {} (key text PRIMARY KEY, record jsonb, seq bigint NOT NULL, "
                    "changed_at timestamptz NOT NULL)"
                ).format(self._table())
            )
            self.made = True
        return self.pg

    def _table(self) -> sql.Composed:
        return sql.SQL("{}.{}").format(
            sql.Identifier(self.config["schema"]), sql.Identifier(self.config["table"])
        )

    def send(self, change: dict) -> Outcome:
        table = self._table()
        if change["op"] == "delete":
            statement = sql.SQL("DELETE FROM {} WHERE key = %s AND seq < %s").format(table)
            params: tuple[Any, ...] = (change["key"], change["seq"])
        else:
            statement = sql.SQL(
                "INSERT INTO {t} (key, record, seq, changed_at) VALUES (%s, %s::jsonb, %s, %s) "
                "ON CONFLICT (key) DO UPDATE SET record = excluded.record, seq = excluded.seq, "
                "changed_at = excluded.changed_at WHERE {t}.seq < excluded.seq"
            ).format(t=table)
            params = (change["key"], json.dumps(change["record"]), change["seq"], change["changed_at"])
        shown = f"{self.config['schema']}.{self.config['table']}"
        logged: dict[str, Any] = {
            "method": "DELETE" if change["op"] == "delete" else "UPSERT",
            "url": f"postgresql://{self.config['host']}:{self.config['port']}/{self.config['database']} {shown}",
            "headers": {},
            "body": bounded(
                json.dumps({"key": change["key"], "seq": change["seq"], "record": change["record"]})
            ),
        }
        started = time.monotonic()
        try:
            with self.lock:
                self._connection().execute(statement, params)
        except SourceError as exc:  # could not connect, or the guard refused the address
            return Outcome(False, None, str(exc), logged, None, _ms(started))
        except psycopg.Error as exc:
            self.close()
            return Outcome(
                False,
                None,
                explain(exc, self.config["host"], self.config["port"]),
                logged,
                None,
                _ms(started),
            )
        return Outcome(True, None, None, logged, {"headers": {}, "body": "applied"}, _ms(started))

    def close(self) -> None:
        if self.pg is not None:
            self.pg.close()
            self.pg = None


def _ms(started: float) -> int:
    return round((time.monotonic() - started) * 1000)
