"""Source pages beyond the connect form: detail, upload, streams, clear, delete, roles."""

from __future__ import annotations

import io
import re

from sqlalchemy import select

from hookstream_ui.models import Collection, Record, SourceConnection, SourceFile, db
from tests.helpers import login, make_user


def connect(client, token, short, name="Src", **fields):
    data = {"csrf_token": token, "name": name, **fields}
    r = client.post(f"/sources/new/{short}", data=data)
    assert r.status_code == 302, r.get_data(as_text=True)
    return r.location.rsplit("/", 1)[-1]


def test_webhook_detail_shows_ingest_url_copy_and_curl(signed_in):
    client, token, _ = signed_in
    sid = connect(client, token, "webhook", **{"credentials.verification_type": "none"})
    page = client.get(f"/sources/{sid}").get_data(as_text=True)
    assert f"http://localhost/v1/ingest/{sid}" in page
    assert 'data-copy="#ingest-url"' in page and f"curl -X POST http://localhost/v1/ingest/{sid}" in page


def test_upload_from_the_dashboard(signed_in):
    client, token, _ = signed_in
    sid = connect(client, token, "file", **{"config.format": "auto", "config.has_header": "true"})
    r = client.post(
        f"/sources/{sid}/upload",
        data={"csrf_token": token, "file": (io.BytesIO(b"a,b\n1,2\n"), "x.csv")},
        content_type="multipart/form-data",
    )
    assert r.status_code == 302
    assert "Uploaded x.csv (8 bytes)" in client.get(r.location).get_data(as_text=True)
    assert db.session.scalar(select(SourceFile.filename)) == "x.csv"
    r = client.post(f"/sources/{sid}/test", data={"csrf_token": token})
    assert 'data-ok="true"' in r.get_data(as_text=True) and 'id="source-status"' in r.get_data(as_text=True)


def test_unchecked_checkbox_means_false(signed_in):
    client, token, _ = signed_in
    sid = connect(client, token, "file", **{"config.format": "csv"})  # has_header not sent
    assert db.session.get(SourceConnection, sid).config["has_header"] is False


def test_streams_partial_for_the_collection_form(signed_in, pg_source):
    client, token, _ = signed_in
    creds = {f"credentials.{k}": str(v) for k, v in pg_source.credentials().items()}
    sid = connect(client, token, "postgresql", **creds)
    html = client.get(f"/collections/_streams?source_id={sid}", headers={"HX-Request": "true"}).get_data(
        as_text=True
    )
    assert '<select id="f-stream"' in html and 'value="customers"' in html and 'value="sales.orders"' in html
    hook = connect(client, token, "webhook", **{"credentials.verification_type": "none"})
    html = client.get(f"/collections/_streams?source_id={hook}").get_data(as_text=True)
    assert '<input id="f-stream"' in html
    r = client.post(
        "/collections/new",
        data={
            "csrf_token": token,
            "name": "Customers",
            "slug": "customers",
            "primary_key_path": "id",
            "source_id": sid,
            "stream": "customers",
        },
    )
    assert r.status_code == 302
    c = db.session.scalar(select(Collection))
    assert (c.source_id, c.stream, c.status) == (sid, "customers", "ACTIVE")


def test_clear_and_delete_behind_confirmation(signed_in):
    client, token, _org = signed_in
    sid = connect(client, token, "webhook", name="Hook", **{"credentials.verification_type": "none"})
    client.post(
        "/collections/new",
        data={
            "csrf_token": token,
            "name": "Events",
            "slug": "events",
            "primary_key_path": "id",
            "source_id": sid,
        },
    )
    c = db.session.scalar(select(Collection))
    # Clearing a source deletes the records whose current version it wrote.
    db.session.add(
        Record(org_id=c.org_id, env_id=c.env_id, collection_id=c.id, record_key="1", data={}, source_id=sid)
    )
    c.record_count = 1
    db.session.commit()
    assert "1 records" in client.get(f"/sources/{sid}/clear").get_data(as_text=True)
    assert client.post(f"/sources/{sid}/clear", data={"csrf_token": token}).status_code == 302
    assert db.session.scalar(select(Record)) is None
    assert "Type Hook to confirm" in client.get(f"/sources/{sid}/delete").get_data(as_text=True)
    r = client.post(
        f"/sources/{sid}/delete", data={"csrf_token": token, "confirm_name": "nope", "delete_data": "true"}
    )
    html = r.get_data(as_text=True)
    # Refused beside the field, with what was typed and chosen kept.
    assert (
        r.status_code == 400
        and 'id="e-confirm_name">must be the source&#39;s name, Hook, to confirm<' in html
    )
    assert 'value="nope"' in html and re.search(r'value="true"\s+checked', html)
    assert db.session.get(SourceConnection, sid) is not None
    r = client.post(
        f"/sources/{sid}/delete", data={"csrf_token": token, "confirm_name": "Hook", "delete_data": "false"}
    )
    assert r.location.endswith("/sources")
    db.session.expire_all()
    assert db.session.get(SourceConnection, sid) is None
    assert db.session.get(Collection, c.id).status == "NEEDS_SOURCE"


