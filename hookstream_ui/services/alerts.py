"""Alerts: rules per project, each watching one kind of trouble; incidents, one per rule and
subject while the trouble lasts, each notified once when it opens and once when it is
resolved, over a signed webhook or e-mail (SMTP, when the instance has a server).

`evaluate()` runs every ALERT_SECONDS in a job (sync/alerts.py). Each kind is a function
from a rule to what is firing now, {subject id: (subject name, what is wrong)}; the
difference with the open incidents is what opens and what resolves.
"""

from __future__ import annotations

import json
import logging
import smtplib
from collections.abc import Callable
from datetime import datetime, timedelta
from email.message import EmailMessage
from typing import Any

from flask import abort, current_app
from pydantic import BaseModel, ConfigDict, Field, field_validator
from sqlalchemy import Select, func, select

from ..destinations.webhook import Webhook, WebhookConfig, new_signing_secret
from ..errors import ValidationFailed, validated
from ..models import (
    FINAL_STATUSES,
    AlertIncident,
    AlertRule,
    Delivery,
    Destination,
    Event,
    SourceConnection,
    SyncRun,
    db,
)
from ..models.principal import Principal
from ..sources import secrets as vault
from ..values.times import as_utc, isoformat, utcnow
from . import audit
from .names import clean_name

log = logging.getLogger(__name__)
Firing = dict[str, tuple[str, str]]  # subject id -> (its name, what is wrong)
CHANNELS = ("http", "email")  # a signed POST (a webhook), or e-mail


class RuleFields(BaseModel):
    model_config = ConfigDict(extra="forbid")
    name: str | None = Field(None, max_length=120)
    kind: str | None = None
    params: dict | None = None
    channel: str | None = None
    target: str | None = Field(None, max_length=2000, description="the webhook's URL, or the e-mail address")
    enabled: bool | None = None

    @field_validator("channel")
    @classmethod
    def _channel(cls, value: str | None) -> str | None:
        if value is not None and value not in CHANNELS:
            raise ValueError(f"must be one of {', '.join(CHANNELS)}")
        return value


# --- what each kind watches -------------------------------------------------------------------


def _run_failed(rule: AlertRule, now: datetime) -> Firing:
    """Sources whose newest finished run failed."""
    newest = (
        select(SyncRun.source_id, func.max(SyncRun.created_at).label("at"))
        .where(SyncRun.env_id == rule.env_id, SyncRun.status.in_(FINAL_STATUSES))
        .group_by(SyncRun.source_id)
        .subquery()
    )
    rows = db.session.execute(
        select(SourceConnection.id, SourceConnection.name, SyncRun.error)
        .join(newest, newest.c.source_id == SourceConnection.id)
        .join(SyncRun, (SyncRun.source_id == newest.c.source_id) & (SyncRun.created_at == newest.c.at))
        .where(SourceConnection.env_id == rule.env_id, SyncRun.status == "failed")
    ).all()
    return {
        sid: (name, f"The last sync run of {name} failed: {error or 'no reason recorded'}")
        for sid, name, error in rows
    }


def _source_health(rule: AlertRule, now: datetime) -> Firing:
    rows = db.session.execute(
        select(
            SourceConnection.id,
            SourceConnection.name,
            SourceConnection.health_status,
            SourceConnection.last_error,
        ).where(
            SourceConnection.env_id == rule.env_id, SourceConnection.health_status.in_(("degraded", "error"))
        )
    ).all()
    return {
        sid: (name, f"{name} is {health}: {error or 'no reason recorded'}")
        for sid, name, health, error in rows
    }


def _destination_failing(rule: AlertRule, now: datetime) -> Firing:
    dead: dict[str, int] = {
        str(d): int(n)
        for d, n in db.session.execute(
            select(Delivery.destination_id, func.count())
            .where(Delivery.status == "dead")
            .group_by(Delivery.destination_id)
        ).all()
    }
    out: Firing = {}
    for d in db.session.scalars(select(Destination).where(Destination.env_id == rule.env_id)):
        if d.open_until is not None:
            out[d.id] = (
                d.name,
                f"{d.name} is failing ({d.last_error}): nothing is sent until it answers again",
            )
        elif dead.get(d.id):
            out[d.id] = (d.name, f"{d.name} has {dead[d.id]} dead deliveries: retry them from its page")
    return out


