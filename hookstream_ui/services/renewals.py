"""A credential's renewals as its source type's reads make them (a refreshed OAuth access
token, a rotated refresh token): stored at once, read back as stored, and one at a time.

Two runs sharing one credential (two syncs given the same credential_id) may each find the
access token expired at once. Both renewing with a refresh token that rotates leaves the
second holding a refresh token the first has just made stale: the provider refuses it, and
the connection looks revoked. So a renewal holds a lock on its credential across workers,
and reads what is stored first: a token another run renewed meanwhile is taken, not
renewed again."""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Callable, Iterator

from redis.exceptions import LockError, RedisError
from sqlalchemy import select, update

from ..extensions import db, get_redis
from ..models import SourceConnection
from ..sources import SourceError, secrets

# How long one renewal may hold its credential (a token endpoint answers in seconds; its
# call times out before this), and how long another waits for it.
HOLD_SECONDS = 60
log = logging.getLogger(__name__)


def saver(holder_id: str) -> Callable[[dict], None]:
    """Stores what a source renewed in the credential held by `holder_id`, on a connection
    of its own: it is called from a run's reader thread, beside the writer's session. Not
    an edit by anyone, so nothing turns pending and no run has to be idle."""
    row = SourceConnection.id == holder_id

    def save(changes: dict) -> None:
        with db.engine.begin() as conn:
            stored = conn.execute(
                select(SourceConnection.credentials_encrypted).where(row).with_for_update()
            ).scalar()
            merged = {**secrets.decrypt(stored), **changes}
            conn.execute(
                update(SourceConnection).where(row).values(credentials_encrypted=secrets.encrypt(merged))
            )

    return save


def reader(holder_id: str) -> Callable[[], dict | None]:
    """The credential as stored now, read on a connection of its own (as `saver` writes)."""

    def read() -> dict | None:
        with db.engine.connect() as conn:
            stored = conn.execute(
                select(SourceConnection.credentials_encrypted).where(SourceConnection.id == holder_id)
            ).scalar()
        return secrets.decrypt(stored) if stored else None

    return read


def lock(holder_id: str) -> Callable[[], contextlib.AbstractContextManager]:
    """One renewal of the credential at a time, across workers."""

    @contextlib.contextmanager
    def held() -> Iterator[None]:
        claim = get_redis().lock(
            f"hookstream:renewing:{holder_id}", timeout=HOLD_SECONDS, blocking_timeout=HOLD_SECONDS
        )
        try:
            acquired = claim.acquire()
        except RedisError as exc:
            # Without Redis no other worker runs either: renewing unlocked is safe enough.
            log.warning("renewing credential %s unlocked: %s", holder_id, type(exc).__name__)
            yield
            return
        if not acquired:
            raise SourceError(
                "Another run has been renewing this credential for a minute; the run will retry"
            )
        try:
            yield
        finally:
            with contextlib.suppress(LockError, RedisError):
                claim.release()

    return held
