"""Field declarations of source types, and the one validator the API and the forms share."""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field
from urllib.parse import urlsplit

from ..errors import ValidationFailed

FIELD_TYPES = ("string", "number", "password", "boolean", "select", "text", "url")
# What every page and response shows instead of a stored secret (the Syncs API's mask).
MASK = "***********"
TRUE_WORDS = {"true", "on", "1", "yes"}
FALSE_WORDS = {"false", "off", "0", "no", ""}
# RFC 9110's token: what a header name may hold (a space, colon or line break would break or
# split the request).
HEADER_NAME = re.compile(r"[!#$%&'*+\-.^_`|~0-9A-Za-z]{1,100}")
HEADER_NAME_RULE = {"pattern": "^" + HEADER_NAME.pattern + "$", "maxLength": 100}
NOT_A_HEADER_NAME = "must be a header name: letters, digits and - _ . ! # $ % & ' * + ^ ` | ~"


@dataclass(frozen=True)
class Field:
    name: str
    type: str
    label: str
    required: bool = False
    description: str = ""
    default: object = None
    options: tuple = ()
    placeholder: str = ""
    max_length: int = field(default=2000, compare=False)
    # (other field, its values): the form shows this field only while the other has one of
    # them (static/app.js; without script every field shows), and it is kept only then.
    shown_when: tuple = field(default=(), compare=False)
    # A secret's destination: the fields that say where it is sent (host and port, base URL,
    # auth type). A stored secret is kept (sent back as the mask, or left out of a partial
    # change) only while every one of them is as it was: it only ever goes where it was given.
    sent_to: tuple = field(default=(), compare=False)
    # JSON Schema keywords stating what the type's check() enforces beyond the type (a range,
    # a pattern), so the OpenAPI document says it too.
    rules: dict = field(default_factory=dict, compare=False)
    # What the source uses while the field is empty (not stored): shown as the value in use.
    fallback: str | None = field(default=None, compare=False)

    def __post_init__(self) -> None:
        # A declaration's mistake, found when its module is imported.
        if self.type not in FIELD_TYPES:
            raise TypeError(f"{self.name}: no field type {self.type!r}")
        if self.type == "select" and not self.options:
            raise TypeError(f"{self.name}: a select needs options")

    @property
    def secret(self) -> bool:
        return self.type == "password"

    def option_values(self) -> list[str]:
        return [o[0] if isinstance(o, tuple) else o for o in self.options]

    def shown(self, value: object, values: dict | None = None) -> str:
        """A stored value as the form offered it: a select's option by its label; an empty one
        as the value in use (its fallback), unless the field does not apply to `values`."""
        if self.type == "boolean" and value not in (None, ""):
            return "Yes" if value is True or str(value).strip().lower() in TRUE_WORDS else "No"
        labels = {o[0]: o[1] for o in self.options if isinstance(o, tuple)}
        if value not in (None, ""):
            return labels.get(value, value)
        applies = (
            not self.shown_when or values is None or values.get(self.shown_when[0]) in self.shown_when[1]
        )
        return f"{self.fallback} (default)" if self.fallback and applies else "—"

    def json_schema(self) -> dict:
        """The rules validate() holds this field to, as JSON Schema (for the OpenAPI document)."""
        schema: dict = {"description": self.label + (f": {self.description}" if self.description else "")}
        if self.type == "number":
            schema.update(
                type=["number", "string"],
                description=schema["description"] + " (a number, or text holding one)",
            )
        elif self.type == "boolean":
            schema.update(
                type=["boolean", "string"],
                description=schema["description"] + " (true or false; "
                "also " + ", ".join(sorted(TRUE_WORDS | FALSE_WORDS - {""})) + ")",
            )
        else:
            schema.update(type="string", maxLength=self.max_length)
            if self.type == "select":
                schema["enum"] = self.option_values()
            elif self.type == "url":
                schema.update(format="uri", pattern="^https?://")
        schema.update(self.rules)
        if self.default is not None:
            schema["default"] = self.default
        if self.shown_when:
            other, values = self.shown_when
            schema["description"] += f" (only with {other} {' or '.join(values)}; dropped otherwise)"
            schema["x-shown-when"] = {other: list(values)}
        return schema

    def to_json(self) -> dict:
        return {
            "name": self.name,
            "type": self.type,
            "required": self.required,
            "label": self.label,
            "description": self.description or None,
            "default": self.default,
            "options": [
                {"value": o[0], "label": o[1]} if isinstance(o, tuple) else {"value": o, "label": o}
                for o in self.options
            ]
            or None,
            "placeholder": self.placeholder or None,
        }


def object_schema(fields: tuple[Field, ...]) -> dict:
    """A credentials or config object of these fields: no other key, the required ones given
    (a required field with a default may be left out; one shown only for a choice is required
    only then, which the server reports by name)."""
    return {
        "type": "object",
        "additionalProperties": False,
        "properties": {f.name: f.json_schema() for f in fields},
        "required": [f.name for f in fields if f.required and f.default is None and not f.shown_when],
    }


def _blank(value: object) -> bool:
    return value is None or (isinstance(value, str) and value.strip() == "")


def _number(value: object) -> int | float:
    if isinstance(value, bool):
        raise ValueError("must be a number")
    if isinstance(value, float) and not math.isfinite(value):
        raise ValueError("must be a finite number")
    if isinstance(value, int | float):
        return value
    if not isinstance(value, str):
        raise ValueError("must be a number")
    try:
        number = float(value.strip())
    except ValueError:
        raise ValueError("must be a number") from None
    if not math.isfinite(number):
        raise ValueError("must be a finite number")
    return int(number) if number.is_integer() else number


