"""The schema comes only from migrations, and they must describe the models exactly."""

from __future__ import annotations

from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext

from hookstream_ui.extensions import db


def test_migrations_match_the_models(app):
    from hookstream_ui.models.base import include_object_for

    with app.app_context(), db.engine.connect() as conn:
        context = MigrationContext.configure(
            conn, opts={"include_object": include_object_for(conn.dialect.name)}
        )
        diff = compare_metadata(context, db.metadata)
    assert diff == [], f"models and migrations differ; run `flask db migrate`: {diff}"
