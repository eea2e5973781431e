"""Overview and the project switcher."""
from __future__ import annotations

from flask import abort, flash, redirect, render_template, request, session, url_for
from sqlalchemy import func, select

from ..auth import current_principal
from ..models import Collection, Environment, SourceConnection, db
from ..services import activity, live
from ..services.collections import scoped_collections
from . import bp


@bp.get("/")
def overview():
    principal = current_principal()
    counts = {
        "collections": db.session.scalar(
            select(func.count()).select_from(scoped_collections(principal).subquery())),
        "records": db.session.scalar(
            select(func.coalesce(func.sum(Collection.record_count), 0))
            .where(Collection.env_id == principal.env.id, Collection.org_id == principal.org.id)),
        "sources": db.session.scalar(
            select(func.count(SourceConnection.id))
            .where(SourceConnection.env_id == principal.env.id,
                   SourceConnection.org_id == principal.org.id)),
    }
    recent = db.session.scalars(
        scoped_collections(principal).order_by(Collection.updated_at.desc()).limit(5)
    ).all()
    return render_template("dashboard/overview.html", counts=counts, recent=recent,
                           states=live.collection_states(recent), activity=activity.overview(principal))


@bp.get("/_recent-runs")
def overview_runs_partial():
    runs = activity.recent_runs(current_principal())
    final = not any(r.active for r in runs)
    return render_template("dashboard/_recent_runs.html", runs=runs), \
        (286 if final and request.headers.get("HX-Request") else 200)


@bp.post("/switch-project")
def switch_project():
    principal = current_principal()
    env = db.session.scalar(
        select(Environment).where(Environment.id == request.form.get("env_id", ""),
                                  Environment.org_id == principal.org.id)
    )
    if env is None:
        abort(404)
    session["env_id"] = env.id
    flash(f"Switched to the {env.name} project.", "info")
    return redirect(url_for("dashboard.overview"))
