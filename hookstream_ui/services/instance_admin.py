"""What /admin does: every org and user of the instance, suspension, and the job system."""

from __future__ import annotations

import secrets
from collections.abc import Sequence
from datetime import timedelta

from flask import abort
from redis.exceptions import RedisError
from rq.job import Job
from rq.registry import FailedJobRegistry
from sqlalchemy import Select, func, select
from werkzeug.exceptions import NotFound

from ..errors import ValidationFailed
from ..extensions import get_redis
from ..infra.queues import QUEUES, queue
from ..models import Collection, Event, Membership, Org, User, db
from ..values.times import utcnow
from . import accounts, api_keys
from .names import ORG_NAME_MAX, clean_name


def org_rows() -> list[dict]:
    """Each org with its members, collections, records and events of the last 24 h."""

    def counts(stmt: Select[tuple[str, int]]) -> dict[str, int]:
        return dict(db.session.execute(stmt).tuples().all())

    members = counts(select(Membership.org_id, func.count()).group_by(Membership.org_id))
    collections = counts(select(Collection.org_id, func.count()).group_by(Collection.org_id))
    records = counts(
        select(Collection.org_id, func.coalesce(func.sum(Collection.record_count), 0)).group_by(
            Collection.org_id
        )
    )
    events = counts(
        select(Event.org_id, func.count())
        .where(Event.received_at >= utcnow() - timedelta(hours=24))
        .group_by(Event.org_id)
    )
    return [
        {
            "org": org,
            "members": members.get(org.id, 0),
            "collections": collections.get(org.id, 0),
            "records": int(records.get(org.id, 0)),
            "events_24h": events.get(org.id, 0),
        }
        for org in db.session.scalars(select(Org).order_by(Org.created_at, Org.id))
    ]


def get_org_or_404(org_id: str) -> Org:
    org = db.session.get(Org, org_id)
    if org is None:
        abort(404, description="No such organization")
    return org


def _org_name(value: object) -> str:
    return clean_name(value, "name", 1, ORG_NAME_MAX)


def create_org(name: object, owner_email: str) -> Org:
    name = _org_name(name)
    owner = None
    if owner_email:
        owner = db.session.scalar(select(User).where(User.email == accounts.normalise_email(owner_email)))
        if owner is None:
            raise ValidationFailed(
                {"owner_email": "no user with that email; invite them from the org instead"}
            )
    org = accounts.create_org(name, owner=owner)
    db.session.commit()
    return org


def rename_org(org_id: str, name: object) -> Org:
    org = get_org_or_404(org_id)
    org.name = _org_name(name)
    db.session.commit()
    return org


def suspend_org(org_id: str, reason: str | None) -> Org:
    org = get_org_or_404(org_id)
    reason = (reason or "").strip() if isinstance(reason, str) else ""
    if not reason:
        raise ValidationFailed({"reason": "is required: members see it when they sign in"})
    if len(reason) > 500:
        raise ValidationFailed({"reason": "must be at most 500 characters: members see it when they sign in"})
    org.suspended_at, org.suspended_reason = utcnow(), reason
    db.session.commit()
    return org


def unsuspend_org(org_id: str) -> Org:
    org = get_org_or_404(org_id)
    org.suspended_at, org.suspended_reason = None, None
    db.session.commit()
    return org


def delete_org(org_id: str, confirm: str | None) -> Org:
    org = get_org_or_404(org_id)
    if confirm != org.slug:
        raise ValidationFailed({"confirm": f"type the organization's slug ({org.slug}) to confirm"})
    db.session.delete(org)
    db.session.commit()
    return org


def users() -> Sequence[User]:
    return db.session.scalars(select(User).order_by(User.created_at, User.id)).all()


def get_user_or_404(user_id: str) -> User:
    user = db.session.get(User, user_id)
    if user is None:
        abort(404, description="No such user")
    return user


def set_user_disabled(acting: User, user_id: str, disabled: bool) -> User:
    user = get_user_or_404(user_id)
    if user.id == acting.id:
        raise ValidationFailed({"user_id": "you cannot disable yourself"})
    user.disabled_at = utcnow() if disabled else None
    if disabled:
        user.session_token = secrets.token_hex(16)  # signs them out everywhere
        api_keys.end_keys_of(user.id, "its owner's account was disabled")
    db.session.commit()
    return user


def user_action_effects(acting: User, user_id: str, action: str) -> dict:
    """What disabling or promoting the user would do, to be said before it is done."""
    user = get_user_or_404(user_id)
    keys = len(api_keys.keys_ended_by(user.id)) if action == "disable" else 0
    return {
        "user": user,
        "action": action,
        "keys": keys,
        "orgs": len(user.memberships),
        "self": user.id == acting.id,
    }


def set_instance_admin(acting: User, user_id: str, admin: bool) -> User:
    user = get_user_or_404(user_id)
    if user.id == acting.id and not admin:
        raise ValidationFailed({"user_id": "you cannot remove your own instance-admin rights"})
    user.is_instance_admin = admin
    db.session.commit()
    return user


def queues() -> list[dict]:
    """Each queue's depth and failures; none while Redis is unreachable (the health panel says so)."""
    rows = []
    try:
        for name in QUEUES:
            q = queue(name)
            rows.append({"name": name, "queued": q.count, "failed": FailedJobRegistry(queue=q).count})
    except RedisError:
        return []
    return rows


def failed_jobs(limit: int = 50) -> list[dict]:
    try:
        return _failed_jobs(limit)
    except RedisError:
        return []


def _failed_jobs(limit: int) -> list[dict]:
    jobs = []
    for name in QUEUES:
        registry = FailedJobRegistry(queue=queue(name))
        for job in Job.fetch_many(registry.get_job_ids(0, limit - 1), connection=get_redis()):
            if job is not None:
                result = job.latest_result()
                lines = (result.exc_string or "").strip().splitlines() if result is not None else []
                # The exception's own line only: a traceback is for logs, not for a page.
                jobs.append(
                    {
                        "id": job.id,
                        "queue": name,
                        "func": job.func_name,
                        "args": job.args,
                        "ended_at": job.ended_at,
                        "error": lines[-1][:300] if lines else "",
                    }
                )
    return jobs


def _failed_job_or_404(job_id: str) -> tuple[FailedJobRegistry, str]:
    try:
        for name in QUEUES:
            registry = FailedJobRegistry(queue=queue(name))
            if job_id in registry.get_job_ids():
                return registry, job_id
    except RedisError:
        raise ValidationFailed(
            {"job": "Redis is unreachable; try again once it is back"}, status=503, code="unavailable"
        ) from None
    raise NotFound(description="No failed job with that id")


def requeue_job(job_id: str) -> None:
    registry, job_id = _failed_job_or_404(job_id)
    registry.requeue(job_id)


def delete_job(job_id: str) -> None:
    registry, job_id = _failed_job_or_404(job_id)
    registry.remove(job_id, delete_job=True)
