"""Sign-up, sign-in and sign-out pages."""

from __future__ import annotations

from flask import Blueprint, current_app, flash, redirect, render_template, request, session, url_for
from flask.typing import ResponseReturnValue
from flask_login import current_user, login_required, login_user, logout_user
from sqlalchemy import select

from ..errors import ValidationFailed
from ..forms import FormState
from ..models import Org, User, db
from ..services import accounts, team
from .access import safe_next

bp = Blueprint("auth", __name__)


def _safe_next(default: str) -> str:
    return safe_next(request.args.get("next") or request.form.get("next")) or default


def _start_session(user: User) -> None:
    session.clear()
    session["sid"] = accounts.open_session(user, request.remote_addr).id
    db.session.commit()
    session.permanent = True  # the cookie expires with the session (PERMANENT_SESSION_LIFETIME)
    login_user(user, remember=False)


@bp.route("/login", methods=["GET", "POST"])
def login() -> ResponseReturnValue:
    if current_user.is_authenticated:
        return redirect(url_for("dashboard.overview"))
    if accounts.is_empty_instance():
        return redirect(url_for("auth.signup"))
    form = FormState.from_request("email", secret=("password",))
    if request.method == "POST":
        try:
            user = accounts.authenticate(
                request.form.get("email", ""), request.form.get("password", ""), request.remote_addr
            )
        except ValidationFailed as exc:
            return render_template("auth/login.html", form=form.fail(exc)), exc.status
        _start_session(user)
        return redirect(_safe_next(url_for("dashboard.overview")))
    return render_template("auth/login.html", form=form)


@bp.route("/signup", methods=["GET", "POST"])
def signup() -> ResponseReturnValue:
    if current_user.is_authenticated:
        return redirect(url_for("dashboard.overview"))
    first = accounts.is_empty_instance()
    open_signup = first or current_app.config["ALLOW_SIGNUP"]
    form = FormState.from_request("email", secret=("password", "password_confirm"))
    if request.method == "POST" and open_signup:
        try:
            user = accounts.sign_up(
                request.form.get("email", ""),
                request.form.get("password", ""),
                request.form.get("password_confirm", ""),
            )
        except ValidationFailed as exc:
            return render_template(
                "auth/signup.html", form=form.fail(exc), first=first, open_signup=open_signup
            ), exc.status
        _start_session(user)
        flash("Welcome to hookstream. Create your first collection to get started.", "success")
        return redirect(url_for("dashboard.overview"))
    status = 200 if open_signup else 403
    return render_template("auth/signup.html", form=form, first=first, open_signup=open_signup), status


@bp.post("/logout")
@login_required
def logout() -> ResponseReturnValue:
    accounts.end_session(session.get("sid"))
    logout_user()
    session.clear()
    flash("You are signed out.", "info")
    return redirect(url_for("auth.login"))


@bp.route("/invitations/accept", methods=["GET", "POST"])
def accept_invitation() -> ResponseReturnValue:
    """Join an org from an invitation link: as the signed-in invitee, or as a new account.
    The token rides in the query string, which the access log leaves out (see runner.py)."""
    token = request.args.get("token", "")
    try:
        invitation = team.invitation_for(token)
    except team.InvalidInvitation as exc:
        return render_template("auth/invitation.html", problem=str(exc)), 410
    org = db.session.get_one(Org, invitation.org_id)  # the invitation goes with its org
    user = current_user._get_current_object() if current_user.is_authenticated else None
    has_account = db.session.scalar(select(User.id).where(User.email == invitation.email)) is not None
    form = FormState()
    if request.method == "POST":
        try:
            if user is None and request.form.get("password") != request.form.get("password_confirm"):
                raise ValidationFailed({"password_confirm": "does not match the password"})
            joined = team.accept(token, user, request.form.get("password"))
        except ValidationFailed as exc:
            return render_template(
                "auth/invitation.html",
                invitation=invitation,
                org=org,
                user=user,
                has_account=has_account,
                form=form.fail(exc),
            ), exc.status
        except team.InvalidInvitation as exc:
            return render_template("auth/invitation.html", problem=str(exc)), 410
        if user is None:
            _start_session(joined)
        session["org_id"], session["env_id"] = org.id, None
        flash(f"You joined {org.name} as {invitation.role}.", "success")
        return redirect(url_for("dashboard.overview"))
    return render_template(
        "auth/invitation.html", invitation=invitation, org=org, user=user, has_account=has_account, form=form
    )


@bp.route("/password-reset", methods=["GET", "POST"])
def reset_password() -> ResponseReturnValue:
    """Set a new password from a one-time link an instance admin made. The token rides in
    the query string, which the access log leaves out (see runner.py)."""
    token = request.args.get("token", "")
    try:
        reset = accounts.reset_for(token)
    except accounts.InvalidReset as exc:
        return render_template("auth/password_reset.html", problem=str(exc)), 410
    user = db.session.get(User, reset.user_id)
    form = FormState()
    if request.method == "POST":
        try:
            user = accounts.use_reset(
                token, request.form.get("password", ""), request.form.get("password_confirm", "")
            )
        except ValidationFailed as exc:
            return render_template("auth/password_reset.html", user=user, form=form.fail(exc)), exc.status
        except accounts.InvalidReset as exc:
            return render_template("auth/password_reset.html", problem=str(exc)), 410
        _start_session(user)
        flash(
            "Your password is set and you are signed in here. Every session of your account that was open before was signed out.",
            "success",
        )
        return redirect(url_for("dashboard.overview"))
    return render_template("auth/password_reset.html", user=user, form=form)
