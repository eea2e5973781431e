"""The OpenAPI document covers every JSON route, and is itself valid."""

from __future__ import annotations

import pytest
from jsonschema import Draft202012Validator

from tests.contract import ContractViolation, check_response

JSON_PREFIXES = ("/v1", "/api/")


def test_every_json_route_is_documented(app, client):
    doc = client.get("/v1/openapi.json").json
    assert doc["openapi"] == "3.1.0"
    missing = []
    for rule in app.url_map.iter_rules():
        if not rule.rule.startswith(JSON_PREFIXES):
            continue
        path = rule.rule
        for arg in rule.arguments:
            for spelling in (f"<{arg}>", f"<string:{arg}>", f"<record_key:{arg}>"):
                path = path.replace(spelling, f"{{{arg}}}")
        for method in rule.methods - {"HEAD", "OPTIONS"}:
            if method.lower() not in doc["paths"].get(path, {}):
                missing.append(f"{method} {path}")
    assert not missing, f"routes missing from /v1/openapi.json: {missing}"


def test_schemas_are_valid_json_schema(client):
    doc = client.get("/v1/openapi.json").json
    for _name, schema in doc["components"]["schemas"].items():
        Draft202012Validator.check_schema(schema)
    for path, item in doc["paths"].items():
        for method, op in item.items():
            assert op["responses"], f"{method} {path} documents no response"
            assert op["summary"] and op["operationId"]


def test_the_contract_check_catches_drift(client):
    """The automatic response check (tests/contract.py) must fail on a wrong shape."""
    doc = client.get("/v1/openapi.json").json
    good = {"id": "col_x", "deleted": True}
    check_response(doc, "DELETE", "/v1/collections/col_x", 200, good)
    with pytest.raises(ContractViolation, match="does not match"):
        check_response(doc, "DELETE", "/v1/collections/col_x", 200, {"id": "col_x"})
    with pytest.raises(ContractViolation, match="does not match"):
        check_response(doc, "DELETE", "/v1/collections/col_x", 200, {**good, "surprise": 1})
    with pytest.raises(ContractViolation, match="not documented"):
        check_response(doc, "DELETE", "/v1/collections/col_x", 418, good)
    with pytest.raises(ContractViolation, match=r"not in /v1/openapi\.json"):
        check_response(doc, "PUT", "/v1/collections/col_x", 200, good)


def test_collection_schema_lists_every_seed_field_as_required(client):
    schema = client.get("/v1/openapi.json").json["components"]["schemas"]["Collection"]
    from tests.test_collections_api import EXTRA_FIELDS, SEED_FIELDS

    assert set(schema["required"]) == SEED_FIELDS | EXTRA_FIELDS
