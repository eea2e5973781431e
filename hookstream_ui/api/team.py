"""/v1/environments, /v1/members, /v1/invitations and /v1/audit-log.

An API key acts inside its own environment: it sees that environment, and nothing here
that reaches across the org (team, invitations, other projects, the org's audit log),
which needs a signed-in admin.
"""

from __future__ import annotations

from typing import Any

from flask import request

from ..models import AuditEntry, Environment, Invitation, Membership
from ..models.principal import Principal
from ..services import audit
from ..services import team as svc
from ..values.times import isoformat
from . import schemas, v1
from .openapi import PAGE_QUERY, endpoint, json_body

AUDIT_QUERY: dict[str, dict[str, Any]] = {
    "actor": {"type": "string", "description": "a user or API key id, or part of an email"},
    "action": {
        "type": "string",
        "description": "e.g. collection.delete, or collection for all of its actions",
    },
    "resource": {"type": "string", "description": "a resource type (collection) or a resource id"},
    "since": {"type": "string", "description": "ISO 8601 or epoch seconds"},
    "until": {"type": "string", "description": "ISO 8601 or epoch seconds"},
    **PAGE_QUERY,
}


def environment_json(env: Environment, principal: Principal) -> schemas.EnvironmentOut:
    return schemas.EnvironmentOut(
        id=env.id,
        name=env.name,
        slug=env.slug,
        current=env.id == principal.env.id,
        created_at=isoformat(env.created_at),
    )


def member_json(m: Membership) -> schemas.Member:
    return schemas.Member(
        user_id=m.user_id, email=m.user.email, role=m.role, joined_at=isoformat(m.created_at)
    )


def invitation_json(inv: Invitation, url: str | None = None) -> schemas.InvitationOut:
    return schemas.InvitationOut(
        id=inv.id,
        email=inv.email,
        role=inv.role,
        expires_at=isoformat(inv.expires_at),
        created_at=isoformat(inv.created_at),
        url=url,
    )


TEAM = "The team, invitations, projects and the audit log"


def audit_json(e: AuditEntry) -> schemas.AuditEntryOut:
    return schemas.AuditEntryOut(
        id=e.id,
        at=isoformat(e.at),
        actor=e.actor,
        actor_id=e.actor_id,
        action=e.action,
        resource_type=e.resource_type,
        resource_id=e.resource_id,
        env_id=e.env_id,
        details=dict(e.details or {}),
        ip=e.ip,
    )


@endpoint(
    v1,
    "/environments",
    "GET",
    summary="List the org's environments (projects); a key sees its own",
    tag="team",
    query=PAGE_QUERY,
    responses={200: schemas.EnvironmentList},
)
def list_environments(principal: Principal) -> schemas.EnvironmentList:
    page = svc.environments_page(principal, request.args.get("cursor"), request.args.get("limit"))
    return schemas.EnvironmentList(
        environments=[environment_json(e, principal) for e in page.items],
        cursor=page.cursor,
        has_more=page.has_more,
    )


@endpoint(
    v1,
    "/environments",
    "POST",
    summary="Create an environment",
    tag="team",
    role="admin",
    session_only=TEAM,
    body=schemas.EnvironmentCreate,
    responses={201: schemas.EnvironmentEnvelope, 409: schemas.Error},
)
def create_environment(principal: Principal) -> schemas.EnvironmentEnvelope:
    env = svc.create_environment(principal, json_body().get("name"))
    return schemas.EnvironmentEnvelope(environment=environment_json(env, principal))


@endpoint(
    v1,
    "/environments/<env_id>",
    "PATCH",
    summary="Rename an environment",
    tag="team",
    role="admin",
    session_only=TEAM,
    body=schemas.EnvironmentCreate,
    responses={200: schemas.EnvironmentEnvelope, 404: schemas.Error},
)
def rename_environment(principal: Principal, env_id: str) -> schemas.EnvironmentEnvelope:
    env = svc.rename_environment(principal, env_id, json_body().get("name"))
    return schemas.EnvironmentEnvelope(environment=environment_json(env, principal))


