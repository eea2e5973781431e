"""Form helpers for views: run a service call and turn its ValidationFailed into field errors."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, TypeVar

from flask import request

from .errors import ValidationFailed

T = TypeVar("T")


@dataclass
class FormState:
    """What a form template needs: the values typed and an error per field. Values are text
    as typed, or a source field's stored value or default (a number, a boolean) as declared."""

    values: dict[str, Any] = field(default_factory=dict)
    errors: dict[str, str] = field(default_factory=dict)

    @classmethod
    def from_request(cls, *names: str, secret: tuple[str, ...] = ()) -> FormState:
        # Secrets are never echoed back into a page, even the one that was just typed.
        return cls({n: request.form.get(n, "") for n in names if n not in secret})

    def fail(self, exc: ValidationFailed) -> FormState:
        self.errors = dict(exc.errors)
        return self


class RowForms:
    """The small forms in a table's rows (rename this org, suspend that one): the one that
    was sent and refused shows what was typed and its errors; every other row its stored
    values."""

    def __init__(self, action: str | None = None, row_id: str | None = None, state: FormState | None = None):
        self.action, self.row_id, self.state = action, row_id, state or FormState()

    @classmethod
    def failed(cls, action: str, row_id: str, exc: ValidationFailed, *names: str) -> RowForms:
        return cls(action, row_id, FormState.from_request(*names).fail(exc))

    def of(self, action: str, row_id: str) -> FormState:
        return self.state if (action, row_id) == (self.action, self.row_id) else FormState()


def sentence(exc: ValidationFailed, labels: dict[str, str] | None = None) -> str:
    """The errors as a person reads them, each field by its label ("Name must be 1 to 120
    characters."), never by its internal name. An error about something no one typed (the
    last owner cannot leave) is said as it is."""
    if exc.message != "; ".join(f"{field}: {msg}" for field, msg in exc.errors.items()):
        return exc.message  # written for people already
    parts = []
    for name, message in exc.errors.items():
        label = (labels or {}).get(name)
        if label is None and message.startswith(("must ", "is ", "does ")):
            label = name.rsplit(".", 1)[-1].replace("_", " ").capitalize()
        text = f"{label} {message}" if label else message[:1].upper() + message[1:]
        parts.append(text if text.endswith((".", "?", "!")) else text + ".")
    return " ".join(parts) or exc.message


def filtered(search: Callable[..., T], *names: str) -> tuple[T | None, FormState, int]:
    """A filter form (GET): `search(**values)` with the query string's values, and the form.
    A value it refuses is shown beside its field, as typed, and nothing is listed: (None,
    form, 400), not a bare error page."""
    form = FormState({n: request.args.get(n, "") for n in names})
    try:
        return search(**{n: request.args.get(n) for n in names}), form, 200
    except ValidationFailed as exc:
        return None, form.fail(exc), exc.status
