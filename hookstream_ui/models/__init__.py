"""All models, importable from one place (and seen by Alembic autogenerate)."""
from .api_key import ApiKey
from .base import db, isoformat, new_id, utcnow
from .collection import STATUSES, Collection
from .source import SourceConnection
from .tenancy import ROLES, Environment, Membership, Org, role_at_least
from .user import User

__all__ = [
    "ApiKey", "Collection", "Environment", "Membership", "Org", "SourceConnection", "User",
    "ROLES", "STATUSES", "db", "isoformat", "new_id", "role_at_least", "utcnow",
]
