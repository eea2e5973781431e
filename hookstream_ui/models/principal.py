"""Who is calling, in which org and environment, with which role.

Every scoped query filters on a Principal's org and environment. It is made of models
only, with no request in it, so services take one as their first argument and the auth
layer, which builds it once per request (from an API key or the signed-in session),
is the only place that knows where it came from.
"""

from __future__ import annotations

from dataclasses import dataclass

from .api_key import ApiKey
from .tenancy import Environment, Org, role_at_least
from .user import User


@dataclass(frozen=True)
class Principal:
    org: Org
    env: Environment
    role: str
    user: User | None = None
    api_key: ApiKey | None = None

    @property
    def via_session(self) -> bool:
        return self.api_key is None

    @property
    def acting_user(self) -> User | None:
        """Whom the change is by: the signed-in user, or the person a key acts for (what
        created_by and modified_by name)."""
        if self.user is not None:
            return self.user
        return self.api_key.created_by if self.api_key is not None else None

    @property
    def email(self) -> str | None:
        return self.acting_user.email if self.acting_user else None

    @property
    def user_id(self) -> str | None:
        return self.acting_user.id if self.acting_user else None

    def can(self, role: str) -> bool:
        return role_at_least(self.role, role)


def suspended_message(org: Org) -> str:
    reason = f": {org.suspended_reason}" if org.suspended_reason else ""
    return f"The organization {org.name} is suspended{reason}"
