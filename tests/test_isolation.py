"""Tenant isolation: another org's or another environment's ids answer 404 on every route.

The route list comes from the app itself, so a new endpoint with an id in its path is
covered the day it is added (and fails here until its parameter is mapped below).
"""

from __future__ import annotations

import pytest

from hookstream_ui.api.openapi import DOC_ATTR
from tests.helpers import login, make_user

# Path parameters that name shared catalog entries, not tenant data.
GLOBAL_PARAMS = {"short_name"}
# The org's own resources (its projects, members, invitations) are the same from each of
# its projects: only another org must not reach them.
ORG_LEVEL_PARAMS = {"env_id", "user_id", "invitation_id"}


def scoped_routes(app):
    for rule in app.url_map.iter_rules():
        doc = getattr(app.view_functions[rule.endpoint], DOC_ATTR, None)
        if doc and not doc["public"] and rule.arguments - GLOBAL_PARAMS:
            yield rule, doc["method"].upper()


def fill(rule, ids):
    path = rule.rule
    for arg in rule.arguments:
        assert arg in ids, f"map the path parameter <{arg}> of {rule.rule} to a resource in two_tenants"
        path = path.replace(f"<{arg}>", ids[arg])
    return path


@pytest.mark.parametrize("other", ["b_raw", "a_staging_raw"])
def test_every_scoped_route_hides_other_tenants(app, two_tenants, other):
    routes = list(scoped_routes(app))
    assert len(routes) >= 4
    api = app.test_client()
    make_user("bob-session@example.com")
    session = app.test_client()
    token = login(session, "bob-session@example.com")
    for rule, method in routes:
        if other == "a_staging_raw" and rule.arguments & ORG_LEVEL_PARAMS:
            continue
        path = fill(rule, two_tenants["a_ids"])
        r = api.open(
            path, method=method, json={"name": "Hijacked"}, headers={"X-API-Key": two_tenants[other]}
        )
        if r.status_code == 403 and "signed-in session" in r.json["error"]:
            r = session.open(path, method=method, json={"name": "Hijacked"}, headers={"X-CSRFToken": token})
        assert r.status_code == 404, (method, path, r.status_code, r.json)
    # and the owner still sees their collection, unchanged
    mine = api.get("/v1/collections/alice-users", headers={"X-API-Key": two_tenants["a_raw"]})
    assert mine.status_code == 200 and mine.json["collection"]["name"] == "Alice users"


def test_lists_only_show_the_callers_environment(app, two_tenants):
    api = app.test_client()
    for raw in (two_tenants["b_raw"], two_tenants["a_staging_raw"]):
        assert api.get("/v1/collections", headers={"X-API-Key": raw}).json["collections"] == []
    assert (
        len(api.get("/v1/collections", headers={"X-API-Key": two_tenants["a_raw"]}).json["collections"]) == 1
    )


def test_cannot_bind_another_tenants_source(app, two_tenants):
    r = app.test_client().post(
        "/v1/collections",
        json={"name": "Sneaky", "source_id": two_tenants["a_ids"]["source_id"], "primary_key_path": "$.id"},
        headers={"X-API-Key": two_tenants["b_raw"]},
    )
    assert r.status_code == 404 and r.json["error"] == "Source not found"


def test_dashboard_hides_other_tenants(app, two_tenants):
    make_user("carol@example.com")
    client = app.test_client()
    login(client, "carol@example.com")
    for path in (
        "/collections/alice-users",
        "/collections/alice-users/edit",
        "/collections/alice-users/delete",
        "/collections/alice-users/_records",
        "/collections/alice-users/_schema",
    ):
        assert client.get(path).status_code == 404, path
    assert "Alice users" not in client.get("/collections").get_data(as_text=True)


def test_dashboard_forms_cannot_reach_another_orgs_team_or_projects(app, two_tenants):
    from tests.helpers import csrf_token

    make_user("dave@example.com")
    client = app.test_client()
    login(client, "dave@example.com")
    ids = two_tenants["a_ids"]
    for path, data in (
        (f"/settings/team/{ids['user_id']}/remove", {}),
        (f"/settings/team/{ids['user_id']}/role", {"role": "viewer"}),
        (f"/settings/team/invitations/{ids['invitation_id']}/revoke", {}),
        (f"/settings/projects/{ids['env_id']}/rename", {"name": "Hijacked"}),
        ("/switch-project", {"env_id": ids["env_id"]}),
        ("/switch-to", {"env_id": ids["env_id"], "next": "/"}),
        ("/switch-org", {"org_id": org_of_env(ids["env_id"])}),
    ):
        r = client.post(path, data={**data, "csrf_token": csrf_token(client)})
        assert r.status_code == 404, (path, r.status_code)


def org_of_env(env_id):
    from hookstream_ui.models import Environment, db

    return db.session.get(Environment, env_id).org_id
