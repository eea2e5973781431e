"""Dashboard pages through the real routes: forms, errors beside fields, htmx partials."""

from __future__ import annotations

import re

from markupsafe import escape
from sqlalchemy import select

from hookstream_ui.models import Collection, db
from tests.helpers import add_env, make_source, make_user, org_of, production


def form(token, **values):
    return {"csrf_token": token, "primary_key_path": "$.id", **values}


def test_pages_render_with_layout(signed_in):
    client, _, _ = signed_in
    for path in ("/", "/collections", "/collections/new", "/settings/api-keys", "/settings/account"):
        r = client.get(path)
        body = r.get_data(as_text=True)
        assert r.status_code == 200, path
        assert '<meta name="csrf-token"' in body and 'name="viewport"' in body
        assert "htmx-2.0.11.min.js" in body and 'id="env-select"' in body


def test_create_collection_form_error_keeps_values_then_succeeds(signed_in):
    client, token, _ = signed_in
    r = client.post(
        "/collections/new",
        data=form(token, name="abc", slug="", description="typed text", primary_key_path="data.id"),
    )
    body = r.get_data(as_text=True)
    assert r.status_code == 400
    assert re.search(r'id="e-name">must be 4 to 64 characters<', body)
    assert 'value="abc"' in body and "typed text" in body and 'value="data.id"' in body
    assert db.session.scalar(select(Collection)) is None

    r = client.post(
        "/collections/new",
        data=form(token, name="Stripe customers", slug="customers", primary_key_path="data.id"),
    )
    assert r.status_code == 302 and r.location.endswith("/collections/customers")
    page = client.get("/collections/customers").get_data(as_text=True)
    assert "Stripe customers" in page and "$.data.id" in page and "Needs Source" in page


def test_form_and_api_reject_the_same_input_with_the_same_message(signed_in):
    client, token, _ = signed_in
    bad = {"name": "Users", "slug": "Bad Slug", "primary_key_path": "$.[["}
    api = client.post("/v1/collections", json=bad, headers={"X-CSRFToken": token}).json["errors"]
    page = client.post("/collections/new", data=form(token, **bad)).get_data(as_text=True)
    for field, message in api.items():
        assert f'id="e-{field}">{escape(message)}<' in page, field


def test_slug_taken_shows_beside_slug(signed_in):
    client, token, _ = signed_in
    client.post("/collections/new", data=form(token, name="Users", slug="users"))
    r = client.post("/collections/new", data=form(token, name="Users again", slug="users"))
    assert r.status_code == 400 and 'id="e-slug"' in r.get_data(as_text=True)


def test_slug_preview_partial(signed_in):
    client, token, _ = signed_in
    client.post("/collections/new", data=form(token, name="Users", slug="users"))

    def preview(**q):
        return client.get(
            "/collections/_slug-preview", query_string=q, headers={"HX-Request": "true"}
        ).get_data(as_text=True)

    assert re.search(r"<code data-slug>finance-data-[a-z0-9]{6}</code>", preview(name="Finance Data"))
    assert "is available" in preview(name="x", slug="fresh-slug")
    assert "already taken" in preview(slug="users")
    assert "lowercase" in preview(slug="Not OK")
    assert "<html" not in preview(name="x")  # a partial, not a page


def test_edit_and_delete_with_confirmation(signed_in):
    client, token, org = signed_in
    source = make_source(production(org), "Shop webhook")
    client.post("/collections/new", data=form(token, name="Users", slug="users"))
    edit = client.get("/collections/users/edit").get_data(as_text=True)
    # Sources are added on the collection's page, not in the edit form.
    assert 'value="Users"' in edit and 'name="source_id"' not in edit
    r = client.post("/collections/users/edit", data=form(token, name="ab", slug="users"))
    assert r.status_code == 400 and 'value="ab"' in r.get_data(as_text=True)
    r = client.post("/collections/users/edit", data=form(token, name="Members", slug="members"))
    assert r.status_code == 302
    r = client.post("/collections/members/sources", data={"csrf_token": token, "source_id": source.id})
    assert r.status_code == 302
    detail = client.get("/collections/members").get_data(as_text=True)
    assert "Members" in detail and "Shop webhook" in detail and "Active" in detail
    assert db.session.scalar(select(Collection)).search_index == "on"  # a form without the field keeps it
    r = client.post(
        "/collections/members/edit",
        data=form(token, name="Members", slug="members", source_id=source.id, search_index="off"),
    )
    assert r.status_code == 302
    db.session.expire_all()
    assert db.session.scalar(select(Collection)).search_index == "off"
    assert 'value="off" selected' in client.get("/collections/members/edit").get_data(as_text=True)

    assert "Type <code>members</code>" in client.get("/collections/members/delete").get_data(as_text=True)
    r = client.post("/collections/members/delete", data={"csrf_token": token, "confirm_slug": "wrong"})
    assert r.status_code == 400 and db.session.scalar(select(Collection)) is not None
    r = client.post("/collections/members/delete", data={"csrf_token": token, "confirm_slug": "members"})
    assert r.status_code == 302
    assert "No collections yet" in client.get(r.location).get_data(as_text=True)
    assert client.get("/collections/members").status_code == 404


def test_list_shows_columns_and_paginates(signed_in):
    client, token, org = signed_in
    source = make_source(production(org), "Orders hook")
    for i in range(30):
        client.post(
            "/collections/new",
            data=form(
                token, name=f"Collection {i:02d}", slug=f"c{i:02d}", source_id=source.id if i == 29 else ""
            ),
        )
    page = client.get("/collections").get_data(as_text=True)
    assert page.count("<tr>") == 26  # header + 25 rows
    assert "Orders hook" in page and "Active" in page and "Needs Source" in page
    nxt = re.search(r'href="(/collections\?cursor=[^"]+)"', page).group(1).replace("&amp;", "&")
    assert client.get(nxt).get_data(as_text=True).count("<tr>") == 6
    assert "Collection 03" in client.get("/collections?q=03").get_data(as_text=True)
    assert "Collection 04" not in client.get("/collections?q=03").get_data(as_text=True)


def test_project_switcher_changes_scope(signed_in):
    client, token, org = signed_in
    staging = add_env(org, "staging")
    client.post("/collections/new", data=form(token, name="Prod only", slug="prod-only"))
    assert client.post("/switch-project", data={"csrf_token": token, "env_id": staging.id}).status_code == 302
    assert "prod-only" not in client.get("/collections").get_data(as_text=True)
    assert client.get("/collections/prod-only").status_code == 404
    other = production(org_of(make_user("other@example.com")))
    assert client.post("/switch-project", data={"csrf_token": token, "env_id": other.id}).status_code == 404


def test_unknown_page_is_a_styled_404(signed_in):
    client, _, _ = signed_in
    r = client.get("/collections/does-not-exist")
    assert r.status_code == 404 and "Collection not found" in r.get_data(as_text=True)
