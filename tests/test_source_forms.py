"""Field declarations drive validation and the generated forms; the API and the dashboard
reject the same input with the same messages; secrets never leave the server."""

from __future__ import annotations

import logging
import re

import pytest
from markupsafe import escape
from sqlalchemy import select

from hookstream_ui.errors import ValidationFailed
from hookstream_ui.models import SourceConnection, db
from hookstream_ui.sources import MASK, REGISTRY
from hookstream_ui.sources.fields import FIELD_TYPES, Field, validate
from tests.fixture_servers import STRIPE_KEY

CANARY = "canary-Secret-7f3a9c"


def test_every_field_type_is_declared_somewhere():
    used = {f.type for kind in REGISTRY.values() for f in kind.auth_fields + kind.config_fields}
    assert used == set(FIELD_TYPES)


FIELDS = (
    Field("host", "string", "Host", required=True),
    Field("port", "number", "Port", default=5432),
    Field("secret", "password", "Secret", required=True),
    Field("enabled", "boolean", "Enabled", default=True),
    Field("mode", "select", "Mode", default="a", options=(("a", "A"), ("b", "B"))),
    Field("notes", "text", "Notes", max_length=10),
    Field("url", "url", "URL"),
)


@pytest.mark.parametrize(
    "given, errors",
    [
        ({}, {"host": "is required", "secret": "is required"}),
        ({"host": "  ", "secret": ""}, {"host": "is required", "secret": "is required"}),
        ({"host": 5, "secret": "s"}, {"host": "must be a string"}),
        ({"host": "h", "secret": "s", "port": "abc"}, {"port": "must be a number"}),
        ({"host": "h", "secret": "s", "port": True}, {"port": "must be a number"}),
        ({"host": "h", "secret": "s", "enabled": "maybe"}, {"enabled": "must be true or false"}),
        ({"host": "h", "secret": "s", "mode": "c"}, {"mode": "must be one of: a, b"}),
        ({"host": "h", "secret": "s", "notes": "x" * 11}, {"notes": "must be at most 10 characters"}),
        ({"host": "h", "secret": "s", "url": "example.com"}, {"url": "must be an http:// or https:// URL"}),
        (
            {"host": "h", "secret": "s", "url": "javascript:alert(1)"},
            {"url": "must be an http:// or https:// URL"},
        ),
    ],
)
def test_validation_rules(given, errors):
    with pytest.raises(ValidationFailed) as caught:
        validate(FIELDS, given)
    assert caught.value.errors == errors


def test_validation_cleans_defaults_and_coerces():
    clean = validate(
        FIELDS,
        {"host": " db ", "secret": "s", "port": "6543", "enabled": "off", "url": "https://x.example/path"},
    )
    assert clean == {
        "host": "db",
        "port": 6543,
        "secret": "s",
        "enabled": False,
        "mode": "a",
        "url": "https://x.example/path",
    }
    assert validate(FIELDS, {"host": "h", "secret": "s"})["enabled"] is True


def test_a_key_that_is_no_field_is_refused_by_name():
    with pytest.raises(ValidationFailed) as caught:
        validate(FIELDS, {"host": "h", "secret": "s", "pasword": "typo"})
    assert caught.value.errors == {"pasword": "is not a field of this source type"}


def test_mask_keeps_the_stored_secret_and_is_not_a_value():
    assert validate(FIELDS, {"host": "h", "secret": MASK}, {"secret": "stored"})["secret"] == "stored"
    with pytest.raises(ValidationFailed) as caught:
        validate(FIELDS, {"host": "h", "secret": MASK})
    assert caught.value.errors == {"secret": "is required"}


@pytest.mark.parametrize("short", sorted(REGISTRY))
def test_fields_shown_only_for_some_values_name_a_select_of_their_section_and_its_values(short):
    kind = REGISTRY[short]
    for fields in (kind.auth_fields, kind.config_fields):
        selects = {f.name: set(f.option_values()) for f in fields if f.type == "select"}
        for f in fields:
            if f.shown_when:
                other, values = f.shown_when
                assert other in selects and set(values) <= selects[other] and not f.required, f.name


