"""Run now, run history and the live run page. Partials poll every 2 s while something
can still change; the final partial drops its trigger and answers 286, which stops htmx."""

from __future__ import annotations

from typing import Any

from flask import flash, make_response, redirect, render_template, request, url_for
from flask.typing import ResponseReturnValue
from werkzeug.wrappers import Response

from ..auth import current_principal, require_role
from ..errors import ValidationFailed
from ..forms import sentence
from ..models import SourceConnection, db
from ..services import collections as collection_svc
from ..services import live
from ..services import runs as svc
from ..services import sources as source_svc
from ..services.pagination import Page
from . import bp

STOP_POLLING = 286


def _live(template: str, final: bool, **context: Any) -> tuple[str, int]:
    return render_template(template, **context), (
        STOP_POLLING if final and request.headers.get("HX-Request") else 200
    )


def _start(source: SourceConnection, back: str) -> Response:
    try:
        run = svc.start_run(
            source, trigger="manual", full=True if request.form.get("full") == "true" else None
        )
    except ValidationFailed as exc:
        flash(sentence(exc), "error")
        return redirect(back)
    # No flash: the run page says what the run is doing, live; a "started" note would stay
    # on it after the run ended.
    return redirect(url_for("dashboard.run_detail", run_id=run.id))


@bp.post("/sources/<source_id>/run")
def source_run(source_id: str) -> Response:
    principal = current_principal()
    require_role(principal, "member")
    source = source_svc.get_source_or_404(principal, source_id)
    return _start(source, url_for("dashboard.source_detail", source_id=source.id))


def _runs_listed() -> tuple[Page, dict[str, str]]:
    from ..services import activity

    args = request.args
    try:
        return activity.list_runs(
            current_principal(),
            status=args.get("status") or None,
            source_id=args.get("source_id") or None,
            cursor=args.get("cursor") or None,
        ), {}
    except ValidationFailed as exc:
        return Page([], None, False), exc.errors


@bp.get("/runs")
def runs_page() -> ResponseReturnValue:
    """Runs across the project's sources, by status (failures first among the filters)."""
    from ..services import activity

    page, errors = _runs_listed()
    return render_template(
        "dashboard/runs/list.html",
        page=page,
        errors=errors,
        args=request.args,
        filters=activity.RUN_FILTERS,
        sources=source_svc.list_sources(current_principal()),
    ), 400 if errors else 200


@bp.get("/runs/_list")
def runs_partial() -> ResponseReturnValue:
    page, errors = _runs_listed()
    if errors:
        return render_template("dashboard/runs/_table.html", page=page, errors=errors, args=request.args), 400
    return _live(
        "dashboard/runs/_table.html",
        not any(r.active for r in page.items),
        page=page,
        errors=errors,
        args=request.args,
    )


SCHEDULE_FIELDS = (
    "sync_frequency",
    "status",
    "rate_limit.allowed_requests",
    "rate_limit.interval",
    "rate_limit.max_concurrent_requests",
)


@bp.post("/sources/<source_id>/schedule")
def source_schedule(source_id: str) -> ResponseReturnValue:
    """The schedule and rate limit, through the same service (and checks) as PATCH /v1/syncs."""
    from ..forms import FormState
    from ..services import syncs as sync_svc
    from .sources import detail_page

    principal = current_principal()
    require_role(principal, "member")
    source = sync_svc.get_sync_or_404(principal, source_id)
    form = FormState.from_request(*SCHEDULE_FIELDS)
    values = {k: v.strip() for k, v in form.values.items()}
    limit = {
        k: values[f"rate_limit.{k}"]
        for k in ("allowed_requests", "interval", "max_concurrent_requests")
        if values[f"rate_limit.{k}"]
    }
    payload = {
        "sync_frequency": values["sync_frequency"] or None,
        "status": values["status"] or None,
        "rate_limit": limit or None,
    }
    try:
        sync_svc.update_sync(principal, source, payload)
    except ValidationFailed as exc:
        db.session.rollback()
        return detail_page(source, form.fail(exc), 400)
    flash("Schedule saved.", "success")
    return redirect(url_for("dashboard.source_detail", source_id=source.id) + "#schedule")


@bp.post("/collections/<ident>/run")
def collection_run(ident: str) -> Response:
    principal = current_principal()
    require_role(principal, "member")
    collection = collection_svc.get_collection_or_404(principal, ident)
    back = url_for("dashboard.collection_detail", ident=collection.slug)
    if collection.source is None:
        flash("Connect a source to this collection first.", "error")
        return redirect(back)
    return _start(collection.source, back)


@bp.post("/collections/<ident>/backfill")
def collection_backfill(ident: str) -> Response:
    """Replay the source's stored events (or re-read a pull source); progress shows live."""
    from ..sync.backfill import start_backfill

    principal = current_principal()
    require_role(principal, "member")
    collection = collection_svc.get_collection_or_404(principal, ident)
    try:
        start_backfill(collection)  # the live strip shows it, and its end (no flash that outlives it)
    except ValidationFailed as exc:
        flash(sentence(exc), "error")
    return redirect(url_for("dashboard.collection_detail", ident=collection.slug))


@bp.get("/sources/<source_id>/_runs")
def source_runs_partial(source_id: str) -> ResponseReturnValue:
    principal = current_principal()
    source = source_svc.get_source_or_404(principal, source_id)
    runs = svc.runs_of(source, 20)
    return _live(
        "dashboard/runs/_history.html",
        not any(r.active for r in runs),
        runs=runs,
        source=source,
        state=live.source_state(source),
    )


@bp.get("/runs/<run_id>")
def run_detail(run_id: str) -> str:
    run = svc.scoped_run_or_404(current_principal(), run_id)
    rate, eta = svc.rate_and_eta(run)
    # Every run reads into all of its source's collections.
    return render_template(
        "dashboard/runs/detail.html",
        run=run,
        rate=rate,
        eta=eta,
        collections=sorted(source_svc.bound_collections(run.source), key=lambda c: c.name),
    )


@bp.get("/runs/<run_id>/_status")
def run_status_partial(run_id: str) -> ResponseReturnValue:
    run = svc.scoped_run_or_404(current_principal(), run_id)
    rate, eta = svc.rate_and_eta(run)
    return _live("dashboard/runs/_status.html", run.final, run=run, rate=rate, eta=eta)


@bp.post("/runs/<run_id>/cancel")
def run_cancel(run_id: str) -> Response:
    principal = current_principal()
    require_role(principal, "member")
    run = svc.cancel_run(svc.scoped_run_or_404(principal, run_id))
    # The run's status card says cancelling, then cancelled, as it happens.
    return redirect(url_for("dashboard.run_detail", run_id=run.id))


@bp.get("/collections/<ident>/_live")
def collection_live_partial(ident: str) -> Response:
    """The live strip: polls while something can change (a run, a backfill, a webhook's
    deliveries) and answers 286 once nothing can. When the records count or the last sync
    moved since the page's last look, it tells the records table and the schema to reload
    (they do not poll themselves)."""
    collection = collection_svc.get_collection_or_404(current_principal(), ident)
    state = live.collection_state(collection)
    body, status = _live(
        "dashboard/collections/_live.html", not state.live, collection=collection, state=state, oob=True
    )
    response = make_response(body, status)
    seen = request.args.get("seen")
    if seen is not None and seen != live.change_mark(collection):
        response.headers["HX-Trigger"] = "records-changed"
    return response
