"""All models, importable from one place (and seen by Alembic autogenerate)."""

from .alert import AlertIncident, AlertRule
from .api_key import KEY_ROLES, ApiKey
from .base import db, new_id
from .binding import Binding
from .collection import STATUSES, Collection
from .destination import Delivery, DeliveryAttempt, Destination, Subscription
from .event import DedupClaim, Event, RecordEvent
from .record import Record, RecordChange, RecordDeletion
from .sign_in import PasswordReset, SignInFailure, UserSession
from .source import SourceConnection
from .source_file import CHUNK_SIZE, SourceFile, SourceFileChunk
from .sync_run import ACTIVE_STATUSES, FINAL_STATUSES, SyncRun
from .team import AuditEntry, Invitation
from .tenancy import ROLES, Environment, Membership, Org, role_at_least
from .user import User

__all__ = [
    "ACTIVE_STATUSES",
    "CHUNK_SIZE",
    "FINAL_STATUSES",
    "KEY_ROLES",
    "ROLES",
    "STATUSES",
    "AlertIncident",
    "AlertRule",
    "ApiKey",
    "AuditEntry",
    "Binding",
    "Collection",
    "DedupClaim",
    "Delivery",
    "DeliveryAttempt",
    "Destination",
    "Environment",
    "Event",
    "Invitation",
    "Membership",
    "Org",
    "PasswordReset",
    "Record",
    "RecordChange",
    "RecordDeletion",
    "RecordEvent",
    "SignInFailure",
    "SourceConnection",
    "SourceFile",
    "SourceFileChunk",
    "Subscription",
    "SyncRun",
    "User",
    "UserSession",
    "db",
    "new_id",
    "role_at_least",
]
