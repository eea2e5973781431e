"""The source-type catalog. Each module declares one type and registers itself."""
from . import file, postgresql, rest_api, stripe, webhook  # noqa: F401  (registration)
from .base import REGISTRY, Connection, SourceError, SourceType, TestResult, source_type, source_type_or_404
from .fields import MASK, Field

__all__ = ["MASK", "REGISTRY", "Connection", "Field", "SourceError", "SourceType", "TestResult",
           "source_type", "source_type_or_404"]
