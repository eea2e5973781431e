"""Configuration from the environment, with instance-local defaults.

Everything a deployment sets is an environment variable; the embedded default needs
none of them. Secrets that are not given are generated once and kept under the
instance folder with mode 0600, so a restart keeps sessions and encrypted credentials.
"""

from __future__ import annotations

import ipaddress
import os
import secrets
from collections.abc import Callable
from datetime import timedelta
from pathlib import Path
from typing import Any, overload

from cryptography.fernet import Fernet

TRUTHY = {"1", "true", "yes", "on"}

# What the test suite's app changes (tests/conftest.py), and nothing else: one round of
# PBKDF2 instead of scrypt, whose tenth of a second per hash (each user made, each sign-in,
# each unknown email) was minutes of the suite. What is hashed, checked and refused is the
# same; tests/test_accounts.py checks that production keeps scrypt.
TEST_CONFIG = {"TESTING": True, "PASSWORD_HASH_METHOD": "pbkdf2:sha256:1"}


def env_flag(name: str, default: bool = False) -> bool:
    value = os.environ.get(name)
    if value is None:
        return default
    return value.strip().lower() in TRUTHY


@overload
def env_int(name: str, default: int, minimum: int = 0) -> int: ...
@overload
def env_int(name: str, default: None, minimum: int = 0) -> int | None: ...
def env_int(name: str, default: int | None, minimum: int = 0) -> int | None:
    """An integer setting; a bad value stops the start with a message naming it."""
    value = os.environ.get(name, "").strip()
    if not value:
        return default
    try:
        number = int(value)
    except ValueError:
        number = None
    if number is None or number < minimum:
        raise SystemExit(f"{name} must be a whole number of at least {minimum} (got {value!r})")
    return number


def instance_path() -> Path:
    path = Path(os.environ.get("INSTANCE_PATH") or Path.cwd() / "instance").resolve()
    path.mkdir(mode=0o700, parents=True, exist_ok=True)
    return path


def env_networks(name: str, default: str) -> list[ipaddress.IPv4Network | ipaddress.IPv6Network]:
    """Comma-separated addresses or CIDR ranges; a bad one stops the start naming it."""
    value = os.environ.get(name, default)
    try:
        return [ipaddress.ip_network(part.strip(), strict=False) for part in value.split(",") if part.strip()]
    except ValueError as exc:
        raise SystemExit(f"{name} must be comma-separated addresses or CIDR ranges ({exc})") from None


def _kept_secret(path: Path, make: Callable[[], str]) -> str:
    """Read a generated secret, creating it atomically with 0600 the first time."""
    if path.exists():
        return path.read_text().strip()
    value = make()
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        os.write(fd, value.encode())
    except BaseException:
        os.close(fd)
        raise
    os.close(fd)
    return value


