"""JSON API blueprints. CSRF is checked by the auth layer only for session calls."""

from flask import Blueprint

v1 = Blueprint("api_v1", __name__, url_prefix="/v1")

from . import alerts, api_keys, changes, collections, destinations, ingest, syncs, team  # noqa: E402,F401  (routes register on import)
from .openapi import register_openapi_route  # noqa: E402

register_openapi_route(v1)
