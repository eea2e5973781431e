"""Previews that promise what is saved, the key path checked against a
real sample, the records browser's state, the webhook page's commands, links across projects
and the API reference. Through the real routes, database and Redis."""

from __future__ import annotations

import json
import re

import pytest
from sqlalchemy import select

from hookstream_ui.models import Collection, db
from tests.helpers import add_env, add_orders, connect_webhook, make_source, make_user, org_of, production


def form(token, **values):
    return {"csrf_token": token, "primary_key_path": "$.id", **values}


def previewed(client, **query) -> str:
    body = client.get("/collections/_slug-preview", query_string=query).get_data(as_text=True)
    return re.search(r"<code data-slug>([^<]+)</code>", body).group(1)


# 1. The slug preview


@pytest.mark.parametrize(
    "name, slug",
    [
        ("Ünïcode", "unicode"),
        ("Straße Øl Łódź", "strasse-ol-lodz"),
        ("Þór æon đak", "thor-aeon-dak"),
        ("Ｆｕｌｌ width", "full-width"),
    ],
)
def test_letters_are_transliterated_not_dropped(signed_in, name, slug):
    client, _, _ = signed_in
    assert re.fullmatch(rf"{slug}-[a-z0-9]{{6}}", previewed(client, name=name))


def test_the_previewed_slug_is_the_one_created(signed_in):
    client, token, _ = signed_in
    shown = previewed(client, name="Ünïcode orders")
    # Typing on keeps the suffix already shown, with the new name.
    again = previewed(client, name="Ünïcode orders 2", slug_suggested=shown)
    assert again == shown.replace("unicode-orders-", "unicode-orders-2-")
    r = client.post(
        "/collections/new", data=form(token, name="Ünïcode orders 2", slug="", slug_suggested=again)
    )
    assert r.status_code == 302
    assert db.session.scalar(select(Collection.slug)) == again


def test_a_failed_form_keeps_the_slug_it_promised(signed_in):
    client, token, _ = signed_in
    shown = previewed(client, name="Customers")
    r = client.post(
        "/collections/new",
        data=form(token, name="Customers", slug="", slug_suggested=shown, primary_key_path="$.[["),
    )
    assert r.status_code == 400
    assert f"<code data-slug>{shown}</code>" in r.get_data(as_text=True)


def test_editing_with_a_blank_slug_saves_the_previewed_one(signed_in):
    client, token, _ = signed_in
    client.post("/collections/new", data=form(token, name="Members", slug="members"))
    collection = db.session.scalar(select(Collection))
    shown = previewed(client, name="Members", collection_id=collection.id)
    r = client.post(
        "/collections/members/edit", data=form(token, name="Members", slug="", slug_suggested=shown)
    )
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


# 2. The primary key path against a real sample


def _key_preview(client, **query) -> str:
    r = client.get("/collections/_key-preview", query_string=query)
    assert r.status_code == 200
    return r.get_data(as_text=True)


def _webhook_with_event(client, org, body: dict) -> str:
    from tests.helpers import make_key

    key = make_key(production(org))
    sid = connect_webhook(client, key, "Shop hook")
    assert client.post(f"/v1/ingest/{sid}", json=body).status_code < 300
    return sid


def test_key_path_shows_the_key_it_extracts_from_the_latest_event(signed_in):
    client, _, org = signed_in
    sid = _webhook_with_event(client, org, {"type": "order.paid", "data": {"object": {"id": "ord_42"}}})
    body = _key_preview(client, primary_key_path="data.object.id", source_id=sid)
    assert 'data-key-state="ok"' in body and "<code data-key>ord_42</code>" in body
    assert "latest event Shop hook received" in body


def test_key_path_matching_nothing_warns_and_shows_paths_that_would(signed_in):
    client, _, org = signed_in
    sid = _webhook_with_event(client, org, {"type": "order.paid", "data": {"object": {"id": "ord_42"}}})
    body = _key_preview(client, primary_key_path="$.id", source_id=sid)
    assert 'data-key-state="no-match"' in body and "$.id matches nothing" in body
    assert "<code>$.data.object.id</code>" in body and "<code>$.type</code>" in body
    # An object is no key either, by the rule writes use.
    assert 'data-key-state="no-match"' in _key_preview(client, primary_key_path="$.data", source_id=sid)


