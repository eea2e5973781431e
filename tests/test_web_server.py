"""What the production web server hands the app: the request, and nothing of the process."""

from __future__ import annotations

import os


def test_a_request_environ_holds_nothing_of_the_process_environment(app):
    from hookstream_ui import create_app
    from hookstream_ui.config import TEST_CONFIG

    assert os.environ.get("DATABASE_URL")  # set for the app, as a deployment sets it
    other = create_app(TEST_CONFIG)
    seen: dict = {}

    @other.get("/_environ")
    def _environ():
        from flask import request

        seen.update(request.environ)
        return {}

    # As granian builds it: the process's environment, then the request's own keys.
    process = {"DATABASE_URL": os.environ["DATABASE_URL"], "INSTANCE_PATH": os.environ["INSTANCE_PATH"]}
    answer = other.test_client().get("/_environ", environ_base=process, headers={"X-Trace": "t1"})
    assert answer.status_code == 200
    assert "DATABASE_URL" not in seen and "INSTANCE_PATH" not in seen
    assert seen["HTTP_X_TRACE"] == "t1" and seen["PATH_INFO"] == "/_environ" and seen["REMOTE_ADDR"]
