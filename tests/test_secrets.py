"""A stored secret only ever goes to where it was given; bodies that are not what an endpoint
takes change nothing; what sources say is shown without secrets."""

from __future__ import annotations

import pytest
from sqlalchemy import select

from hookstream_ui.models import ApiKey, AuditEntry, Org, SourceConnection, db
from hookstream_ui.services.sources import credentials_of
from hookstream_ui.sources import MASK
from hookstream_ui.sources.secrets import scrub
from tests.fixture_servers import PG_PASSWORD, PG_USER, REST_TOKEN, STRIPE_KEY
from tests.helpers import login, make_key, make_user, org_of, production


@pytest.fixture
def member(app, ctx):
    """An owner's org with a member who is signed in (dashboard) and has an API key."""
    owner = make_user("owner@example.com")
    org = org_of(owner)
    make_user("member@example.com", org=org, role="member")
    client = app.test_client()
    token = login(client, "member@example.com")
    return client, token, make_key(production(org))


def api(client, method, path, key, **kw):
    return client.open(f"/api/v1{path}", method=method, headers={"X-API-Key": key}, **kw)


def create(client, key, short, credentials, config=None):
    r = api(
        client,
        "POST",
        "/source-connections",
        key,
        json={
            "sourceShortName": short,
            "name": f"My {short}",
            "credentials": credentials,
            "config": config or {},
        },
    )
    assert r.status_code == 201, r.json
    return r.json["sourceConnection"]["id"]


def stored(sid):
    db.session.expire_all()
    return credentials_of(db.session.get(SourceConnection, sid))


def form(token, credentials, config=None, **extra):
    data = {"csrf_token": token, "name": "Moved", **extra}
    data.update({f"credentials.{k}": v for k, v in credentials.items()})
    data.update({f"config.{k}": v for k, v in (config or {}).items()})
    return data


# (type, credentials as given, the secret, how a member points it at the capture host, config)
CASES = {
    "postgresql password": (
        "postgresql",
        lambda f: f["pg"].credentials(),
        PG_PASSWORD,
        lambda c: {"host": "127.0.0.1", "port": c.pg_port},
        {"table": "customers"},
    ),
    "postgresql sslmode": (
        "postgresql",
        lambda f: f["pg"].credentials(sslmode="require"),
        PG_PASSWORD,
        lambda c: {"sslmode": "disable"},
        {"table": "customers"},
    ),
    "rest bearer token": (
        "rest_api",
        lambda f: {"base_url": f["http"].base, "auth_type": "bearer", "token": REST_TOKEN},
        REST_TOKEN,
        lambda c: {"base_url": c.base},
        {"path": "/orders", "records_path": "$.data"},
    ),
    "rest header name": (
        "rest_api",
        lambda f: {
            "base_url": f["http"].base,
            "auth_type": "header",
            "header_name": "X-API-Key",
            "token": REST_TOKEN,
        },
        REST_TOKEN,
        lambda c: {"header_name": "X-Forwarded-Token"},
        {"path": "/orders"},
    ),
    "rest auth type": (
        "rest_api",
        lambda f: {
            "base_url": f["http"].base,
            "auth_type": "header",
            "header_name": "X-API-Key",
            "token": REST_TOKEN,
        },
        REST_TOKEN,
        lambda c: {"auth_type": "bearer"},
        {"path": "/orders"},
    ),
    "rest basic password": (
        "rest_api",
        lambda f: {
            "base_url": f["http"].base,
            "auth_type": "basic",
            "username": "ann",
            "password": "basic-canary-Pw-42",
        },
        "basic-canary-Pw-42",
        lambda c: {"base_url": c.base},
        {"path": "/orders"},
    ),
    "stripe key": (
        "stripe",
        lambda f: {"secret_key": STRIPE_KEY, "api_base": f["http"].base},
        STRIPE_KEY,
        lambda c: {"api_base": c.base},
        {},
    ),
}


@pytest.fixture
def servers(pg_source, http_fixture, capture):
    return {"pg": pg_source, "http": http_fixture, "capture": capture}


def _secret_fields(short, given):
    from hookstream_ui.sources import REGISTRY

    return {f.name: MASK for f in REGISTRY[short].auth_fields if f.secret and f.name in given}


