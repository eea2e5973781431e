"""The operator's endpoints: GET /healthz (database, Redis and live RQ workers; 503 when
any is down) and GET /metrics (Prometheus, for a token or from the configured networks)."""

from __future__ import annotations

import hmac
import ipaddress
from typing import Any

from flask import Blueprint, Response, abort, current_app, jsonify, request
from rq import Worker
from sqlalchemy import text

from .extensions import db, get_redis
from .observability import metrics
from .sync.worker import QUEUES

bp = Blueprint("health", __name__)


def system_health() -> dict[str, Any]:
    checks: dict[str, Any] = {}
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
def healthz() -> tuple[Response, int]:
    result = system_health()
    return jsonify(result), 200 if result["status"] == "ok" else 503


def _from_allowed_network() -> bool:
    try:
        address = ipaddress.ip_address((request.remote_addr or "").split("%")[0])
    except ValueError:
        return False
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped:
        address = address.ipv4_mapped
    return any(address in network for network in current_app.config["METRICS_NETWORKS"])


def _check_metrics_access() -> None:
    """METRICS_TOKEN set: its bearer only, from anywhere. Unset: anyone on METRICS_NETWORKS."""
    token = current_app.config["METRICS_TOKEN"]
    if token is None:
        if not _from_allowed_network():
            abort(Response("Metrics are not served to this address (METRICS_NETWORKS, METRICS_TOKEN)\n", 403))
        return
    scheme, _, given = request.headers.get("Authorization", "").partition(" ")
    if scheme.lower() != "bearer" or not hmac.compare_digest(given.strip().encode(), token.encode()):
        abort(
            Response(
                "Metrics need Authorization: Bearer <METRICS_TOKEN>\n", 401, {"WWW-Authenticate": "Bearer"}
            )
        )


@bp.get("/metrics")
def metrics_endpoint() -> Response:
    _check_metrics_access()
    body = metrics.exposition(metrics.QueueCollector(get_redis(), QUEUES))
    return Response(body, mimetype=metrics.CONTENT_TYPE)