def test_key_path_is_checked_against_the_collections_newest_record_on_edit(signed_in):
    client, token, org = signed_in
    sid = _webhook_with_event(client, org, {"id": "first"})
    client.post("/collections/new", data=form(token, name="Orders", slug="orders", source_id=sid))
    collection = db.session.scalar(select(Collection))
    client.post(f"/v1/ingest/{sid}", json={"id": "cus_7", "email": "a@example.com"})
    body = _key_preview(client, primary_key_path="$.email", collection_id=collection.id, source_id=sid)
    assert "newest record of this collection" in body and "<code data-key>a@example.com</code>" in body
    edit = client.get("/collections/orders/edit").get_data(as_text=True)
    assert 'id="key-preview"' in edit and "/collections/_key-preview" in edit


def test_key_path_is_checked_against_a_pull_sources_first_row(signed_in):
    import io

    from tests.helpers import auth, make_key

    client, _, org = signed_in
    key = make_key(production(org))
    sid = client.post(
        "/api/v1/source-connections",
        headers=auth(key),
        json={
            "sourceShortName": "file",
            "name": "People file",
            "credentials": {},
            "config": {"format": "auto"},
        },
    ).json["sourceConnection"]["id"]
    r = client.post(
        f"/api/v1/source-connections/{sid}/files",
        headers=auth(key),
        data={"file": (io.BytesIO(b"person_id,name\np-1,Ada\np-2,Bo\n"), "people.csv")},
        content_type="multipart/form-data",
    )
    assert r.status_code < 300, r.json
    assert "<code data-key>p-1</code>" in _key_preview(
        client, primary_key_path="person_id", source_id=sid, stream="uploads"
    )
    assert "matches nothing" in _key_preview(client, primary_key_path="$.id", source_id=sid, stream="uploads")
    # Typing asks again and again; the source is read once, and that read is in the audit log.
    from hookstream_ui.models import AuditEntry

    reads = db.session.scalars(select(AuditEntry).where(AuditEntry.action == "source.sample")).all()
    assert [(e.resource_id, e.actor) for e in reads] == [(sid, "owner@example.com")]
    # A new file is a new sample.
    client.post(
        f"/api/v1/source-connections/{sid}/files",
        headers=auth(key),
        data={"file": (io.BytesIO(b"person_id,name\np-9,Cy\n"), "more.csv")},
        content_type="multipart/form-data",
    )
    assert "<code data-key>p-9</code>" in _key_preview(
        client, primary_key_path="person_id", source_id=sid, stream="uploads"
    )


def test_key_path_without_a_sample_says_so_and_bad_paths_are_named(signed_in):
    client, _, _org = signed_in
    assert "Nothing to check the path against yet" in _key_preview(client, primary_key_path="$.id")
    body = _key_preview(client, primary_key_path="$.[[")
    assert "Primary key path is not a valid JSONPath" in body


def test_key_preview_stays_in_its_project(signed_in):
    client, _, _org = signed_in
    other = make_user("other@example.com")
    other_source = make_source(production(org_of(other)), name="Theirs")
    body = _key_preview(client, primary_key_path="$.id", source_id=other_source.id)
    assert "Theirs" not in body and "Nothing to check" in body


# 3. The records browser


def _hook_with_records(client, org, n: int, **extra) -> str:
    from tests.helpers import make_key

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
                "total": -i,
                **extra,
            },
        )
    return sid


def _keys(body: str) -> list[str]:
    return re.findall(r'<tr data-key="([^"]+)"', body)


def _hx(client, url, trigger=None):
    headers = {"HX-Request": "true", **({"HX-Trigger": trigger} if trigger else {})}
    return client.get(url, headers=headers)


def test_records_pages_go_back_as_well_as_on(signed_in):
    client, _, org = signed_in
    _hook_with_records(client, org, 60)
    first = _hx(client, "/collections/orders/_records").get_data(as_text=True)
    assert "Previous page" not in first and len(_keys(first)) == 25
    seen = [_keys(first)]
    body = first
    for _ in range(2):  # to the third page
        url = re.search(r'data-page="next" hx-get="([^"]+)"', body).group(1).replace("&amp;", "&")
        body = _hx(client, url).get_data(as_text=True)
        seen.append(_keys(body))
    assert "page 3" in body and len(seen[2]) == 10 and "Next page" not in body
    assert len({k for page in seen for k in page}) == 60
    for expected in (seen[1], seen[0]):  # and back, page by page
        url = re.search(r'data-page="previous" hx-get="([^"]+)"', body).group(1).replace("&amp;", "&")
        body = _hx(client, url).get_data(as_text=True)
        assert _keys(body) == expected
    assert "Previous page" not in body


