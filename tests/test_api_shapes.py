"""Each JSON answer is built as the model its endpoint documents, so the document and the
answer cannot name different fields. Checked for every route `endpoint()` registered:

- the handler is annotated to return exactly the models documented for its success
  statuses (mypy's pydantic plugin then checks that it fills those models' fields);
- the document's schema of each model declares exactly the model's fields, forbids any
  other, and requires exactly those an answer always holds;
- an answer holds a field with a default only where its builder set it, which is what
  `required` leaves out;
- a handler that answers a model its endpoint does not document, or a model given a field
  it does not declare or missing one it requires, fails instead of answering.

tests/contract.py checks the answers the other tests happen to get; this checks every
documented answer whether or not a test calls its route.
"""

from __future__ import annotations

import types
import typing
import warnings

import pytest
from flask import Blueprint, Flask
from pydantic import BaseModel, ValidationError
from werkzeug.wrappers import Response

from hookstream_ui.api import schemas
from hookstream_ui.api.openapi import answer_json, documented_routes, endpoint, openapi_document


def _members(annotation: object) -> set[object]:
    if typing.get_origin(annotation) in (typing.Union, types.UnionType):
        return set(typing.get_args(annotation))
    return {annotation}


def _response_models(app: Flask) -> dict[str, type[BaseModel]]:
    """Every model a documented route answers with, nested ones too, by name."""
    found: dict[str, type[BaseModel]] = {}

    def add(model: type[BaseModel]) -> None:
        if model.__name__ in found:
            return
        found[model.__name__] = model
        for field in model.model_fields.values():
            for nested in _nested_models(field.annotation):
                add(nested)

    for _rule, doc in documented_routes(app):
        for model in doc["responses"].values():
            if isinstance(model, type):
                add(model)
    return found


def _nested_models(annotation: object) -> list[type[BaseModel]]:
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return [annotation]
    return [m for arg in typing.get_args(annotation) for m in _nested_models(arg)]


def test_every_handler_returns_the_models_its_endpoint_documents(app):
    wrong = []
    for rule, doc in documented_routes(app):
        handler = app.view_functions[rule.endpoint].__wrapped__
        returned = _members(typing.get_type_hints(handler)["return"])
        ready = {m for m in returned if isinstance(m, type) and issubclass(m, Response)}
        documented = [model for status, model in doc["responses"].items() if status < 400]
        models = {m for m in documented if isinstance(m, type)}
        if models != returned - ready:
            wrong.append(f"{rule.endpoint}: returns {returned}, documents {models}")
        # A success documented without a model (not JSON, or this document) is a ready response.
        if bool(ready) != any(not isinstance(m, type) for m in documented):
            wrong.append(f"{rule.endpoint}: a ready Response must be documented as such")
    assert not wrong, wrong


def test_each_documented_schema_declares_exactly_its_models_fields(app):
    with app.app_context():
        components = openapi_document()["components"]["schemas"]
    models = _response_models(app)
    assert models, "no documented JSON answers found"
    for name, model in models.items():
        schema = components[name]
        fields = {field.serialization_alias or key for key, field in model.model_fields.items()}
        assert set(schema["properties"]) == fields, name
        assert schema.get("additionalProperties") is False, f"{name} lets undeclared fields through"
        always = {
            field.serialization_alias or key
            for key, field in model.model_fields.items()
            if field.is_required()
        }
        assert set(schema.get("required", [])) == always, name


def test_an_answer_holds_exactly_the_fields_its_builder_set(app):
    """What `required` promises: a field without a default is in every answer (the model
    cannot be made without it); one with a default is in the answer only when set."""
    for name, model in _response_models(app).items():
        required = {k for k, f in model.model_fields.items() if f.is_required()}
        with warnings.catch_warnings():  # the values are placeholders; only the keys count here
            warnings.simplefilter("ignore")
            bare = answer_json(model.model_construct(**dict.fromkeys(required)))
            whole = answer_json(model.model_construct(**dict.fromkeys(model.model_fields)))
        assert set(bare) == required, name
        assert set(whole) == set(model.model_fields), name


def test_a_model_refuses_an_undeclared_or_missing_field():
    made = {"id": "col_x", "deleted": True}
    assert answer_json(schemas.Deleted(**made)) == made
    with pytest.raises(ValidationError, match="surprise"):
        schemas.Deleted(**made, surprise=1)
    with pytest.raises(ValidationError, match="deleted"):
        schemas.Deleted.model_validate({"id": "col_x"})


def test_an_undocumented_answer_fails_instead_of_answering():
    bp = Blueprint("shapes", __name__)

    @endpoint(bp, "/made", "POST", summary="s", tag="t", responses={201: schemas.Deleted}, public=True)
    def made() -> schemas.Deleted:
        return schemas.Deleted(id="x", deleted=True)

    @endpoint(bp, "/wrong", "GET", summary="s", tag="t", responses={200: schemas.Deleted}, public=True)
    def wrong() -> BaseModel:
        return schemas.OAuthApp(kind="hookstream")

    app = Flask(__name__)
    app.testing = True  # the handler's error reaches the test instead of a 500 page
    app.register_blueprint(bp)
    client = app.test_client()
    answer = client.post("/made")
    assert (answer.status_code, answer.get_json()) == (201, {"id": "x", "deleted": True})
    with pytest.raises(TypeError, match="OAuthApp, which its endpoint"):
        client.get("/wrong")


def test_one_model_cannot_be_documented_for_two_success_statuses():
    with pytest.raises(TypeError, match="both 200 and 201"):
        endpoint(
            Blueprint("twice", __name__),
            "/x",
            "POST",
            summary="s",
            tag="t",
            responses={200: schemas.Deleted, 201: schemas.Deleted},
        )