def load_config(instance: Path) -> dict[str, Any]:
    secret_key = os.environ.get("SECRET_KEY") or _kept_secret(
        instance / "secret_key", lambda: secrets.token_urlsafe(48)
    )
    # Comma-separated Fernet keys, newest first (MultiFernet order).
    encryption_keys = os.environ.get("CREDENTIALS_KEYS") or _kept_secret(
        instance / "credentials.key", lambda: Fernet.generate_key().decode()
    )
    database_url = os.environ.get("DATABASE_URL") or f"sqlite:///{instance / 'hookstream.db'}"
    if database_url.startswith("postgres://"):
        database_url = "postgresql+psycopg://" + database_url[len("postgres://") :]
    elif database_url.startswith("postgresql://"):
        database_url = "postgresql+psycopg://" + database_url[len("postgresql://") :]
    return {
        "SECRET_KEY": secret_key,
        "CREDENTIALS_KEYS": [k.strip() for k in encryption_keys.split(",") if k.strip()],
        "SQLALCHEMY_DATABASE_URI": database_url,
        # A SQLite file cannot drop a connection; pinging it only costs a query per checkout.
        # A connection per request thread stays open: connections made and dropped under
        # load (above the default pool of 5) cost more than the requests they served.
        "SQLALCHEMY_ENGINE_OPTIONS": {
            "pool_size": max(5, env_int("WEB_THREADS", 16, 1)),
            "max_overflow": 4,
            **({} if database_url.startswith("sqlite") else {"pool_pre_ping": True}),
        },
        # Unset means the embedded server `make run` starts on a socket in the instance folder.
        "REDIS_URL": os.environ.get("REDIS_URL") or f"unix://{instance / 'redis.sock'}",
        "REDIS_SOCKET_TIMEOUT": 5,  # seconds; a Redis that answers no sooner is treated as down
        "ALLOW_SIGNUP": env_flag("ALLOW_SIGNUP"),
        "ALLOW_PRIVATE_NETWORKS": env_flag("ALLOW_PRIVATE_NETWORKS"),
        "MAX_CONTENT_LENGTH": env_int("MAX_BODY_BYTES", 1024 * 1024, 1),
        "SYNC_BATCH_SIZE": env_int("SYNC_BATCH_SIZE", 5000, 1),
        "SYNC_BATCH_BYTES": env_int("SYNC_BATCH_BYTES", 16 * 1024 * 1024, 1),
        # How long a streaming run (logical replication) goes on once caught up; the next run
        # starts at once, so this bounds a run's length, not how soon changes arrive.
        "SYNC_STREAM_SECONDS": env_int("SYNC_STREAM_SECONDS", 300),
        # A change feed's slot (sync/feeds.py): the WAL it keeps, or how long since its reader
        # moved, past which its source's health is degraded, then error.
        "FEED_DEGRADED_BYTES": env_int("FEED_DEGRADED_BYTES", 1024**3),
        "FEED_ERROR_BYTES": env_int("FEED_ERROR_BYTES", 16 * 1024**3),
        "FEED_DEGRADED_SECONDS": env_int("FEED_DEGRADED_SECONDS", 600),
        "FEED_ERROR_SECONDS": env_int("FEED_ERROR_SECONDS", 3600),
        "MAX_UPLOAD_BYTES": env_int("MAX_UPLOAD_BYTES", 512 * 1024 * 1024, 1),
        # One record, from any source: its JSON size and its fields (services/upsert.RecordLimits).
        "MAX_RECORD_BYTES": env_int("MAX_RECORD_BYTES", env_int("MAX_BODY_BYTES", 1024 * 1024, 1), 1),
        "MAX_RECORD_FIELDS": env_int("MAX_RECORD_FIELDS", 10_000, 1),
        # Base of URLs shown to users (ingest URLs); empty means the request's own host.
        "PUBLIC_URL": os.environ.get("PUBLIC_URL", ""),
        # Days a received event is kept (the event log, and what a backfill can replay);
        # unset or 0 keeps every event.
        "EVENT_RETENTION_DAYS": env_int("EVENT_RETENTION_DAYS", 0) or None,
        # Hours a collection's change feed keeps each change (services/changes.py): a reader
        # or destination further behind reads the records again.
        # Alerts: how often rules are evaluated, and the instance's mail server for e-mail
        # channels (unset: e-mail channels are refused, webhooks still work).
        "ALERT_SECONDS": env_int("ALERT_SECONDS", 30, 5),
        "SMTP_HOST": os.environ.get("SMTP_HOST", ""),
        "SMTP_PORT": env_int("SMTP_PORT", 25, 1),
        "SMTP_FROM": os.environ.get("SMTP_FROM", "hookstream@localhost"),
        "SMTP_STARTTLS": env_flag("SMTP_STARTTLS"),
        "SMTP_USERNAME": os.environ.get("SMTP_USERNAME", ""),
        "SMTP_PASSWORD": os.environ.get("SMTP_PASSWORD", ""),
        "CHANGES_RETENTION_HOURS": env_int("CHANGES_RETENTION_HOURS", 7 * 24, 1),
        # werkzeug's scrypt (about 0.1 s a hash, on purpose); TEST_CONFIG sets a cheap one.
        "PASSWORD_HASH_METHOD": "scrypt",
        "SESSION_COOKIE_HTTPONLY": True,
        # A signed-in session ends this long after sign-in, on the server whatever its cookie
        # says, and its cookie with it (sooner at sign-out or a password change): 7 days
        # unless SESSION_LIFETIME_HOURS says otherwise.
        "PERMANENT_SESSION_LIFETIME": timedelta(hours=env_int("SESSION_LIFETIME_HOURS", 7 * 24, 1)),
        "SESSION_COOKIE_SAMESITE": "Lax",
        "SESSION_COOKIE_SECURE": env_flag("SESSION_COOKIE_SECURE"),
        # How many reverse proxies in front set X-Forwarded-For/-Proto/-Host. 0 trusts none,
        # so a client cannot spoof its address past the ingest IP rules or into the audit log.
        "TRUSTED_PROXIES": env_int("TRUSTED_PROXIES", 0),
        "REMEMBER_COOKIE_SAMESITE": "Lax",
        "WTF_CSRF_TIME_LIMIT": None,
        # GET /metrics: with a token, only for `Authorization: Bearer <token>`; without
        # one, only from these networks (this machine by default).
        "METRICS_TOKEN": os.environ.get("METRICS_TOKEN", "").strip() or None,
        "METRICS_NETWORKS": env_networks("METRICS_NETWORKS", "127.0.0.0/8,::1"),
    }
