"""PostgreSQL tables and views, read with psycopg 3."""

from __future__ import annotations

import ipaddress
import re
import socket
from collections.abc import Mapping, Sequence
from datetime import datetime, timedelta
from typing import Any

import psycopg
from flask import current_app
from psycopg import sql
from psycopg.rows import dict_row
from sqlalchemy.engine import make_url

from ..extensions import db
from ..values.records import Incoming, json_safe, parse_time
from . import pg_replication
from .base import Batch, Batches, Connection, ReadContext, SourceError, SourceType, TestResult, register
from .fields import Field
from .netguard import CONNECT_TIMEOUT, allow_private, resolve
from .pg_feed import PgChangeFeed

SSL_MODES = ("disable", "allow", "prefer", "require", "verify-ca", "verify-full")
LOOKBACK = 60
# A connection test answers within seconds; a read's statements may take longer on a big
# table (an incremental read sorts on a cursor column that may have no index).
READ_STATEMENT_TIMEOUT = "15min"
COUNT_TIMEOUT_MS = 2000
MAX_LOOKBACK = 7 * 86400
HOSTNAME = re.compile(
    r"(?=.{1,253}$)[A-Za-z0-9_]([A-Za-z0-9_-]{0,62})(\.[A-Za-z0-9_][A-Za-z0-9_-]{0,62})*\.?"
)
SOCKET_PATH = re.compile(r"[@/][^\s,='\\]{0,200}")
# What host_problem() lets through, for the OpenAPI document: one host name, an IP address
# (written with hex digits, dots and colons), or a socket path where private networks are allowed.
HOST_RULE = {"pattern": f"^(?:{HOSTNAME.pattern}|[0-9A-Fa-f:.]+|{SOCKET_PATH.pattern})$", "maxLength": 253}
# A path that can never exist (/dev/null is no directory): libpq's password file, client
# certificate and key settings point here, so none of the process's own is ever used.
NO_FILE = "/dev/null/none"
MAX_ADDRESSES = 4  # of a name's answers, tried in turn
OWN_DATABASE = "Refusing to connect to hookstream's own database"


def explain(exc: psycopg.Error, host: str | None, port: int | None) -> str:
    """One human sentence per failure kind; libpq's own text is kept as the detail."""
    text = str(exc).strip().splitlines()[-1] if str(exc).strip() else type(exc).__name__
    lowered = str(exc).lower()
    if "password authentication failed" in lowered or "no password supplied" in lowered:
        return "Authentication failed: wrong username or password"
    if "does not exist" in lowered and "database" in lowered:
        return f"Connected, but that database does not exist ({text})"
    if "connection refused" in lowered:
        return f"Connection refused: nothing is listening on {host}:{port}"
    if "timeout" in lowered or "timed out" in lowered:
        return f"Timed out connecting to {host}:{port} after {CONNECT_TIMEOUT:.0f} s"
    if "ssl" in lowered or "certificate" in lowered:
        return f"TLS error: {text}"
    return f"Could not connect: {text}"


def host_problem(host: str) -> str | None:
    """Why libpq must not be given `host`, if it must not: libpq takes a comma-separated
    list (and tries each), and a socket directory reaches whatever server listens on this
    machine, which no network check can judge. One host name or IP address, or a socket
    path where private networks are allowed."""
    if "," in host:
        return "must be one host (libpq would try each of a comma-separated list)"
    if host.startswith(("/", "@")):
        if not allow_private():
            return (
                "is a unix-socket path, which reaches servers on this machine; those, and private, "
                "loopback and link-local addresses, are refused here (set ALLOW_PRIVATE_NETWORKS to allow them)"
            )
        return None if SOCKET_PATH.fullmatch(host) else "is not a usable socket path"
    try:
        ipaddress.ip_address(host)
        return None
    except ValueError:
        return None if HOSTNAME.fullmatch(host) else "must be a host name or an IP address"


