"""JSON documents from outside (webhook bodies, API bodies, uploaded lines), parsed with a
bound on their nesting.

Past Python's recursion limit json.loads raises RecursionError, which no `except
ValueError` catches (a webhook of 100,000 `[` answered 500); well before it, code that walks
a document (the key paths, the schema, the API's own checks) would. No real payload nests
a hundred levels deep.
"""
from __future__ import annotations

import json
import re

MAX_DEPTH = 100
# Characters no database stores as text: U+0000 (PostgreSQL) and half a surrogate pair (not
# even encodable to send), both of which JSON can carry as \u escapes.
UNSTORABLE = re.compile("[\x00\ud800-\udfff]")


class TooDeep(ValueError):
    def __init__(self) -> None:
        super().__init__(f"is nested more than {MAX_DEPTH} levels deep")


def loads(text: str | bytes):
    """json.loads, raising ValueError (TooDeep) for a document nested deeper than MAX_DEPTH."""
    opens = text.count("[") + text.count("{") if isinstance(text, str) else text.count(b"[") + text.count(b"{")
    try:
        value = json.loads(text)
    except RecursionError:
        raise TooDeep() from None
    # Fewer brackets than levels allowed (nearly every payload) need no walk.
    if opens > MAX_DEPTH and _deeper_than(value, MAX_DEPTH):
        raise TooDeep()
    return value


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


def _deeper_than(value, limit: int) -> bool:
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
