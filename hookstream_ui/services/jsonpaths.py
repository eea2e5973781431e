"""JSONPath parsing shared by collections, the upsert engine and forms (jsonpath-ng)."""
from __future__ import annotations

from functools import lru_cache

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
def compile_path(path: str):
    try:
        return _parse(path)
    except (JsonPathLexerError, JsonPathParserError, Exception) as exc:  # jsonpath-ng raises bare Exception too
        raise ValueError(f"is not a valid JSONPath ({path!r})") from exc


def first_value(path: str, document):
    """The first match of `path` in `document`, or None."""
    matches = compile_path(path).find(document)
    return matches[0].value if matches else None
