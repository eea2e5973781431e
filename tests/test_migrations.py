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


def test_existing_collections_keep_their_source_as_one_binding(tmp_path):
    """0018 gives every fed collection one binding with its stream and position, and marks
    its records as written by that source: reads and full re-reads go on as before."""
    from flask_migrate import upgrade
    from sqlalchemy import text

    from hookstream_ui import create_app
    from hookstream_ui.config import TEST_CONFIG

    app = create_app({**TEST_CONFIG, "SQLALCHEMY_DATABASE_URI": f"sqlite:///{tmp_path / 'old.db'}"})
    with app.app_context():
        upgrade(revision="0017")
        now = "2026-01-01 00:00:00.000000"
        with db.engine.begin() as conn:
            for sql in (
                f"INSERT INTO orgs (id, name, slug, created_at, updated_at) VALUES ('org_1', 'O', 'o', '{now}', '{now}')",
                "INSERT INTO environments (id, org_id, name, slug, created_at, updated_at) "
                f"VALUES ('env_1', 'org_1', 'Production', 'production', '{now}', '{now}')",
                "INSERT INTO source_connections (id, org_id, env_id, short_name, name, status, config, "
                "sync_status, health_status, consecutive_failures, created_at, updated_at) VALUES "
                f"('sc_1', 'org_1', 'env_1', 'stripe', 'S', 'connected', '{{}}', 'active', 'healthy', 0, '{now}', '{now}')",
                "INSERT INTO collections (id, org_id, env_id, name, slug, source_id, stream, primary_key_path, "
                "status, record_count, search_index, sync_state, created_at, updated_at) VALUES "
                "('col_abc', 'org_1', 'env_1', 'C', 'c', 'sc_1', 'customer', '$.id', 'ACTIVE', 1, 'off', "
                f"'{{\"events_since\": 5}}', '{now}', '{now}')",
                "INSERT INTO collections (id, org_id, env_id, name, slug, primary_key_path, status, "
                f"record_count, search_index, created_at, updated_at) VALUES ('col_none', 'org_1', 'env_1', "
                f"'D', 'd', '$.id', 'NEEDS_SOURCE', 0, 'off', '{now}', '{now}')",
                "INSERT INTO records (id, org_id, env_id, collection_id, record_key, data, created_at, updated_at) "
                f"VALUES ('rec_1', 'org_1', 'env_1', 'col_abc', 'cus_1', '{{\"id\": \"cus_1\"}}', '{now}', '{now}')",
            ):
                conn.execute(text(sql))
        upgrade()
        with db.engine.connect() as conn:
            bindings = conn.execute(
                text("SELECT collection_id, source_id, position, stream, sync_state FROM collection_sources")
            ).all()
            written_by = conn.execute(text("SELECT source_id FROM records WHERE id = 'rec_1'")).scalar()
        db.engine.dispose()
    assert [tuple(b) for b in bindings] == [("col_abc", "sc_1", 0, "customer", '{"events_since": 5}')]
    assert written_by == "sc_1"
