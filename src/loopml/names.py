"""Checks for every user-given name that becomes part of a path or a key."""

from __future__ import annotations

import re

from loopml.errors import InvalidInputError

_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,127}$")


def check_name(name: object, what: str = "name") -> str:
    """Return ``name`` if it is safe as one path segment, else raise InvalidInputError.

    Allowed: letters, digits, ``_``, ``-`` and ``.``, starting with a letter or digit, at most
    128 characters, and never ``..``. No separators, no absolute paths.
    """
    if not isinstance(name, str) or not _NAME.match(name) or ".." in name:
        raise InvalidInputError(
            f"invalid {what} {name!r}",
            where={what: name},
            hint=(
                f"A {what} may use letters, digits, '_', '-' and '.', must start with a letter "
                "or digit, must not contain '/' or '..', and is at most 128 characters"
            ),
        )
    return name


def parse_ref(ref: str, what: str = "model") -> tuple[str, str | None]:
    """Split ``NAME[@VERSION|@ALIAS]`` into the name and the part after ``@`` (or None)."""
    name, sep, tag = ref.partition("@")
    check_name(name, what)
    if sep and not tag:
        raise InvalidInputError(
            f"empty version after '@' in {ref!r}",
            where={what: ref},
            hint=f"Write {name}@3 for a version, {name}@champion for an alias, or just {name}",
        )
    return name, (tag or None)