def test_records_say_how_many_match_and_whether_exactly(signed_in, monkeypatch):
    from hookstream_ui.services import records as record_svc

    client, _, org = signed_in
    _hook_with_records(client, org, 30)
    body = _hx(client, "/collections/orders/_records").get_data(as_text=True)
    assert re.search(r'id="records-count" data-exact="true">30 records', body)
    body = _hx(client, "/collections/orders/_records?event_type=order.new").get_data(as_text=True)
    assert "10 matches (exact count)" in body
    body = _hx(client, "/collections/orders/_records?filter_path=customer.tier&filter_value=1").get_data(
        as_text=True
    )
    assert "15 matches (exact count)" in body
    monkeypatch.setattr(record_svc, "COUNT_CAP", 12)
    body = _hx(client, "/collections/orders/_records?q=example").get_data(as_text=True)
    assert 'data-exact="false"' in body and "More than 12 match" in body


def test_records_state_is_in_the_url_and_a_reload_shows_it(signed_in):
    client, _, org = signed_in
    _hook_with_records(client, org, 30)
    r = _hx(
        client,
        "/collections/orders/_records?q=&event_type=order.new&filter_path=&filter_value=&cols=customer.email",
    )
    pushed = r.headers["HX-Push-Url"]
    assert pushed.startswith("/collections/orders?") and "event_type=order.new" in pushed
    assert "cols=customer.email" in pushed and "q=" not in pushed
    # A poll or the first load changes nothing in the address bar.
    assert "HX-Push-Url" not in _hx(client, "/collections/orders/_records", trigger="records").headers
    page = client.get(pushed).get_data(as_text=True)
    assert 'name="event_type" value="order.new"' in page
    assert re.search(r'<input type="checkbox" name="cols" value="customer.email" checked>', page)
    assert "/collections/orders/_records?event_type=order.new&amp;cols=customer.email" in page


def test_records_show_the_columns_a_user_picks(signed_in):
    client, _, org = signed_in
    _hook_with_records(client, org, 3)
    page = client.get("/collections/orders").get_data(as_text=True)
    offered = set(re.findall(r'name="cols" value="([^"]+)"', page))
    assert {"customer.email", "customer.tier", "total", "type"} <= offered
    body = _hx(client, "/collections/orders/_records?cols=customer.email&cols=total").get_data(as_text=True)
    heads = re.findall(r'<th class="mono">([^<]+)</th>', body)
    assert heads == ["customer.email", "total"]
    assert "c2@example.com" in body and ">-2<" in body
    # Paths that are not plain dot paths are not columns.
    body = _hx(client, "/collections/orders/_records?cols=$..x&cols=total").get_data(as_text=True)
    assert re.findall(r'<th class="mono">([^<]+)</th>', body) == ["total"]


def test_events_state_is_in_the_url_and_pages_go_both_ways(signed_in):
    client, _, org = signed_in
    sid = _hook_with_records(client, org, 65)
    r = _hx(client, f"/events/_list?source_id={sid}&status=applied")
    assert r.headers["HX-Push-Url"] == f"/events?source_id={sid}&status=applied"
    page = client.get(r.headers["HX-Push-Url"]).get_data(as_text=True)
    assert '<option value="applied" selected>' in page and f'<option value="{sid}" selected>' in page
    body = r.get_data(as_text=True)
    older = re.search(r'data-page="next" hx-get="([^"]+)"', body).group(1).replace("&amp;", "&")
    second = _hx(client, older)
    assert "cursor=" in second.headers["HX-Push-Url"]
    newer = re.search(r'data-page="previous" hx-get="([^"]+)"', second.get_data(as_text=True)).group(1)
    back = _hx(client, newer.replace("&amp;", "&")).get_data(as_text=True)
    assert re.findall(r'/events/(evt_[^"]+)"', back) == re.findall(r'/events/(evt_[^"]+)"', body)
    # The few on a source's page are not the events page's state.
    assert "HX-Push-Url" not in _hx(client, f"/events/_list?source_id={sid}&recent=1").headers


