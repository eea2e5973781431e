"""Team, projects (environments), the audit log, and switching or leaving orgs."""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from functools import partial
from typing import Any, TypeVar

from flask import flash, redirect, render_template, request, session, url_for
from flask.typing import ResponseReturnValue

from ..auth import current_principal, require_role
from ..errors import ValidationFailed
from ..forms import FormState, RowForms, filtered, sentence
from ..models import ROLES, Invitation
from ..models.principal import Principal
from ..services import audit, once, team
from . import bp, signed_in_user

T = TypeVar("T")


@bp.route("/settings/team", methods=["GET", "POST"])
def team_page() -> ResponseReturnValue:
    principal = current_principal()
    require_role(principal, "admin")
    form, status = FormState.from_request("email", "role", "confirm"), 200
    link: dict[str, Any] | None = None
    if request.method == "POST":
        pending = team.pending_invitation(principal, request.form.get("email"))
        owner_unconfirmed = (
            principal.can("owner")
            and request.form.get("role") == "owner"
            and request.form.get("confirm") != "owner"
        )
        if (pending is not None and request.form.get("replace") != pending.id) or owner_unconfirmed:
            # A new invitation withdraws the earlier link, and an owner can delete the org:
            # each asked first, not done silently.
            return _team_page(principal, form=form, owner_invite=owner_unconfirmed, replacing=pending), 200
        try:
            invitation, url = team.invite(
                principal, request.form.get("email"), request.form.get("role", "member")
            )
        except ValidationFailed as exc:
            form.fail(exc)
            status = exc.status
        else:
            link = {
                "email": invitation.email,
                "url": url,
                "expires_at": invitation.expires_at.isoformat(),
                "replaced": pending is not None,
            }
            # Post, redirect, get: reloading the page that shows the link invites no one again.
            handle = once.hold("invite-link", link)
            if handle is not None:
                session["invite_link"] = handle
                return redirect(url_for("dashboard.team_page"))
            form = FormState()  # Redis down: shown on this answer, once
    else:
        link = once.take("invite-link", session.pop("invite_link", None))
    if link:
        link["expires_at"] = datetime.fromisoformat(link["expires_at"])
    return _team_page(principal, form=form, link=link), status


def _team_page(
    principal: Principal,
    form: FormState | None = None,
    link: dict[str, Any] | None = None,
    delete_form: FormState | None = None,
    rows: RowForms | None = None,
    replacing: Invitation | None = None,
    confirming: dict[str, Any] | None = None,
    org_form: FormState | None = None,
    owner_invite: bool = False,
) -> str:
    return render_template(
        "dashboard/settings/team.html",
        members=team.list_members(principal),
        invitations=team.list_invitations(principal),
        form=form or FormState(),
        link=link,
        delete_form=delete_form or FormState(),
        row_forms=rows or RowForms(),
        replacing=replacing,
        confirming=confirming,
        owner_invite=owner_invite,
        org_form=org_form or FormState({"name": principal.org.name}),
        roles=ROLES if principal.can("owner") else ROLES[1:],
    )


def _attempt(
    action: Callable[[], T],
    message: Callable[[T], str],
    back: str = "dashboard.team_page",
    leaving: bool = False,
    refused: Callable[[ValidationFailed], str] | None = None,
) -> ResponseReturnValue:
    """Run a change, flash its outcome and go back. Refused: `refused(exc)` renders the page
    again with the error beside its field and what was typed; without one, the reason is
    flashed in words. `leaving`: the change took the user out of this org (left it, deleted
    it), so forget it."""
    try:
        result = action()
    except ValidationFailed as exc:
        if refused is not None:
            return refused(exc), exc.status
        flash(sentence(exc), "error")
        return redirect(url_for(back))
    flash(message(result), "success")
    if leaving:
        session.pop("org_id", None)
        session.pop("env_id", None)
        return redirect(url_for("dashboard.overview"))
    return redirect(url_for(back))


def _admin() -> Principal:
    principal = current_principal()
    require_role(principal, "admin")
    return principal