def _boolean(value: object) -> bool:
    if isinstance(value, bool):
        return value
    if isinstance(value, str) and value.strip().lower() in TRUE_WORDS | FALSE_WORDS:
        return value.strip().lower() in TRUE_WORDS
    raise ValueError("must be true or false")


def _text(f: Field, value: object) -> str:
    if not isinstance(value, str):
        raise ValueError("must be a string")
    value = value if f.type in ("password", "text") else value.strip()
    if len(value) > f.max_length:
        raise ValueError(f"must be at most {f.max_length} characters")
    if f.type == "select" and value not in f.option_values():
        raise ValueError("must be one of: " + ", ".join(f.option_values()))
    if f.type == "url":
        parts = urlsplit(value)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError("must be an http:// or https:// URL")
    return value


def _coerce(f: Field, value: object) -> object:
    """The clean value, or raise ValueError with the message shown beside the field."""
    if f.type == "number":
        return _number(value)
    if f.type == "boolean":
        return _boolean(value)
    return _text(f, value)


class FieldsFailed(ValidationFailed):
    """Some fields were refused; `clean` holds what did pass, so that the type's cross-field
    checks can still judge it: every error of a form is reported at once, not one round per
    submit."""

    def __init__(self, errors: dict[str, str], clean: dict, code: str):
        super().__init__(errors, code=code)
        self.clean = clean


@dataclass
class _Cleaning:
    """What validate() has decided so far."""

    clean: dict = field(default_factory=dict)
    errors: dict[str, str] = field(default_factory=dict)
    # Stored secrets sent back as the mask (or left out of a partial change): kept or not
    # once their destination's new values are known.
    kept: list[Field] = field(default_factory=list)


def validate(
    fields: tuple[Field, ...],
    given: object,
    existing: dict | None = None,
    *,
    code: str = "validation_error",
    partial: bool = False,
) -> dict:
    """Clean `given` against `fields`. A key that is no field is an error. A secret sent back
    as the mask (or, with `partial`, left out) keeps its stored value while its destination
    is unchanged; with `partial`, other absent fields keep `existing` too."""
    if not isinstance(given, dict):
        raise ValidationFailed({"body": "must be a JSON object"}, code=code)
    existing = existing or {}
    known = {f.name: f for f in fields}
    state = _Cleaning(
        errors={name: "is not a field of this source type" for name in given if name not in known}
    )
    for f in fields:
        _clean_field(f, given, existing, partial, state)
    state.clean = _applicable(fields, state.clean)
    _keep_secrets(known, existing, state)
    if state.errors:
        raise FieldsFailed(state.errors, _applicable(fields, state.clean), code)
    return _applicable(fields, state.clean)


def _clean_field(f: Field, given: dict, existing: dict, partial: bool, state: _Cleaning) -> None:
    present = f.name in given
    value = given.get(f.name)
    if f.secret and (value == MASK or (partial and not present)):
        if existing.get(f.name):
            state.kept.append(f)
            return
        present, value = False, None
    if not present and partial and f.name in existing:
        state.clean[f.name] = existing[f.name]
        return
    if _blank(value) and not (f.type == "boolean" and present and value == ""):
        if f.default is not None:
            state.clean[f.name] = f.default
        elif f.required:
            state.errors[f.name] = "is required"
        return
    try:
        state.clean[f.name] = _coerce(f, value)
    except ValueError as exc:
        state.errors[f.name] = str(exc)


def _keep_secrets(known: dict[str, Field], existing: dict, state: _Cleaning) -> None:
    """A stored secret is kept only while every field saying where it is sent is unchanged."""
    for f in state.kept:
        if f.shown_when and state.clean.get(f.shown_when[0]) not in f.shown_when[1]:
            continue  # for another choice now: dropped, not sent anywhere
        # (A destination stored before it had a default counts as that default.)
        moved = [
            known[d].label
            for d in f.sent_to
            if d not in state.errors and state.clean.get(d) != existing.get(d, known[d].default)
        ]
        if moved:
            state.errors[f.name] = (
                f"must be entered again: {', '.join(moved)} changed, and a stored secret "
                "is only ever sent where it was given"
            )
        else:
            state.clean[f.name] = existing[f.name]


def _applicable(fields: tuple[Field, ...], values: dict) -> dict:
    """`values` without the fields for another choice (a token typed, then basic auth chosen,
    or a secret left behind when verification is turned off): nothing is stored that does not
    apply, above all no secret the user believes abandoned."""
    when = {f.name: f.shown_when for f in fields}
    return {
        name: value
        for name, value in values.items()
        if not when[name] or values.get(when[name][0]) in when[name][1]
    }


def borrowed(fields: tuple[Field, ...], given: dict, clean: dict) -> list[str]:
    """The secrets in `clean` that were not typed but kept from what is stored."""
    return [f.name for f in fields if f.secret and f.name in clean and given.get(f.name) != clean[f.name]]


def masked(fields: tuple[Field, ...], values: dict) -> dict:
    """`values` as a page or response may show them: every secret replaced by the mask."""
    return {
        f.name: (MASK if f.secret and values.get(f.name) else values.get(f.name))
        for f in fields
        if f.name in values
    }


def secrets_of(fields: tuple[Field, ...], values: dict) -> list[str]:
    return [str(values[f.name]) for f in fields if f.secret and values.get(f.name)]
