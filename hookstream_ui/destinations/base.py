"""What every destination type declares, and the registry they join."""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass
from typing import Any, ClassVar

from pydantic import BaseModel

from ..sources.fields import MASK as MASK  # one mask for every secret shown, the sources' own

REGISTRY: dict[str, type[DestinationType]] = {}
BODY_LOGGED = 2048  # the most of a request or response body an attempt's log keeps


@dataclass(frozen=True)
class Outcome:
    """One attempt at one change: whether it was delivered, and what was said, for the log
    (secrets already masked, bodies bounded)."""

    ok: bool
    status_code: int | None
    error: str | None
    request: dict
    response: dict | None
    duration_ms: int


class DestinationType(ABC):
    """A kind of destination. `Config` loads and answers its config; `secret_fields` are the
    values kept encrypted and never answered. One instance per destination and process, kept
    for its connections (`close` ends them)."""

    short_name: ClassVar[str]
    title: ClassVar[str]
    Config: ClassVar[type[BaseModel]]
    secret_names: ClassVar[tuple[str, ...]] = ()  # given by the user in `secrets`, kept encrypted
    # True: `send` gets the record as its stored JSON text (`record_json`), to send on as it
    # is, instead of parsed (`record`).
    takes_raw_record: ClassVar[bool] = False

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        if getattr(cls, "short_name", None):
            REGISTRY[cls.short_name] = cls

    def __init__(self, destination_id: str, config: dict, secrets: dict) -> None:
        self.destination_id, self.config, self.secrets = destination_id, config, secrets

    @classmethod
    def new_secrets(cls) -> dict:
        """The secrets a new destination of this kind is made with (a signing secret)."""
        return {}

    @classmethod
    def hide(cls, config: dict) -> tuple[dict, dict]:
        """The config as stored and answered, and the secret values it held (a header that
        carries a token): those go with the encrypted secrets."""
        return config, {}

    @classmethod
    def reveal(cls, config: dict, secrets: dict) -> dict:
        """The config with its secret values back in (to change it, or to send with)."""
        return config

    @classmethod
    def given_secrets(cls, given: dict | None) -> dict:
        """The secrets a user gave (a password), each a string of at most 1,000 characters;
        anything else is refused by name."""
        from ..errors import ValidationFailed

        given = given or {}
        problems = {
            f"secrets.{k}": f"is not a secret of this kind (it takes {', '.join(cls.secret_names) or 'none'})"
            for k in given
            if k not in cls.secret_names
        }
        problems.update(
            {
                f"secrets.{k}": "must be a string of at most 1,000 characters"
                for k, v in given.items()
                if k in cls.secret_names and (not isinstance(v, str) or len(v) > 1000)
            }
        )
        if problems:
            raise ValidationFailed(problems)
        return dict(given)

    @classmethod
    def shown_secrets(cls, secrets: dict) -> dict:
        """What may be said of its secrets: never a value."""
        return {}

    @abstractmethod
    def send(self, change: dict) -> Outcome:
        """Deliver one change (services/changes.as_json, plus its `id`); never raises for the
        receiver's failures: they are an Outcome that is not ok."""

    def close(self) -> None:
        return None


def destination_type(short_name: str) -> type[DestinationType] | None:
    return REGISTRY.get(short_name)


def destination_type_or_400(short_name: Any) -> type[DestinationType]:
    from ..errors import ValidationFailed

    kind = REGISTRY.get(short_name) if isinstance(short_name, str) else None
    if kind is None:
        raise ValidationFailed({"kind": f"must be one of {', '.join(sorted(REGISTRY))}"})
    return kind


def bounded(text: str) -> str:
    return text if len(text) <= BODY_LOGGED else text[:BODY_LOGGED] + f"… ({len(text):,} characters in all)"
