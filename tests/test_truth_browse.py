"""Issue 19, browse part: previews that promise what is saved, the key path checked against a
real sample, the records browser's state, the webhook page's commands, links across projects
and the API reference. Through the real routes, database and Redis."""
from __future__ import annotations

import re

import pytest
from sqlalchemy import select

from hookstream_ui.models import Collection, db
from tests.helpers import add_env, login, make_source, make_user, org_of, production


@pytest.fixture
def signed_in(app, ctx):
    user = make_user("owner@example.com")
    client = app.test_client()
    token = login(client, "owner@example.com")
    return client, token, org_of(user)


def form(token, **values):
    return {"csrf_token": token, "primary_key_path": "$.id", **values}


def previewed(client, **query) -> str:
    body = client.get("/collections/_slug-preview", query_string=query).get_data(as_text=True)
    return re.search(r"<code data-slug>([^<]+)</code>", body).group(1)


# 1. The slug preview

@pytest.mark.parametrize("name, slug", [("Ünïcode", "unicode"), ("Straße Øl Łódź", "strasse-ol-lodz"),
                                         ("Þór æon đak", "thor-aeon-dak"), ("Ｆｕｌｌ width", "full-width")])
def test_letters_are_transliterated_not_dropped(signed_in, name, slug):
    client, _, _ = signed_in
    assert re.fullmatch(rf"{slug}-[a-z0-9]{{6}}", previewed(client, name=name))


def test_the_previewed_slug_is_the_one_created(signed_in):
    client, token, _ = signed_in
    shown = previewed(client, name="Ünïcode orders")
    # Typing on keeps the suffix already shown, with the new name.
    again = previewed(client, name="Ünïcode orders 2", slug_suggested=shown)
    assert again == shown.replace("unicode-orders-", "unicode-orders-2-")
    r = client.post("/collections/new", data=form(token, name="Ünïcode orders 2", slug="", slug_suggested=again))
    assert r.status_code == 302
    assert db.session.scalar(select(Collection.slug)) == again


def test_a_failed_form_keeps_the_slug_it_promised(signed_in):
    client, token, _ = signed_in
    shown = previewed(client, name="Customers")
    r = client.post("/collections/new", data=form(token, name="Customers", slug="", slug_suggested=shown,
                                                   primary_key_path="$.[["))
    assert r.status_code == 400
    assert f"<code data-slug>{shown}</code>" in r.get_data(as_text=True)


def test_editing_with_a_blank_slug_saves_the_previewed_one(signed_in):
    client, token, _ = signed_in
    client.post("/collections/new", data=form(token, name="Members", slug="members"))
    collection = db.session.scalar(select(Collection))
    shown = previewed(client, name="Members", collection_id=collection.id)
    r = client.post("/collections/members/edit", data=form(token, name="Members", slug="", slug_suggested=shown))
    assert r.status_code == 302
    db.session.refresh(collection)
    assert collection.slug == shown


def test_org_and_project_slugs_transliterate_too(signed_in):
    client, token, org = signed_in
    from hookstream_ui.services import accounts

    assert accounts.slugify("Café Zürich") == "cafe-zurich"
    r = client.post("/settings/projects", data={"csrf_token": token, "name": "Événements"})
    assert r.status_code in (200, 302)
    db.session.refresh(org)
    assert "evenements" in {e.slug for e in org.environments}
