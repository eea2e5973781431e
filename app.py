"""WSGI entry point: `gunicorn app:app`, `flask --app app ...`."""

from hookstream_ui import create_app
from hookstream_ui.process import settle_garbage_collector

app = create_app()
settle_garbage_collector()