@pytest.mark.parametrize("case", sorted(CASES))
def test_a_stored_secret_never_follows_a_changed_destination(member, servers, case):
    client, token, key = member
    short, given_of, secret, move, config = CASES[case]
    capture = servers["capture"]
    given = given_of(servers)
    sid = create(client, key, short, given, config)
    before = stored(sid)
    moved = {**given, **move(capture), **_secret_fields(short, given)}
    changes = move(capture)

    # The API, with the mask sent back and with the secret left out of a partial change.
    for body in ({"credentials": moved}, {"credentials": changes}):
        r = api(client, "PUT", f"/source-connections/{sid}/credentials", key, json=body)
        assert r.status_code == 400 and r.json["error"] == "invalid_credentials", (body, r.json)
        assert set(r.json["errors"]) == set(_secret_fields(short, given)), r.json
        assert "must be entered again" in r.json["message"]
    # The dashboard's edit form and its unsaved Test.
    edit = client.post(f"/sources/{sid}/edit", data=form(token, moved, config))
    assert edit.status_code == 400 and "must be entered again" in edit.get_data(as_text=True)
    test = client.post(f"/sources/test-form/{short}", data=form(token, moved, config, source_id=sid))
    assert "must be entered again" in test.get_data(as_text=True)
    assert stored(sid) == before
    assert not capture.leaked(secret), (capture.requests, capture.passwords)


def test_the_syncs_api_cannot_redirect_a_stored_key_either(member, servers):
    client, _, key = member
    capture = servers["capture"]
    created = client.post(
        "/v1/syncs",
        headers={"X-API-Key": key},
        json={
            "provider": "stripe",
            "name": "Stripe",
            "stream_id": "customer",
            "collection_ids": ["stripe:customer"],
            "credential": {"properties": {"secret": STRIPE_KEY, "api_base": servers["http"].base}},
        },
    )
    assert created.status_code == 201, created.json
    r = client.patch(
        f"/v1/syncs/{created.json['id']}",
        headers={"X-API-Key": key},
        json={"credential": {"properties": {"secret": MASK, "api_base": capture.base}}},
    )
    assert r.status_code == 400 and "secret_key" in r.json["errors"], r.json
    assert not capture.leaked(STRIPE_KEY)


@pytest.mark.parametrize("case", sorted(CASES))
def test_re_entering_the_secret_moves_it(member, servers, case):
    client, _, key = member
    short, given_of, secret, move, config = CASES[case]
    given = given_of(servers)
    sid = create(client, key, short, given, config)
    typed = dict.fromkeys(_secret_fields(short, given), secret)
    r = api(
        client,
        "PUT",
        f"/source-connections/{sid}/credentials",
        key,
        json={"credentials": {**move(servers["capture"]), **typed}},
    )
    assert r.status_code == 200, r.json
    assert all(stored(sid)[k] == secret for k in typed)
    if set(move(servers["capture"])) & {"host", "base_url", "api_base"}:  # moved to the capture host
        api(client, "POST", f"/source-connections/{sid}/test", key)
        # Typed for the capture host, it goes there: the capture would have seen a leak above.
        assert servers["capture"].leaked(secret), case


def test_a_test_that_borrows_stored_secrets_is_audited(member, servers):
    client, token, key = member
    given = servers["pg"].credentials()
    sid = create(client, key, "postgresql", given, {"table": "customers"})
    shown = {**given, "password": MASK}
    result = client.post(
        "/sources/test-form/postgresql", data=form(token, shown, {"table": "customers"}, source_id=sid)
    )
    assert "is readable" in result.get_data(as_text=True)
    assert api(client, "POST", f"/source-connections/{sid}/test", key).json["success"] is True
    entries = db.session.scalars(
        select(AuditEntry).where(AuditEntry.action == "source.test").order_by(AuditEntry.at)
    ).all()
    assert [(e.actor, e.resource_id, e.details) for e in entries] == [
        ("member@example.com", sid, {"secrets_used": ["password"], "unsaved": True, "connected": True}),
        (
            f"API key test key ({db.session.scalar(select(ApiKey.prefix))}…) of owner@example.com",
            sid,
            {"secrets_used": ["password"], "unsaved": False, "connected": True},
        ),
    ]
    assert PG_PASSWORD not in repr([e.details for e in entries])


# --- bodies that are not what an endpoint takes ------------------------------------------

SIGNED = {
    "verification_type": "hmac_sha256",
    "signing_secret": "whsec-canary-42",
    "signature_header": "X-Sig",
}
RULES = {"ip_allowlist": "203.0.113.0/24", "dedup_key": "$.id", "dedup_window_seconds": 600}


