"""GET /healthz: database, Redis and live RQ workers; 503 when any is down."""

from __future__ import annotations

from flask import Blueprint, jsonify
from rq import Worker
from sqlalchemy import text

from .extensions import db, get_redis

bp = Blueprint("health", __name__)


def system_health() -> dict:
    checks: dict = {}
    try:
        db.session.execute(text("SELECT 1"))
        checks["database"] = {"ok": True, "backend": db.engine.dialect.name}
    except Exception as exc:  # the point is to report, not to fail the probe
        db.session.rollback()
        checks["database"] = {"ok": False, "error": type(exc).__name__}
    try:
        redis = get_redis()
        redis.ping()
        workers = Worker.all(connection=redis)
        checks["redis"] = {"ok": True}
        checks["workers"] = {"ok": len(workers) > 0, "live": len(workers)}
    except Exception as exc:
        checks["redis"] = {"ok": False, "error": type(exc).__name__}
        checks["workers"] = {"ok": False, "live": 0}
    checks["status"] = "ok" if all(c["ok"] for c in checks.values()) else "degraded"
    return checks


@bp.get("/healthz")
def healthz():
    result = system_health()
    return jsonify(result), 200 if result["status"] == "ok" else 503
