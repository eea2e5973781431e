"""Overview and the project switcher."""

from __future__ import annotations

from flask import abort, flash, redirect, render_template, request, session, url_for
from flask.typing import ResponseReturnValue
from sqlalchemy import func, select
from werkzeug.exceptions import HTTPException
from werkzeug.wrappers import Response

from ..auth import current_principal, maybe_principal
from ..models import Collection, Environment, SourceConnection, db
from ..services import activity, live
from ..services.collections import scoped_collections
from . import bp


@bp.get("/")
def overview() -> str:
    principal = current_principal()
    counts = {
        "collections": db.session.scalar(
            select(func.count()).select_from(scoped_collections(principal).subquery())
        ),
        "records": db.session.scalar(
            select(func.coalesce(func.sum(Collection.record_count), 0)).where(
                Collection.env_id == principal.env.id, Collection.org_id == principal.org.id
            )
        ),
        "sources": db.session.scalar(
            select(func.count(SourceConnection.id)).where(
                SourceConnection.env_id == principal.env.id, SourceConnection.org_id == principal.org.id
            )
        ),
    }
    recent = db.session.scalars(
        scoped_collections(principal).order_by(Collection.updated_at.desc()).limit(5)
    ).all()
    overview = activity.overview(principal)
    return render_template(
        "dashboard/overview.html",
        counts=counts,
        recent=recent,
        states=live.collection_states(recent),
        activity=overview,
        poll=activity.recent_runs_poll(principal, overview.recent_runs)[0],
    )


@bp.get("/_recent-runs")
def overview_runs_partial() -> ResponseReturnValue:
    principal = current_principal()
    runs = activity.recent_runs(principal)
    poll, _ = activity.recent_runs_poll(principal, runs)
    return render_template("dashboard/_recent_runs.html", runs=runs, poll=poll), (
        286 if poll is None and request.headers.get("HX-Request") else 200
    )


@bp.post("/switch-project")
def switch_project() -> Response:
    principal = current_principal()
    env = db.session.scalar(
        select(Environment).where(
            Environment.id == request.form.get("env_id", ""), Environment.org_id == principal.org.id
        )
    )
    if env is None:
        abort(404)
    session["env_id"] = env.id
    flash(f"Switched to the {env.name} project.", "info")
    return redirect(url_for("dashboard.overview"))


@bp.errorhandler(404)
def _not_in_this_project(exc: HTTPException) -> ResponseReturnValue:
    """A link to another project's collection, source, run or event (shared by a colleague,
    or kept from before a switch) offers that project instead of a bare 404, when the user
    is a member of its organization. Otherwise it is the plain 404: nothing of an
    organization the user is not in is ever revealed, not even that it exists."""
    from flask_login import current_user

    from ..auth.access import htmx_page_url, htmx_whole_page, is_htmx_request
    from ..services import links

    if is_htmx_request():
        # A fragment of something gone: the whole page reloads, and makes the offer itself.
        return htmx_whole_page(htmx_page_url() or "/", 404)
    found = (
        links.elsewhere(
            current_user if current_user.is_authenticated else None,
            maybe_principal(),
            request.endpoint,
            request.view_args,
        )
        if request.method == "GET"
        else None
    )
    if found is None:
        from ..api.errors import error_page

        return error_page(exc)
    label, envs = found
    return render_template(
        "errors/elsewhere.html",
        label=label,
        envs=envs,
        here=current_principal().env,
        next=request.full_path.rstrip("?"),
    ), 404


@bp.post("/switch-to")
def switch_to() -> Response:
    """Switch to a project (of any of the user's organizations) and go on to `next`."""
    from flask_login import current_user

    from ..auth.access import safe_next
    from ..services.team import switch_environment

    env = switch_environment(current_user, request.form.get("env_id", ""))
    flash(f"Switched to the {env.name} project of {env.org.name}.", "info")
    return redirect(safe_next(request.form.get("next")) or url_for("dashboard.overview"))


@bp.get("/api-reference")
def api_reference() -> str:
    """The API, readable: Swagger UI (vendored) rendering /v1/openapi.json, under the app's own
    Content-Security-Policy."""
    return render_template("dashboard/api_reference.html")
