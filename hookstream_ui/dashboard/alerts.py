"""The Alerts page: what is wrong now (open incidents), and the rules that watch for it,
through the same service functions as /v1/alert-rules."""

from __future__ import annotations

from typing import Any

from flask import flash, redirect, render_template, request, url_for
from flask.typing import ResponseReturnValue

from ..auth import current_principal, require_role
from ..errors import ValidationFailed
from ..forms import FormState, sentence
from ..models import db
from ..services import alerts as svc
from ..services import reveal
from . import bp

FIELDS = ("name", "kind", "channel", "target", "seconds", "minutes")
LABELS = {"name": "Name", "kind": "Watch for", "channel": "Channel", "target": "Send to"}


def _page(form: FormState | None = None, made: dict | None = None, status: int = 200) -> ResponseReturnValue:
    principal = current_principal()
    rules = svc.list_rules(principal)
    return render_template(
        "dashboard/alerts/page.html",
        rules=rules,
        names={r.id: r.name for r in rules},
        incidents=svc.incidents(principal, open_only=True),
        kinds={k: v[0] for k, v in svc.KINDS.items()},
        form=form or FormState({"kind": "run_failed", "channel": "http"}),
        made=made,
    ), status


@bp.get("/alerts")
def alerts_page() -> ResponseReturnValue:
    return _page(made=reveal.take(current_principal().user_id, request.args.get("revealed")))


def _payload(form: FormState) -> dict[str, Any]:
    params: dict[str, Any] = {}
    kind = form.values.get("kind", "")
    wanted = svc.KINDS[kind][0].params if kind in svc.KINDS else {}
    for name in wanted:
        text = form.values.get(name, "").strip()
        if text:
            params[name] = int(text) if text.isdigit() else text
    return {k: form.values.get(k) for k in ("name", "kind", "channel", "target")} | {"params": params}


@bp.post("/alerts")
def alert_rule_new() -> ResponseReturnValue:
    principal = current_principal()
    require_role(principal, "member")
    form = FormState.from_request(*FIELDS)
    try:
        rule, made = svc.create_rule(principal, _payload(form))
    except ValidationFailed as exc:
        db.session.rollback()
        errors = {name.removeprefix("params."): text for name, text in exc.errors.items()}
        return _page(form.fail(ValidationFailed(errors)), status=400)
    flash(f"Alert rule “{rule.name}” added.", "success")
    # Redirected, so a reload adds nothing; the page shows the new secret once.
    token = reveal.keep(principal.user_id, made | {"rule": rule.name}) if made else None
    return redirect(
        url_for("dashboard.alerts_page", revealed=token) if token else url_for("dashboard.alerts_page")
    )


@bp.post("/alerts/<rule_id>/enabled")
def alert_rule_enabled(rule_id: str) -> ResponseReturnValue:
    principal = current_principal()
    require_role(principal, "member")
    rule = svc.get_rule_or_404(principal, rule_id)
    try:
        svc.update_rule(principal, rule, {"enabled": request.form.get("enabled") == "true"})
    except ValidationFailed as exc:
        db.session.rollback()
        flash(sentence(exc, LABELS), "error")
    return redirect(url_for("dashboard.alerts_page"))


@bp.post("/alerts/<rule_id>/delete")
def alert_rule_delete(rule_id: str) -> ResponseReturnValue:
    principal = current_principal()
    require_role(principal, "member")
    svc.delete_rule(principal, svc.get_rule_or_404(principal, rule_id))
    flash("Alert rule deleted.", "success")
    return redirect(url_for("dashboard.alerts_page"))