def _own_database(address: str | None, port: int, database: str) -> bool:
    """Whether `address` (None: a socket directory), `port` and `database` are hookstream's
    own database: every tenant's data and secrets are there, so it is never a source, whatever
    else is allowed (another database of the same server may be: PostgreSQL reads no table
    across databases). On this machine one port is one server, by TCP or by socket (whose
    file is named for the port), so a local endpoint on its port is taken to be it."""
    url = make_url(current_app.config["SQLALCHEMY_DATABASE_URI"])
    if (
        not url.drivername.startswith("postgresql")
        or (url.port or 5432) != port
        or (url.database or url.username or "") != database
    ):
        return False
    own = url.query.get("host") or url.host or "/tmp"  # noqa: S108 -- libpq's default socket directory, compared only
    own = own[0] if isinstance(own, tuple) else own
    try:
        own_addresses = (
            set()
            if own.startswith("/")
            else {str(info[4][0]) for info in socket.getaddrinfo(own, port, type=socket.SOCK_STREAM)}
        )
    except OSError:
        own_addresses = set()
    if address in own_addresses:
        return True
    return _local(address) and (own.startswith("/") or any(_local(a) for a in own_addresses))


def _local(address: str | None) -> bool:
    if address is None:
        return True
    ip = ipaddress.ip_address(address.split("%")[0])
    ip = getattr(ip, "ipv4_mapped", None) or ip
    return ip.is_loopback or ip.is_unspecified  # 0.0.0.0 and :: reach this machine too


SERVER_IDENTITY = "SELECT pg_postmaster_start_time()::text, current_database()"


def _is_own(pg: psycopg.Connection[Any]) -> bool:
    """Whether an open connection reached hookstream's own database, by what the server
    says of itself (when it started, which database) rather than by how it was named: a
    LAN address, another name or a proxy of this server are all caught."""
    if db.engine.dialect.name != "postgresql":
        return False
    with db.engine.connect() as own:
        mine = tuple(own.exec_driver_sql(SERVER_IDENTITY).one())
    return tuple(_row(pg.execute(SERVER_IDENTITY))) == mine


def _row(cursor: psycopg.Cursor[Any]) -> Any:
    """The row of a query that always answers one (SHOW, count(*), a function's value)."""
    row = cursor.fetchone()
    if row is None:
        raise SourceError("PostgreSQL answered no row where one is always expected")
    return row


def connect(creds: dict) -> psycopg.Connection[Any]:
    host, port = str(creds["host"]), int(creds.get("port") or 5432)
    problem = host_problem(host)
    if problem:
        raise SourceError(f"The host {problem}", retry=False)
    # Every connection setting is given, so that libpq takes none of its own from the
    # environment or files of the process (a password from ~/.pgpass or PGPASSWORD, a client
    # certificate, a Kerberos ticket: no GSS encryption, no GSS or SSPI sign-in, no delegated
    # credentials) to a server someone else named.
    params: dict[str, Any] = {
        "host": host,
        "port": port,
        "dbname": creds["database"],
        "user": creds["username"],
        "password": creds.get("password") or "",
        "sslmode": creds.get("sslmode") or "prefer",
        "connect_timeout": int(CONNECT_TIMEOUT),
        "application_name": "hookstream",
        "options": "-c statement_timeout=5000",
        "passfile": NO_FILE,
        "sslcert": NO_FILE,
        "sslkey": NO_FILE,
        "gssencmode": "disable",
        "require_auth": "!gss,!sspi",
        "gssdelegation": 0,
        # A peer gone silent (a network that drops, not closes) is noticed in about a minute,
        # not when the kernel gives up: a streaming read waits on it for good otherwise.
        "keepalives": 1,
        "keepalives_idle": 30,
        "keepalives_interval": 10,
        "keepalives_count": 3,
    }
    addresses: Sequence[str | None] = (None,)
    if not host.startswith(("/", "@")):
        # Connect to the addresses we checked, not to a second DNS answer (host stays for
        # TLS); libpq tries them in turn, as it would the name's own answers.
        resolved = resolve(host, port)[:MAX_ADDRESSES]
        params.update(host=",".join([host] * len(resolved)), hostaddr=",".join(resolved))
        addresses = resolved
    if any(_own_database(address, port, str(creds["database"])) for address in addresses):
        raise SourceError(OWN_DATABASE, retry=False)
    try:
        pg = psycopg.connect(**params, autocommit=True)
    except psycopg.Error as exc:
        lowered = str(exc).lower()
        # Wrong password, no such database: retrying cannot help until someone fixes it.
        final = (
            "authentication failed" in lowered
            or "no password supplied" in lowered
            or "does not exist" in lowered
        )
        raise SourceError(explain(exc, host, port), retry=not final) from None
    try:
        own = _is_own(pg)
    except psycopg.Error as exc:
        pg.close()
        raise SourceError(explain(exc, host, port)) from None
    if own:
        pg.close()
        raise SourceError(OWN_DATABASE, retry=False)
    return pg