def _feed_lag(rule: AlertRule, now: datetime) -> Firing:
    seconds = int(rule.params.get("seconds", 600))
    out: Firing = {}
    for s in db.session.scalars(
        select(SourceConnection).where(
            SourceConnection.env_id == rule.env_id, SourceConnection.feed_lag.is_not(None)
        )
    ):
        behind = (s.feed_lag or {}).get("behind_seconds") or 0
        if behind >= seconds:
            out[s.id] = (s.name, f"{s.name}'s change feed is {behind} s behind (the rule allows {seconds} s)")
    return out


def _webhook_silent(rule: AlertRule, now: datetime) -> Firing:
    from .sources import type_of

    minutes = int(rule.params.get("minutes", 60))
    since = now - timedelta(minutes=minutes)
    newest: dict[str, datetime] = {
        str(sid): at
        for sid, at in db.session.execute(
            select(Event.source_id, func.max(Event.received_at))
            .where(Event.env_id == rule.env_id)
            .group_by(Event.source_id)
        ).all()
    }
    out: Firing = {}
    for s in db.session.scalars(select(SourceConnection).where(SourceConnection.env_id == rule.env_id)):
        if not type_of(s).push:
            continue
        last = as_utc(newest.get(s.id)) or as_utc(s.created_at)
        if last is not None and last < since:
            out[s.id] = (s.name, f"{s.name} has received nothing for {minutes} minutes")
    return out


class _Kind(BaseModel):
    label: str
    params: dict[str, tuple[int, int, int]] = {}  # name -> (default, minimum, maximum)


KINDS: dict[str, tuple[_Kind, Callable[[AlertRule, datetime], Firing]]] = {
    "run_failed": (_Kind(label="A sync run failed"), _run_failed),
    "source_health": (_Kind(label="A source's health is degraded or error"), _source_health),
    "destination_failing": (
        _Kind(label="A destination is failing or has dead deliveries"),
        _destination_failing,
    ),
    "feed_lag": (_Kind(label="A change feed lags", params={"seconds": (600, 10, 86_400)}), _feed_lag),
    "webhook_silent": (
        _Kind(label="A webhook source received nothing", params={"minutes": (60, 1, 10_080)}),
        _webhook_silent,
    ),
}


def _params(kind: str, given: dict | None) -> dict[str, int]:
    spec = KINDS[kind][0].params
    given = given or {}
    problems = {f"params.{k}": f"is not a setting of {kind}" for k in given if k not in spec}
    out: dict[str, int] = {}
    for name, (default, low, high) in spec.items():
        value = given.get(name, default)
        if not isinstance(value, int) or isinstance(value, bool) or not low <= value <= high:
            problems[f"params.{name}"] = f"must be a whole number from {low:,} to {high:,}"
        else:
            out[name] = value
    if problems:
        raise ValidationFailed(problems)
    return out


def _target(channel: str, target: str | None) -> str:
    if not target:
        raise ValidationFailed({"target": "is required"})
    if channel == "http":
        try:
            WebhookConfig(url=target)
        except ValueError:
            raise ValidationFailed({"target": "must be an http:// or https:// URL with a host"}) from None
    elif "@" not in target or any(c.isspace() for c in target) or len(target) > 254:
        raise ValidationFailed({"target": "must be an e-mail address"})
    elif not current_app.config.get("SMTP_HOST"):
        raise ValidationFailed({"channel": "e-mail needs an SMTP server: set SMTP_HOST on this instance"})
    return target


def _hidden_target(channel: str, target: str) -> tuple[str, dict]:
    """The target as stored and shown, and the secret it held: a webhook URL's token is kept
    with the signing secret, as a destination's is."""
    if channel != "http":
        return target, {}
    config, hidden = Webhook.hide({"url": target, "headers": {}})
    return config["url"], {"url": hidden["url"]}


# --- rules ---------------------------------------------------------------------------------


def scoped(principal: Principal) -> Select[tuple[AlertRule]]:
    return select(AlertRule).where(AlertRule.org_id == principal.org.id, AlertRule.env_id == principal.env.id)


