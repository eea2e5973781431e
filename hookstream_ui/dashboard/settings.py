"""Settings: API keys and the account's password."""

from __future__ import annotations

from flask import flash, redirect, render_template, request, session, url_for
from flask.typing import ResponseReturnValue
from flask_login import current_user, login_user
from werkzeug.wrappers import Response

from ..auth import current_principal, require_role
from ..errors import ValidationFailed
from ..forms import FormState
from ..services import accounts, api_keys, once
from . import bp, signed_in_user


@bp.route("/settings/api-keys", methods=["GET", "POST"])
def api_keys_page() -> ResponseReturnValue:
    principal = current_principal()
    require_role(principal, "admin")
    form, new_key, status = FormState.from_request("name", "role", "expires_in"), None, 200
    if request.method == "POST":
        try:
            key, raw = api_keys.create_key(
                principal.env,
                request.form.get("name"),
                signed_in_user(principal),
                request.form.get("role", "member"),
                api_keys.expiry_in_days(request.form.get("expires_in")),
            )
        except ValidationFailed as exc:
            form.fail(exc)
            status = exc.status
        else:
            # Post, redirect, get: reloading the page that shows the secret makes no second key.
            handle = once.hold("api-key", {"key": raw, "name": key.name})
            if handle is not None:
                session["new_key"] = handle
                return redirect(url_for("dashboard.api_keys_page"))
            new_key, form = {"key": raw, "name": key.name}, FormState()  # Redis down: shown here, once
    else:
        new_key = once.take("api-key", session.pop("new_key", None))
    return render_template(
        "dashboard/settings/api_keys.html",
        keys=api_keys.list_keys(principal),
        ended=api_keys.ended_keys(principal),
        form=form,
        new_key=new_key,
        expiry_days=api_keys.EXPIRY_DAYS,
    ), status


@bp.post("/settings/api-keys/<key_id>/revoke")
def api_key_revoke(key_id: str) -> Response:
    principal = current_principal()
    require_role(principal, "admin")
    key = api_keys.revoke_key(principal, key_id)
    flash(f"API key “{key.name}” revoked. Calls using it now get 401.", "success")
    return redirect(url_for("dashboard.api_keys_page"))


@bp.route("/settings/account", methods=["GET", "POST"])
def account_page() -> ResponseReturnValue:
    form = FormState()
    if request.method == "POST":
        try:
            accounts.change_password(
                current_user,
                request.form.get("current_password", ""),
                request.form.get("new_password", ""),
                request.form.get("new_password_confirm", ""),
            )
        except ValidationFailed as exc:
            return render_template("dashboard/settings/account.html", form=form.fail(exc)), 400
        # This browser stays signed in with the new session token; all others are out.
        login_user(current_user._get_current_object())
        flash("Password changed. Every other session has been signed out.", "success")
        return redirect(url_for("dashboard.account_page"))
    return render_template("dashboard/settings/account.html", form=form)
