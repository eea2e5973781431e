"""Authentication and authorization decisions, made here and nowhere else.

API paths always answer 401/403 in JSON; dashboard paths redirect to sign-in.
"""

from __future__ import annotations

from urllib.parse import urlsplit

from flask import Response, abort, flash, g, redirect, request, session, url_for
from flask.typing import ResponseReturnValue
from flask_login import current_user
from flask_wtf.csrf import CSRFError
from htmx_flask import make_response as htmx_response

from ..extensions import csrf, login_manager
from ..models.principal import Principal
from .principal import no_org_message, principal_for_key, principal_for_session

API_PREFIXES = ("/v1/", "/api/")
SAFE_METHODS = {"GET", "HEAD", "OPTIONS"}


def is_api_request() -> bool:
    return request.path.startswith(API_PREFIXES) or request.path == "/v1"


def presented_api_key() -> str | None:
    if request.headers.get("X-API-Key"):
        return request.headers["X-API-Key"].strip()
    scheme, _, token = request.headers.get("Authorization", "").partition(" ")
    if scheme.lower() == "bearer" and token.strip():
        return token.strip()
    return None


def authenticate_api_request() -> Principal:
    """The caller of an API endpoint, by API key or by session cookie (with CSRF)."""
    from ..services.api_keys import KeyRefused, authenticate_key

    raw = presented_api_key()
    if raw is not None:
        try:
            key = authenticate_key(raw)
        except KeyRefused as exc:
            abort(401, description=str(exc))
        principal = principal_for_key(key)
    else:
        signed_in = principal_for_session()
        if signed_in is None and current_user.is_authenticated:
            abort(403, description=no_org_message(current_user))
        if signed_in is None:
            abort(
                401,
                description="Authentication required: send X-API-Key or "
                "Authorization: Bearer <key>, or sign in",
            )
        principal = signed_in
        if request.method not in SAFE_METHODS:
            try:
                csrf.protect()
            except CSRFError:
                abort(
                    403,
                    description="CSRF token missing or invalid: send the page's "
                    "csrf-token in the X-CSRFToken header",
                )
    g.principal = principal
    return principal


def require_role(principal: Principal, role: str) -> None:
    if not principal.can(role):
        who = (
            "this API key is read only"
            if principal.api_key is not None and principal.role == "viewer"
            else f"this API key has the {principal.role} role"
            if principal.api_key is not None
            else f"you are {principal.role}"
        )
        abort(403, description=f"This needs the {role} role or higher; {who}")


def require_session(principal: Principal, what: str) -> None:
    if not principal.via_session:
        abort(403, description=f"{what} can only be managed from a signed-in session")


def safe_next(target: str | None) -> str | None:
    """`target` if it is a path on this site, else None. An open redirect after sign-in is a
    phishing tool; browsers read a backslash as a slash (/\\evil.com is //evil.com), and a
    line break would split the Location header."""
    target = target or ""
    if (
        not target.startswith("/")
        or target.startswith("//")
        or "\\" in target
        or any(ord(c) < 0x20 or ord(c) == 0x7F for c in target)
    ):
        return None
    return target if not urlsplit(target).netloc else None


def is_htmx_request() -> bool:
    # A history restore asks for a whole page, which htmx puts in place of the whole page.
    return (
        request.headers.get("HX-Request") == "true"
        and request.headers.get("HX-History-Restore-Request") != "true"
    )


def htmx_page_url() -> str | None:
    """The page an htmx request was made from (HX-Current-URL), as a same-site path: only its
    path and query are taken (behind a proxy its host is not this request's)."""
    parts = urlsplit(request.headers.get("HX-Current-URL", ""))
    return safe_next(parts.path + (f"?{parts.query}" if parts.query else ""))


def htmx_whole_page(url: str, status: int) -> Response:
    """What an htmx request gets instead of a whole page (sign-in, an error) that it would
    otherwise put inside a fragment: an instruction to load `url` as the page."""
    return htmx_response("", status, redirect=url)


@login_manager.unauthorized_handler
def _unauthorized() -> ResponseReturnValue:
    if is_api_request():
        abort(401, description="Authentication required")
    if session.pop("_user_id", None) is not None:
        # The cookie still names a user whose session no longer works: say why sign-in is back.
        flash(
            "Your session ended (signed out elsewhere, password changed, or it expired). "
            "Sign in again to go on where you were.",
            "info",
        )
    if is_htmx_request():
        # The sign-in page, coming back to the page the user is on, not to the fragment.
        return htmx_whole_page(url_for("auth.login", next=htmx_page_url()), 401)
    return redirect(url_for("auth.login", next=request.full_path.rstrip("?")))