def list_rules(principal: Principal) -> list[AlertRule]:
    return list(db.session.scalars(scoped(principal).order_by(AlertRule.created_at, AlertRule.id)))


def get_rule_or_404(principal: Principal, rule_id: str) -> AlertRule:
    rule = db.session.scalar(scoped(principal).where(AlertRule.id == rule_id))
    if rule is None:
        abort(404, description="Alert rule not found")
    return rule


def create_rule(principal: Principal, payload: object) -> tuple[AlertRule, dict]:
    """The rule, and its webhook signing secret as made: the only time it is shown."""
    data: RuleFields = validated(RuleFields, payload)
    problems = {n: "is required" for n in ("name", "kind", "channel") if not getattr(data, n)}
    if data.kind and data.kind not in KINDS:
        problems["kind"] = f"must be one of {', '.join(KINDS)}"
    if problems:
        raise ValidationFailed(problems)
    kind, channel = str(data.kind), str(data.channel)  # both checked just above
    made = {"signing_secret": new_signing_secret()} if channel == "http" else {}
    target, hidden = _hidden_target(channel, _target(channel, data.target))
    rule = AlertRule(
        org_id=principal.org.id,
        env_id=principal.env.id,
        name=clean_name(data.name or ""),
        kind=kind,
        params=_params(kind, data.params),
        channel=channel,
        target=target,
        secrets_encrypted=vault.encrypt({**made, **hidden}) if made else None,
        enabled=True if data.enabled is None else data.enabled,
        created_by_id=principal.user_id,
    )
    db.session.add(rule)
    _audit("alert_rule.create", rule)
    db.session.commit()
    return rule, made


def update_rule(principal: Principal, rule: AlertRule, payload: object) -> AlertRule:
    data: RuleFields = validated(RuleFields, payload)
    if (data.kind is not None and data.kind != rule.kind) or (
        data.channel is not None and data.channel != rule.channel
    ):
        raise ValidationFailed({"kind": "kind and channel cannot be changed: make a new rule"})
    if data.params is not None:
        rule.params = _params(rule.kind, data.params)
    if data.target is not None and data.target != rule.target:  # as shown: kept as held
        rule.target, hidden = _hidden_target(rule.channel, _target(rule.channel, data.target))
        if rule.channel == "http":
            rule.secrets_encrypted = vault.encrypt({**vault.decrypt(rule.secrets_encrypted), **hidden})
    if data.name is not None:
        rule.name = clean_name(data.name)
    if data.enabled is not None:
        rule.enabled = data.enabled
    _audit("alert_rule.update", rule, {"fields": sorted(data.model_fields_set)})
    db.session.commit()
    return rule


def delete_rule(principal: Principal, rule: AlertRule) -> None:
    _audit("alert_rule.delete", rule)
    db.session.delete(rule)
    db.session.commit()


def incidents(principal: Principal, open_only: bool = True, limit: int = 100) -> list[AlertIncident]:
    query = select(AlertIncident).where(
        AlertIncident.org_id == principal.org.id, AlertIncident.env_id == principal.env.id
    )
    if open_only:
        query = query.where(AlertIncident.resolved_at.is_(None))
    return list(db.session.scalars(query.order_by(AlertIncident.opened_at.desc()).limit(limit)))


def _audit(action: str, rule: AlertRule, more: dict | None = None) -> None:
    audit.note(
        action,
        "alert_rule",
        rule.id,
        org_id=rule.org_id,
        env_id=rule.env_id,
        details={"name": rule.name, "kind": rule.kind, "channel": rule.channel, **(more or {})},
    )


# --- evaluating and notifying ---------------------------------------------------------------


