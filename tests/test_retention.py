"""EVENT_RETENTION_DAYS: events past it are deleted by the scheduler; records stay."""

from __future__ import annotations

import json
from datetime import timedelta

import pytest
from sqlalchemy import select, update

from hookstream_ui.config import load_config
from hookstream_ui.models import Event, Record, db
from hookstream_ui.services import retention
from hookstream_ui.sync import scheduler
from hookstream_ui.values.times import utcnow
from tests.helpers import (
    add_env,
    add_orders,
    auth,
    connect_webhook,
    login,
    make_key,
    make_user,
    org_of,
    production,
)


@pytest.fixture
def retention_days(app, monkeypatch):
    monkeypatch.setitem(app.config, "EVENT_RETENTION_DAYS", 7)


def _hook(client, key) -> str:
    sid = connect_webhook(client, key)
    add_orders(client, key, sid)
    return sid


def _deliveries(client, sid, ages_in_days: list[float]) -> list[str]:
    """One delivery per age, then dated back by that age; returns their event ids."""
    ids = []
    for i, age in enumerate(ages_in_days):
        answer = client.post(
            f"/v1/ingest/{sid}",
            data=json.dumps({"id": f"o{sid[-4:]}{i}", "age": age}),
            content_type="application/json",
        )
        assert answer.status_code == 200, answer.get_data(as_text=True)
        event_id = answer.json["event_id"]
        db.session.execute(
            update(Event).where(Event.id == event_id).values(received_at=utcnow() - timedelta(days=age))
        )
        db.session.commit()  # SQLite: the next delivery's writer needs the write lock
        ids.append(event_id)
    return ids


def _stored_ids() -> set[str]:
    db.session.expire_all()
    return set(db.session.scalars(select(Event.id)))


def test_events_past_retention_go_oldest_first_in_every_org_and_records_stay(
    client, ctx, retention_days, monkeypatch
):
    monkeypatch.setattr(retention, "BATCH", 2)  # several batches, and a limit inside one
    org = org_of(make_user("owner@example.com"))
    key, other_key = make_key(production(org)), make_key(production(org_of(make_user("other@example.com"))))
    staging_key = make_key(add_env(org, "staging"))
    ages = {
        k: _deliveries(client, _hook(client, k), a)
        for k, a in [(key, [30, 9, 8, 6.9, 0]), (other_key, [20, 7.01]), (staging_key, [1])]
    }
    old = {ages[key][0], ages[key][1], ages[key][2], *ages[other_key]}

    assert retention.prune_events(limit=3) == 3  # the three oldest, whatever their org
    assert _stored_ids() == set().union(*ages.values()) - {ages[key][0], ages[other_key][0], ages[key][1]}
    assert retention.prune_events() == 2  # the rest past 7 days; fewer than the limit: done
    assert _stored_ids() == set().union(*ages.values()) - old
    assert retention.prune_events() == 0

    # The records those events wrote are the state, and stay.
    assert len(db.session.scalars(select(Record)).all()) == 8
    listed = client.get("/v1/events", headers=auth(key)).json["events"]
    assert {e["id"] for e in listed} == {ages[key][3], ages[key][4]}
    assert client.get(f"/v1/events/{ages[key][0]}", headers=auth(key)).status_code == 404
    assert client.get(f"/v1/events/{ages[key][3]}", headers=auth(key)).status_code == 200


def test_without_retention_every_event_is_kept(client, ctx, app):
    assert app.config["EVENT_RETENTION_DAYS"] is None
    key = make_key(production(org_of(make_user("owner@example.com"))))
    ids = _deliveries(client, _hook(client, key), [400, 30])
    assert retention.prune_events() == 0
    assert _stored_ids() == set(ids)


def test_the_scheduler_prunes_every_ten_minutes_and_goes_on_while_some_remain(
    client, ctx, retention_days, monkeypatch
):
    monkeypatch.setattr(scheduler, "_next_prune", [0.0])
    monkeypatch.setattr(scheduler, "PRUNE_LIMIT", 2)
    key = make_key(production(org_of(make_user("owner@example.com"))))
    sid = _hook(client, key)
    ids = _deliveries(client, sid, [12, 11, 10, 1])
    assert scheduler.tick()["pruned"]["events"] == 2  # the limit: more may remain
    assert scheduler.tick()["pruned"]["events"] == 1  # so the next tick goes on
    assert _stored_ids() == {ids[3]}
    late = _deliveries(client, sid, [9])
    assert scheduler.tick()["pruned"]["events"] == 0  # done: not again for ten minutes
    assert _stored_ids() == {ids[3], *late}
    scheduler._next_prune[0] = 0.0  # ten minutes later
    assert scheduler.prune_when_due() == {"events": 1, "runs": 0}
    assert _stored_ids() == {ids[3]}


