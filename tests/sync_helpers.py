"""Helpers for sync tests: start runs through the API and wait on the run row."""

from __future__ import annotations

import contextlib
import time

from hookstream_ui.models import SyncRun, db


def start(client, key, sid, full=False):
    r = client.post(f"/api/v1/source-connections/{sid}/run", json={"full": full}, headers={"X-API-Key": key})
    assert r.status_code == 200, r.json
    assert r.json["status"] == "started" and r.json["syncId"].startswith("sync_")
    return r.json["syncId"]


def wait_for(run_id, statuses=("completed", "failed", "cancelled"), timeout=90, attempted=False) -> SyncRun:
    """The run once its status is one of `statuses` (and, `attempted`, once it has failed an
    attempt: a run waiting for its retry is pending again)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        db.session.expire_all()
        run = db.session.get(SyncRun, run_id)
        if run.status in statuses and (run.attempt or not attempted):
            return run
        time.sleep(0.1)
    raise AssertionError(f"run {run_id} is {run.status} after {timeout}s (error: {run.error})")


def wait_for_progress(run_id, at_least, timeout=60) -> SyncRun:
    """The run once it has read `at_least` records, for a test that acts mid-run (cancels it,
    kills its worker); it fails at once when the run ends short of that, rather than waiting."""
    deadline = time.monotonic() + timeout
    while True:
        db.session.expire_all()
        run = db.session.get(SyncRun, run_id)
        if (run.progress or 0) >= at_least:
            return run
        assert not run.final and time.monotonic() < deadline, (
            f"run {run_id} is {run.status} at {run.progress} of {at_least} records (error: {run.error})"
        )
        time.sleep(0.02)


def kill_tree(proc) -> None:
    """SIGKILL a worker and everything it started. RQ puts its work horse in a process group
    of its own, so killing the worker's group alone would leave the job running."""
    import psutil

    parent = psutil.Process(proc.pid)
    victims = [*parent.children(recursive=True), parent]
    for victim in victims:
        with contextlib.suppress(psutil.NoSuchProcess):
            victim.kill()
    psutil.wait_procs(victims, timeout=10)
    proc.wait(10)
