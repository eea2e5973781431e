"""Exports name and scope what the records page shows, the records
browser says what went wrong, collection edits warn and explain, settings' modified time and
the API reference's commands tell the truth. Through the real routes, database and Redis."""

from __future__ import annotations

import csv
import io
import re
from html import unescape

from sqlalchemy import select

from hookstream_ui.models import AuditEntry, db
from tests.helpers import add_orders, auth, connect_webhook, make_key, production


def _hook(client, org, n: int, **extra) -> str:
    key = make_key(production(org))
    sid = connect_webhook(client, key)
    add_orders(client, key, sid, event_type_field="$.type")
    for i in range(n):
        client.post(
            f"/v1/ingest/{sid}",
            json={
                "id": f"o{i:03d}",
                "type": "order.paid" if i % 3 else "order.new",
                "customer": {"email": f"c{i}@example.com", "tier": i % 2},
                "data": {"id": f"inner{i}"},
                **extra,
            },
        )
    return sid


def _hx(client, url):
    return client.get(url, headers={"HX-Request": "true"})


def _csv(text: str):
    return next(csv.reader(io.StringIO(text))), list(csv.DictReader(io.StringIO(text)))


# 1. Exports name and scope what the page shows


def test_csv_data_columns_are_named_as_the_records_page_names_them(signed_in):
    client, _, org = signed_in
    _hook(client, org, 2, created_at="sender's own time")
    page = _hx(client, "/collections/orders/_records?cols=data.id&cols=customer.email").get_data(as_text=True)
    shown = re.findall(r'<th class="mono">([^<]+)</th>', page)
    assert shown == ["data.id", "customer.email"]
    header, rows = _csv(client.get("/v1/collections/orders/export?format=csv").get_data(as_text=True))
    assert header[:6] == [
        "record_key",
        "event_type",
        "source_event_id",
        "source_event_at",
        "created_at",
        "updated_at",
    ]
    assert set(shown) <= set(header) and "data.data.id" not in header
    row = {r["record_key"]: r for r in rows}["o001"]
    assert row["data.id"] == "inner1" and row["id"] == "o001"  # data.id is $.data.id, as on the page
    # A data field named like a record column is told apart by its $-path, not by guessing.
    assert "$.created_at" in header and row["$.created_at"] == "sender's own time"
    assert row["created_at"] != "sender's own time"


def test_the_toolbar_exports_what_the_browser_shows(signed_in):
    client, _, org = signed_in
    _hook(client, org, 12)
    body = _hx(
        client,
        "/collections/orders/_records?event_type=order.new&filter_path=customer.tier"
        "&filter_value=0&cols=customer.email",
    ).get_data(as_text=True)
    toolbar = re.search(
        r'<span class="actions" id="records-exports" hx-swap-oob="true">(.*?)</span>', body, re.S
    )
    assert toolbar, "the records partial sends the toolbar's exports again"
    csv_link = unescape(re.search(r'data-export-all="csv" href="([^"]+)"', toolbar.group(1)).group(1))
    header, rows = _csv(client.get(csv_link).get_data(as_text=True))
    assert sorted(r["record_key"] for r in rows) == ["o000", "o006"]
    assert header[6:] == ["customer.email"]
    ndjson_link = unescape(re.search(r'data-export-all="ndjson" href="([^"]+)"', toolbar.group(1)).group(1))
    lines = client.get(ndjson_link).get_data(as_text=True).splitlines()
    assert len(lines) == 2 and "columns=" not in ndjson_link
    # A reload of the filtered page renders its toolbar the same way.
    page = client.get("/collections/orders?event_type=order.new").get_data(as_text=True)
    link = unescape(re.search(r'data-export-all="csv" href="([^"]+)"', page).group(1))
    assert "event_type=order.new" in link


def test_a_filtered_export_is_audited_by_its_filters_not_the_collection_count(signed_in):
    client, _, org = signed_in
    _hook(client, org, 6)
    assert client.get("/v1/collections/orders/export?format=csv&event_type=order.new").status_code == 200
    entry = db.session.scalar(select(AuditEntry).where(AuditEntry.action == "collection.export"))
    assert entry.details.get("event_type") == "order.new" and "records" not in entry.details
    assert "filtered" not in entry.details
    client.get("/v1/collections/orders/export?format=ndjson")
    whole = db.session.scalars(
        select(AuditEntry).where(AuditEntry.action == "collection.export").order_by(AuditEntry.at.desc())
    ).first()
    assert whole.details["records"] == 6


