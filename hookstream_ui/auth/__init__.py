"""Sign-in, sessions, API keys and roles."""

from flask import session
from flask_login import current_user

from ..extensions import login_manager
from ..models import User
from .access import authenticate_api_request, is_api_request, require_role, require_session
from .principal import current_principal, maybe_principal

login_manager.login_view = "auth.login"
login_manager.login_message_category = "info"


@login_manager.user_loader
def _load_user(login_id: str) -> User | None:
    # The id carries the user's session token, so a password change ends old sessions; the
    # cookie also names its server-side session, which sign-out ends.
    from ..services.accounts import signed_in_user

    user_id, _, token = login_id.partition(":")
    return signed_in_user(user_id, token, session.get("sid"))


__all__ = [
    "authenticate_api_request",
    "current_principal",
    "current_user",
    "is_api_request",
    "maybe_principal",
    "require_role",
    "require_session",
]
