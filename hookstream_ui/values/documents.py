"""JSON documents from outside (webhook bodies, API bodies, uploaded lines, API answers),
parsed as JSON is written: bounded in nesting, and without NaN or Infinity.

Past Python's recursion limit json.loads raises RecursionError, which no `except
ValueError` catches (a webhook of 100,000 `[` answered 500); well before it, code that walks
a document (the key paths, the schema, the API's own checks) would. No real payload nests
a hundred levels deep.

Python's json takes NaN, Infinity and numbers too large for a float (1e999 becomes inf);
JSON has none of them. Kept, they made answers that no other JSON parser reads, filters
that PostgreSQL refused (500) and an infinite rate-limit interval. They are refused where a
document comes in: an API body by field (400), a webhook is stored as received but not
applied, an uploaded line is a malformed row, a source's answer fails its run. And every
answer is written as standard JSON (dumps), whatever is stored.
"""

from __future__ import annotations

import json
import logging
import math
import re
from typing import Any, NoReturn

log = logging.getLogger(__name__)
MAX_DEPTH = 100
# Characters no database stores as text: U+0000 (PostgreSQL) and half a surrogate pair (not
# even encodable to send), both of which JSON can carry as \u escapes.
UNSTORABLE = re.compile("[\x00\ud800-\udfff]")


class Refused(ValueError):
    """Text Python's json would take that is refused here; the message says why, as a
    predicate ("is nested…", "holds NaN…") to follow the name of what was refused."""


class TooDeep(Refused):
    def __init__(self) -> None:
        super().__init__(f"is nested more than {MAX_DEPTH} levels deep")


class NotFinite(Refused):
    """A number JSON cannot write: NaN, Infinity, or one too large for a float."""

    def __init__(self, path: str | None = None) -> None:
        self.path = path
        super().__init__("holds NaN or Infinity (or a number too large), which JSON does not allow")


# A float literal that may overflow: an exponent of three digits or more, or 309 digits and
# up before it. Only then are floats parsed one by one and checked.
_HUGE = re.compile(r"[eE][+]?0*[1-9]\d{2}|\d{309}")
_HUGE_BYTES = re.compile(_HUGE.pattern.encode())


class _Refused(float):
    """Stands where a non-finite number was, so that its path can be named."""


def loads(text: str | bytes) -> Any:
    """json.loads, raising ValueError: TooDeep for a document nested deeper than MAX_DEPTH,
    NotFinite (with the path) for NaN, Infinity or a number past a float's range."""
    opens = (
        text.count("[") + text.count("{") if isinstance(text, str) else text.count(b"[") + text.count(b"{")
    )
    huge = (_HUGE.search(text) if isinstance(text, str) else _HUGE_BYTES.search(text)) is not None
    try:
        value = json.loads(text, parse_constant=_refuse, parse_float=_finite_float if huge else None)
    except RecursionError:
        raise TooDeep() from None
    except NotFinite:
        raise NotFinite(_refused_path(text)) from None
    # Fewer brackets than levels allowed (nearly every payload) need no walk.
    if opens > MAX_DEPTH and _deeper_than(value, MAX_DEPTH):
        raise TooDeep()
    return value


def _refuse(constant: str) -> NoReturn:
    raise NotFinite()


def _finite_float(literal: str) -> float:
    number = float(literal)
    if not math.isfinite(number):
        raise NotFinite()
    return number


def _refused_path(text: str | bytes) -> str | None:
    """Where the first non-finite number is, as a field path (data.items[2].price)."""
    try:
        value = json.loads(
            text,
            parse_constant=_Refused,
            parse_float=lambda s: _Refused(s) if not math.isfinite(float(s)) else float(s),
        )
    except (ValueError, RecursionError):
        return None
    stack: list[tuple[Any, str]] = [(value, "")]
    while stack:
        node, path = stack.pop(0)
        if isinstance(node, _Refused):
            return path or "body"
        items = node.items() if isinstance(node, dict) else enumerate(node) if isinstance(node, list) else ()
        stack.extend(
            (child, f"{path}[{key}]" if isinstance(key, int) else f"{path}.{key}" if path else key)
            for key, child in items
        )
    return None


def dumps(value: Any, **kwargs: Any) -> str:
    """json.dumps that writes standard JSON only: a non-finite float stored before it was
    refused (or computed) is written as null, never as NaN or Infinity."""
    try:
        return json.dumps(value, allow_nan=False, **kwargs)
    except ValueError:
        log.warning("a response held NaN or Infinity; written as null")
        return json.dumps(_finite(value), allow_nan=False, **kwargs)


def _finite(value: Any) -> Any:
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {k: _finite(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_finite(v) for v in value]
    return value


def fields_over(text: str, limit: int) -> bool:
    """Whether JSON text holds more than `limit` fields (object members and array items).
    Every member has a colon and every item but the first of an array a comma, so text with
    fewer of both (nearly every record) is not parsed to count."""
    if text.count(":") + text.count(",") <= limit:
        return False
    stack, count = [json.loads(text)], 0
    while stack:
        node = stack.pop()
        children = node.values() if isinstance(node, dict) else node if isinstance(node, list) else ()
        for child in children:
            count += 1
            if count > limit:
                return True
            if isinstance(child, (dict, list)):
                stack.append(child)
    return False


def too_deep(text: str) -> bool:
    """Whether JSON text that is already valid (a database wrote it) nests past MAX_DEPTH;
    parsed only when it has more brackets than that, which nearly no row has."""
    if text.count("[") + text.count("{") <= MAX_DEPTH:
        return False
    try:
        loads(text)
    except TooDeep:
        return True
    except ValueError:
        return False
    return False


def _deeper_than(value: Any, limit: int) -> bool:
    stack = [(value, 1)]  # iterative: the point is not to recurse
    while stack:
        node, depth = stack.pop()
        children = node.values() if isinstance(node, dict) else node if isinstance(node, list) else None
        if children is None:
            continue
        if depth > limit:
            return True
        stack.extend((child, depth + 1) for child in children if isinstance(child, (dict, list)))
    return False
