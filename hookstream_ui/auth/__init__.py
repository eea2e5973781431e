"""Sign-in, sessions, API keys and roles."""
from flask_login import current_user
from sqlalchemy import select

from ..extensions import login_manager
from ..models import User, db
from .access import authenticate_api_request, is_api_request, require_role, require_session
from .principal import Principal, current_principal

login_manager.login_view = "auth.login"
login_manager.login_message_category = "info"


@login_manager.user_loader
def _load_user(session_id: str):
    # The id carries the user's session token, so a password change ends old sessions.
    user_id, _, token = session_id.partition(":")
    user = db.session.scalar(select(User).where(User.id == user_id))
    if user is None or user.session_token != token:
        return None
    return user


__all__ = [
    "Principal", "authenticate_api_request", "current_principal", "current_user",
    "is_api_request", "require_role", "require_session",
]