def read_error(exc: psycopg.Error, relation: str) -> SourceError:
    """A failure mid-read, in PostgreSQL's own words. A lost connection or a timeout may
    pass; a missing table or column, or a missing permission, stays until someone acts."""
    text = (exc.diag.message_primary or "").strip() or type(exc).__name__
    return SourceError(
        f"PostgreSQL could not read {relation}: {text}",
        retry=isinstance(exc, (psycopg.OperationalError, psycopg.InternalError)),
    )


# A table whose key column has no primary key or unique index of its own (views cannot say).
KEY_NOT_UNIQUE = """
SELECT c.relkind IN ('r', 'p') AND NOT EXISTS (
    SELECT 1 FROM pg_index i JOIN pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = i.indkey[0]
    WHERE i.indrelid = c.oid AND i.indisunique AND i.indnkeyatts = 1 AND i.indpred IS NULL AND a.attname = %s)
FROM pg_class c WHERE c.oid = %s::regclass"""


@register
class PostgreSQL(SourceType):
    short_name = "postgresql"
    name = "PostgreSQL"
    description = (
        "Sync a table or view: a keyset-paginated backfill, then incremental reads on a cursor column."
    )
    name_example = "Production database"
    labels = ("database",)
    dials_out = True
    supports_continuous = True  # with logical replication: changes stream as they commit
    ordered_keys = True
    auth_fields = (
        Field("host", "string", "Host", required=True, placeholder="db.example.com", rules=HOST_RULE),
        Field(
            "port",
            "number",
            "Port",
            required=True,
            default=5432,
            rules={"minimum": 1, "maximum": 65535, "multipleOf": 1},
        ),
        Field("database", "string", "Database", required=True, placeholder="app"),
        Field("username", "string", "Username", required=True, placeholder="readonly"),
        Field("password", "password", "Password", required=True, sent_to=("host", "port", "sslmode")),
        Field(
            "sslmode",
            "select",
            "SSL mode",
            default="prefer",
            options=SSL_MODES,
            description="verify-full checks the server's certificate and name.",
        ),
    )
    config_fields = (
        Field(
            "replication",
            "select",
            "Change capture",
            default="cursor",
            options=(
                ("cursor", "Cursor column: re-read rows whose cursor moved"),
                ("logical", "Logical replication: stream every change, deletes included"),
            ),
            description="Logical replication reads changes from a replication slot within a second, "
            "deletes and truncates included; the server needs wal_level = logical and a user with "
            "REPLICATION (the connection test says what is missing).",
        ),
        Field("schema", "string", "Schema", default="public"),
        Field(
            "table",
            "string",
            "Table or view",
            placeholder="customers",
            description="Collections bound to this source may also pick their own table.",
        ),
        Field("primary_key", "string", "Primary key column", default="id"),
        Field(
            "cursor_column",
            "string",
            "Cursor column",
            placeholder="updated_at",
            description="A column that grows on every change, for incremental syncs.",
        ),
        Field(
            "cursor_lookback",
            "number",
            "Re-read window (seconds, or values)",
            default=LOOKBACK,
            rules={"minimum": 0, "maximum": MAX_LOOKBACK, "multipleOf": 1},
            description="Each incremental read starts this far before the newest cursor value it has seen "
            "(seconds for a date-time cursor, values for a numeric one), so rows committed late "
            "are not missed: now() is a transaction's start time, and a sequence's numbers are "
            "taken before their rows commit. Rows read again unchanged are not rewritten.",
        ),
    )

    def key_column(self, config: Mapping[str, Any], stream: str | None = None) -> str:
        return config.get("primary_key") or "id"

    def change_feed(self, conn: Connection) -> PgChangeFeed | None:
        if conn.config.get("replication") != "logical":
            return None
        schema = conn.config.get("schema") or "public"

        def tables_of(streams: list[str]) -> dict[tuple[str, str], str]:
            return {split_stream(s or conn.config.get("table") or "", schema): s for s in streams}

        return PgChangeFeed(
            conn.id, conn.credentials, conn.config, connect, tables_of, self.key_column(conn.config)
        )

    def check(self, credentials: dict, config: dict) -> dict[str, str]:
        errors = {}
        problem = host_problem(credentials.get("host") or "")
        if problem and credentials.get("host"):
            errors["host"] = problem
        port = credentials.get("port")
        if port is not None and not (isinstance(port, int) and 1 <= port <= 65535):
            errors["port"] = "must be a whole number from 1 to 65535"
        lookback = config.get("cursor_lookback")
        if lookback is not None and not (isinstance(lookback, int) and 0 <= lookback <= MAX_LOOKBACK):
            errors["cursor_lookback"] = f"must be a whole number from 0 to {MAX_LOOKBACK}"
        return errors

    def test(self, conn: Connection) -> TestResult:
        try:
            with connect(conn.credentials) as pg:
                version = _row(pg.execute("SHOW server_version"))[0]
                table = conn.config.get("table")
                if table:
                    schema = conn.config.get("schema") or "public"
                    found = _row(pg.execute("SELECT to_regclass(%s)", [f'"{schema}"."{table}"']))[0]
                    if found is None:
                        return TestResult(
                            False,
                            f"Connected, but table {schema}.{table} does not exist "
                            "or this user cannot see it",
                        )
                    pg.execute(
                        sql.SQL("SELECT 1 FROM {}.{} LIMIT 1").format(
                            sql.Identifier(schema), sql.Identifier(table)
                        )
                    )
                    for column in filter(
                        None, (conn.config.get("primary_key"), conn.config.get("cursor_column"))
                    ):
                        has = pg.execute(
                            "SELECT 1 FROM information_schema.columns WHERE table_schema=%s "
                            "AND table_name=%s AND column_name=%s",
                            [schema, table, column],
                        ).fetchone()
                        if not has:
                            return TestResult(
                                False, f"Connected, but {schema}.{table} has no column {column!r}"
                            )
                    message = f"Connected to PostgreSQL {version}; {schema}.{table} is readable"
                    refused = _replication_refused(pg, conn, [(schema, table)])
                    if refused is not None:
                        return refused
                    if conn.config.get("replication") == "logical":
                        slot, _ = pg_replication.names(conn.id)
                        message += f"; logical replication is ready (slot and publication {slot})"
                    key = self.key_column(conn.config)
                    if _row(pg.execute(KEY_NOT_UNIQUE, [key, f'"{schema}"."{table}"']))[0]:
                        message += (
                            f". Note: column {key!r} has no primary key or unique index of its own, "
                            "so rows sharing a value become one record"
                        )
                    return TestResult(True, message)
                return _replication_refused(pg, conn, []) or TestResult(
                    True, f"Connected to PostgreSQL {version}"
                )
        except psycopg.errors.InsufficientPrivilege:
            return TestResult(False, "Connected, but this user may not read that table")
        except SourceError as exc:
            return TestResult(False, str(exc))
        except psycopg.Error as exc:
            return TestResult(False, explain(exc, conn.credentials.get("host"), conn.credentials.get("port")))

    def list_streams(self, conn: Connection) -> list[dict]:
        with connect(conn.credentials) as pg:
            rows = pg.execute(
                "SELECT table_schema, table_name FROM information_schema.tables "
                "WHERE table_schema NOT IN ('pg_catalog', 'information_schema') "
                "ORDER BY table_schema, table_name LIMIT 1000"
            ).fetchall()
        return [
            {"name": name if schema == "public" else f"{schema}.{name}", "label": f"{schema}.{name}"}
            for schema, name in rows
        ]

    def read(
        self,
        conn: Connection,
        stream: str | None,
        state: dict | None,
        checkpoint: dict,
        full: bool,
        ctx: ReadContext,
    ) -> Batches:
        schema, table = split_stream(
            stream or conn.config.get("table") or "", conn.config.get("schema") or "public"
        )
        if not table:
            raise SourceError(
                "No table to read: set the collection's stream or the source's table", retry=False
            )
        pk = self.key_column(conn.config)
        cursor_col = conn.config.get("cursor_column") or None
        relation = sql.SQL("{}.{}").format(sql.Identifier(schema), sql.Identifier(table))
        with connect(conn.credentials) as pg:
            pg.row_factory = dict_row
            pg.execute(f"SET statement_timeout = '{READ_STATEMENT_TIMEOUT}'")
            try:
                if full or not state or state.get("cursor") is None or not cursor_col:
                    yield from self._backfill(pg, relation, pk, cursor_col, checkpoint, ctx)
                else:
                    lookback = conn.config.get("cursor_lookback")
                    yield from self._incremental(
                        pg,
                        relation,
                        pk,
                        cursor_col,
                        state,
                        checkpoint,
                        ctx,
                        LOOKBACK if lookback is None else lookback,
                    )
            except psycopg.Error as exc:
                raise read_error(exc, f"{schema}.{table}") from None

    def _select(self, relation: sql.Composable, pk: str, cursor_col: str | None) -> sql.Composed:
        """Each row as JSON text made by PostgreSQL (in C), with its key and cursor beside it."""
        cursor = self._cursor(cursor_col) if cursor_col else sql.SQL("NULL")
        return sql.SQL("SELECT t.{pk} AS k, {c} AS c, row_to_json(t)::text AS j FROM {rel} AS t").format(
            pk=sql.Identifier(pk), c=cursor, rel=relation
        )

    @staticmethod
    def _cursor(cursor_col: str) -> sql.Composed:
        return sql.SQL("t.{}").format(sql.Identifier(cursor_col))

    @staticmethod
    def _page(
        pg: psycopg.Connection[Any],
        query: sql.Composable,
        params: list,
        order: sql.Composable,
        ctx: ReadContext,
    ) -> tuple[list, bool]:
        """Up to `ctx.batch_size` rows of `query` (ordered by `order`, limited), cut once they
        pass `ctx.batch_bytes` (the first row always comes), with a row larger than the record
        size limit sent without its JSON (j NULL): memory follows the batch, not the widest
        rows. Returns the rows and whether the query had more than were sent."""
        page = sql.SQL(
            "SELECT k, c, CASE WHEN n > %s THEN NULL ELSE j END AS j, n, fetched FROM ("
            "SELECT k, c, j, n, count(*) OVER () AS fetched, "
            "sum(n) OVER (ORDER BY {order} ROWS UNBOUNDED PRECEDING) - n AS before FROM ("
            "SELECT k, c, j, octet_length(j) AS n FROM ({query}) AS q) AS s) AS w "
            "WHERE before < %s ORDER BY {order}"
        ).format(query=query, order=order)
        rows = pg.execute(page, [ctx.max_record_bytes, *params, ctx.batch_size, ctx.batch_bytes]).fetchall()
        return rows, bool(rows) and (len(rows) < rows[0]["fetched"] or rows[0]["fetched"] >= ctx.batch_size)

    @staticmethod
    def _items(rows: list[dict], key_path: str, ctx: ReadContext) -> list[Incoming]:
        too_big = f"larger than the record size limit ({ctx.max_record_bytes:,} bytes)"
        return [
            Incoming(
                None,
                parse_time(row["c"]),
                raw=row["j"],
                key=row["k"],
                key_path=key_path,
                refused=None if row["j"] is not None else too_big,
            )
            for row in rows
        ]

    @staticmethod
    def _total(pg: psycopg.Connection[Any], relation: sql.Composed) -> int | None:
        """Rows to read, for progress and ETA. Counting a table of many millions takes
        minutes; past two seconds PostgreSQL's own estimate will do (a view has none)."""
        try:
            with pg.transaction():
                pg.execute(f"SET LOCAL statement_timeout = {COUNT_TIMEOUT_MS}")
                return _row(pg.execute(sql.SQL("SELECT count(*) AS n FROM {}").format(relation)))["n"]
        except psycopg.errors.QueryCanceled:
            estimate = _row(
                pg.execute(
                    sql.SQL("SELECT reltuples::bigint AS n FROM pg_class WHERE oid = {}::regclass").format(
                        sql.Literal(relation.as_string(pg))
                    )
                )
            )["n"]
            return estimate if estimate > 0 else None

    def _backfill(
        self,
        pg: psycopg.Connection[Any],
        relation: sql.Composed,
        pk: str,
        cursor_col: str | None,
        checkpoint: dict,
        ctx: ReadContext,
    ) -> Batches:
        """Keyset pagination on the primary key: each batch resumes after the last key.
        The incremental reads that follow begin at the newest cursor value as the backfill
        began: a row changed while it ran has a later one, even when its key had already
        been passed and rows read after it carry later values still."""
        total = self._total(pg, relation)
        after = checkpoint.get("after")
        if "max_cursor" in checkpoint or not cursor_col:
            high = checkpoint.get("max_cursor")
        else:
            high = json_safe(
                _row(
                    pg.execute(
                        sql.SQL("SELECT max({}) AS c FROM {} AS t").format(self._cursor(cursor_col), relation)
                    )
                )["c"]
            )
        select = self._select(relation, pk, cursor_col)
        key_path = f"$.{pk}"
        order = sql.SQL(" ORDER BY t.{} LIMIT %s").format(sql.Identifier(pk))
        while True:
            if after is None:
                rows, more = self._page(pg, select + order, [], sql.SQL("k"), ctx)
            else:
                where = sql.SQL(" WHERE t.{} > %s").format(sql.Identifier(pk))
                rows, more = self._page(pg, select + where + order, [after], sql.SQL("k"), ctx)
            if not rows:
                break
            after = json_safe(rows[-1]["k"])
            yield Batch(self._items(rows, key_path, ctx), {"after": after, "max_cursor": high}, total=total)
            if not more:
                break
        state = {"cursor": high} if cursor_col else None
        yield Batch([], {"after": after, "max_cursor": high, "done": True}, total=total, state=state)

    def _incremental(
        self,
        pg: psycopg.Connection[Any],
        relation: sql.Composed,
        pk: str,
        cursor_col: str,
        state: dict,
        checkpoint: dict,
        ctx: ReadContext,
        lookback: int,
    ) -> Batches:
        """Rows whose cursor is at or past the newest value read so far, less the re-read
        window, in (cursor, key) order. At, not past: a coarse cursor (a date, whole
        seconds) gives rows changed later the value the last read ended on. Less the
        window: a transaction's now() is when it began, so a row can commit after rows
        with later values were read."""
        high = checkpoint.get("high", state["cursor"])
        position = checkpoint.get("position") or [rewind(state["cursor"], lookback), None]
        select = self._select(relation, pk, cursor_col)
        order = sql.SQL(" ORDER BY t.{}, t.{} LIMIT %s").format(
            sql.Identifier(cursor_col), sql.Identifier(pk)
        )
        while True:
            cursor_value, last_pk = position
            if last_pk is None:
                where = sql.SQL(" WHERE t.{} >= %s").format(sql.Identifier(cursor_col))
                params = [cursor_value]
            else:
                where = sql.SQL(" WHERE (t.{c} > %s OR (t.{c} = %s AND t.{k} > %s))").format(
                    c=sql.Identifier(cursor_col), k=sql.Identifier(pk)
                )
                params = [cursor_value, cursor_value, last_pk]
            rows, more = self._page(pg, select + where + order, params, sql.SQL("c, k"), ctx)
            if not rows:
                break
            if _after(rows[-1]["c"], high):
                high = json_safe(rows[-1]["c"])
            position = [json_safe(rows[-1]["c"]), json_safe(rows[-1]["k"])]
            yield Batch(
                self._items(rows, f"$.{pk}", ctx),
                {"position": position, "high": high},
                state={"cursor": high},
            )
            if not more:
                break
        yield Batch([], {"position": position, "high": high, "done": True}, state={"cursor": high})


