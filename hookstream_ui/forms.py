"""Form helpers for views: run a service call and turn its ValidationFailed into field errors."""
from __future__ import annotations

from dataclasses import dataclass, field

from flask import request

from .errors import ValidationFailed


@dataclass
class FormState:
    """What a form template needs: the values typed and an error per field."""

    values: dict = field(default_factory=dict)
    errors: dict = field(default_factory=dict)

    @classmethod
    def from_request(cls, *names: str, secret: tuple[str, ...] = ()) -> "FormState":
        # Secrets are never echoed back into a page, even the one that was just typed.
        return cls({n: request.form.get(n, "") for n in names if n not in secret})

    def fail(self, exc: ValidationFailed) -> "FormState":
        self.errors = dict(exc.errors)
        return self
