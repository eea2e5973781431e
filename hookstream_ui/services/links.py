"""Absolute links that leave the instance: ingest URLs given to senders, invitation links
sent to people. They are built on PUBLIC_URL when it is set: the request's Host header is
whatever the client sent, and a link built on it can lead anywhere."""
from __future__ import annotations

from flask import current_app, has_request_context, request


def public(path: str) -> str:
    base = current_app.config.get("PUBLIC_URL") or (request.host_url if has_request_context() else "")
    return f"{base.rstrip('/')}/{path.lstrip('/')}"
