"""All models, importable from one place (and seen by Alembic autogenerate)."""
from .api_key import KEY_ROLES, ApiKey
from .base import db, isoformat, new_id, utcnow
from .collection import STATUSES, Collection
from .event import DedupClaim, Event, RecordEvent
from .record import Record
from .sign_in import PasswordReset, SignInFailure, UserSession
from .source import SourceConnection
from .sync_run import ACTIVE_STATUSES, FINAL_STATUSES, SyncRun
from .source_file import CHUNK_SIZE, SourceFile, SourceFileChunk
from .team import AuditEntry, Invitation
from .tenancy import ROLES, Environment, Membership, Org, role_at_least
from .user import User

__all__ = [
    "ApiKey", "AuditEntry", "DedupClaim", "RecordEvent", "KEY_ROLES", "CHUNK_SIZE", "Invitation", "Collection", "Environment", "Event", "Membership", "Org", "Record",
    "PasswordReset", "SignInFailure", "SourceConnection", "SourceFile", "UserSession", "SourceFileChunk", "SyncRun", "User", "ACTIVE_STATUSES", "FINAL_STATUSES",
    "ROLES", "STATUSES", "db", "isoformat", "new_id", "role_at_least", "utcnow",
]
