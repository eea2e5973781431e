"""Rotation of the credential encryption keys (MultiFernet: newest key first)."""

from __future__ import annotations

import os
from pathlib import Path

from cryptography.fernet import Fernet
from flask import Flask
from sqlalchemy import select

from ..models import Destination, SourceConnection, db
from ..sources import secrets


def generate_instance_key(app: Flask) -> None:
    """Put a new key in front of the instance-file keys; the old ones stay for decrypting."""
    if os.environ.get("CREDENTIALS_KEYS"):
        raise RuntimeError(
            "keys come from CREDENTIALS_KEYS: add a new key at its front, restart, then "
            "run rotate-credentials-key without --generate"
        )
    path = Path(app.instance_path) / "credentials.key"
    keys = [Fernet.generate_key().decode(), *app.config["CREDENTIALS_KEYS"]]
    tmp = path.with_suffix(".new")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as handle:
        handle.write(",".join(keys))
    os.replace(tmp, path)  # atomic: a crash leaves the old file or the new one, never half
    app.config["CREDENTIALS_KEYS"] = keys


def rotate_all() -> int:
    count = 0
    for source in db.session.scalars(
        select(SourceConnection).where(SourceConnection.credentials_encrypted.is_not(None))
    ):
        if source.credentials_encrypted is not None:  # the query asked for these only
            source.credentials_encrypted = secrets.rotate(source.credentials_encrypted)
            count += 1
    # Destinations' secrets too: a key retired after this must leave nothing it alone opens.
    for destination in db.session.scalars(
        select(Destination).where(Destination.secrets_encrypted.is_not(None))
    ):
        if destination.secrets_encrypted is not None:
            destination.secrets_encrypted = secrets.rotate(destination.secrets_encrypted)
            count += 1
    db.session.commit()
    return count
