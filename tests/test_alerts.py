"""Alerts: rules that watch a project, incidents opened and resolved once each, sent over a
signed webhook (a real HTTP server on 127.0.0.1) and e-mail (a real SMTP server, aiosmtpd)."""

from __future__ import annotations

import json
import threading
from datetime import timedelta

import pytest

from hookstream_ui.models import AlertIncident, SourceConnection, SyncRun, db
from hookstream_ui.services import alerts
from hookstream_ui.services.signatures import verify_standard
from hookstream_ui.sources import MASK
from hookstream_ui.values.times import utcnow
from tests.helpers import auth, connect_webhook, make_source, org_of, production
from tests.receivers import Receiver


@pytest.fixture
def env(owner):
    """The project the `key` fixture's key works in."""
    return production(org_of(owner))


@pytest.fixture
def receiver(app):
    app.config["ALLOW_PRIVATE_NETWORKS"] = True
    r = Receiver()
    yield r
    r.stop()


@pytest.fixture
def smtp(app):
    """A real SMTP server on 127.0.0.1; the messages it took."""
    from aiosmtpd.controller import Controller

    from tests.fixture_servers import free_port

    got: list = []
    lock = threading.Lock()

    class Handler:
        async def handle_DATA(self, server, session, envelope):
            with lock:
                got.append(envelope)
            return "250 OK"

    port = free_port()
    controller = Controller(Handler(), hostname="127.0.0.1", port=port)
    controller.start()
    app.config.update(SMTP_HOST="127.0.0.1", SMTP_PORT=port, SMTP_FROM="alerts@hookstream.test")
    yield got
    controller.stop()
    app.config.update(SMTP_HOST="")


def rule(client, key, **body) -> dict:
    made = client.post("/v1/alert-rules", json={"name": "Watch", **body}, headers=auth(key))
    assert made.status_code == 201, made.json
    return made.json["rule"]


def failed_run(source: SourceConnection, status: str = "failed", later: int = 0) -> None:
    db.session.add(
        SyncRun(
            org_id=source.org_id,
            env_id=source.env_id,
            source_id=source.id,
            status=status,
            error="connection refused" if status == "failed" else None,
            cursor={},
            skip_reasons={},
            created_at=utcnow() + timedelta(seconds=later),
        )
    )
    db.session.commit()


def test_a_failed_run_is_sent_once_when_it_opens_and_once_when_resolved(app, client, key, receiver, env):
    made = rule(client, key, kind="run_failed", channel="http", target=receiver.url)
    secret = made["signing_secret"]
    assert secret.startswith("whsec_")
    again = client.get(f"/v1/alert-rules/{made['id']}", headers=auth(key)).json["rule"]
    assert "signing_secret" not in again and secret not in str(again)  # shown once
    source = make_source(env, short_name="stripe")
    failed_run(source)
    assert alerts.evaluate() == {"opened": 1, "resolved": 0}
    assert alerts.evaluate() == {"opened": 0, "resolved": 0}  # once per incident
    [opened] = receiver.got
    headers = {k.lower(): v for k, v in opened["headers"].items()}
    verify_standard(secret, opened["body"], headers, now=utcnow().timestamp())
    assert opened["message"]["type"] == "alert.opened"
    assert "connection refused" in opened["message"]["data"]["message"]
    listed = client.get("/v1/incidents", headers=auth(key)).json["incidents"]
    assert [i["subject_id"] for i in listed] == [source.id] and listed[0]["notified_at"]
    failed_run(source, "completed", later=5)
    assert alerts.evaluate() == {"opened": 0, "resolved": 1}
    assert [g["message"]["type"] for g in receiver.got] == ["alert.opened", "alert.resolved"]
    assert client.get("/v1/incidents", headers=auth(key)).json["incidents"] == []
    assert len(client.get("/v1/incidents?all=true", headers=auth(key)).json["incidents"]) == 1
    # A resolved incident is kept a month, then pruned.
    from hookstream_ui.services import retention

    assert retention.prune_incidents(utcnow() + timedelta(days=29)) == 0
    assert retention.prune_incidents(utcnow() + timedelta(days=31)) == 1
    assert client.get("/v1/incidents?all=true", headers=auth(key)).json["incidents"] == []


def test_a_token_in_an_alert_url_is_never_shown(app, client, key, receiver, env, signed_in):
    made = rule(client, key, kind="run_failed", channel="http", target=f"{receiver.url}?key=alert-canary-9")
    shown = client.get(f"/v1/alert-rules/{made['id']}", headers=auth(key)).json["rule"]
    assert shown["target"] == f"{receiver.url}?key={MASK}"
    # Sent back as read, the target keeps its token.
    r = client.patch(f"/v1/alert-rules/{made['id']}", json={"target": shown["target"]}, headers=auth(key))
    assert r.status_code == 200, r.json
    failed_run(make_source(env, short_name="stripe"))
    assert alerts.evaluate()["opened"] == 1
    assert receiver.got[0]["path"] == "/hook?key=alert-canary-9"
    page = signed_in[0].get("/alerts")
    assert page.status_code == 200 and "alert-canary-9" not in page.get_data(as_text=True)
    assert "alert-canary-9" not in json.dumps(client.get("/v1/alert-rules", headers=auth(key)).json)