def test_viewer_sees_sources_but_cannot_change_them(app, signed_in):
    client, token, org = signed_in
    sid = connect(client, token, "webhook", **{"credentials.verification_type": "none"})
    make_user("viewer@example.com", org=org, role="viewer")
    viewer = app.test_client()
    vtoken = login(viewer, "viewer@example.com")
    page = viewer.get(f"/sources/{sid}").get_data(as_text=True)
    assert "Edit</a>" not in page and "Danger zone" not in page
    assert "Connect PostgreSQL" not in viewer.get("/sources/catalog").get_data(as_text=True)
    for path in (f"/sources/{sid}/edit", "/sources/new/webhook", f"/sources/{sid}/delete"):
        assert viewer.get(path).status_code == 403, path
    assert viewer.post(f"/sources/{sid}/test", data={"csrf_token": vtoken}).status_code == 403
    r = viewer.post(
        "/api/v1/source-connections",
        json={"sourceShortName": "webhook", "name": "x"},
        headers={"X-CSRFToken": vtoken},
    )
    assert r.status_code == 403 and r.json == {
        "success": False,
        "error": "forbidden",
        "message": "This needs the member role or higher; you are viewer",
    }


def test_other_tenants_source_pages_are_404(app, signed_in):
    client, token, _ = signed_in
    sid = connect(client, token, "webhook", **{"credentials.verification_type": "none"})
    make_user("stranger@example.com")
    stranger = app.test_client()
    stoken = login(stranger, "stranger@example.com")
    for path in (
        f"/sources/{sid}",
        f"/sources/{sid}/edit",
        f"/sources/{sid}/clear",
        f"/sources/{sid}/delete",
        f"/collections/_streams?source_id={sid}",
    ):
        assert stranger.get(path).status_code == 404, path
    assert stranger.post(f"/sources/{sid}/test", data={"csrf_token": stoken}).status_code == 404


def test_run_now_from_a_collection_and_its_live_partials(signed_in):
    from hookstream_ui.models import SyncRun

    client, token, _ = signed_in
    sid = connect(
        client,
        token,
        "stripe",
        **{"credentials.secret_key": "sk_test_x", "credentials.api_base": "https://api.stripe.com"},
    )
    client.post(
        "/collections/new",
        data={
            "csrf_token": token,
            "name": "Customers",
            "slug": "customers",
            "primary_key_path": "id",
            "source_id": sid,
            "stream": "customer",
        },
    )
    r = client.post("/collections/customers/run", data={"csrf_token": token})
    run = db.session.scalar(select(SyncRun))
    assert r.status_code == 302 and r.location.endswith(f"/runs/{run.id}")
    assert (run.status, run.trigger, run.mode) == ("pending", "manual", "full")
    live = client.get("/collections/customers/_live", headers={"HX-Request": "true"})
    assert live.status_code == 200 and 'hx-trigger="every 2s"' in live.get_data(as_text=True)
    status = client.get(f"/runs/{run.id}/_status", headers={"HX-Request": "true"})
    assert status.status_code == 200 and 'hx-trigger="every 2s"' in status.get_data(as_text=True)
    r = client.post("/collections/customers/run", data={"csrf_token": token})  # one active run per source
    assert "A sync is running" in client.get(r.location).get_data(as_text=True)
    client.post(f"/runs/{run.id}/cancel", data={"csrf_token": token})
    final = client.get(f"/runs/{run.id}/_status", headers={"HX-Request": "true"})
    assert final.status_code == 286 and "hx-trigger" not in final.get_data(as_text=True)
    live = client.get("/collections/customers/_live", headers={"HX-Request": "true"})
    assert live.status_code == 286 and "hx-trigger" not in live.get_data(as_text=True)


