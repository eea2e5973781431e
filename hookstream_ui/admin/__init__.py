"""/admin: the instance admin's pages (orgs, users, system health). Org roles do not
reach here: an org owner who is not an instance admin gets 403."""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from functools import partial
from typing import Any, TypeVar

from flask import Blueprint, abort, flash, redirect, render_template, request, session, url_for
from flask.typing import ResponseReturnValue
from flask_login import current_user, login_required

from ..errors import ValidationFailed
from ..forms import FormState, RowForms, filtered, sentence
from ..health import system_health
from ..services import accounts, audit, once
from ..services import instance_admin as svc

T = TypeVar("T")

bp = Blueprint("admin", __name__, url_prefix="/admin")


@bp.before_request
@login_required
def _instance_admin_only() -> None:
    if not current_user.is_instance_admin:
        abort(403, description="Only instance admins can open /admin")
    audit.act_as(audit.actor_for_user(current_user))


def _attempt(
    action: Callable[[], T],
    message: Callable[[T], str],
    endpoint: str = "admin.orgs",
    refused: Callable[[ValidationFailed], str] | None = None,
) -> ResponseReturnValue:
    """Run a change; flash its outcome and go back. Refused: `refused(exc)` renders the page
    again with the error beside its field and what was typed; without one, the reason is
    flashed in words."""
    try:
        result = action()
    except ValidationFailed as exc:
        if refused is not None:
            return refused(exc), exc.status
        flash(sentence(exc), "error")
    else:
        flash(message(result), "success")
    return redirect(url_for(endpoint))


def _orgs_page(create: FormState | None = None, rows: RowForms | None = None) -> str:
    return render_template(
        "admin/orgs.html", rows=svc.org_rows(), form=create or FormState(), row_forms=rows or RowForms()
    )


@bp.get("/")
def orgs() -> str:
    return _orgs_page()


@bp.get("/orgs")
def orgs_address() -> ResponseReturnValue:
    # The create form posts here; an address typed or reloaded finds the list it belongs to.
    return redirect(url_for("admin.orgs"))


@bp.post("/orgs")
def org_create() -> ResponseReturnValue:
    return _attempt(
        lambda: svc.create_org(request.form.get("name"), request.form.get("owner_email", "")),
        lambda org: f"Organization {org.name} created.",
        refused=lambda exc: _orgs_page(create=FormState.from_request("name", "owner_email").fail(exc)),
    )


def _org_row(action: str, org_id: str, *names: str) -> Callable[[ValidationFailed], str]:
    return lambda exc: _orgs_page(rows=RowForms.failed(action, org_id, exc, *names))


@bp.post("/orgs/<org_id>/rename")
def org_rename(org_id: str) -> ResponseReturnValue:
    return _attempt(
        lambda: svc.rename_org(org_id, request.form.get("name")),
        lambda org: f"Renamed to {org.name}.",
        refused=_org_row("rename", org_id, "name"),
    )


@bp.post("/orgs/<org_id>/suspend")
def org_suspend(org_id: str) -> ResponseReturnValue:
    return _attempt(
        lambda: svc.suspend_org(org_id, request.form.get("reason")),
        lambda org: (
            f"{org.name} is suspended: its members cannot sign in to it, its API keys and "
            f"ingest URLs answer 403. Nothing was deleted."
        ),
        refused=_org_row("suspend", org_id, "reason"),
    )


@bp.post("/orgs/<org_id>/unsuspend")
def org_unsuspend(org_id: str) -> ResponseReturnValue:
    return _attempt(lambda: svc.unsuspend_org(org_id), lambda org: f"{org.name} is active again.")


@bp.post("/orgs/<org_id>/delete")
def org_delete(org_id: str) -> ResponseReturnValue:
    return _attempt(
        lambda: svc.delete_org(org_id, request.form.get("confirm")),
        lambda org: f"{org.name} and everything in it were deleted.",
        refused=_org_row("delete", org_id, "confirm"),
    )


@bp.get("/users")
def users() -> str:
    link = once.take("reset-link", session.pop("reset_link", None))
    if link:
        link["expires_at"] = datetime.fromisoformat(link["expires_at"])
    return _users_page(reset_link=link)


def _users_page(reset_link: dict[str, Any] | None = None, confirming: dict[str, Any] | None = None) -> str:
    return render_template(
        "admin/users.html", users=svc.users(), reset_link=reset_link, confirming=confirming
    )


@bp.post("/users/<user_id>/reset-link")
def user_reset_link(user_id: str) -> ResponseReturnValue:
    try:
        reset, url, replaced = accounts.issue_reset(current_user, user_id)
    except ValidationFailed as exc:
        flash(sentence(exc), "error")
        return redirect(url_for("admin.users"))
    link = {
        "email": svc.get_user_or_404(user_id).email,
        "url": url,
        "expires_at": reset.expires_at.isoformat(),
        "replaced": replaced,
    }
    # Post, redirect, get: reloading the page that shows the link makes no second one.
    handle = once.hold("reset-link", link)
    if handle is None:  # Redis down: shown on this answer, once
        return _users_page(reset_link={**link, "expires_at": reset.expires_at})
    session["reset_link"] = handle
    return redirect(url_for("admin.users"))


@bp.post("/users/<user_id>/<action>")
def user_action(user_id: str, action: str) -> ResponseReturnValue:
    changes = {
        "disable": (svc.set_user_disabled, True),
        "enable": (svc.set_user_disabled, False),
        "promote": (svc.set_instance_admin, True),
        "demote": (svc.set_instance_admin, False),
    }
    if action not in changes:
        abort(404)
    change, value = changes[action]
    if action in ("disable", "promote") and request.form.get("confirm") != action:
        # Disabling ends sessions and revokes keys for good; an instance admin reaches every
        # org: asked once more, saying what happens. Only that question sends `confirm`.
        return _users_page(confirming=svc.user_action_effects(current_user, user_id, action)), 200
    return _attempt(
        lambda: change(current_user, user_id, value), lambda user: f"{user.email}: {action}d.", "admin.users"
    )


@bp.get("/system")
def system() -> str:
    return render_template(
        "admin/system.html", health=system_health(), queues=svc.queues(), failed=svc.failed_jobs()
    )


@bp.post("/jobs/<job_id>/<action>")
def job_action(job_id: str, action: str) -> ResponseReturnValue:
    actions = {"requeue": svc.requeue_job, "delete": svc.delete_job}
    if action not in actions:
        abort(404)
    return _attempt(lambda: actions[action](job_id), lambda _: f"Job {job_id}: {action}d.", "admin.system")


@bp.get("/audit-log")
def audit_log() -> ResponseReturnValue:
    page, filters, status = filtered(partial(audit.list_entries, org_id=None, limit=50), *audit.FILTERS)
    return render_template("admin/audit.html", page=page, args=request.args, filters=filters), status