@endpoint(
    v1,
    "/members",
    "GET",
    summary="List the org's members",
    tag="team",
    role="admin",
    session_only=TEAM,
    query=PAGE_QUERY,
    responses={200: schemas.MemberList},
)
def list_members(principal: Principal) -> schemas.MemberList:
    page = svc.members_page(principal, request.args.get("cursor"), request.args.get("limit"))
    return schemas.MemberList(
        members=[member_json(m) for m in page.items], cursor=page.cursor, has_more=page.has_more
    )


@endpoint(
    v1,
    "/members/<user_id>",
    "PATCH",
    summary="Change a member's role",
    tag="team",
    role="admin",
    session_only=TEAM,
    body=schemas.MemberUpdate,
    responses={200: schemas.MemberEnvelope, 404: schemas.Error, 409: schemas.Error},
)
def update_member(principal: Principal, user_id: str) -> schemas.MemberEnvelope:
    return schemas.MemberEnvelope(
        member=member_json(svc.change_role(principal, user_id, json_body().get("role")))
    )


@endpoint(
    v1,
    "/members/<user_id>",
    "DELETE",
    summary="Remove a member",
    tag="team",
    role="admin",
    session_only=TEAM,
    responses={200: schemas.Deleted, 404: schemas.Error, 409: schemas.Error},
)
def remove_member(principal: Principal, user_id: str) -> schemas.Deleted:
    svc.remove_member(principal, user_id)
    return schemas.Deleted(id=user_id, deleted=True)


@endpoint(
    v1,
    "/invitations",
    "POST",
    summary="Invite someone by email (returns the link to send; withdraws an earlier pending link for that email)",
    tag="team",
    role="admin",
    session_only=TEAM,
    body=schemas.InvitationCreate,
    responses={201: schemas.InvitationEnvelope, 409: schemas.Error},
)
def create_invitation(principal: Principal) -> schemas.InvitationEnvelope:
    body = json_body()
    invitation, url = svc.invite(principal, body.get("email"), body.get("role", "member"))
    return schemas.InvitationEnvelope(invitation=invitation_json(invitation, url))


@endpoint(
    v1,
    "/invitations",
    "GET",
    summary="List pending invitations",
    tag="team",
    role="admin",
    session_only=TEAM,
    query=PAGE_QUERY,
    responses={200: schemas.InvitationList},
)
def list_invitations(principal: Principal) -> schemas.InvitationList:
    page = svc.invitations_page(principal, request.args.get("cursor"), request.args.get("limit"))
    return schemas.InvitationList(
        invitations=[invitation_json(i) for i in page.items], cursor=page.cursor, has_more=page.has_more
    )


@endpoint(
    v1,
    "/invitations/<invitation_id>",
    "DELETE",
    summary="Withdraw an invitation",
    tag="team",
    role="admin",
    session_only=TEAM,
    responses={200: schemas.Deleted, 404: schemas.Error},
)
def revoke_invitation(principal: Principal, invitation_id: str) -> schemas.Deleted:
    svc.revoke_invitation(principal, invitation_id)
    return schemas.Deleted(id=invitation_id, deleted=True)


@endpoint(
    v1,
    "/audit-log",
    "GET",
    summary="The org's audit log, newest first",
    tag="team",
    role="admin",
    session_only=TEAM,
    query=AUDIT_QUERY,
    responses={200: schemas.AuditLog},
)
def audit_log(principal: Principal) -> schemas.AuditLog:
    args = request.args
    page = audit.list_entries(
        org_id=principal.org.id,
        actor=args.get("actor"),
        action=args.get("action"),
        resource=args.get("resource"),
        since=args.get("since"),
        until=args.get("until"),
        cursor=args.get("cursor"),
        limit=args.get("limit"),
    )
    return schemas.AuditLog(
        entries=[audit_json(e) for e in page.items], cursor=page.cursor, has_more=page.has_more
    )