def test_records_browser_events_pages_and_test_event(signed_in):
    client, token, _ = signed_in
    sid = connect(
        client,
        token,
        "webhook",
        **{"credentials.verification_type": "stripe", "credentials.signing_secret": "whsec_test_secret"},
    )
    client.post(
        "/collections/new",
        data={
            "csrf_token": token,
            "name": "Inbox",
            "slug": "inbox",
            "primary_key_path": "id",  # the record is the Stripe event's data.object
            "source_id": sid,
            "event_type_field": "type",
        },
    )
    r = client.post(f"/sources/{sid}/test-event", data={"csrf_token": token})
    assert r.status_code == 302 and "/events/evt_" in r.location  # signed with the stripe scheme, verified
    page = client.get(r.location).get_data(as_text=True)
    assert "applied" in page and "inserted" in page and "Hello from hookstream" in page and "verified" in page
    table = client.get("/collections/inbox/_records", headers={"HX-Request": "true"}).get_data(as_text=True)
    assert (
        'hx-trigger="records-changed from:body"' in table
        and "test.event" in table
        and 'data-key="test_' in table
    )
    key = table.split('data-key="', 1)[1].split('"', 1)[0]
    detail = client.get(f"/collections/inbox/records/{key}").get_data(as_text=True)
    assert "Hello from hookstream" in detail and "/events/evt_" in detail  # with its history
    filtered = client.get("/collections/inbox/_records?q=nothing-like-this").get_data(as_text=True)
    assert "No records match" in filtered and "hx-trigger" not in filtered
    bad = client.get("/collections/inbox/_records?filter_path=bad path!&filter_value=x").get_data(
        as_text=True
    )
    assert "must be a dot path" in bad
    events = client.get("/events/_list", headers={"HX-Request": "true"}).get_data(as_text=True)
    assert 'id="events-table"' in events and "applied" in events
    assert client.get("/events").status_code == 200
    assert "Records" in client.get("/collections/inbox").get_data(as_text=True)


def test_schema_panel_lists_fields_and_offers_the_filterable_ones(signed_in):
    client, token, _ = signed_in
    sid = connect(client, token, "webhook", **{"credentials.verification_type": "none"})
    client.post(
        "/collections/new",
        data={
            "csrf_token": token,
            "name": "Inbox",
            "slug": "inbox",
            "primary_key_path": "data.id",
            "source_id": sid,
        },
    )
    assert 'hx-get="/collections/inbox/_schema" hx-trigger="load"' in client.get(
        "/collections/inbox"
    ).get_data(as_text=True)
    assert "No records yet" in client.get("/collections/inbox/_schema").get_data(as_text=True)
    for i in range(4):
        data = {
            "id": f"o{i}",
            "name": "<b>Ann</b>",
            "tags": ["a", "b", "c"],
            "paid": True,
            "nick": "" if i == 3 else "Annie",
            "blank": "",
            **({"coupon": 5} if i == 0 else {}),
        }
        assert client.post(f"/v1/ingest/{sid}", json={"data": data}).status_code == 200
    panel = client.get("/collections/inbox/_schema", headers={"HX-Request": "true"}).get_data(as_text=True)
    rows = {row.split('"', 1)[0]: row for row in panel.split('<tr data-path="')[1:]}
    assert "From the 4 most recently updated records" in panel
    assert set(rows) == {
        "$.data",
        "$.data.id",
        "$.data.name",
        "$.data.tags",
        "$.data.tags[*]",
        "$.data.paid",
        "$.data.coupon",
        "$.data.nick",
        "$.data.blank",
    }
    assert (
        "Annie" in rows["$.data.nick"] and '""' in rows["$.data.blank"]
    )  # an example says something if it can
    assert (
        "&lt;b&gt;Ann&lt;/b&gt;" in rows["$.data.name"] and "<b>Ann" not in panel
    )  # data is shown, never run
    assert (
        "100%" in rows["$.data.tags[*]"] and "25%" in rows["$.data.coupon"] and "true" in rows["$.data.paid"]
    )
    offered = {path for path, row in rows.items() if "data-filter-path=" in row}
    assert offered == {
        "$.data.id",
        "$.data.name",
        "$.data.paid",
        "$.data.coupon",
        "$.data.nick",
        "$.data.blank",
    }  # scalars at dot paths
    assert 'data-filter-path="data.coupon"' in rows["$.data.coupon"]
    # What a click fills in filters as the records list expects.
    filtered = client.get("/collections/inbox/_records?filter_path=data.coupon&filter_value=5").get_data(
        as_text=True
    )
    assert 'data-key="o0"' in filtered and 'data-key="o1"' not in filtered
    assert "Event type" not in filtered  # no event type field, none on the page: no column of dashes


