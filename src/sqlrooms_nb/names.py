"""The names that reach SQL and file names: room ids, branch names and tag names.

One rule for all three: 1-128 characters, each an ASCII letter, digit, ``_``, ``.`` or ``-``,
and not only dots. So a name never holds a quote, a semicolon, a slash or backslash, a NUL or
another control character, whitespace, or a Unicode look-alike of an ASCII letter, and is
never ``.`` or ``..``: it is safe inside a SQL string literal and as one path component.
(The project still passes names to SQL as parameters and never builds paths from them; the
rule is the second line of defence, and it keeps names readable in logs and the CLI.)

Cell result names follow a stricter rule (a SQL identifier), see
:func:`sqlrooms_nb.notebook.validate_cell_name`.

Every check uses :func:`re.fullmatch`: ``$`` in a pattern also matches before a trailing
newline, which let ``"main\\n"`` through before.

This module imports nothing from the package but :mod:`.errors`, so every layer may use it.
"""

from __future__ import annotations

import re
from typing import TypeGuard

from .errors import ValidationError

MAX_NAME_CHARS = 128
"""Longest room id, branch name or tag name, characters."""

_NAME = re.compile(r"[A-Za-z0-9_.-]{1,128}")


def shown(value: object, limit: int = 60) -> str:
    """``repr(value)`` cut to ``limit`` characters (control characters escaped), for error
    messages that must stay short even for a 10,000-character name."""
    text = repr(value)
    if len(text) <= limit:
        return text
    size = f" ({len(value)} characters)" if isinstance(value, str) else ""
    return text[: limit - 1] + "…" + size


def is_valid_name(value: object) -> TypeGuard[str]:
    """Whether ``value`` follows the rule of the module docstring."""
    return isinstance(value, str) and _NAME.fullmatch(value) is not None and value.strip(".") != ""


def validate_name(value: object, what: str) -> str:
    """Return ``value`` if it follows the rule of the module docstring.

    ``what`` names the argument in the message (``"room id"``, ``"branch name"``...). Raises
    :class:`ValidationError` otherwise, saying what is allowed; the message shows at most ~60
    characters of the value.
    """
    if is_valid_name(value):
        return value
    if not isinstance(value, str):
        problem = f"is a {type(value).__name__}, not a string"
    elif not value:
        problem = "is empty"
    elif len(value) > MAX_NAME_CHARS:
        problem = f"is {len(value)} characters long (at most {MAX_NAME_CHARS})"
    elif value.strip(".") == "":
        problem = "is only dots"
    else:
        bad = next(ch for ch in value if _NAME.fullmatch(ch) is None)
        problem = f"holds {bad!r}"
    raise ValidationError(
        f"{what} {shown(value)} is not valid: it {problem}; use 1-{MAX_NAME_CHARS} ASCII "
        "letters, digits, '_', '.' or '-', not only dots (e.g. 'sales-review')"
    )


def validate_room_id(room_id: object, what: str = "room id") -> str:
    """A room id: see :func:`validate_name`. Returns it; raises :class:`ValidationError`."""
    return validate_name(room_id, what)


def validate_branch_name(name: object) -> str:
    """A branch name: see :func:`validate_name`. Returns it; raises :class:`ValidationError`."""
    return validate_name(name, "branch name")


def validate_tag_name(name: object) -> str:
    """A tag name: see :func:`validate_name`. Returns it; raises :class:`ValidationError`."""
    return validate_name(name, "tag name")
