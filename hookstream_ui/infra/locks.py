"""Locks for checks that must hold under concurrency: count, then change.

Two owners demoting each other at once each counted two owners before either wrote, and
left none; two first sign-ups each found the instance empty. Such a check holds a lock
first, and counts inside it.
"""

from __future__ import annotations

from typing import TypeVar

from sqlalchemy import text

from ..extensions import db


def hold(name: str) -> None:
    """Hold the lock `name` until the session's transaction ends (commit or rollback).

    PostgreSQL: a transaction-level advisory lock. SQLite has one writer at a time: the
    transaction takes the write lock now (BEGIN IMMEDIATE), before it reads what it counts;
    one that has already written holds it, and its reads are current."""
    connection = db.session.connection()
    if connection.dialect.name == "postgresql":
        connection.execute(text("SELECT pg_advisory_xact_lock(hashtextextended(:name, 0))"), {"name": name})
    else:
        write_lock()


T = TypeVar("T")


def for_update(model: type[T], ident: str) -> T | None:
    """The row, read anew and locked until the transaction ends: a state change decided on it
    (a run's status) cannot be overwritten by one decided at the same time elsewhere."""
    write_lock()
    # OF its own table: PostgreSQL locks no row across the outer joins of eager-loaded
    # relations (a collection's source and authors), and refuses FOR UPDATE over them.
    return db.session.get(model, ident, with_for_update={"of": model}, populate_existing=True)


def write_lock() -> None:
    """SQLite: take the database's write lock for this transaction now (BEGIN IMMEDIATE), not
    at its first write: a transaction that read first and writes later fails at once if
    another wrote in between. Nothing on PostgreSQL, whose rows lock as they are written."""
    connection = db.session.connection()
    if connection.dialect.name != "sqlite":
        return
    dbapi = connection.connection.dbapi_connection
    if dbapi is not None and not dbapi.in_transaction:
        connection.exec_driver_sql("BEGIN IMMEDIATE")