@pytest.mark.parametrize("short", sorted(REGISTRY))
def test_connect_form_renders_every_declared_field(signed_in_with_key, short):
    client, _, _ = signed_in_with_key
    page = client.get(f"/sources/new/{short}").get_data(as_text=True)
    kind = REGISTRY[short]
    assert kind.name_example and f'placeholder="{escape(kind.name_example)}"' in page  # a name of its kind
    for section, fields in (("credentials", kind.auth_fields), ("config", kind.config_fields)):
        for f in fields:
            key = f"{section}.{f.name}"
            assert f'id="f-{key}"' in page, key
            assert str(escape(f.label)) in page
            if f.description:
                assert str(escape(f.description)) in page
            if f.placeholder:
                assert f'placeholder="{escape(f.placeholder)}"' in page
            control = re.search(rf'<(input|select|textarea)[^>]*id="f-{re.escape(key)}"[^>]*>', page).group(0)
            expected = {
                "password": 'type="password"',
                "select": "<select",
                "text": "<textarea",
                "boolean": 'type="checkbox"',
                "url": 'type="url"',
                "number": 'inputmode="decimal"',
                "string": 'type="text"',
            }[f.type]
            assert expected in control, (key, control)
            if f.required and f.type != "boolean":
                label = re.search(rf'<label for="f-{re.escape(key)}">.*?</label>', page, re.S).group(0)
                assert 'class="req"' in label


def _form_data(token, credentials, config, name="Shared"):
    data = {"csrf_token": token, "name": name}
    data.update({f"credentials.{k}": v for k, v in credentials.items()})
    data.update({f"config.{k}": v for k, v in config.items()})
    return data


@pytest.mark.parametrize(
    "short, credentials, config",
    [
        ("postgresql", {"host": "", "port": "eighty", "sslmode": "bogus"}, {}),
        (
            "rest_api",
            {"base_url": "not a url", "auth_type": "basic"},
            {"pagination": "cursor", "page_size": "0"},
        ),
        ("webhook", {"verification_type": "github"}, {"ip_denylist": "300.1.1.1"}),
        ("stripe", {"secret_key": "pk_test_123"}, {}),
    ],
)
def test_api_and_form_reject_alike(signed_in_with_key, short, credentials, config):
    client, token, key = signed_in_with_key
    api = client.post(
        "/api/v1/source-connections",
        headers={"X-API-Key": key},
        json={"sourceShortName": short, "name": "Shared", "credentials": credentials, "config": config},
    )
    assert api.status_code == 400
    page = client.post(f"/sources/new/{short}", data=_form_data(token, credentials, config))
    assert page.status_code == 400
    html = page.get_data(as_text=True)
    shown = dict(re.findall(r'id="e-(?:credentials|config)\.([^"]+)">([^<]*)<', html))
    assert {k: str(escape(v)) for k, v in api.json["errors"].items()} == shown
    assert db.session.scalar(select(SourceConnection)) is None


def test_form_keeps_typed_values_but_never_secrets(signed_in_with_key):
    client, token, _ = signed_in_with_key
    r = client.post(
        "/sources/new/postgresql",
        data=_form_data(
            token,
            {"host": "db.internal", "port": "x", "database": "app", "username": "ro", "password": CANARY},
            {},
        ),
    )
    html = r.get_data(as_text=True)
    assert 'value="db.internal"' in html and 'value="x"' in html and 'value="ro"' in html
    assert CANARY not in html


def test_edit_keeps_the_secret_and_shows_only_the_mask(signed_in_with_key, pg_source):
    client, token, key = signed_in_with_key
    sid = client.post(
        "/api/v1/source-connections",
        headers={"X-API-Key": key},
        json={"sourceShortName": "postgresql", "name": "PG", "credentials": pg_source.credentials()},
    ).json["sourceConnection"]["id"]
    edit = client.get(f"/sources/{sid}/edit").get_data(as_text=True)
    assert f'value="{MASK}"' in edit and pg_source.credentials()["password"] not in edit
    fields = dict(re.findall(r'name="((?:credentials|config)\.[^"]+)"[^>]*value="([^"]*)"', edit))
    fields.update({"csrf_token": token, "name": "PG renamed", "credentials.sslmode": "disable"})
    assert client.post(f"/sources/{sid}/edit", data=fields).status_code == 302
    r = client.post(f"/api/v1/source-connections/{sid}/test", headers={"X-API-Key": key})
    assert r.json["success"] is True, r.json


