"""Small holes, each closed where it was: signatures compared as bytes, CSV cells that are
not formulas, links built on PUBLIC_URL, record keys holding "/", replays that change
nothing, security headers."""

from __future__ import annotations

import csv
import io
import json

import pytest
from sqlalchemy import select

from hookstream_ui.models import DedupClaim, Event, Record, db
from tests.helpers import login, make_user
from tests.test_ingest import SCHEMES, SECRET, webhook

SIGNATURE_HEADERS = {
    "hmac_sha256": "X-Signature",
    "hmac_sha1": "X-Signature",
    "github": "X-Hub-Signature-256",
    "stripe": "Stripe-Signature",
    "standard_webhooks": "webhook-signature",
}


@pytest.mark.parametrize("scheme", sorted(SCHEMES))
def test_a_signature_header_beyond_ascii_is_a_401(client, key, scheme):
    sid = webhook(client, key, {"verification_type": scheme, "signing_secret": SECRET})
    body = b'{"data": {"id": "x"}}'
    headers = SCHEMES[scheme](body)
    name = SIGNATURE_HEADERS[scheme]
    headers[name] = headers[name][:-4] + "éü€x"
    if scheme == "standard_webhooks":
        headers["webhook-timestamp"] = "١٧٠٠٠٠٠٠٠٠"  # digits, but not ASCII ones
    r = client.post(
        f"/v1/ingest/{sid}",
        data=body,
        content_type="application/json",
        headers={k: v.encode().decode("latin-1") for k, v in headers.items()},
    )
    assert r.status_code == 401 and r.json["code"] == "invalid_signature", r.json


def test_csv_exports_write_no_formulas(client, key):
    sid = webhook(client, key, collection={"primary_key_path": "$.id", "event_type_field": "$.type"})
    for record_key, kind in (
        ('=HYPERLINK("http://evil.example")', "+cmd"),
        ("@SUM(A1)", "-x"),
        ("plain", "ok"),
    ):
        client.post(f"/v1/ingest/{sid}", json={"id": record_key, "type": kind})
    text = client.get("/v1/collections/orders/export?format=csv", headers={"X-API-Key": key}).get_data(
        as_text=True
    )
    rows = {row["id"]: row for row in csv.DictReader(io.StringIO(text))}
    cells = [row[c] for row in rows.values() for c in ("record_key", "event_type", "id", "type")]
    assert not [c for c in cells if c[:1] in "=+-@"], cells
    assert '\'=HYPERLINK("http://evil.example")' in cells and "plain" in cells


def test_invitation_links_use_public_url(app, ctx, monkeypatch):
    make_user("owner@example.com")
    client = app.test_client()
    headers = {"X-CSRFToken": login(client, "owner@example.com")}
    made = client.post("/v1/invitations", json={"email": "new@example.com"}, headers=headers)
    assert made.json["invitation"]["url"].startswith("http://localhost/")  # no PUBLIC_URL: the request's host
    monkeypatch.setitem(app.config, "PUBLIC_URL", "https://hooks.example.com")
    made = client.post("/v1/invitations", json={"email": "new@example.com"}, headers=headers)
    assert made.json["invitation"]["url"].startswith("https://hooks.example.com/invitations/accept?token=")
    page = client.post(
        "/settings/team",
        data={"email": "other@example.com", "role": "member", "csrf_token": headers["X-CSRFToken"]},
        follow_redirects=True,
    )
    assert "https://hooks.example.com/invitations/accept?token=" in page.get_data(as_text=True)


def test_record_keys_holding_slashes_can_be_read_and_deleted(client, key):
    sid = webhook(client, key, collection={"primary_key_path": "$.id"})
    client.post(f"/v1/ingest/{sid}", json={"id": "orders/2026/42", "total": 5})
    client.post(f"/v1/ingest/{sid}", json={"id": "/leading/slash", "total": 6})
    h = {"X-API-Key": key}
    for path in ("orders/2026/42", "orders%2F2026%2F42"):
        got = client.get(f"/v1/collections/orders/records/{path}", headers=h)
        assert got.status_code == 200 and got.json["record"]["data"]["total"] == 5, got.json
    assert (
        client.get("/v1/collections/orders/records//leading/slash", headers=h).json["record"]["data"]["total"]
        == 6
    )
    assert (
        client.delete("/v1/collections/orders/records/orders%2F2026%2F42", headers=h).json["deleted"] is True
    )
    assert (
        client.delete("/v1/collections/orders/records/%2Fleading%2Fslash", headers=h).json["deleted"] is True
    )
    assert db.session.scalar(select(Record)) is None


