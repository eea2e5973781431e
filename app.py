"""WSGI entry point: `granian --interface wsgi app:app`, `flask --app app ...`."""

from hookstream_ui.observability.logs import configure_logging

configure_logging()  # before the app exists: this process's logging is its entry point's

from hookstream_ui import create_app  # noqa: E402  (after logging is configured, on purpose)
from hookstream_ui.process import settle_garbage_collector  # noqa: E402  (as above)

app = create_app()
settle_garbage_collector()
