"""hookstream: a self-hosted data-sync hub. `create_app()` builds the Flask app."""

from __future__ import annotations

import os
from typing import Any

from flask import Flask, Response, request
from flask.json.provider import DefaultJSONProvider
from htmx_flask import Htmx
from sqlalchemy import event
from sqlalchemy.engine import Engine
from werkzeug.middleware.proxy_fix import ProxyFix
from werkzeug.routing import PathConverter

from . import request_checks
from .config import instance_path, load_config
from .content_policy import CONTENT_SECURITY_POLICY
from .extensions import csrf, db, login_manager, migrate


class RecordKeyConverter(PathConverter):
    """A record key in a path: any text, slashes included, a leading one too (`path` takes
    none at the start). Double slashes are not merged away for it (url_map.merge_slashes)."""

    regex = ".+"
    part_isolating = False  # it spans path segments


class StandardJSON(DefaultJSONProvider):
    """Every JSON answer is standard JSON: never NaN or Infinity (values/documents.py)."""

    def dumps(self, obj: Any, **kwargs: Any) -> str:
        from .values import documents

        kwargs.setdefault("default", self.default)
        kwargs.setdefault("ensure_ascii", self.ensure_ascii)
        kwargs.setdefault("sort_keys", self.sort_keys)
        return documents.dumps(obj, **kwargs)


def create_app(overrides: dict | None = None) -> Flask:
    instance = instance_path()
    app = Flask(
        __name__,
        instance_path=str(instance),
        template_folder="../templates",
        static_folder="../static",
    )
    app.json = StandardJSON(app)
    app.url_map.converters["record_key"] = RecordKeyConverter
    app.url_map.merge_slashes = False
    app.config.update(load_config(instance))
    if overrides:
        app.config.update(overrides)
    # Logging is the process's, configured by its entry point (observability/logs.py).

    if app.config["TRUSTED_PROXIES"] > 0:
        hops = app.config["TRUSTED_PROXIES"]
        # Flask's documented way to wrap its WSGI app; mypy sees a method replaced.
        app.wsgi_app = ProxyFix(  # type: ignore[method-assign]
            app.wsgi_app, x_for=hops, x_proto=hops, x_host=hops
        )

    from .auth.sessions import CookieSessionInterface

    app.session_interface = CookieSessionInterface()
    db.init_app(app)
    migrate.init_app(
        app, db, directory=os.path.join(os.path.dirname(app.root_path), "migrations"), render_as_batch=True
    )
    login_manager.init_app(app)
    csrf.init_app(app)
    Htmx(app)

    from . import auth  # noqa: F401  (user loader and unauthorized handler)
    from .admin import bp as admin_bp
    from .api import v1
    from .api.errors import register_error_handlers
    from .api.sources import sources_v1
    from .auth.views import bp as auth_bp
    from .cli import register_cli
    from .dashboard import bp as dashboard_bp
    from .health import bp as health_bp
    from .observability import requests as request_ids
    from .services import audit  # noqa: F401  (registers the audit log's flush hook)
    from .templating import register_filters

    for api in (v1, sources_v1):
        csrf.exempt(api)  # the API checks CSRF itself, only for session-cookie calls
        app.register_blueprint(api)
    app.register_blueprint(health_bp)
    app.register_blueprint(auth_bp)
    app.register_blueprint(dashboard_bp)
    app.register_blueprint(admin_bp)
    register_error_handlers(app)
    register_cli(app)
    register_filters(app)

    request_ids.register(app)
    request_checks.register(app)

    @app.after_request
    def _headers(response: Response) -> Response:
        response.headers.setdefault("X-Content-Type-Options", "nosniff")
        response.headers.setdefault("Referrer-Policy", "same-origin")
        response.headers.setdefault("Content-Security-Policy", CONTENT_SECURITY_POLICY)
        if not request.path.startswith(("/v1/", "/api/", "/static/")):
            response.headers.setdefault("X-Frame-Options", "DENY")
        if app.config["SESSION_COOKIE_SECURE"]:
            response.headers.setdefault("Strict-Transport-Security", "max-age=31536000")
        return response

    return app


@event.listens_for(Engine, "connect")
def _sqlite_pragmas(dbapi_connection: Any, _record: Any) -> None:
    # WAL lets the web server and workers read while one writes; FKs make cascades real.
    if type(dbapi_connection).__module__.startswith("sqlite3"):
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.execute("PRAGMA busy_timeout=10000")
        cursor.execute("PRAGMA synchronous=NORMAL")
        cursor.close()
        from .services.search_index import word_start

        dbapi_connection.create_function("hs_word_start", 2, word_start, deterministic=True)
