"""Destination types: where a collection's changes are sent. Each module declares its
config (one pydantic model for loading and answering it), which of its values are secret,
and how it sends one change; it registers itself in REGISTRY."""

from __future__ import annotations

from . import postgres, redis_stream, webhook  # noqa: F401  (register on import)
from .base import REGISTRY, DestinationType, Outcome, destination_type, destination_type_or_400

__all__ = ["REGISTRY", "DestinationType", "Outcome", "destination_type", "destination_type_or_400"]
