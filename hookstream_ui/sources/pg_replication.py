"""A PostgreSQL source's logical replication: its publication and slot, what the server
must allow for them, and its changes read from the slot with `pgoutput`.

Changes are read with the SQL functions (`pg_logical_slot_peek_binary_changes`), which any
client can call, and the slot is advanced (`pg_replication_slot_advance`) only past what
hookstream has committed: a worker that dies in between reads the same changes again and
skips those its checkpoint already holds."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import psycopg
from psycopg import sql

from .pgoutput import UNCHANGED, Begin, Change, Commit, Decoder, Relation, Truncate, lsn_of

PEEK = (
    "SELECT data FROM pg_logical_slot_peek_binary_changes(%s, NULL, %s, "
    "'proto_version', '1', 'publication_names', %s)"
)
JSON_TYPES = {114, 3802}  # json, jsonb: their text is JSON, put in as JSON


def names(source_id: str) -> tuple[str, str]:
    """The slot's and the publication's names: the source id in the characters a slot
    name allows (lower-case letters, digits, underscores), within 63 of them."""
    own = re.sub(r"[^a-z0-9_]", "_", source_id.lower())[:50]
    return f"hookstream_{own}", f"hookstream_{own}"


@dataclass
class Transaction:
    """Some changes of one transaction, in order; `end_lsn` is set on its last part."""

    final_lsn: int
    committed_at: Any  # datetime
    changes: list[Change | Truncate] = field(default_factory=list)
    end_lsn: int | None = None
    first: int = 0  # the index of changes[0] in the whole transaction


def prerequisites(
    pg: psycopg.Connection[Any], slot: str, publication: str, tables: list[tuple[str, str]]
) -> list[str]:
    """What the server lacks for logical replication of `tables`, each said as what a DBA
    does about it; none when it is ready."""
    problems = []
    level = pg.execute("SHOW wal_level").fetchone()
    if level and level[0] != "logical":
        problems.append(
            f"wal_level is {level[0]}, not logical: set wal_level = logical in postgresql.conf "
            "(on Amazon RDS, rds.logical_replication = 1 in the parameter group) and restart PostgreSQL"
        )
    user, allowed = pg.execute(
        "SELECT current_user, rolreplication OR rolsuper OR EXISTS ("
        "SELECT 1 FROM pg_roles r WHERE r.rolname = 'rds_replication' AND pg_has_role(current_user, r.oid, 'member'))"
        " FROM pg_roles WHERE rolname = current_user"
    ).fetchone() or ("", False)
    if not allowed:
        problems.append(
            f"the user {user} lacks the REPLICATION attribute: ALTER ROLE {user} REPLICATION "
            f"(on Amazon RDS: GRANT rds_replication TO {user})"
        )
    have_publication = pg.execute("SELECT 1 FROM pg_publication WHERE pubname = %s", [publication]).fetchone()
    if not have_publication:
        may = pg.execute("SELECT has_database_privilege(current_database(), 'CREATE')").fetchone()
        owned = all(_owns(pg, schema, table) for schema, table in tables)
        if not (may and may[0] and owned):
            listed = ", ".join(f"{s}.{t}" for s, t in tables) or "the tables"
            problems.append(
                f"there is no publication {publication}, and this user may not create one: as the "
                f"owner of the tables, run CREATE PUBLICATION {publication} FOR TABLE {listed}"
            )
    for schema, table in tables:
        identity = pg.execute(
            "SELECT c.relreplident, EXISTS (SELECT 1 FROM pg_index i WHERE i.indrelid = c.oid AND i.indisprimary)"
            " FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace WHERE n.nspname = %s AND c.relname = %s",
            [schema, table],
        ).fetchone()
        if identity is None:
            problems.append(f"the table {schema}.{table} does not exist or this user cannot see it")
        elif identity[0] == "n" or (identity[0] == "d" and not identity[1]):
            problems.append(
                f"{schema}.{table} has no primary key, so its deleted rows cannot be identified: add one, "
                f"or ALTER TABLE {schema}.{table} REPLICA IDENTITY FULL"
            )
    free = pg.execute(
        "SELECT current_setting('max_replication_slots')::int - count(*), "
        "bool_or(slot_name = %s) FROM pg_replication_slots",
        [slot],
    ).fetchone()
    if free is not None and not free[1] and free[0] < 1:
        problems.append(
            "every replication slot is in use: raise max_replication_slots (and restart PostgreSQL), "
            "or drop a slot nobody reads (SELECT pg_drop_replication_slot(name))"
        )
    return problems


def _owns(pg: psycopg.Connection[Any], schema: str, table: str) -> bool:
    row = pg.execute(
        "SELECT pg_has_role(current_user, c.relowner, 'USAGE') FROM pg_class c "
        "JOIN pg_namespace n ON n.oid = c.relnamespace WHERE n.nspname = %s AND c.relname = %s",
        [schema, table],
    ).fetchone()
    return bool(row and row[0])


def ensure(pg: psycopg.Connection[Any], slot: str, publication: str, tables: list[tuple[str, str]]) -> str:
    """The publication covering exactly `tables`, and the slot; the slot's position (the LSN
    its changes start after), which for a new slot is where a snapshot taken now begins."""
    listed = sql.SQL(", ").join(
        sql.SQL("{}.{}").format(sql.Identifier(s), sql.Identifier(t)) for s, t in tables
    )
    if pg.execute("SELECT 1 FROM pg_publication WHERE pubname = %s", [publication]).fetchone():
        pg.execute(sql.SQL("ALTER PUBLICATION {} SET TABLE {}").format(sql.Identifier(publication), listed))
    else:
        pg.execute(sql.SQL("CREATE PUBLICATION {} FOR TABLE {}").format(sql.Identifier(publication), listed))
    row = pg.execute(
        "SELECT confirmed_flush_lsn::text FROM pg_replication_slots WHERE slot_name = %s", [slot]
    ).fetchone()
    if row is None:
        row = pg.execute(
            "SELECT lsn::text FROM pg_create_logical_replication_slot(%s, 'pgoutput')", [slot]
        ).fetchone()
    return str(row[0]) if row else "0/0"


def advance(pg: psycopg.Connection[Any], slot: str, lsn: str) -> None:
    """Let the server forget the WAL before `lsn`: what it holds is committed here."""
    row = pg.execute(
        "SELECT confirmed_flush_lsn < %s::pg_lsn FROM pg_replication_slots WHERE slot_name = %s", [lsn, slot]
    ).fetchone()
    if row and row[0]:
        pg.execute("SELECT pg_replication_slot_advance(%s, %s::pg_lsn)", [slot, lsn])


def drop(pg: psycopg.Connection[Any], slot: str, publication: str) -> None:
    pg.execute(
        "SELECT pg_drop_replication_slot(slot_name) FROM pg_replication_slots WHERE slot_name = %s AND NOT active",
        [slot],
    )
    pg.execute(sql.SQL("DROP PUBLICATION IF EXISTS {}").format(sql.Identifier(publication)))


def lag(pg: psycopg.Connection[Any], slot: str) -> dict | None:
    """How much WAL the slot keeps the server from removing, and how far its reader is
    behind, in bytes; None without the slot."""
    row = pg.execute(
        "SELECT pg_wal_lsn_diff(pg_current_wal_lsn(), restart_lsn)::bigint, "
        "pg_wal_lsn_diff(pg_current_wal_lsn(), confirmed_flush_lsn)::bigint, active "
        "FROM pg_replication_slots WHERE slot_name = %s",
        [slot],
    ).fetchone()
    return None if row is None else {"retained_bytes": row[0], "behind_bytes": row[1], "active": row[2]}


def transactions(
    pg: psycopg.Connection[Any], slot: str, publication: str, position: dict, limit: int, part: int
) -> Iterator[Transaction]:
    """The transactions committed past `position`, oldest first, each in parts of at most
    `part` changes. `position` is the end LSN of the last transaction committed here
    (`lsn`), and, when one was committed in part, its commit LSN (`txn`) and how many of its
    changes are (`applied`): those are left out. At most about `limit` changes in all."""
    after = lsn_of(position.get("lsn") or "0/0")
    partial = lsn_of(position["txn"]) if position.get("txn") else None
    applied = int(position.get("applied") or 0)
    decoder = Decoder()
    current: Transaction | None = None
    seen = 0  # changes of the current transaction so far, sent or not
    with pg.transaction(), pg.cursor(name="hookstream_changes") as cursor:
        cursor.itersize = 1000
        cursor.execute(PEEK, [slot, limit, publication])
        for (data,) in cursor:
            message = decoder.decode(bytes(data))
            if isinstance(message, Begin):
                current, seen = Transaction(message.final_lsn, message.committed_at), 0
                if message.final_lsn == partial:
                    current.first = applied
            elif isinstance(message, Commit) and current is not None:
                current.end_lsn = message.end_lsn
                if message.end_lsn > after:
                    yield current
                current = None
            elif isinstance(message, Change | Truncate) and current is not None:
                seen += 1
                if current.final_lsn < after or (current.final_lsn == partial and seen <= applied):
                    continue  # committed here already
                current.changes.append(message)
                if len(current.changes) >= part:
                    yield current
                    current = Transaction(current.final_lsn, current.committed_at, first=seen)


def rows_json(
    pg: psycopg.Connection[Any], relation: Relation, key: str, tuples: list[list]
) -> list[tuple[Any, str]]:
    """Each tuple as (key, the row's JSON as the cursor reader makes it): PostgreSQL itself
    turns the text values back into the table's types and then into JSON (row_to_json), so
    numerics, timestamps, arrays and NULLs come out alike. A value an update left unsent (a
    large one it did not change) is read from the table as it is now."""
    table = sql.SQL("{}.{}").format(sql.Identifier(relation.schema), sql.Identifier(relation.name))
    documents, unsent = [], []
    for index, values in enumerate(tuples):
        doc = {}
        for name, type_oid, value in zip(relation.columns, relation.types, values, strict=False):
            if value is UNCHANGED:
                unsent.append(index)
                continue
            doc[name] = json.loads(value) if value is not None and type_oid in JSON_TYPES else value
        documents.append(doc)
    rows = pg.execute(
        sql.SQL(
            "SELECT t.{k}, row_to_json(t)::text FROM jsonb_populate_recordset(NULL::{rel}, %s::jsonb) AS t"
        ).format(k=sql.Identifier(key), rel=table),
        [json.dumps(documents)],
    ).fetchall()
    result = [(row[0], row[1]) for row in rows]
    if unsent:
        keys = list({str(result[i][0]) for i in unsent})
        now = dict(
            pg.execute(
                sql.SQL(
                    "SELECT t.{k}::text, row_to_json(t)::text FROM {rel} AS t WHERE t.{k}::text = ANY(%s)"
                ).format(k=sql.Identifier(key), rel=table),
                [keys],
            ).fetchall()
        )
        result = [(k, now.get(str(k), j)) if i in unsent else (k, j) for i, (k, j) in enumerate(result)]
    return result
