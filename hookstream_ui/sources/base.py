"""What a source type declares, and the registry that holds one instance of each."""
from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass
from typing import ClassVar

from flask import abort

from .fields import Field


class SourceError(Exception):
    """A failure talking to the source, with a message fit to show the user as it is."""


@dataclass
class TestResult:
    ok: bool
    message: str


@dataclass
class Connection:
    """Everything a source type's code gets: decrypted credentials, config, and identity."""

    id: str
    credentials: dict
    config: dict
    ingest_url: str | None = None
    latest_file_id: str | None = None


class SourceType(ABC):
    """Subclass, fill in the declaration, decorate with @register. Nothing else to wire.
    A type without `test` cannot be instantiated, so it cannot register."""

    short_name: ClassVar[str]
    name: ClassVar[str]
    description: ClassVar[str]
    auth_methods: ClassVar[tuple[str, ...]] = ("credentials",)
    labels: ClassVar[tuple[str, ...]] = ()
    supports_continuous: ClassVar[bool] = False
    auth_fields: ClassVar[tuple[Field, ...]] = ()
    config_fields: ClassVar[tuple[Field, ...]] = ()
    # Pull types are read by the sync engine; push types (webhooks) receive events.
    pull: ClassVar[bool] = True

    def check(self, credentials: dict, config: dict) -> dict[str, str]:
        """Rules across fields, after each field is valid on its own: {field: message}."""
        return {}

    @abstractmethod
    def test(self, conn: Connection) -> TestResult:
        """Really reach the source with these credentials; say why not in the user's terms."""

    def list_streams(self, conn: Connection) -> list[dict]:
        """[{name, label}] a collection can pick as its `stream`."""
        return []

    def summary(self) -> dict:
        return {
            "id": f"src_{self.short_name}", "name": self.name, "shortName": self.short_name,
            "description": self.description, "authMethods": list(self.auth_methods),
            "labels": list(self.labels), "supportsContinuous": self.supports_continuous,
        }

    def detail(self) -> dict:
        return {**self.summary(), "authFields": [f.to_json() for f in self.auth_fields],
                "configFields": [f.to_json() for f in self.config_fields]}


REGISTRY: dict[str, SourceType] = {}


def register(cls: type[SourceType]) -> type[SourceType]:
    REGISTRY[cls.short_name] = cls()
    return cls


def source_type(short_name: str) -> SourceType | None:
    return REGISTRY.get(short_name)


def source_type_or_404(short_name: str) -> SourceType:
    found = REGISTRY.get(short_name)
    if found is None:
        abort(404, description=f"No source type {short_name!r}")
    return found
