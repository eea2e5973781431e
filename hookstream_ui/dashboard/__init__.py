"""Server-rendered dashboard pages (htmx for the parts that change in place)."""
from __future__ import annotations

from flask import Blueprint, g, render_template
from flask_login import current_user, login_required

from ..auth import current_principal
from ..models import STATUSES

bp = Blueprint("dashboard", __name__)


@bp.before_request
@login_required
def _signed_in():
    if current_principal() is None:
        # Signed in but in no org (e.g. removed from their last one).
        return render_template("dashboard/no_org.html"), 403
    return None


@bp.app_context_processor
def _layout_context():
    principal = g.get("principal") if current_user.is_authenticated else None
    return {"principal": principal, "collection_statuses": STATUSES}


from . import collections, overview, records, runs, settings, sources  # noqa: E402,F401