def test_csv_export_flattens_nested_objects_into_dotted_columns(signed_in):
    import csv
    import io

    client, _, org = signed_in
    _hook_with_records(client, org, 3, tags=["a", "b"], note="=cmd()", empty={})
    text = client.get("/v1/collections/orders/export?format=csv").get_data(as_text=True)
    rows = list(csv.DictReader(io.StringIO(text)))
    header = next(csv.reader(io.StringIO(text)))
    assert header[:6] == [
        "record_key",
        "event_type",
        "source_event_id",
        "source_event_at",
        "created_at",
        "updated_at",
    ]
    # Data columns are named as the records page names them (browse2).
    assert {"id", "customer.email", "customer.tier", "total", "tags", "note"} <= set(header)
    assert "data" not in header and "customer" not in header
    row = {r["record_key"]: r for r in rows}["o002"]
    assert row["customer.email"] == "c2@example.com" and row["customer.tier"] == "0"
    assert row["total"] == "-2"  # a number, not a formula
    assert row["tags"] == '["a","b"]' and row["note"] == "'=cmd()" and row["empty"] == "{}"


# 5. The webhook source page

SECRET = "whsec_" + __import__("base64").b64encode(b"a signing key of some length").decode()


def _shown_command(client, sid: str) -> str:
    from html import unescape

    page = client.get(f"/sources/{sid}").get_data(as_text=True)
    return unescape(re.search(r'<code id="curl-line">(.*?)</code>', page, re.S).group(1))


