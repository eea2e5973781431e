"""Health follows the last runs; the schedule parser; stale and lost runs are picked up."""

from __future__ import annotations

from datetime import timedelta

import pytest

from hookstream_ui.models import SyncRun, db
from hookstream_ui.models.principal import Principal
from hookstream_ui.services import collections as collection_svc
from hookstream_ui.services import runs
from hookstream_ui.services import sources as source_svc
from hookstream_ui.values.schedule import parse_frequency
from hookstream_ui.values.times import utcnow
from tests.helpers import make_user, org_of, production


@pytest.fixture
def source(ctx):
    user = make_user("owner@example.com")
    org = org_of(user)
    principal = Principal(org=org, env=production(org), role="owner", user=user)
    source = source_svc.create_source(
        principal, {"sourceShortName": "stripe", "name": "S", "credentials": {"secret_key": "sk_test_x"}}
    )
    # A run needs a collection to read into (it is refused without one).
    collection_svc.create_collection(
        principal,
        {"name": "Customers", "source_id": source.id, "stream": "customer", "primary_key_path": "$.id"},
    )
    return source


def finish(source, status, error=None):
    run = SyncRun(
        org_id=source.org_id,
        env_id=source.env_id,
        source_id=source.id,
        status=status,
        error=error,
        cursor={},
        skip_reasons={},
        mode="full",
    )
    db.session.add(run)
    runs.record_outcome(source, run)
    db.session.commit()


def test_health_follows_the_last_runs(source):
    assert source.health_status == "healthy" and source.status == "pending"
    finish(source, "failed", "Stripe answered HTTP 500: boom")
    assert source.status == "pending"  # a failed run says nothing about the connection test
    assert source.health_status == "degraded" and source.last_error == "Stripe answered HTTP 500: boom"
    finish(source, "failed", "again")
    finish(source, "failed", "and again")
    assert source.health_status == "error" and source.last_error == "and again"
    finish(source, "completed")
    assert source.health_status == "healthy" and source.last_error is None and source.last_success_at
    assert source.initial_backfill_completed_at is not None
    # The source was read, so it is connected, even though nobody pressed Test.
    assert source.status == "connected" and source.last_test_message == "Read successfully by a sync run"


@pytest.mark.parametrize(
    "value, seconds",
    [("continuous", 5), ("15m", 900), ("4h", 14400), ("24h", 86400), ("30s", 30), ("7d", 604800)],
)
def test_frequencies(value, seconds):
    assert parse_frequency(value) == timedelta(seconds=seconds)


@pytest.mark.parametrize("value", ["hourly", "5s", "0m", "", "4 h"])
def test_bad_frequencies(value):
    with pytest.raises(ValueError):
        parse_frequency(value)


def test_scheduler_enqueues_due_syncs_once(source):
    from hookstream_ui.sync.scheduler import enqueue_due

    source.sync_frequency, source.next_run_at = "1h", utcnow() - timedelta(seconds=1)
    db.session.commit()
    [run_id] = enqueue_due()
    assert db.session.get(SyncRun, run_id).trigger == "schedule"
    assert enqueue_due() == []  # one active run per source
    source.sync_status = "disabled"
    db.session.commit()
    db.session.get(SyncRun, run_id).status = "completed"
    db.session.commit()
    source.next_run_at = utcnow() - timedelta(seconds=1)
    db.session.commit()
    assert enqueue_due() == []  # disabled stops scheduling


def test_lost_jobs_are_requeued(source, redis_url):
    from hookstream_ui.extensions import get_redis
    from hookstream_ui.sync.scheduler import requeue_lost

    run = runs.start_run(source, full=True)
    get_redis().flushdb()  # Redis lost its queue
    assert requeue_lost(utcnow() + timedelta(minutes=2)) == [run.id]
    assert requeue_lost(utcnow() + timedelta(minutes=2)) == []  # it is queued again now
