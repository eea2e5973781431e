"""/v1/alert-rules and /v1/incidents: what a project is warned of, and what is wrong now."""

from __future__ import annotations

from flask import request

from ..models import AlertIncident, AlertRule
from ..models.principal import Principal
from ..services import alerts as svc
from ..values.times import isoformat
from . import schemas, v1
from .openapi import endpoint, json_body

TAG = "alerts"


def rule_json(rule: AlertRule, made: dict | None = None) -> schemas.AlertRuleOut:
    out = schemas.AlertRuleOut(
        id=rule.id,
        name=rule.name,
        kind=rule.kind,
        params=dict(rule.params or {}),
        channel=rule.channel,
        target=rule.target,
        enabled=rule.enabled,
        created_at=isoformat(rule.created_at),
        updated_at=isoformat(rule.updated_at),
    )
    if made:
        out.signing_secret = made["signing_secret"]
    return out


def incident_json(i: AlertIncident) -> schemas.IncidentOut:
    return schemas.IncidentOut(
        id=i.id,
        rule_id=i.rule_id,
        subject_id=i.subject_id,
        subject=i.subject_name,
        message=i.message,
        opened_at=isoformat(i.opened_at),
        resolved_at=isoformat(i.resolved_at),
        notified_at=isoformat(i.notified_at),
        resolved_notified_at=isoformat(i.resolved_notified_at),
        notify_error=i.notify_error,
    )


@endpoint(
    v1,
    "/alert-rules",
    "POST",
    summary="Create an alert rule (a webhook channel's signing secret is in this answer only)",
    tag=TAG,
    body=svc.RuleFields,
    responses={201: schemas.AlertRuleEnvelope, 400: schemas.Error},
)
def create_rule(principal: Principal) -> schemas.AlertRuleEnvelope:
    rule, made = svc.create_rule(principal, json_body())
    return schemas.AlertRuleEnvelope(rule=rule_json(rule, made))


@endpoint(
    v1, "/alert-rules", "GET", summary="List alert rules", tag=TAG, responses={200: schemas.AlertRuleList}
)
def list_rules(principal: Principal) -> schemas.AlertRuleList:
    return schemas.AlertRuleList(rules=[rule_json(r) for r in svc.list_rules(principal)])


@endpoint(
    v1,
    "/alert-rules/<rule_id>",
    "GET",
    summary="One alert rule",
    tag=TAG,
    responses={200: schemas.AlertRuleEnvelope, 404: schemas.Error},
)
def get_rule(principal: Principal, rule_id: str) -> schemas.AlertRuleEnvelope:
    return schemas.AlertRuleEnvelope(rule=rule_json(svc.get_rule_or_404(principal, rule_id)))


@endpoint(
    v1,
    "/alert-rules/<rule_id>",
    "PATCH",
    summary="Change an alert rule (name, params, target, enabled)",
    tag=TAG,
    body=svc.RuleFields,
    responses={200: schemas.AlertRuleEnvelope, 400: schemas.Error, 404: schemas.Error},
)
def update_rule(principal: Principal, rule_id: str) -> schemas.AlertRuleEnvelope:
    rule = svc.update_rule(principal, svc.get_rule_or_404(principal, rule_id), json_body())
    return schemas.AlertRuleEnvelope(rule=rule_json(rule))


@endpoint(
    v1,
    "/alert-rules/<rule_id>",
    "DELETE",
    summary="Delete an alert rule and its incidents",
    tag=TAG,
    responses={200: schemas.Deleted, 404: schemas.Error},
)
def delete_rule(principal: Principal, rule_id: str) -> schemas.Deleted:
    svc.delete_rule(principal, svc.get_rule_or_404(principal, rule_id))
    return schemas.Deleted(id=rule_id, deleted=True)


@endpoint(
    v1,
    "/incidents",
    "GET",
    summary="Incidents: open ones, or all (?all=true), newest first",
    tag=TAG,
    query={"all": {"type": "boolean", "description": "resolved ones too"}},
    responses={200: schemas.IncidentList},
)
def list_incidents(principal: Principal) -> schemas.IncidentList:
    everything = request.args.get("all") in ("true", "1")
    return schemas.IncidentList(
        incidents=[incident_json(i) for i in svc.incidents(principal, not everything)]
    )
