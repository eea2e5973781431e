"""JSONPath parsing shared by collections, the upsert engine and forms (jsonpath-ng)."""

from __future__ import annotations

from collections.abc import Callable
from functools import lru_cache
from typing import Any

from jsonpath_ng import parse as _parse
from jsonpath_ng.exceptions import JsonPathLexerError, JsonPathParserError


def normalise(path: str) -> str:
    """Dot paths such as `data.id` become `$.data.id`; `$…` paths are kept as written."""
    path = (path or "").strip()
    if not path:
        raise ValueError("must not be empty")
    if not path.startswith("$"):
        path = "$." + path.lstrip(".")
    compile_path(path)
    return path


@lru_cache(maxsize=1024)
def compile_path(path: str) -> Any:  # a jsonpath-ng expression (the library ships no types)
    try:
        return _parse(path)
    except (
        JsonPathLexerError,
        JsonPathParserError,
        Exception,
    ) as exc:  # jsonpath-ng raises bare Exception too
        raise ValueError(f"is not a valid JSONPath ({path!r})") from exc


def first_value(path: str, document: Any) -> Any:
    """The first match of `path` in `document`, or None."""
    matches = compile_path(path).find(document)
    return matches[0].value if matches else None


_MISSING = object()


@lru_cache(maxsize=1024)
def getter(path: str) -> Callable[[Any], Any]:
    """A function document -> first value at `path` (None when absent).

    Plain chains like `$.data.object.id` become dict lookups, which is what every hot path
    (ingest, backfill) uses; anything else falls back to jsonpath-ng.
    """
    from jsonpath_ng.jsonpath import Child, Fields, Root

    node, keys = compile_path(path), list[str]()
    while isinstance(node, Child) and isinstance(node.right, Fields) and len(node.right.fields) == 1:
        keys.append(node.right.fields[0])
        node = node.left
    if isinstance(node, Root):
        keys.reverse()

        def lookup(document: Any) -> Any:
            value = document
            for key in keys:
                if not isinstance(value, dict):
                    return None
                value = value.get(key, _MISSING)
                if value is _MISSING:
                    return None
            return value

        return lookup
    if isinstance(node, Fields) and not keys and len(node.fields) == 1:
        field = node.fields[0]
        return lambda document: document.get(field) if isinstance(document, dict) else None
    return lambda document: first_value(path, document)