@bp.post("/settings/team/<user_id>/role")
def member_role(user_id: str) -> ResponseReturnValue:
    principal = _admin()
    role = request.form.get("role")
    # Making an owner, or lowering a role (keys revoked for good): asked once more, saying
    # what will happen; the dashboard sends `confirm` (the role) only from that question.
    effects = team.role_change_effects(principal, team.get_member_or_404(principal, user_id), role)
    if effects is not None and request.form.get("confirm") != role:
        return _team_page(principal, confirming=effects), 200
    return _attempt(
        lambda: team.change_role(principal, user_id, role),
        lambda m: f"{m.user.email} is now {m.role}.",
        refused=lambda exc: _team_page(principal, rows=RowForms.failed("role", user_id, exc, "role")),
    )


@bp.post("/settings/team/<user_id>/remove")
def member_remove(user_id: str) -> ResponseReturnValue:
    principal = _admin()
    return _attempt(lambda: team.remove_member(principal, user_id), lambda _: "Member removed.")


@bp.post("/settings/team/invitations/<invitation_id>/revoke")
def invitation_revoke(invitation_id: str) -> ResponseReturnValue:
    principal = _admin()
    return _attempt(
        lambda: team.revoke_invitation(principal, invitation_id),
        lambda i: f"Invitation for {i.email} withdrawn; its link no longer works.",
    )


@bp.post("/settings/leave")
def leave_org() -> ResponseReturnValue:
    principal = current_principal()
    return _attempt(
        lambda: team.remove_member(principal, signed_in_user(principal).id),
        lambda _: f"You left {principal.org.name}.",
        "dashboard.account_page",
        leaving=True,
    )


@bp.post("/settings/org/rename")
def org_rename() -> ResponseReturnValue:
    principal = current_principal()
    require_role(principal, "owner")
    return _attempt(
        lambda: team.rename_org(principal, request.form.get("name")),
        lambda org: f"The organization is now called {org.name}.",
        refused=lambda exc: _team_page(principal, org_form=FormState.from_request("name").fail(exc)),
    )


@bp.post("/settings/org/delete")
def org_delete() -> ResponseReturnValue:
    principal = current_principal()
    require_role(principal, "owner")
    return _attempt(
        lambda: team.delete_org(principal, request.form.get("confirm")),
        lambda _: f"{principal.org.name} and everything in it were deleted.",
        leaving=True,
        refused=lambda exc: _team_page(principal, delete_form=FormState.from_request("confirm").fail(exc)),
    )


@bp.post("/switch-org")
def switch_org() -> ResponseReturnValue:
    principal = current_principal()
    return _attempt(
        lambda: team.switch_org(signed_in_user(principal), request.form.get("org_id", "")),
        lambda org: f"Switched to {org.name}.",
        "dashboard.overview",
    )


@bp.route("/settings/projects", methods=["GET", "POST"])
def projects_page() -> ResponseReturnValue:
    principal = current_principal()
    require_role(principal, "admin")
    form, status = FormState.from_request("name"), 200
    if request.method == "POST":
        try:
            env = team.create_environment(principal, request.form.get("name"))
            flash(f"Project {env.name} created. Switch to it from the sidebar.", "success")
            return redirect(url_for("dashboard.projects_page"))
        except ValidationFailed as exc:
            form.fail(exc)
            status = exc.status
    return _projects_page(principal, form), status


def _projects_page(principal: Principal, form: FormState | None = None, rows: RowForms | None = None) -> str:
    return render_template(
        "dashboard/settings/projects.html",
        envs=team.list_environments(principal),
        form=form or FormState(),
        row_forms=rows or RowForms(),
    )


@bp.post("/settings/projects/<env_id>/rename")
def project_rename(env_id: str) -> ResponseReturnValue:
    principal = _admin()
    return _attempt(
        lambda: team.rename_environment(principal, env_id, request.form.get("name")),
        lambda env: f"Renamed to {env.name}.",
        "dashboard.projects_page",
        refused=lambda exc: _projects_page(principal, rows=RowForms.failed("rename", env_id, exc, "name")),
    )


@bp.get("/settings/audit-log")
def audit_page() -> ResponseReturnValue:
    principal = current_principal()
    require_role(principal, "admin")
    page, filters, status = filtered(
        partial(audit.list_entries, org_id=principal.org.id, limit=50), *audit.FILTERS
    )
    return render_template(
        "dashboard/settings/audit.html", page=page, args=request.args, filters=filters
    ), status
