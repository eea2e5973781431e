"""Names people read (orgs, projects, collections, sources, syncs, API keys): one rule for
the API and the dashboard. A name made only of spaces, zero-width or other invisible
characters shows as a blank in every list and cannot be told apart or typed back."""

from __future__ import annotations

import unicodedata

from ..errors import ValidationFailed

# General categories that draw nothing: controls, format characters (zero-width space and
# joiners, direction marks, the BOM), separators, marks with no base, private use, unassigned.
INVISIBLE_CATEGORIES = {"Cc", "Cf", "Cs", "Co", "Cn", "Zs", "Zl", "Zp", "Mn", "Me"}
# Letters in Unicode's tables that render as blanks.
BLANK_LETTERS = {"\u115f", "\u1160", "\u3164", "\uffa0", "\u2800", "\u180e"}


# Trimmed from the ends: what pads a name. A combining mark stays: it belongs to the letter
# before it (a decomposed "é").
EDGE_CATEGORIES = {"Cc", "Cf", "Zs", "Zl", "Zp"}


ORG_NAME_MAX = 120


def _invisible(char: str) -> bool:
    return char in BLANK_LETTERS or unicodedata.category(char) in INVISIBLE_CATEGORIES


def _padding(char: str) -> bool:
    return char in BLANK_LETTERS or unicodedata.category(char) in EDGE_CATEGORIES


def name_problem(value: object, low: int = 1, high: int = 100) -> str | None:
    """What is wrong with `value` as a name (trimmed at both ends, invisible characters
    included), or None."""
    if value is None:
        return "is required"
    if not isinstance(value, str):
        return "must be a string"
    if low >= 1 and not value.strip():
        return "is required"  # spaces alone are nothing typed, whichever form it is
    if any(unicodedata.category(c) == "Cc" for c in value.strip()):
        return "must not contain control characters (line breaks, tabs)"
    trimmed = _trim(value)
    if value.strip() and not any(not _invisible(c) for c in trimmed):
        return "must contain a visible character, not only spaces or invisible ones"
    if not low <= len(trimmed) <= high:
        return f"must be {low} to {high} characters"
    return None


def _trim(value: str) -> str:
    start, end = 0, len(value)
    while start < end and _padding(value[start]):
        start += 1
    while end > start and _padding(value[end - 1]):
        end -= 1
    return value[start:end]


def clean_name(value: object, field: str = "name", low: int = 1, high: int = 100) -> str:
    """`value` trimmed, or ValidationFailed naming `field`."""
    problem = name_problem(value, low, high)
    if problem or not isinstance(value, str):
        raise ValidationFailed({field: problem or "must be a string"})
    return _trim(value)


def pydantic_name(value: object, low: int = 1, high: int = 100) -> str | None:
    """For a pydantic field validator: the trimmed name (None passes), or ValueError."""
    if value is None:
        return None
    problem = name_problem(value, low, high)
    if problem or not isinstance(value, str):
        raise ValueError(problem or "must be a string")
    return _trim(value)
