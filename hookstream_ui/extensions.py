"""Unbound extensions, initialised by create_app()."""

from __future__ import annotations

import redis
from flask import current_app
from flask_login import LoginManager
from flask_migrate import Migrate
from flask_sqlalchemy import SQLAlchemy
from flask_wtf.csrf import CSRFProtect
from sqlalchemy import MetaData
from sqlalchemy.orm import DeclarativeBase


class Base(DeclarativeBase):
    # Named constraints so Alembic migrations are stable on SQLite and PostgreSQL.
    metadata = MetaData(
        naming_convention={
            "ix": "ix_%(column_0_label)s",
            "uq": "uq_%(table_name)s_%(column_0_name)s",
            "ck": "ck_%(table_name)s_%(constraint_name)s",
            "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
            "pk": "pk_%(table_name)s",
        }
    )


db = SQLAlchemy(model_class=Base)
migrate = Migrate()
login_manager = LoginManager()
csrf = CSRFProtect()


def get_redis(*, wait: float = 0) -> redis.Redis:
    """One client per app; redis-py pools connections and is thread-safe. `wait`: how long
    the caller's commands may block, so its client's socket timeout outlasts them."""
    name = f"hookstream_redis_wait_{wait}" if wait else "hookstream_redis"
    client = current_app.extensions.get(name)
    if client is None:
        client = redis.Redis.from_url(
            current_app.config["REDIS_URL"],
            socket_timeout=current_app.config["REDIS_SOCKET_TIMEOUT"] + wait,
            socket_connect_timeout=2,
        )
        current_app.extensions[name] = client
    return client