def _replication_refused(
    pg: psycopg.Connection[Any], conn: Connection, tables: list[tuple[str, str]]
) -> TestResult | None:
    """With logical replication: a failed test naming every prerequisite the server lacks."""
    if conn.config.get("replication") != "logical":
        return None
    slot, publication = pg_replication.names(conn.id)
    missing = pg_replication.prerequisites(pg, slot, publication, tables)
    if not missing:
        return None
    return TestResult(False, "Connected, but logical replication cannot start: " + "; ".join(missing))


def rewind(cursor: object, window: int) -> object:
    """The cursor `window` earlier: seconds for a date-time (as JSON text), values for a
    number (a sequence hands out numbers before their rows commit, so a lower one can commit
    after a higher one was read). A date is re-read whole already."""
    if not window:
        return cursor
    if isinstance(cursor, (int, float)) and not isinstance(cursor, bool):
        return cursor - window
    if not isinstance(cursor, str) or len(cursor) <= 10:
        return cursor
    try:
        at = datetime.fromisoformat(cursor)
    except ValueError:
        return cursor
    return (at - timedelta(seconds=window)).isoformat()


def _after(value: Any, high: Any) -> bool:
    """value is past high, where high may be the JSON form kept in a checkpoint (ISO text)."""
    if isinstance(high, str) and not isinstance(value, str):
        value = json_safe(value)
    return value >= high


def split_stream(stream: str, default_schema: str) -> tuple[str, str]:
    if "." in stream:
        schema, table = stream.split(".", 1)
        return schema, table
    return default_schema, stream
