"""Errors raised by service functions, rendered by the API as JSON and by views as form errors."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar

from pydantic import BaseModel, ValidationError

M = TypeVar("M", bound=BaseModel)

FIELD_MESSAGES = {
    "missing": "is required",
    "string_type": "must be a string",
    "int_type": "must be an integer",
    "int_parsing": "must be an integer",
    "bool_type": "must be true or false",
    "bool_parsing": "must be true or false",
    "dict_type": "must be an object",
    "list_type": "must be an array",
    "float_type": "must be a number",
    "float_parsing": "must be a number",
}


class ValidationFailed(Exception):
    """Bad input: `errors` maps each offending field to what is wrong with it."""

    def __init__(
        self,
        errors: dict[str, str],
        status: int = 400,
        code: str = "validation_error",
        message: str | None = None,
    ) -> None:
        self.errors = errors
        self.status = status
        self.code = code
        self.message = message or "; ".join(f"{field}: {msg}" for field, msg in errors.items())
        super().__init__(self.message)

    @classmethod
    def from_pydantic(cls, exc: ValidationError) -> ValidationFailed:
        errors: dict[str, str] = {}
        for err in exc.errors(include_url=False):
            field = ".".join(str(p) for p in err["loc"]) or "body"
            if field in errors:
                continue
            if err["type"] in FIELD_MESSAGES:
                msg = FIELD_MESSAGES[err["type"]]
            elif err["type"] == "string_too_long":
                msg = f"must be at most {err['ctx']['max_length']} characters"
            elif err["type"] == "value_error":
                # Our own validators raise ValueError("…"); pydantic prefixes it.
                msg = str(err["ctx"]["error"]) if "ctx" in err else err["msg"]
            else:
                msg = err["msg"][0].lower() + err["msg"][1:]
            errors[field] = msg
        return cls(errors)


def validated(model: type[M], payload: object) -> M:
    """`payload` checked against the pydantic `model`, or ValidationFailed naming each field."""
    if not isinstance(payload, dict):
        raise ValidationFailed({"body": "must be a JSON object"})
    try:
        return model.model_validate(payload)
    except ValidationError as exc:
        raise ValidationFailed.from_pydantic(exc) from None


def documented(**rules: Any) -> Callable[[dict[str, Any]], None]:
    """A field's `json_schema_extra` stating `rules` (maxLength, pattern, enum...) that a
    validator of its own enforces, so the OpenAPI document says what the server refuses.
    On an optional field they go on the non-null branch."""

    def apply(schema: dict[str, Any]) -> None:
        branches = [b for b in schema.get("anyOf", [schema]) if b.get("type") != "null"]
        for branch in branches:
            branch.update(rules)

    return apply