def test_record_and_event_pages_show_text_as_written(signed_in):
    client, token, _ = signed_in
    sid = connect(client, token, "webhook", **{"credentials.verification_type": "none"})
    client.post(
        "/collections/new",
        data={
            "csrf_token": token,
            "name": "Inbox",
            "slug": "inbox",
            "primary_key_path": "data.id",
            "source_id": sid,
        },
    )
    event_id = client.post(f"/v1/ingest/{sid}", json={"data": {"id": "z1", "city": "Zürich"}}).json[
        "event_id"
    ]
    for page in (client.get("/collections/inbox/records/z1"), client.get(f"/events/{event_id}")):
        text = page.get_data(as_text=True)
        assert page.status_code == 200 and "Zürich" in text and "\\u00fc" not in text


def test_run_page_names_its_collections_and_how_long_it_took(signed_in):
    from datetime import timedelta

    from hookstream_ui.models import SyncRun
    from hookstream_ui.templating import duration
    from hookstream_ui.values.times import utcnow

    client, token, _ = signed_in
    sid = connect(
        client,
        token,
        "stripe",
        **{"credentials.secret_key": "sk_test_x", "credentials.api_base": "https://api.stripe.com"},
    )
    for name, stream in (("Customers", "customer"), ("Invoices", "invoice")):
        client.post(
            "/collections/new",
            data={
                "csrf_token": token,
                "name": name,
                "slug": name.lower(),
                "primary_key_path": "id",
                "source_id": sid,
                "stream": stream,
            },
        )
    run_id = client.post("/collections/customers/run", data={"csrf_token": token}).location.rsplit("/", 1)[-1]
    page = client.get(f"/runs/{run_id}").get_data(as_text=True)
    assert (
        'Into <a href="/collections/customers">Customers</a>, <a href="/collections/invoices">Invoices</a>'
        in page
    )
    assert "took" not in page  # not finished
    run = db.session.get(SyncRun, run_id)
    run.status, run.started_at, run.finished_at = "completed", utcnow() - timedelta(seconds=65), utcnow()
    db.session.commit()
    final = client.get(f"/runs/{run_id}/_status", headers={"HX-Request": "true"}).get_data(as_text=True)
    assert "took 1 min 5 s" in final
    assert [duration(s) for s in (0.42, 9.96, 12.4, 3599.6, 7830)] == [
        "0.4 s",
        "10.0 s",
        "12 s",
        "1 h 0 min",
        "2 h 10 min",
    ]


def test_webhook_source_page_tails_its_own_recent_events(signed_in):
    client, token, _ = signed_in
    sid = connect(client, token, "webhook", **{"credentials.verification_type": "none"})
    other = connect(client, token, "webhook", name="Other", **{"credentials.verification_type": "none"})
    page = client.get(f"/sources/{sid}").get_data(as_text=True)
    assert f'hx-get="/events/_list?source_id={sid}&amp;recent=1" hx-trigger="load"' in page
    assert "No events yet. Send one to the ingest URL above" in client.get(
        f"/events/_list?source_id={sid}&recent=1"
    ).get_data(as_text=True)
    mine = [client.post(f"/v1/ingest/{sid}", json={"n": n}).json["event_id"] for n in range(12)]
    theirs = client.post(f"/v1/ingest/{other}", json={"n": 99}).json["event_id"]
    recent = client.get(f"/events/_list?source_id={sid}&recent=1", headers={"HX-Request": "true"}).get_data(
        as_text=True
    )
    shown = re.findall(r'href="/events/(evt_\w+)"', recent)
    assert shown == mine[::-1][:10] and theirs not in recent  # the ten newest, of this source only
    assert (
        f'hx-get="/events/_list?source_id={sid}&amp;recent=1" hx-trigger="every 2s"' in recent
    )  # tails live
    assert f'href="/events?source_id={sid}">All events of this source' in recent and "Older" not in recent
    # ...which opens the events page on this source.
    events_page = client.get(f"/events?source_id={sid}").get_data(as_text=True)
    assert f'<option value="{sid}" selected>' in events_page
    assert f'hx-get="/events/_list?source_id={sid}" hx-trigger="load"' in events_page
