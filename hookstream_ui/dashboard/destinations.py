"""Destinations pages: the list with each one's health, a form to add one (its secret shown
once), and a page per destination with what it owes and every attempt, through the same
service functions as /v1/destinations."""

from __future__ import annotations

from typing import Any

from flask import flash, redirect, render_template, request, url_for
from flask.typing import ResponseReturnValue

from ..auth import current_principal, require_role
from ..errors import ValidationFailed
from ..forms import FormState, sentence
from ..models import Destination, db
from ..services import collections as collection_svc
from ..services import destinations as svc
from ..services import reveal
from ..sync.deliver import MAX_ATTEMPTS
from . import bp

FIELDS = ("name", "url", "headers", "timeout_seconds")
OP_CHOICES = ("insert", "update", "delete")
LABELS = {
    "name": "Name",
    "url": "URL",
    "headers": "Headers",
    "timeout_seconds": "Timeout",
    "collection_ids": "Collections",
    "ops": "Changes",
}


def _headers(text: str) -> dict[str, str] | str:
    """`Name: value` lines as a dict; the text itself when a line is not one (the service
    then refuses it by name)."""
    out: dict[str, str] = {}
    for line in text.splitlines():
        if not line.strip():
            continue
        name, colon, value = line.partition(":")
        if not colon or not name.strip():
            return text
        out[name.strip()] = value.strip()
    return out


def _payload(form: FormState) -> dict[str, Any]:
    """What the service takes; the form's own mistakes (a header line, no change ticked)
    refused by name first."""
    config: dict[str, Any] = {"url": form.values.get("url", "").strip()}
    headers = _headers(request.form.get("headers", ""))  # not kept in the form: a secret
    problems = {}
    if isinstance(headers, str):
        problems["headers"] = "each line must be Name: value"
    if not request.form.getlist("ops"):
        problems["ops"] = "tick at least one kind of change"
    if problems:
        raise ValidationFailed(problems)
    config["headers"] = headers
    if form.values.get("timeout_seconds", "").strip():
        config["timeout_seconds"] = form.values["timeout_seconds"].strip()
    ops = request.form.getlist("ops")
    return {
        "name": form.values.get("name", ""),
        "kind": "webhook",
        "config": config,
        "collection_ids": request.form.getlist("collection_ids"),
        "filters": {"ops": ops} if ops and len(ops) < len(OP_CHOICES) else None,
    }


def _form_errors(exc: ValidationFailed) -> ValidationFailed:
    """The service names config fields `config.url`; the form names them `url`."""
    errors = {name.removeprefix("config.").split(".")[0]: text for name, text in exc.errors.items()}
    return ValidationFailed(errors, status=exc.status, code=exc.code)


@bp.get("/destinations")
def destinations_list() -> str:
    principal = current_principal()
    destinations = svc.list_destinations(principal)
    return render_template(
        "dashboard/destinations/list.html",
        destinations=destinations,
        health={d.id: svc.health(d) for d in destinations},
    )


@bp.route("/destinations/new", methods=["GET", "POST"])
def destination_new() -> ResponseReturnValue:
    principal = current_principal()
    require_role(principal, "member")
    collections = list(db.session.scalars(collection_svc.scoped_collections(principal).order_by("name")))
    if request.method == "GET":
        chosen = [request.args["collection"]] if request.args.get("collection") else []
        return render_template(
            "dashboard/destinations/new.html", form=FormState(), collections=collections, chosen=chosen
        )
    form = FormState.from_request(*FIELDS, secret=("headers",))
    try:
        destination, made = svc.create(principal, _payload(form))
    except ValidationFailed as exc:
        db.session.rollback()
        return render_template(
            "dashboard/destinations/new.html",
            form=form.fail(_form_errors(exc)),
            collections=collections,
            chosen=request.form.getlist("collection_ids"),
        ), 400
    return _revealing(destination, made)


def _revealing(destination: Destination, made: dict) -> ResponseReturnValue:
    """To the destination's page, which shows its new secret once (a reload makes nothing)."""
    token = reveal.keep(current_principal().user_id, made)
    return redirect(url_for("dashboard.destination_detail", destination_id=destination.id, revealed=token))


@bp.get("/destinations/<destination_id>")
def destination_detail(destination_id: str) -> str:
    principal = current_principal()
    destination = svc.get_destination_or_404(principal, destination_id)
    return _detail(destination, made=reveal.take(principal.user_id, request.args.get("revealed")))


def _detail(destination: Destination, made: dict | None = None) -> str:
    only_failed = request.args.get("failed") == "1"
    return render_template(
        "dashboard/destinations/detail.html",
        destination=destination,
        health=svc.health(destination),
        made=made,
        undelivered=svc.undelivered(destination, 50),
        attempts=svc.attempts(destination, 50, only_failed),
        only_failed=only_failed,
        shown=svc.kind_of(destination).shown_secrets(svc.secrets_of(destination)),
        max_attempts=MAX_ATTEMPTS,
    )


def _act(destination_id: str, done: str, action: Any) -> ResponseReturnValue:
    principal = current_principal()
    require_role(principal, "member")
    destination = svc.get_destination_or_404(principal, destination_id)
    try:
        said = action(principal, destination)
    except ValidationFailed as exc:
        db.session.rollback()
        flash(sentence(exc, LABELS), "error")
    else:
        flash(done.format(said=said), "success")
    return redirect(url_for("dashboard.destination_detail", destination_id=destination_id))


@bp.post("/destinations/<destination_id>/retry")
def destination_retry(destination_id: str) -> ResponseReturnValue:
    delivery_id = request.form.get("delivery_id") or None
    return _act(destination_id, "Sending again: {said} dead.", lambda p, d: svc.retry(p, d, delivery_id))


@bp.post("/destinations/<destination_id>/replay")
def destination_replay(destination_id: str) -> ResponseReturnValue:
    after = request.form.get("after", "").strip()
    return _act(
        destination_id,
        "Sending again every change after number {said}.",
        lambda p, d: min(svc.replay(p, d, {"after": after or None}).values(), default=0),
    )


@bp.post("/destinations/<destination_id>/status")
def destination_status(destination_id: str) -> ResponseReturnValue:
    wanted = request.form.get("status", "")
    return _act(
        destination_id, "Destination {said}.", lambda p, d: svc.update(p, d, {"status": wanted}).status
    )


@bp.post("/destinations/<destination_id>/rotate")
def destination_rotate(destination_id: str) -> ResponseReturnValue:
    principal = current_principal()
    require_role(principal, "member")
    destination = svc.get_destination_or_404(principal, destination_id)
    return _revealing(destination, svc.rotate_secret(principal, destination))


@bp.post("/destinations/<destination_id>/delete")
def destination_delete(destination_id: str) -> ResponseReturnValue:
    principal = current_principal()
    require_role(principal, "member")
    svc.delete(principal, svc.get_destination_or_404(principal, destination_id))
    flash("Destination deleted.", "success")
    return redirect(url_for("dashboard.destinations_list"))
