"""The source-type catalog. Each module here declares one type and registers itself with
@register; every module in this package is imported, so a new type is one new file."""

import importlib
import pkgutil

from .base import REGISTRY, Connection, SourceError, SourceType, TestResult, source_type, source_type_or_404
from .fields import MASK, Field

for _module in pkgutil.iter_modules(__path__):
    importlib.import_module(f"{__name__}.{_module.name}")

__all__ = [
    "MASK",
    "REGISTRY",
    "Connection",
    "Field",
    "SourceError",
    "SourceType",
    "TestResult",
    "source_type",
    "source_type_or_404",
]
