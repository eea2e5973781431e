"""Test helpers that go through the real service functions and real HTTP routes."""

from __future__ import annotations

import re

from sqlalchemy import select

from hookstream_ui.models import (
    Collection,
    Environment,
    Membership,
    Org,
    Record,
    SourceConnection,
    SyncRun,
    User,
    db,
)
from hookstream_ui.services import accounts, api_keys

PASSWORD = "correct-horse-battery"
CSRF_META = re.compile(r'<meta name="csrf-token" content="([^"]+)"')


def make_user(email: str, *, org: Org | None = None, role: str = "owner", admin: bool = False) -> User:
    """A user who owns a new org, or joins `org` with `role`."""
    return accounts.create_user(email, PASSWORD, admin=admin, org_slug=org.slug if org else None, role=role)


def org_of(user: User) -> Org:
    return db.session.query(Membership).filter_by(user_id=user.id).first().org


def production(org: Org) -> Environment:
    return next(e for e in org.environments if e.slug == "production")


def add_env(org: Org, slug: str) -> Environment:
    env = Environment(org_id=org.id, name=slug, slug=slug)
    db.session.add(env)
    db.session.commit()
    return env


def make_key(
    env: Environment, name: str = "test key", owner: User | None = None, role: str = "member"
) -> str:
    """A key of `env`, made by `owner` (the org's first owner when not given): a key acts for
    the person who made it."""
    if owner is None:
        owner = db.session.scalars(
            db.select(User)
            .join(Membership)
            .where(Membership.org_id == env.org_id, Membership.role == "owner")
            .order_by(Membership.created_at)
        ).first()
    return api_keys.create_key(env, name, owner, role)[1]


def make_source(
    env: Environment, name: str = "Orders webhook", short_name: str = "webhook"
) -> SourceConnection:
    source = SourceConnection(org_id=env.org_id, env_id=env.id, name=name, short_name=short_name, config={})
    db.session.add(source)
    db.session.commit()
    return source


def bound_collection(
    env: Environment, source: SourceConnection, name: str, *, stream: str | None = None, **fields: str
) -> Collection:
    """A collection fed by `source` (its one binding), added to the session; the caller commits."""
    from hookstream_ui.services import bindings

    fields.setdefault("primary_key_path", "$.id")
    collection = Collection(
        org_id=env.org_id, env_id=env.id, name=name, slug=fields.pop("slug", name.lower()), **fields
    )
    db.session.add(collection)
    bindings.bind(collection, source, stream=stream)
    return collection


def login(client, email: str, password: str = PASSWORD) -> str:
    """Sign in through the form; return the CSRF token of the signed-in session."""
    page = client.get("/login")
    token = CSRF_META.search(page.get_data(as_text=True)).group(1)
    response = client.post("/login", data={"email": email, "password": password, "csrf_token": token})
    assert response.status_code == 302, response.get_data(as_text=True)
    return csrf_token(client)


def csrf_token(client, path: str = "/") -> str:
    return CSRF_META.search(client.get(path).get_data(as_text=True)).group(1)


def auth(key: str) -> dict:
    return {"X-API-Key": key}


def connect_webhook(client, key: str, name: str = "Hook") -> str:
    """An unsigned webhook source, connected through the API; its id."""
    answer = client.post(
        "/api/v1/source-connections",
        headers=auth(key),
        json={
            "sourceShortName": "webhook",
            "name": name,
            "credentials": {"verification_type": "none"},
            "config": {},
        },
    )
    return answer.json["sourceConnection"]["id"]


def add_orders(client, key: str, source_id: str, **fields: str) -> None:
    """The `orders` collection of `source_id`, keyed by `$.id` (plus any other fields)."""
    body = {"name": "Orders", "slug": "orders", "source_id": source_id, "primary_key_path": "$.id", **fields}
    assert client.post("/v1/collections", headers=auth(key), json=body).status_code == 201


def webhook_orders(client, key: str) -> tuple[str, str]:
    """An unsigned webhook source feeding the `orders` collection: (source id, collection id)."""
    sid = connect_webhook(client, key)
    add_orders(client, key, sid)
    return sid, client.get("/v1/collections/orders", headers=auth(key)).json["collection"]["id"]


def connect_pull(
    client, key: str, name: str, credentials: dict, stream: str, key_path: str = "$.id", **config: str
) -> tuple[str, str]:
    """A pull source of the type `name` spells (GitHub: github) connected through the API,
    and a collection it feeds from `stream`: (source id, collection id)."""
    body = {"sourceShortName": name.lower(), "name": name, "credentials": credentials, "config": config}
    answer = client.post("/api/v1/source-connections", headers=auth(key), json=body)
    assert answer.status_code in (200, 201), answer.json
    source_id = answer.json["sourceConnection"]["id"]
    made = client.post(
        "/v1/collections",
        headers=auth(key),
        json={
            "name": f"{name} {stream}",
            "source_id": source_id,
            "stream": stream,
            "primary_key_path": key_path,
        },
    )
    assert made.status_code == 201, made.json
    return source_id, made.json["collection"]["id"]


def run_inline(source_id: str, full: bool | None = None) -> SyncRun:
    """One run of the source, executed here as a worker would execute it."""
    from hookstream_ui.services.runs import start_run
    from hookstream_ui.sync import jobs

    started = start_run(db.session.get(SourceConnection, source_id), full=full)
    run_id, token = started.id, started.claim_token
    jobs.run_sync(run_id, token)
    db.session.expire_all()
    return db.session.get(SyncRun, run_id)


def records_of(collection_id: str) -> dict:
    """The collection's records, {key: data}, as stored now."""
    db.session.expire_all()
    rows = db.session.scalars(select(Record).where(Record.collection_id == collection_id))
    return {r.record_key: r.data for r in rows}


def assert_read_in_index_order(client, path: str, headers: dict, table: str, index: str) -> None:
    """GET `path` runs one ordered query on `table`, and it reads `index` in list order: no
    sort of the environment's rows (SQLite's temp b-tree; on PostgreSQL, with sorting off,
    only an index can give the order)."""
    from sqlalchemy import event as sa_event

    from hookstream_ui.models import db

    statements = []

    def capture(_conn, _cursor, statement, parameters, _context, _many):
        if f"FROM {table}" in statement and "ORDER BY" in statement:
            statements.append((statement, parameters))

    sa_event.listen(db.engine, "before_cursor_execute", capture)
    try:
        assert client.get(path, headers=headers).status_code == 200
    finally:
        sa_event.remove(db.engine, "before_cursor_execute", capture)
    ((statement, parameters),) = statements
    with db.engine.connect() as connection:
        if connection.dialect.name == "sqlite":
            plan = " | ".join(
                row[-1] for row in connection.exec_driver_sql("EXPLAIN QUERY PLAN " + statement, parameters)
            )
            assert index in plan and "TEMP B-TREE" not in plan, plan
        else:
            connection.exec_driver_sql("SET enable_sort = off")
            plan = " | ".join(
                row[0] for row in connection.exec_driver_sql("EXPLAIN " + statement, parameters)
            )
            assert index in plan and "Sort" not in plan, plan
