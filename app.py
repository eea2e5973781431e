"""WSGI entry point: `gunicorn app:app`, `flask --app app ...`."""
from hookstream_ui import create_app

app = create_app()