def test_export_columns_are_checked_and_named_in_the_error(signed_in):
    client, _, org = signed_in
    _hook(client, org, 1)
    bad = client.get("/v1/collections/orders/export?format=csv&columns=a..b")
    assert bad.status_code == 400 and "columns" in bad.json["errors"]
    assert db.session.scalars(select(AuditEntry).where(AuditEntry.action == "collection.export")).all() == []


# 3. The records browser says what went wrong, and only that


def _said_beside_field(body: str) -> str:
    return re.search(
        r'<span [^>]*id="e-records-filter_path"[^>]*hx-swap-oob="true"[^>]*>([^<]*)</span>', body
    ).group(1)


def test_a_filter_value_without_a_field_is_said_not_dropped(signed_in):
    client, _, org = signed_in
    _hook(client, org, 3)
    body = _hx(client, "/collections/orders/_records?filter_value=open").get_data(as_text=True)
    assert _said_beside_field(body) == "Choose a field to filter by."
    assert "<tr data-key=" not in body and "No records" not in body and 'id="records-count"' not in body


def test_a_bad_filter_path_shows_only_its_error(signed_in):
    client, _, org = signed_in
    _hook(client, org, 3)
    body = _hx(client, "/collections/orders/_records?filter_path=a..b&filter_value=1").get_data(as_text=True)
    assert _said_beside_field(body).startswith("Filter field must be")
    assert "No records match" not in body and "match" not in re.sub(
        r"<span [^>]*e-records[^<]*</span>", "", body
    )


def test_an_out_of_date_page_link_says_so_and_offers_the_first_page(signed_in):
    client, _, org = signed_in
    _hook(client, org, 3)
    body = _hx(client, "/collections/orders/_records?event_type=order.paid&cursor=bogus&trail=x").get_data(
        as_text=True
    )
    assert "This page link is out of date" in body
    assert "No records match" not in body and 'data-page="previous"' not in body
    first = unescape(re.search(r'data-page="first" hx-get="([^"]+)"', body).group(1))
    assert "cursor" not in first and "event_type=order.paid" in first
    again = _hx(client, first).get_data(as_text=True)
    assert sorted(re.findall(r'<tr data-key="([^"]+)"', again)) == ["o001", "o002"]
    assert _said_beside_field(body) == ""


# 4. Changing the key path of a collection that holds records warns first


def test_a_new_key_path_on_a_collection_with_records_warns_what_happens(signed_in):
    from hookstream_ui.models import Collection

    client, _, org = signed_in
    sid = _hook(client, org, 3)
    cid = db.session.scalar(select(Collection.id))
    said = client.get(
        "/collections/_key-preview",
        query_string={"collection_id": cid, "source_id": sid, "primary_key_path": "customer.email"},
    ).get_data(as_text=True)
    warning = re.search(r'data-key-state="rekey"[^>]*>(.*?)</div>', said, re.S).group(1)
    assert "3 records keyed by <code>$.id</code>" in warning and "<code>$.customer.email</code>" in warning
    assert "second record" in warning and "backfill" in warning
    for same in ("$.id", "id", ""):
        body = client.get(
            "/collections/_key-preview",
            query_string={"collection_id": cid, "source_id": sid, "primary_key_path": same},
        ).get_data(as_text=True)
        assert 'data-key-state="rekey"' not in body, same
    # A new collection has no records to strand.
    fresh = client.get(
        "/collections/_key-preview", query_string={"source_id": sid, "primary_key_path": "customer.email"}
    )
    assert 'data-key-state="rekey"' not in fresh.get_data(as_text=True)


# 5. Moving a collection between sources, and what an unbound collection says


def _second_source(client, org) -> str:
    return client.post(
        "/api/v1/source-connections",
        headers=auth(make_key(production(org))),
        json={
            "sourceShortName": "webhook",
            "name": "Other hook",
            "credentials": {"verification_type": "none"},
            "config": {},
        },
    ).json["sourceConnection"]["id"]