def test_inline_test_button_partial(signed_in_with_key, pg_source):
    client, token, _ = signed_in_with_key
    creds = {k: str(v) for k, v in pg_source.credentials().items()}
    r = client.post(
        "/sources/test-form/postgresql", data=_form_data(token, creds, {}), headers={"HX-Request": "true"}
    )
    body = r.get_data(as_text=True)
    assert r.status_code == 200 and 'data-ok="true"' in body and "<html" not in body
    r = client.post(
        "/sources/test-form/postgresql", data=_form_data(token, {**creds, "password": "nope"}, {})
    )
    assert 'data-ok="false"' in r.get_data(as_text=True) and "Authentication failed" in r.get_data(
        as_text=True
    )
    assert db.session.scalar(select(SourceConnection)) is None  # testing saves nothing


def test_canary_secret_never_leaves(signed_in_with_key, pg_source, http_fixture, caplog):
    """One canary in every password field of every type; it must appear in no response,
    no page, no log line, and not in plaintext in the database."""
    caplog.set_level(logging.DEBUG)
    client, token, key = signed_in_with_key
    bodies = []

    def keep(response):
        bodies.append(response.get_data(as_text=True))
        return response

    payloads = {
        "postgresql": {
            "host": "127.0.0.1",
            "port": pg_source.port,
            "database": "postgres",
            "username": "hookstream",
            "password": CANARY,
            "sslmode": "disable",
        },
        "rest_api": {
            "base_url": http_fixture.base,
            "auth_type": "bearer",
            "token": CANARY,
            "password": CANARY,
            "username": "u",
        },
        "stripe": {"secret_key": f"sk_test_{CANARY}", "api_base": http_fixture.base},
        "github": {"token": CANARY, "base_url": http_fixture.base + "/gh/api/v3"},
        "shopify": {"shop": "acme", "access_token": CANARY, "base_url": http_fixture.base + "/shopify"},
        "hubspot": {"token": CANARY, "base_url": http_fixture.base + "/hs"},
        "salesforce": {
            "instance_url": http_fixture.base,
            "token_url": http_fixture.base + "/services/oauth2/token",
            "client_id": "3MVG9canary",
            "client_secret": CANARY,
            "refresh_token": CANARY,
        },
        "webhook": {"verification_type": "hmac_sha256", "signing_secret": CANARY},
        "file": {},
    }
    assert set(payloads) == set(REGISTRY)
    h = {"X-API-Key": key}
    for short, credentials in payloads.items():
        r = keep(
            client.post(
                "/api/v1/source-connections",
                headers=h,
                json={"sourceShortName": short, "name": f"Canary {short}", "credentials": credentials},
            )
        )
        assert r.status_code == 201, r.json
        sid = r.json["sourceConnection"]["id"]
        for method, path in [
            ("GET", f"/source-connections/{sid}"),
            ("GET", "/source-connections"),
            ("POST", f"/source-connections/{sid}/test"),
            ("GET", f"/source-connections/{sid}/streams"),
        ]:
            keep(client.open(f"/api/v1{path}", method=method, headers=h))
        masked = r.json["sourceConnection"]["credentials"]
        keep(
            client.put(
                f"/api/v1/source-connections/{sid}/credentials", headers=h, json={"credentials": masked}
            )
        )
        keep(client.put(f"/api/v1/source-connections/{sid}/config", headers=h, json={"config": {}}))
        bad = {**masked, "nonsense": CANARY}
        keep(client.put(f"/api/v1/source-connections/{sid}/credentials", headers=h, json=bad))
        for path in (f"/sources/{sid}", f"/sources/{sid}/edit", "/sources", f"/sources/{sid}/delete"):
            keep(client.get(path))
        keep(client.post(f"/sources/{sid}/test", data={"csrf_token": token}))
        keep(
            client.post(
                "/sources/test-form/" + short,
                data=_form_data(token, {k: str(v) for k, v in masked.items()}, {}) | {"source_id": sid},
            )
        )
    for body in bodies:
        assert CANARY not in body
    assert CANARY not in caplog.text
    for row in db.session.scalars(select(SourceConnection)):
        assert CANARY not in (row.credentials_encrypted or "") and CANARY not in str(row.config)
    assert STRIPE_KEY not in caplog.text