def test_a_replayed_old_event_changes_nothing_where_the_collection_has_a_timestamp_path(client, key):
    """HMAC without a timestamp: a copy sent after the dedup window verifies again."""
    from tests.test_ingest import sign_hmac

    sid = webhook(
        client,
        key,
        {"verification_type": "hmac_sha256", "signing_secret": SECRET},
        collection={"primary_key_path": "$.id", "timestamp_path": "$.at"},
    )

    def send(body: bytes):
        return client.post(
            f"/v1/ingest/{sid}",
            data=body,
            content_type="application/json",
            headers={"X-Signature": "sha256=" + sign_hmac(body)},
        )

    old = json.dumps({"id": "o1", "at": 100, "status": "paid"}).encode()
    new = json.dumps({"id": "o1", "at": 200, "status": "refunded"}).encode()
    assert send(old).status_code == 200 and send(new).status_code == 200
    db.session.execute(DedupClaim.__table__.delete())  # the dedup window has passed
    db.session.commit()
    replay = send(old)
    assert replay.status_code == 200 and "duplicate" not in replay.json
    db.session.expire_all()
    assert db.session.scalar(select(Record)).data["status"] == "refunded"
    outcome = next(iter(db.session.get(Event, replay.json["event_id"]).outcomes.values()))
    assert outcome["reason"] == "older than the stored version"


def test_pages_carry_a_content_security_policy_and_hsts_behind_https(app, client, ctx, monkeypatch):
    make_user("owner@example.com")
    login(client, "owner@example.com")
    page = client.get("/")
    policy = page.headers["Content-Security-Policy"]
    assert "script-src 'self'" in policy and "style-src 'self'" in policy and "'unsafe-inline'" not in policy
    assert "frame-ancestors 'none'" in policy and "Strict-Transport-Security" not in page.headers
    assert 'style="' not in page.get_data(as_text=True)
    monkeypatch.setitem(app.config, "SESSION_COOKIE_SECURE", True)
    assert client.get("/login").headers["Strict-Transport-Security"] == "max-age=31536000"


def test_a_timestamp_of_thousands_of_digits_is_a_401(client, key):
    sid = webhook(client, key, {"verification_type": "stripe", "signing_secret": SECRET})
    body = b'{"data": {"id": "x"}}'
    r = client.post(
        f"/v1/ingest/{sid}",
        data=body,
        content_type="application/json",
        headers=SCHEMES["stripe"](body, ts="9" * 5000),
    )
    assert r.status_code == 401, r.json


def test_a_secret_stored_before_its_destination_had_a_default_is_kept(client, key, pg_source):
    """An older source may hold no sslmode: it counts as the default, not as a change."""
    from hookstream_ui.models import SourceConnection
    from hookstream_ui.sources import MASK, secrets

    r = client.post(
        "/api/v1/source-connections",
        headers={"X-API-Key": key},
        json={
            "sourceShortName": "postgresql",
            "name": "db",
            "credentials": pg_source.credentials(sslmode="prefer"),
        },
    )
    sid = r.json["sourceConnection"]["id"]
    source = db.session.get(SourceConnection, sid)
    stored = secrets.decrypt(source.credentials_encrypted)
    del stored["sslmode"]
    source.credentials_encrypted = secrets.encrypt(stored)
    db.session.commit()
    again = client.put(
        f"/api/v1/source-connections/{sid}/credentials",
        headers={"X-API-Key": key},
        json={"credentials": {**pg_source.credentials(sslmode="prefer"), "password": MASK}},
    )
    assert again.status_code == 200, again.json