def test_retention_is_shown_to_users_and_admins(client, ctx, retention_days):
    make_user("admin@example.com", admin=True)
    login(client, "admin@example.com")
    assert "Events are kept for 7 days." in client.get("/events").get_data(as_text=True)
    page = client.get("/admin/system").get_data(as_text=True)
    assert "Event retention: <strong>7 days</strong>" in page


@pytest.mark.parametrize("value", ["abc", "-1", "1.5"])
def test_a_bad_number_in_the_environment_names_the_variable(tmp_path, monkeypatch, value):
    monkeypatch.setenv("EVENT_RETENTION_DAYS", value)
    with pytest.raises(
        SystemExit, match=f"EVENT_RETENTION_DAYS must be a whole number of at least 0 .*{value}"
    ):
        load_config(tmp_path)
    monkeypatch.setenv("EVENT_RETENTION_DAYS", "30")
    assert load_config(tmp_path)["EVENT_RETENTION_DAYS"] == 30


def test_scheduled_runs_that_changed_nothing_go_after_an_hour_but_each_sources_newest_stays(ctx):
    from hookstream_ui.models import SyncRun
    from hookstream_ui.models.principal import Principal
    from hookstream_ui.services import sources as source_svc

    def source(email):
        user = make_user(email)
        org = org_of(user)
        return source_svc.create_source(
            Principal(org=org, env=production(org), role="owner", user=user),
            {"sourceShortName": "stripe", "name": "S", "credentials": {"secret_key": "sk_test_x"}},
        )

    now = utcnow()
    runs = {}

    def run(name, src, minutes_ago, trigger="schedule", status="completed", **counts):
        at = now - timedelta(minutes=minutes_ago)
        runs[name] = SyncRun(
            org_id=src.org_id,
            env_id=src.env_id,
            source_id=src.id,
            trigger=trigger,
            status=status,
            created_at=at,
            started_at=at,
            finished_at=at,
            cursor={},
            skip_reasons={},
            **counts,
        )
        db.session.add(runs[name])

    busy, quiet, theirs = (
        source("owner@example.com"),
        source("quiet@example.com"),
        source("other@example.com"),
    )
    run("idle", busy, 200)
    run("idle, counts unset", busy, 190, records_skipped=None)
    run("changed something", busy, 180, records_inserted=3)
    run("skipped some", busy, 170, records_skipped=1)
    run("manual", busy, 160, trigger="manual")
    run("failed", busy, 150, status="failed")
    run("idle, within the hour", busy, 30)
    run("quiet's only run", quiet, 300)
    run("theirs, idle", theirs, 120)
    run("theirs, newest", theirs, 90)
    db.session.commit()
    ids = {name: r.id for name, r in runs.items()}

    assert retention.prune_idle_runs() == 3
    db.session.expire_all()
    kept = set(db.session.scalars(select(SyncRun.id)))
    assert {name for name, i in ids.items() if i not in kept} == {
        "idle",
        "idle, counts unset",
        "theirs, idle",
    }
    assert retention.prune_idle_runs() == 0


def test_ended_sessions_and_old_sign_in_failures_are_pruned(app, ctx):
    from datetime import timedelta

    from hookstream_ui.models import SignInFailure, UserSession
    from hookstream_ui.services.retention import prune_sign_in_state
    from hookstream_ui.values.times import utcnow

    user = make_user("owner@example.com")
    now = utcnow()
    db.session.add_all(
        [
            UserSession(user_id=user.id, expires_at=now - timedelta(days=2)),
            UserSession(
                user_id=user.id, expires_at=now + timedelta(days=1), ended_at=now - timedelta(days=2)
            ),
            UserSession(id="ses_live", user_id=user.id, expires_at=now + timedelta(days=1)),
            SignInFailure(key="email:old", failures=3, last_failure_at=now - timedelta(hours=1)),
            SignInFailure(key="email:new", failures=3, last_failure_at=now),
        ]
    )
    db.session.commit()
    assert prune_sign_in_state() == 3
    assert [s.id for s in db.session.scalars(select(UserSession))] == ["ses_live"]
    assert [f.key for f in db.session.scalars(select(SignInFailure))] == ["email:new"]