@pytest.mark.parametrize(
    "path, body",
    [
        ("credentials", {"credentials": "oops"}),
        ("credentials", {"credentials": None}),
        ("credentials", {"credentials": [1]}),
        ("credentials", {}),
        ("credentials", {"credentials": {}}),
        ("credentials", {"credentials": {"verification_type": "none"}, "x": 1}),
        ("credentials", {"verificaton_type": "none"}),
        ("config", {"config": "oops"}),
        ("config", {}),
        ("config", {"config": {"dedup_key": "$["}}),
        ("config", {"ip_alowlist": ""}),
        ("config", {"dedup_key": "X Bad Header"}),
        ("config", {"dedup_window_seconds": "soon"}),
    ],
)
def test_a_malformed_put_is_a_400_naming_the_field_and_changes_nothing(member, path, body):
    client, _, key = member
    sid = create(client, key, "webhook", SIGNED, RULES)
    before = (stored(sid), dict(db.session.get(SourceConnection, sid).config))
    r = api(client, "PUT", f"/source-connections/{sid}/{path}", key, json=body)
    assert r.status_code == 400 and r.json["success"] is False and r.json["errors"], r.json
    db.session.expire_all()
    assert (stored(sid), dict(db.session.get(SourceConnection, sid).config)) == before


def test_a_put_changes_only_the_fields_it_names(member):
    client, _, key = member
    sid = create(client, key, "webhook", SIGNED, RULES)
    r = api(client, "PUT", f"/source-connections/{sid}/config", key, json={"dedup_window_seconds": 60})
    assert r.status_code == 200 and r.json["sourceConnection"]["config"] == {
        **RULES,
        "dedup_window_seconds": 60,
    }
    r = api(
        client,
        "PUT",
        f"/source-connections/{sid}/credentials",
        key,
        json={"credentials": {"signature_header": "X-S"}},
    )
    assert r.status_code == 200 and stored(sid) == {**SIGNED, "signature_header": "X-S"}


# --- what sources say ---------------------------------------------------------------------


def test_scrub_catches_case_spacing_and_encodings():
    secret = "Canary secret/42+x"
    said = (
        f"a {secret.upper()} b {secret.replace(' ', '')} c {secret.replace(' ', '  ')} "
        "d Canary%20secret%2F42%2Bx e Canary+secret%2F42%2Bx f Q2FuYXJ5IHNlY3JldC80Mit4"
    )
    assert scrub(said, [secret]) == "a ••• b ••• c ••• d ••• e ••• f •••"


def test_stream_listing_errors_are_scrubbed(member, pg_source):
    """PostgreSQL quotes the database name it does not have; here that is the password too."""
    client, _token, key = member
    secret = PG_PASSWORD
    sid = create(client, key, "postgresql", pg_source.credentials(database=secret))
    r = api(client, "GET", f"/source-connections/{sid}/streams", key)
    assert r.status_code == 502 and "that database does not exist" in r.json["message"], r.json
    page = client.get(f"/collections/_streams?source_id={sid}")
    for text in (r.get_data(as_text=True), page.get_data(as_text=True)):
        assert secret not in text and secret.lower() not in text.lower()


def test_viewers_cannot_make_a_source_connect(app, member, capture):
    client, _, key = member
    sid = create(
        client,
        key,
        "postgresql",
        {
            "host": "127.0.0.1",
            "port": capture.pg_port,
            "database": "d",
            "username": PG_USER,
            "password": "viewer-canary-42",
        },
    )
    org = db.session.get(SourceConnection, sid).org_id
    make_user("viewer@example.com", org=db.session.get(Org, org), role="viewer")
    viewer = app.test_client()
    login(viewer, "viewer@example.com")
    assert viewer.get(f"/collections/_streams?source_id={sid}").status_code == 403
    assert capture.passwords == []


def test_an_unsaved_test_borrows_only_from_a_source_of_its_own_type(member, servers):
    client, token, key = member
    sid = create(client, key, "postgresql", servers["pg"].credentials(), {"table": "customers"})
    capture = servers["capture"]
    result = client.post(
        "/sources/test-form/rest_api",
        data=form(
            token,
            {"base_url": capture.base, "auth_type": "basic", "username": "u", "password": MASK},
            {"path": "/"},
            source_id=sid,
        ),
    )
    assert "is a postgresql source, not rest_api" in result.get_data(as_text=True)
    assert not capture.leaked(PG_PASSWORD)


def test_the_openapi_document_says_which_endpoints_need_a_session(client):
    doc = client.get("/v1/openapi.json").json
    members = doc["paths"]["/v1/members"]["get"]
    assert "API keys get 403" in members["description"] and members["security"] == [{"session": []}]
    assert "security" not in doc["paths"]["/v1/collections"]["get"]