def test_a_source_going_unhealthy_is_mailed_over_smtp(app, client, key, smtp, env):
    rule(client, key, kind="source_health", channel="email", target="ops@example.com")
    source = make_source(env, short_name="stripe")
    source.health_status, source.last_error = "degraded", "rate limited"
    db.session.commit()
    alerts.evaluate()
    [mail] = smtp
    text = mail.content.decode()
    assert mail.rcpt_tos == ["ops@example.com"] and "Subject: [hookstream] Alert: Watch" in text
    assert "is degraded: rate limited" in text
    source.health_status = "healthy"
    db.session.commit()
    alerts.evaluate()
    assert len(smtp) == 2 and "Resolved: Watch" in smtp[1].content.decode()


def test_a_notification_that_fails_is_sent_at_the_next_evaluation(app, client, key, receiver, env):
    rule(client, key, kind="run_failed", channel="http", target=receiver.url)
    failed_run(make_source(env, short_name="stripe"))
    receiver.fail = 1
    alerts.evaluate()
    [incident] = db.session.query(AlertIncident).all()
    assert incident.notified_at is None and incident.notify_error == "answered 500"
    alerts.evaluate()
    db.session.expire_all()
    assert db.session.get(AlertIncident, incident.id).notified_at is not None
    assert len(receiver.got) == 1


def test_a_silent_webhook_and_a_lagging_feed_open_incidents(app, client, key, receiver, env):
    rule(client, key, kind="webhook_silent", channel="http", target=receiver.url, params={"minutes": 5})
    rule(client, key, kind="feed_lag", channel="http", target=receiver.url, params={"seconds": 60})
    sid = connect_webhook(client, key)
    assert alerts.evaluate()["opened"] == 0  # made just now
    assert alerts.evaluate(utcnow() + timedelta(minutes=6))["opened"] == 1
    pulled = make_source(env, short_name="stripe")
    pulled.feed_lag = {"behind_seconds": 120}
    db.session.commit()
    assert alerts.evaluate(utcnow() + timedelta(minutes=6))["opened"] == 1
    subjects = {i.subject_id for i in db.session.query(AlertIncident).all()}
    assert subjects == {sid, pulled.id}


def test_bad_rules_are_refused_by_name(client, key):
    for body, field in (
        ({"kind": "nope", "channel": "http", "target": "https://x.example"}, "kind"),
        ({"kind": "run_failed", "channel": "pager", "target": "x"}, "channel"),
        ({"kind": "run_failed", "channel": "http", "target": "ftp://x"}, "target"),
        ({"kind": "run_failed", "channel": "email", "target": "ops@example.com"}, "channel"),  # no SMTP_HOST
        (
            {
                "kind": "feed_lag",
                "channel": "http",
                "target": "https://x.example",
                "params": {"seconds": 1},
            },
            "params.seconds",
        ),
    ):
        r = client.post("/v1/alert-rules", json={"name": "x", **body}, headers=auth(key))
        assert r.status_code == 400 and field in r.json["errors"], (body, r.json)


def test_the_alerts_page_lists_open_incidents_and_adds_a_rule(app, signed_in_with_key, receiver):
    client, token, key = signed_in_with_key
    added = client.post(
        "/alerts",
        data={
            "csrf_token": token,
            "name": "On-call",
            "kind": "run_failed",
            "channel": "http",
            "target": receiver.url,
        },
    )
    assert added.status_code == 302
    page = client.get(added.headers["Location"]).get_data(as_text=True)
    assert 'id="secret-once"' in page and "whsec_" in page
    assert "whsec_" not in client.get(added.headers["Location"]).get_data(as_text=True)  # once
    refused = client.post(
        "/alerts",
        data={"csrf_token": token, "name": "x", "kind": "run_failed", "channel": "http", "target": "nope"},
    )
    assert refused.status_code == 400 and "must be an http:// or https:// URL" in refused.get_data(
        as_text=True
    )
    [made] = client.get("/v1/alert-rules", headers=auth(key)).json["rules"]
    from hookstream_ui.models import Environment

    source_env = db.session.get(SourceConnection, connect_webhook(client, key)).env_id
    failed_run(make_source(db.session.get(Environment, source_env), short_name="stripe"))
    alerts.evaluate()
    shown = client.get("/alerts").get_data(as_text=True)
    assert "connection refused" in shown and f'data-rule="{made["id"]}"' in shown and "whsec_" not in shown
    assert json.loads(receiver.got[0]["body"])["type"] == "alert.opened"
