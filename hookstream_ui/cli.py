"""`flask` commands: setting up users and keys without a browser, maintenance, and the
long-running processes (scheduler, ingest writer, worker). Each command is registered by a
function of its own, which hands it the app it belongs to."""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import NoReturn

import click
from flask import Flask
from sqlalchemy import select

from .errors import ValidationFailed
from .models import Environment, Membership, User, db
from .templating import counted


def _fail(exc: ValidationFailed) -> NoReturn:
    raise click.ClickException(exc.message)


def _as_cli() -> None:
    # Changes made from the command line are audited as such.
    from .services import audit

    audit.act_as(audit.Actor(None, f"cli ({os.environ.get('USER') or 'unknown user'})"))


def _create_user(app: Flask) -> None:
    @app.cli.command("create-user")
    @click.argument("email")
    @click.option("--password", required=True, help="At least 10 characters.")
    @click.option("--admin", is_flag=True, help="Make the user an instance admin.")
    @click.option("--org", "org_slug", help="Join this org (as member) instead of getting a new one.")
    @click.option(
        "--role",
        default="member",
        type=click.Choice(["owner", "admin", "member", "viewer"]),
        help="Role in --org.",
    )
    def create_user_command(email: str, password: str, admin: bool, org_slug: str | None, role: str) -> None:
        """Create a user; without --org they own a new org with a `production` project."""
        from .services.accounts import create_user

        _as_cli()
        try:
            user = create_user(email, password, admin=admin, org_slug=org_slug, role=role)
        except ValidationFailed as exc:
            _fail(exc)
        org = user.memberships[0].org
        click.echo(f"created {user.email} ({user.id}) in org {org.slug}")


def _create_api_key(app: Flask) -> None:
    @app.cli.command("create-api-key")
    @click.argument("email")
    @click.option("--name", required=True)
    @click.option(
        "--env",
        "env_slug",
        default="production",
        show_default=True,
        help="Project (environment) slug in the user's first org.",
    )
    @click.option("--expires-at", default=None, help="ISO 8601 time the key stops working (default: never).")
    def create_api_key_command(email: str, name: str, env_slug: str, expires_at: str | None) -> None:
        """Create an API key for EMAIL's org and print it once."""
        from .services.api_keys import create_key

        _as_cli()
        user = db.session.scalar(select(User).where(User.email == email.strip().lower()))
        if user is None:
            raise click.ClickException(f"no user {email}")
        membership = db.session.scalar(
            select(Membership).where(Membership.user_id == user.id).order_by(Membership.created_at)
        )
        if membership is None:
            raise click.ClickException(f"{email} belongs to no org")
        env = db.session.scalar(
            select(Environment).where(Environment.org_id == membership.org_id, Environment.slug == env_slug)
        )
        if env is None:
            raise click.ClickException(f"no project {env_slug!r} in org {membership.org.slug}")
        try:
            _, raw = create_key(env, name, user, expires_at=expires_at)
        except ValidationFailed as exc:
            _fail(exc)
        click.echo(raw)


def _rotate_credentials_key(app: Flask) -> None:
    @app.cli.command("rotate-credentials-key")
    @click.option(
        "--generate",
        is_flag=True,
        help="Make a new key first (instance-file keys only; with CREDENTIALS_KEYS, "
        "put the new key first in the variable yourself).",
    )
    def rotate_credentials_key_command(generate: bool) -> None:
        """Re-encrypt every stored credential with the newest key."""
        from .services.credential_keys import generate_instance_key, rotate_all

        if generate:
            try:
                generate_instance_key(app)
            except RuntimeError as exc:
                raise click.ClickException(str(exc)) from None
        count = rotate_all()
        click.echo(
            f"re-encrypted {counted(count, 'stored secret')} (sources and destinations) with the newest key"
        )


def _rebuild_search_index(app: Flask) -> None:
    @app.cli.command("rebuild-search-index")
    def rebuild_search_index_command() -> None:
        """Index every record's words again (after records were changed outside hookstream)."""
        from .services.search_index import rebuild

        with db.engine.begin() as connection:
            count = rebuild(connection)
        click.echo(f"indexed {counted(count, 'record')}")


def _scheduler(app: Flask) -> None:
    @app.cli.command("scheduler")
    @click.option("--interval", default=1.0, show_default=True, help="Seconds between ticks.")
    def scheduler_command(interval: float) -> None:
        """Enqueue due syncs and resume runs whose worker died (one leader at a time)."""
        from .sync.scheduler import run_forever

        run_forever(app, interval)


def _ingest_writer(app: Flask) -> None:
    @app.cli.command("ingest-writer")
    def ingest_writer_command() -> None:
        """Write webhook deliveries for the web processes, many per transaction."""
        import signal
        import threading

        from .services.ingest_writer import run_writer_process

        stop = threading.Event()
        for signum in (signal.SIGTERM, signal.SIGINT):
            signal.signal(signum, lambda *_: stop.set())
        run_writer_process(app, stop)


def _deliverer(app: Flask) -> None:
    @app.cli.command("deliverer")
    def deliverer_command() -> None:
        """Send every destination its collections' changes (sync/deliver.py)."""
        import signal
        import threading

        from .sync.deliver import Deliverer

        deliverer = Deliverer(app)
        for signum in (signal.SIGTERM, signal.SIGINT):
            signal.signal(signum, lambda *_: deliverer.stopped.set())
        thread = threading.Thread(target=deliverer.run, name="deliverer")
        thread.start()
        while thread.is_alive():
            thread.join(0.5)
        deliverer.stop()


def _worker(app: Flask) -> None:
    @app.cli.command("worker")
    @click.option("--burst", is_flag=True, help="Exit when the queues are empty.")
    def worker_command(burst: bool) -> None:
        """Run one RQ worker on this instance's queues."""
        from .sync.worker import run_worker

        run_worker(app, burst=burst)


COMMANDS: tuple[Callable[[Flask], None], ...] = (
    _create_user,
    _create_api_key,
    _rotate_credentials_key,
    _rebuild_search_index,
    _scheduler,
    _ingest_writer,
    _deliverer,
    _worker,
)


def register_cli(app: Flask) -> None:
    for register in COMMANDS:
        register(app)