@pytest.fixture
def served(app, monkeypatch):
    """A live server, and the dashboard's public URL pointing at it."""
    import threading

    from werkzeug.serving import make_server

    server = make_server("127.0.0.1", 0, app, threaded=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    url = f"http://127.0.0.1:{server.server_port}"
    monkeypatch.setitem(app.config, "PUBLIC_URL", url)
    yield url
    server.shutdown()
    thread.join(5)


@pytest.mark.parametrize(
    "credentials",
    [
        {"verification_type": "none"},
        {"verification_type": "hmac_sha256", "signing_secret": "plain secret $with 'quotes'"},
        {
            "verification_type": "hmac_sha1",
            "signing_secret": "s3cret",
            "signature_header": "X-Shop-Signature",
        },
        {"verification_type": "github", "signing_secret": "gh-secret"},
        {"verification_type": "stripe", "signing_secret": "whsec_stripe_like"},
        {"verification_type": "standard_webhooks", "signing_secret": SECRET},
        {"verification_type": "standard_webhooks", "signing_secret": "not base64 at all!"},
    ],
    ids=lambda c: c["verification_type"] + ("-raw" if "!" in c.get("signing_secret", "") else ""),
)
def test_the_shown_command_delivers_a_verified_event(signed_in, served, credentials):
    import shutil
    import subprocess

    from hookstream_ui.models import Event
    from tests.helpers import auth, make_key

    if not (shutil.which("openssl") and shutil.which("curl")):
        pytest.skip("needs openssl and curl")
    client, _, org = signed_in
    key = make_key(production(org))
    sid = client.post(
        "/api/v1/source-connections",
        headers=auth(key),
        json={"sourceShortName": "webhook", "name": "Signed hook", "credentials": credentials, "config": {}},
    ).json["sourceConnection"]["id"]
    command = _shown_command(client, sid)
    assert command.count(served + f"/v1/ingest/{sid}") == 1
    if credentials["verification_type"] != "none":
        assert credentials["signing_secret"] not in command
        assert re.search(r"\$\{?SIGNING_SECRET", command)
    done = subprocess.run(
        ["bash", "-c", command],
        capture_output=True,
        text=True,
        timeout=30,
        env={"PATH": "/usr/bin:/bin", "SIGNING_SECRET": credentials.get("signing_secret", "")},
    )
    assert done.returncode == 0, done.stderr
    assert '"event_id"' in done.stdout, done.stdout
    db.session.expire_all()
    event = db.session.scalar(select(Event).where(Event.source_id == sid))
    expected = "skipped" if credentials["verification_type"] == "none" else "verified"
    assert (event.verification, event.status) == (expected, "applied"), event.verification_error


def test_every_code_block_has_a_copy_button_and_no_inline_handler(signed_in):
    client, _, org = signed_in
    body = client.get("/static/app.js").get_data(as_text=True)
    assert "pre.code:not([data-copyable])" in body and "copy-code" in body
    sid = make_source(production(org), name="Plain").id
    page = client.get(f"/sources/{sid}").get_data(as_text=True)
    assert "onclick" not in page


def test_an_unsaved_webhook_test_does_not_say_none(signed_in):
    client, token, _ = signed_in
    r = client.post(
        "/sources/test-form/webhook",
        data={
            "csrf_token": token,
            "name": "Hook",
            "credentials.verification_type": "stripe",
            "credentials.signing_secret": "whsec_x",
        },
    )
    body = r.get_data(as_text=True)
    assert "None" not in body and "shown once the source is connected" in body
    assert "Stripe signature" in body


def test_send_a_test_event_says_it_writes_a_record_before_and_after(signed_in):
    from tests.helpers import auth, make_key

    client, token, org = signed_in
    key = make_key(production(org))
    sid = client.post(
        "/api/v1/source-connections",
        headers=auth(key),
        json={
            "sourceShortName": "webhook",
            "name": "Hook",
            "credentials": {"verification_type": "github", "signing_secret": "x"},
            "config": {},
        },
    ).json["sourceConnection"]["id"]
    client.post(
        "/v1/collections",
        headers=auth(key),
        json={"name": "Orders", "slug": "orders", "source_id": sid, "primary_key_path": "$.data.id"},
    )
    page = client.get(f"/sources/{sid}").get_data(as_text=True)
    assert "Send a test event (writes a record)" in page
    assert (
        'data-confirm="Send a test event? It is stored and applied like any delivery, so it writes a real record into Orders."'
        in page
    )
    r = client.post(f"/sources/{sid}/test-event", data={"csrf_token": token}, follow_redirects=True)
    body = r.get_data(as_text=True)
    found = re.search(r"Test event sent and applied\. Orders: inserted record (test_[0-9a-f]{8})\.", body)
    assert found, body
    from hookstream_ui.models import Record

    assert db.session.scalar(select(Record.record_key)) == found.group(1)


# 6. Links that carry their project


def _collection_in(env, name="Staging orders", slug="staging-orders"):
    from hookstream_ui.models.principal import Principal
    from hookstream_ui.services import collections as collection_svc

    principal = Principal(org=env.org, env=env, role="owner")
    return collection_svc.create_collection(
        principal, {"name": name, "slug": slug, "primary_key_path": "$.id"}
    )


def test_a_link_into_another_project_offers_to_switch_to_it(signed_in):
    client, token, org = signed_in
    staging = add_env(org, "staging")
    collection = _collection_in(staging)
    r = client.get("/collections/staging-orders")
    body = r.get_data(as_text=True)
    assert r.status_code == 404 and "This collection is in another project" in body
    assert (
        f'name="env_id" value="{staging.id}"' in body
        and 'name="next" value="/collections/staging-orders"' in body
    )
    r = client.post(
        "/switch-to", data={"csrf_token": token, "env_id": staging.id, "next": "/collections/staging-orders"}
    )
    assert r.status_code == 302 and r.location.endswith("/collections/staging-orders")
    assert client.get(r.location).status_code == 200
    # By id, and the pages under it, alike; the way back offers production.
    client.post("/switch-to", data={"csrf_token": token, "env_id": production(org).id, "next": "/"})
    for path in (f"/collections/{collection.id}", "/collections/staging-orders/edit"):
        assert "in another project" in client.get(path).get_data(as_text=True), path


def test_a_missing_record_of_a_collection_here_offers_no_other_project(signed_in):
    client, _, org = signed_in
    _collection_in(production(org), "Orders here", "orders")
    _collection_in(add_env(org, "staging"), "Orders there", "orders")
    r = client.get("/collections/orders/records/nope")
    assert r.status_code == 404 and "in another project" not in r.get_data(as_text=True)


def test_sources_runs_and_events_of_another_project_offer_it_too(signed_in):
    from hookstream_ui.models import Event, SyncRun
    from hookstream_ui.values.times import utcnow

    client, _, org = signed_in
    staging = add_env(org, "staging")
    source = make_source(staging, name="Staging hook")
    run = SyncRun(
        org_id=org.id,
        env_id=staging.id,
        source_id=source.id,
        status="completed",
        trigger="manual",
        mode="full",
    )
    event = Event(
        org_id=org.id,
        env_id=staging.id,
        source_id=source.id,
        method="POST",
        headers={},
        query={},
        body="{}",
        received_at=utcnow(),
        verification="skipped",
        status="applied",
    )
    db.session.add_all([run, event])
    db.session.commit()
    for path, label in (
        (f"/sources/{source.id}", "source"),
        (f"/runs/{run.id}", "sync run"),
        (f"/events/{event.id}", "event"),
    ):
        body = client.get(path).get_data(as_text=True)
        assert f"This {label} is in another project" in body and "staging" in body, path


def test_another_organizations_objects_stay_not_found(signed_in):
    client, token, _org = signed_in
    stranger = org_of(make_user("stranger@example.com"))
    theirs = add_env(stranger, "secret-project")
    _collection_in(theirs, slug="their-orders")
    source = make_source(theirs, name="Their hook")
    for path in ("/collections/their-orders", f"/sources/{source.id}"):
        r = client.get(path)
        body = r.get_data(as_text=True)
        assert r.status_code == 404 and "another project" not in body and "secret-project" not in body, path
    r = client.post("/switch-to", data={"csrf_token": token, "env_id": theirs.id, "next": "/"})
    assert r.status_code == 404
    assert client.get("/collections/their-orders").status_code == 404


def test_an_org_the_user_is_in_is_offered_with_its_name_and_next_stays_on_this_site(signed_in):
    from hookstream_ui.models import User

    client, token, _org = signed_in
    other = org_of(make_user("boss@example.com"))
    other.name = "Partner Co"
    me = db.session.scalar(select(User).where(User.email == "owner@example.com"))
    from hookstream_ui.models import Membership

    db.session.add(Membership(org_id=other.id, user_id=me.id, role="viewer"))
    db.session.commit()
    _collection_in(production(other), slug="partner-orders")
    body = client.get("/collections/partner-orders").get_data(as_text=True)
    assert "Partner Co" in body and "Switch to production and open it" in body
    r = client.post(
        "/switch-to",
        data={"csrf_token": token, "env_id": production(other).id, "next": "//evil.example/phish"},
    )
    assert r.status_code == 302 and r.location.endswith("/") and "evil" not in r.location
    assert client.get("/collections/partner-orders").status_code == 200


@pytest.mark.parametrize("target", ["/\t/evil.example/phish", "/\n/evil.example", "/\\evil.example"])
def test_switch_to_refuses_a_next_a_browser_reads_as_another_site(signed_in, target):
    # A browser drops tabs and line breaks from a URL: "/<tab>/evil.example" is //evil.example.
    client, token, org = signed_in
    staging = add_env(org, "staging")
    r = client.post("/switch-to", data={"csrf_token": token, "env_id": staging.id, "next": target})
    assert r.status_code == 302 and r.location == "/" and "evil" not in r.location


# 7. The API reference


def test_the_api_reference_is_linked_and_loads_only_vendored_files(signed_in, app):
    client, _, _ = signed_in
    assert 'href="/api-reference"' in client.get("/").get_data(as_text=True)
    page = client.get("/api-reference").get_data(as_text=True)
    assert 'data-spec-url="/v1/openapi.json"' in page
    assets = re.findall(r'(?:src|href)="(/static/vendor/swagger-ui[^"]+)"', page)
    assert len(assets) == 2
    for path in assets:
        r = client.get(path)
        assert r.status_code == 200 and b"sourceMappingURL" not in r.data
        r.close()
    assert not re.search(r'(?:src|href)="https?://', page)
    assert client.get("/static/vendor/swagger-ui-5.35.0/LICENSE").status_code == 200
    anonymous = app.test_client()
    assert anonymous.get("/api-reference").status_code == 302


def test_timestamp_and_event_type_paths_are_checked_against_the_same_sample(signed_in):
    client, _, org = signed_in
    sid = _webhook_with_event(
        client,
        org,
        {"id": "o1", "kind": "order.deleted", "at": "2024-05-01T10:00:00Z", "note": "soon", "n": 7},
    )
    body = _key_preview(
        client, primary_key_path="$.id", timestamp_path="$.at", event_type_field="$.kind", source_id=sid
    )
    ts = re.search(r'<div id="timestamp_path-preview"[^>]*hx-swap-oob="true">(.*?)</div>', body, re.S).group(
        1
    )
    assert "a time <code data-key>2024-05-01T10:00:00Z</code>" in ts
    kind = re.search(
        r'<div id="event_type_field-preview"[^>]*hx-swap-oob="true">(.*?)</div>', body, re.S
    ).group(1)
    assert "a deletion type: the record is removed <code data-key>order.deleted</code>" in kind
    body = _key_preview(
        client, primary_key_path="$.id", timestamp_path="$.note", event_type_field="$.n", source_id=sid
    )
    assert "$.note gives &#39;soon&#39; in the latest event" in body and "which is not a time" in body
    assert "$.n gives 7 in the latest event" in body and "which is not text" in body
    body = _key_preview(client, primary_key_path="$.id", timestamp_path="$.missing", source_id=sid)
    assert "$.missing matches nothing" in body and "timed by when they arrive" in body
    assert "Timestamp path is not a valid JSONPath" in _key_preview(
        client, primary_key_path="$.id", timestamp_path="$.[[", source_id=sid
    )


def test_the_collections_api_example_uses_the_public_url(signed_in, app, monkeypatch):
    client, token, _ = signed_in
    client.post("/collections/new", data=form(token, name="Members", slug="members"))
    monkeypatch.setitem(app.config, "PUBLIC_URL", "https://hooks.example.com")
    page = client.get("/collections/members").get_data(as_text=True)
    assert "curl https://hooks.example.com/v1/collections/members" in page


def test_a_source_page_shows_choices_by_their_labels(signed_in):
    from tests.helpers import auth, make_key

    client, _, org = signed_in
    key = make_key(production(org))
    sid = client.post(
        "/api/v1/source-connections",
        headers=auth(key),
        json={
            "sourceShortName": "webhook",
            "name": "Hook",
            "credentials": {"verification_type": "standard_webhooks", "signing_secret": "whsec_x"},
            "config": {},
        },
    ).json["sourceConnection"]["id"]
    page = client.get(f"/sources/{sid}").get_data(as_text=True)
    assert (
        "must carry a Standard Webhooks signature (webhook-signature header)" in page
        and '<dd class="">Standard Webhooks</dd>' in page
    )
    assert "standard_webhooks" not in page.replace(f"/sources/{sid}", "")


def test_the_filtered_records_export_as_filtered(signed_in):
    import csv
    import io
    from html import unescape

    client, _, org = signed_in
    _hook_with_records(client, org, 12)
    body = _hx(
        client, "/collections/orders/_records?event_type=order.new&filter_path=customer.tier&filter_value=0"
    ).get_data(as_text=True)
    link = unescape(re.search(r'<a href="([^"]+)" data-export="csv">', body).group(1))
    assert "event_type=order.new" in link and "filter%5Bcustomer.tier%5D=0" in link
    rows = list(csv.DictReader(io.StringIO(client.get(link).get_data(as_text=True))))
    # order.new: o000, o003, o006, o009; tier 0 (even): o000 and o006
    assert sorted(r["record_key"] for r in rows) == ["o000", "o006"]
    ndjson = client.get(unescape(re.search(r'<a href="([^"]+)" data-export="ndjson">', body).group(1)))
    assert sorted(json.loads(line)["record_key"] for line in ndjson.get_data(as_text=True).splitlines()) == [
        "o000",
        "o006",
    ]
    searched = client.get("/v1/collections/orders/export?format=ndjson&search=c11").get_data(as_text=True)
    assert [json.loads(line)["record_key"] for line in searched.splitlines()] == ["o011"]
    bad = client.get("/v1/collections/orders/export?format=csv&filter[a..b]=1")
    assert bad.status_code == 400 and "filter[a..b]" in bad.json["errors"]


def test_a_bad_records_filter_is_said_beside_its_field_by_label(signed_in):
    client, _, org = signed_in
    _hook_with_records(client, org, 3)
    page = client.get("/collections/orders?filter_path=a..b&filter_value=1").get_data(as_text=True)
    # The field keeps what was typed, and has its error place beside it.
    assert 'name="filter_path" value="a..b"' in page
    assert re.search(
        r'name="filter_path"[^>]*>\s*<span class="field-error toolbar-error" id="e-records-filter_path"', page
    )
    body = _hx(client, "/collections/orders/_records?filter_path=a..b&filter_value=1").get_data(as_text=True)
    said = re.search(
        r'<span [^>]*id="e-records-filter_path"[^>]*hx-swap-oob="true"[^>]*>([^<]*)</span>', body
    )
    assert (
        said
        and said.group(1).startswith("Filter field must be a dot path")
        and "filter[" not in said.group(1)
    )
    fixed = _hx(client, "/collections/orders/_records?filter_path=customer.tier&filter_value=0").get_data(
        as_text=True
    )
    assert re.search(
        r'id="e-records-filter_path"[^>]*hx-swap-oob="true"[^>]*></span>', fixed
    )  # the error goes


def test_a_run_that_cannot_start_says_why_in_words(signed_in):
    client, token, org = signed_in
    _hook_with_records(client, org, 1)
    r = client.post("/collections/orders/run", data={"csrf_token": token}, follow_redirects=True)
    page = r.get_data(as_text=True)
    assert "Webhook sources receive events; there is nothing to run." in page and "source:" not in page


def test_a_refused_export_is_not_logged_as_a_copy_taken(signed_in):
    from hookstream_ui.models import AuditEntry

    client, _, org = signed_in
    _hook_with_records(client, org, 2)
    bad = client.get("/v1/collections/orders/export?format=csv&filter[a..b]=1")
    assert bad.status_code == 400
    assert db.session.scalars(select(AuditEntry).where(AuditEntry.action == "collection.export")).all() == []
    assert client.get("/v1/collections/orders/export?format=csv").status_code == 200
    assert (
        len(db.session.scalars(select(AuditEntry).where(AuditEntry.action == "collection.export")).all()) == 1
    )


# 4. A skip link on every page


def test_every_page_has_a_skip_link_to_its_main_content(signed_in, app):
    client, _, _ = signed_in
    pages = [
        client.get(p)
        for p in (
            "/",
            "/collections",
            "/collections/new",
            "/events",
            "/sources",
            "/settings/account",
            "/api-reference",
            "/collections/nope",
        )
    ]
    pages.append(app.test_client().get("/login"))
    for r in pages:
        body = r.get_data(as_text=True)
        assert '<a class="skip-link" href="#main">Skip to content</a>' in body, r.request.path
        assert 'id="main" tabindex="-1"' in body, r.request.path


def test_an_edit_switching_source_checks_the_new_sources_sample(signed_in):
    client, token, org = signed_in
    sid = _webhook_with_event(client, org, {"id": "first"})
    client.post("/collections/new", data=form(token, name="Orders", slug="orders", source_id=sid))
    client.post(f"/v1/ingest/{sid}", json={"id": "cus_7"})
    collection = db.session.scalar(select(Collection))
    other = _webhook_with_event(client, org, {"order": {"id": "ord_9"}})
    body = _key_preview(client, primary_key_path="$.order.id", collection_id=collection.id, source_id=other)
    assert "<code data-key>ord_9</code>" in body and "latest event" in body


def test_the_collections_list_pages_back_as_well(signed_in):
    from html import unescape

    client, token, _ = signed_in
    for i in range(55):
        client.post("/collections/new", data=form(token, name=f"Coll {i:03d}", slug=f"coll-{i:03d}"))

    def names(body):
        return re.findall(r"<strong>(Coll \d+)</strong>", body)

    first = client.get("/collections").get_data(as_text=True)
    seen, body = [names(first)], first
    for _ in range(2):
        body = client.get(unescape(re.search(r'data-page="next" href="([^"]+)"', body).group(1))).get_data(
            as_text=True
        )
        seen.append(names(body))
    assert [len(p) for p in seen] == [25, 25, 5] and len({n for p in seen for n in p}) == 55
    for expected in (seen[1], seen[0]):
        body = client.get(
            unescape(re.search(r'data-page="previous" href="([^"]+)"', body).group(1))
        ).get_data(as_text=True)
        assert names(body) == expected
    assert 'data-page="previous"' not in body
