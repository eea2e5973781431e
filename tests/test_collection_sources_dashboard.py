"""The collection page's Sources card: add a second source, see both, remove one; the record
page says which source wrote the current version."""

from __future__ import annotations

from html import unescape

from sqlalchemy import select

from hookstream_ui.models import Binding, Record, db
from tests.helpers import add_orders, auth, connect_webhook, make_key, production


def _webhook(client, key, name: str) -> str:
    return client.post(
        "/api/v1/source-connections",
        headers=auth(key),
        json={
            "sourceShortName": "webhook",
            "name": name,
            "credentials": {"verification_type": "none"},
            "config": {},
        },
    ).json["sourceConnection"]["id"]


def test_add_a_second_source_see_both_and_remove_one(signed_in):
    client, token, org = signed_in
    key = make_key(production(org))
    first = connect_webhook(client, key)
    add_orders(client, key, first)
    second = _webhook(client, key, "Second hook")
    page = client.get("/collections/orders").get_data(as_text=True)
    assert f'id="binding-{first}"' in page and f'id="binding-{second}"' not in page
    assert f'<option value="{second}"' in page  # offered in the add form

    # A refused add says why beside the field.
    refused = client.post("/collections/orders/sources", data={"csrf_token": token, "source_id": ""})
    assert refused.status_code == 400 and 'id="e-source_id"' in refused.get_data(as_text=True)

    added = client.post(
        "/collections/orders/sources",
        data={"csrf_token": token, "source_id": second, "primary_key_path": "$.order_id"},
    )
    assert added.status_code == 302
    for source, body in ((first, {"id": "a1"}), (second, {"order_id": "b1"})):
        assert client.post(f"/v1/ingest/{source}", json=body).status_code in (200, 202)
    page = unescape(client.get("/collections/orders").get_data(as_text=True))
    assert f'id="binding-{first}"' in page and f'id="binding-{second}"' in page
    assert "Second hook" in page and "key path: $.order_id" in page
    assert f'<option value="{second}"' not in page  # bound now, so not offered again

    written = dict(db.session.execute(select(Record.record_key, Record.source_id)).all())
    assert written == {"a1": first, "b1": second}
    record = client.get("/collections/orders/records/b1").get_data(as_text=True)
    assert 'id="written-by"' in record and "Second hook" in record

    removed = client.post(f"/collections/orders/sources/{first}/remove", data={"csrf_token": token})
    assert removed.status_code == 302
    db.session.expire_all()
    assert db.session.scalars(select(Binding.source_id)).all() == [second]
    page = client.get("/collections/orders").get_data(as_text=True)
    assert f'id="binding-{first}"' not in page and f'id="binding-{second}"' in page
    assert (
        client.post(f"/collections/orders/sources/{first}/remove", data={"csrf_token": token}).status_code
        == 404
    )


def test_edit_how_a_source_feeds_the_collection(signed_in):
    client, token, org = signed_in
    key = make_key(production(org))
    first = connect_webhook(client, key)
    add_orders(client, key, first)
    page = client.get("/collections/orders").get_data(as_text=True)
    edit_url = f"/collections/orders/sources/{first}/edit"
    assert f'id="edit-{first}" href="{edit_url}"' in page

    form = client.get(edit_url).get_data(as_text=True)
    assert 'id="edit-binding"' in form and 'name="record_path"' in form

    # A bad path is refused beside its field, and nothing changes.
    refused = client.post(edit_url, data={"csrf_token": token, "record_path": "not a path!"})
    assert refused.status_code == 400 and 'id="e-record_path"' in refused.get_data(as_text=True)
    db.session.expire_all()
    assert db.session.scalar(select(Binding.record_path)) is None

    saved = client.post(
        edit_url,
        data={
            "csrf_token": token,
            "record_path": "order",
            "primary_key_path": "ref",
            "delete_event_types": "order.voided, order.purged",
        },
    )
    assert saved.status_code == 302 and saved.location.endswith("/collections/orders#sources")
    db.session.expire_all()
    binding = db.session.scalar(select(Binding))
    assert (binding.record_path, binding.primary_key_path) == ("$.order", "$.ref")
    assert binding.delete_event_types == ["order.voided", "order.purged"]
    page = unescape(client.get("/collections/orders").get_data(as_text=True))
    assert "record path: $.order" in page and "deletes on: order.voided, order.purged" in page
    # The source's next delivery lands as the new mapping says.
    assert client.post(f"/v1/ingest/{first}", json={"order": {"ref": "r9", "total": 3}}).status_code in (
        200,
        202,
    )
    assert db.session.scalar(select(Record.record_key)) == "r9"
    # Shown again, the form holds what was saved.
    form = unescape(client.get(edit_url).get_data(as_text=True))
    assert 'value="$.order"' in form and 'value="order.voided, order.purged"' in form
    assert client.get("/collections/orders/sources/src_nope/edit").status_code == 404


def test_the_edit_page_sets_the_event_types_a_source_feeds(signed_in):
    client, token, org = signed_in
    key = make_key(production(org))
    first = connect_webhook(client, key)
    add_orders(client, key, first)
    edit_url = f"/collections/orders/sources/{first}/edit"
    saved = client.post(edit_url, data={"csrf_token": token, "event_types": "order.*, refund.created"})
    assert saved.status_code == 302
    page = unescape(client.get("/collections/orders").get_data(as_text=True))
    assert "takes: order.*, refund.created" in page
    assert 'value="order.*, refund.created"' in unescape(client.get(edit_url).get_data(as_text=True))
    for body in ({"id": "a1", "type": "order.paid"}, {"id": "a2", "type": "user.created"}):
        assert client.post(f"/v1/ingest/{first}", json=body).status_code in (200, 202)
    assert db.session.scalars(select(Record.record_key)).all() == ["a1"]