def evaluate(now: datetime | None = None) -> dict[str, int]:
    """Every enabled rule against what is true now: incidents opened and resolved, each
    notified once. A notification that fails is tried again at the next evaluation."""
    now = now or utcnow()
    opened = resolved = 0
    for rule in db.session.scalars(select(AlertRule).where(AlertRule.enabled.is_(True))).all():
        firing = KINDS[rule.kind][1](rule, now)
        open_ = {
            i.subject_id: i
            for i in db.session.scalars(
                select(AlertIncident).where(
                    AlertIncident.rule_id == rule.id, AlertIncident.resolved_at.is_(None)
                )
            )
        }
        for subject, (name, message) in firing.items():
            if subject not in open_:
                db.session.add(
                    AlertIncident(
                        org_id=rule.org_id,
                        env_id=rule.env_id,
                        rule_id=rule.id,
                        subject_id=subject,
                        subject_name=name[:200],
                        message=message,
                        opened_at=now,
                    )
                )
                opened += 1
        for subject, incident in open_.items():
            if subject not in firing:
                incident.resolved_at = now
                resolved += 1
        db.session.commit()
        _notify_owed(rule)
    return {"opened": opened, "resolved": resolved}


def _notify_owed(rule: AlertRule) -> None:
    owed = db.session.scalars(
        select(AlertIncident).where(
            AlertIncident.rule_id == rule.id,
            (AlertIncident.notified_at.is_(None))
            | (AlertIncident.resolved_at.is_not(None) & AlertIncident.resolved_notified_at.is_(None)),
        )
    ).all()
    for incident in owed:
        state = "resolved" if incident.notified_at is not None else "opened"
        error = _send(rule, incident, state)
        incident.notify_error = error
        if error is None:
            if state == "opened":
                incident.notified_at = utcnow()
                if incident.resolved_at is not None:  # resolved before its first word went out
                    incident.resolved_notified_at = incident.notified_at
            else:
                incident.resolved_notified_at = utcnow()
        db.session.commit()


def _message(rule: AlertRule, incident: AlertIncident, state: str) -> dict[str, Any]:
    return {
        "type": f"alert.{state}",
        "timestamp": isoformat((incident.resolved_at if state == "resolved" else None) or incident.opened_at),
        "data": {
            "incident_id": incident.id,
            "rule_id": rule.id,
            "rule": rule.name,
            "kind": rule.kind,
            "subject_id": incident.subject_id,
            "subject": incident.subject_name,
            "message": incident.message,
            "opened_at": isoformat(incident.opened_at),
            "resolved_at": isoformat(incident.resolved_at),
        },
    }


def _send(rule: AlertRule, incident: AlertIncident, state: str) -> str | None:
    """None when sent; else why not."""
    message = _message(rule, incident, state)
    if rule.channel == "http":
        sender = Webhook(rule.id, {"url": rule.target, "headers": {}}, vault.decrypt(rule.secrets_encrypted))
        try:
            outcome = sender.post_signed(f"{incident.id}_{state}", json.dumps(message).encode())
        finally:
            sender.close()
        return None if outcome.ok else (outcome.error or "not delivered")
    return _email(rule, incident, state)


def _email(rule: AlertRule, incident: AlertIncident, state: str) -> str | None:
    """Over the instance's SMTP server (its operator's, so not through the network guard,
    which keeps tenants from reaching the network)."""
    config = current_app.config
    if not config.get("SMTP_HOST"):
        return "no SMTP server is configured (SMTP_HOST)"
    mail = EmailMessage()
    mail["From"] = config["SMTP_FROM"]
    mail["To"] = rule.target
    verb = "Resolved" if state == "resolved" else "Alert"
    mail["Subject"] = f"[hookstream] {verb}: {rule.name} — {incident.subject_name}"
    mail.set_content(
        f"{incident.message}\n\nRule: {rule.name}\nOpened: {as_utc(incident.opened_at):%Y-%m-%d %H:%M UTC}\n"
        + (f"Resolved: {as_utc(incident.resolved_at):%Y-%m-%d %H:%M UTC}\n" if incident.resolved_at else "")
    )
    try:
        with smtplib.SMTP(config["SMTP_HOST"], int(config["SMTP_PORT"]), timeout=10) as smtp:
            if config.get("SMTP_STARTTLS"):
                smtp.starttls()
            if config.get("SMTP_USERNAME"):
                smtp.login(config["SMTP_USERNAME"], config.get("SMTP_PASSWORD") or "")
            smtp.send_message(mail)
    except (OSError, smtplib.SMTPException) as exc:
        log.warning("alert e-mail for %s not sent: %s", incident.id, type(exc).__name__)
        return f"the SMTP server refused it ({type(exc).__name__})"
    return None