def _edit(token, source_id, **more):
    return {
        "csrf_token": token,
        "name": "Orders",
        "slug": "orders",
        "primary_key_path": "$.id",
        "event_type_field": "$.type",
        "source_id": source_id,
        "search_index": "on",
        **more,
    }


def test_the_collection_page_adds_a_second_source_and_removes_the_first(signed_in):
    from hookstream_ui.models import Binding, Collection

    client, token, org = signed_in
    first = _hook(client, org, 2)
    other = _second_source(client, org)
    # The edit form no longer moves a collection: sources are added on its page.
    assert 'name="source_id"' not in client.get("/collections/orders/edit").get_data(as_text=True)
    added = client.post("/collections/orders/sources", data={"csrf_token": token, "source_id": other})
    assert added.status_code == 302
    page = client.get("/collections/orders").get_data(as_text=True)
    assert f'id="binding-{first}"' in page and f'id="binding-{other}"' in page
    assert db.session.scalar(select(Collection.source_id)) == first  # the first bound stays first
    again = client.post("/collections/orders/sources", data={"csrf_token": token, "source_id": other})
    assert again.status_code == 400 and "already feeds this collection" in unescape(
        again.get_data(as_text=True)
    )
    removed = client.post(f"/collections/orders/sources/{first}/remove", data={"csrf_token": token})
    assert removed.status_code == 302
    db.session.expire_all()
    assert db.session.scalars(select(Binding.source_id)).all() == [other]
    assert db.session.scalar(select(Collection.source_id)) == other


def test_an_unbound_collection_with_records_says_it_has_them(signed_in):
    client, token, org = signed_in
    sid = _hook(client, org, 3)
    removed = client.post(f"/collections/orders/sources/{sid}/remove", data={"csrf_token": token})
    assert removed.status_code == 302
    page = client.get("/collections/orders").get_data(as_text=True)
    assert "holds 3 records, but no source feeds it now" in page and "has no source yet" not in page
    for action in ("clear", "delete"):
        said = client.get(f"/sources/{sid}/{action}").get_data(as_text=True)
        assert "Records it synced" not in said and "put into" not in said
    assert "Records in the collections it feeds now (0)" in client.get(f"/sources/{sid}/delete").get_data(
        as_text=True
    )
    assert "in the 0 collections <strong>Hook</strong> feeds now" in client.get(
        f"/sources/{sid}/clear"
    ).get_data(as_text=True)


# 6. Settings' modified time moves only when settings change


def test_data_arriving_does_not_move_the_collections_modified_time(signed_in):
    import time

    from hookstream_ui.models import Collection
    from hookstream_ui.values.times import utcnow

    client, _, org = signed_in
    key = make_key(production(org))
    sid = _hook(client, org, 1)
    before = client.get("/v1/collections/orders", headers=auth(key)).json["collection"]["updated_at"]
    time.sleep(0.01)
    client.post(f"/v1/ingest/{sid}", json={"id": "o900", "type": "order.new"})
    client.post(f"/v1/ingest/{sid}", json={"id": "o000", "type": "order.paid", "changed": True})
    after = client.get("/v1/collections/orders", headers=auth(key)).json["collection"]
    assert after["record_count"] == 2 and after["updated_at"] == before
    # A run's own writes (status, last sync, count, checkpoint) keep it too.
    db.session.expire_all()
    collection = db.session.scalar(select(Collection))
    collection.status, collection.last_sync_at, collection.sync_state = "SYNCING", utcnow(), {"at": 1}
    db.session.commit()
    assert client.get("/v1/collections/orders", headers=auth(key)).json["collection"]["updated_at"] == before
    time.sleep(0.01)
    edited = client.patch("/v1/collections/orders", headers=auth(key), json={"description": "edited"})
    assert edited.json["collection"]["updated_at"] > before


def test_an_out_of_date_events_link_says_so_too(signed_in):
    client, _, org = signed_in
    sid = _hook(client, org, 2)
    body = _hx(client, f"/events/_list?source_id={sid}&cursor=bogus")
    assert body.status_code == 200
    text = body.get_data(as_text=True)
    assert "This page link is out of date" in text and "No events match" not in text
    first = unescape(re.search(r'data-page="first" hx-get="([^"]+)"', text).group(1))
    assert "cursor" not in first and f"source_id={sid}" in first
    assert len(re.findall(r"<tr data-event=", _hx(client, first).get_data(as_text=True))) == 2
