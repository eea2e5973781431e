"""Connect with <provider>: off to its consent screen, and back with an authorization code."""

from __future__ import annotations

from flask import flash, redirect, request, url_for
from flask.typing import ResponseReturnValue

from ..auth import current_principal, require_role
from ..errors import ValidationFailed
from ..forms import sentence
from ..services import oauth_connect
from ..services import sources as svc
from ..sources import source_type_or_404
from . import bp


@bp.post("/sources/new/<short_name>/authorize")
def source_authorize(short_name: str) -> ResponseReturnValue:
    principal = current_principal()
    require_role(principal, "member")
    kind = source_type_or_404(short_name)
    try:
        url = oauth_connect.start(principal, kind, request.form.get("name", ""), None)
    except ValidationFailed as exc:
        flash(sentence(exc, {"name": "Name"}), "error")
        return redirect(url_for("dashboard.source_new", short_name=kind.short_name))
    return redirect(url)


@bp.post("/sources/<source_id>/authorize")
def source_reauthorize(source_id: str) -> ResponseReturnValue:
    principal = current_principal()
    require_role(principal, "member")
    source = svc.get_source_or_404(principal, source_id)
    kind = svc.type_of(source)
    try:
        url = oauth_connect.start(principal, kind, source.name, source)
    except ValidationFailed as exc:
        flash(sentence(exc), "error")
        return redirect(url_for("dashboard.source_edit", source_id=source.id))
    return redirect(url)


@bp.get("/sources/oauth/<short_name>/callback")
def source_oauth_callback(short_name: str) -> ResponseReturnValue:
    principal = current_principal()
    require_role(principal, "member")
    kind = source_type_or_404(short_name)
    try:
        done = oauth_connect.finish(principal, kind, request.args.to_dict())
    except ValidationFailed as exc:
        flash(sentence(exc, {"state": "The sign-in", "name": "Name"}), "error")
        return redirect(url_for("dashboard.source_new", short_name=kind.short_name))
    verb = "connected" if done.created else "reconnected"
    flash(f"Source “{done.source.name}” {verb} with {kind.name}.", "success")
    return redirect(url_for("dashboard.source_detail", source_id=done.source.id))
