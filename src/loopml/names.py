"""Checks for every user-given name that becomes part of a path or a key."""

from __future__ import annotations

import re

from loopml.errors import InvalidInputError

MAX_NAME = 128
_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,127}")
_VERSION = re.compile(r"[0-9]{1,18}")
#: device names Windows reserves in every folder, with any extension ("con.txt"), any case
RESERVED = frozenset(
    {"CON", "PRN", "AUX", "NUL", *(f"COM{i}" for i in range(10)), *(f"LPT{i}" for i in range(10))}
)
_SPECIAL = {
    "/": "a path separator '/'",
    "\\": "a path separator '\\'",
    "\n": "a line break",
    "\r": "a line break",
    "%": "'%' (percent-encoding)",
    ":": "':' (a drive letter or a Windows stream)",
    "#": "'#' (a URL fragment)",
    " ": "a space",
}


def _problem(name: object) -> str | None:
    """Why ``name`` is not a safe name, or None when it is."""
    if not isinstance(name, str):
        return f"is {type(name).__name__}, not text"
    if not name:
        return "is empty"
    if len(name) > MAX_NAME:
        return f"is {len(name)} characters long (at most {MAX_NAME})"
    for char in name:
        if char in _SPECIAL:
            return f"contains {_SPECIAL[char]}"
        if not char.isprintable():
            return f"contains the control character {char!r}"
        if not (char.isascii() and (char.isalnum() or char in "_.-")):
            return f"contains {char!r}"
    if not name[0].isalnum():
        return f"starts with {name[0]!r}"
    if ".." in name:
        return "contains '..'"
    if name.endswith("."):
        return "ends with '.' (Windows drops it)"
    stem = name.split(".")[0].upper()
    if stem in RESERVED:
        return f"is {stem}, a reserved device name on Windows"
    if not _NAME.fullmatch(name):  # the rules above say the same; a second, simple check
        return "is not a plain name"
    return None


def check_name(name: object, what: str = "name") -> str:
    """Return ``name`` if it is safe as one path segment and key, else raise InvalidInputError.

    Allowed: ASCII letters, digits, ``_``, ``-`` and ``.``, starting with a letter or digit,
    at most 128 characters; never ``..``, a trailing ``.``, or a Windows device name
    (``CON``, ``NUL``, ``COM1``..., also with an extension such as ``con.txt``). So no
    separators, drive letters, percent-encoding, ``#``, spaces, line breaks or control
    characters. The whole text must match: ``"cancer\\n"`` is not ``"cancer"``. Names that
    differ only in case are the same name to the metadata store (see ``MetadataStore``).
    """
    problem = _problem(name)
    if problem is not None:
        shown = name[:200] if isinstance(name, str) else name
        raise InvalidInputError(
            f"invalid {what} {shown!r}: it {problem}",
            where={what: shown},
            hint=(
                f"A {what} may use ASCII letters, digits, '_', '-' and '.', must start with a "
                "letter or digit, must not contain '..' or end with '.', must not be a Windows "
                f"device name (con, nul, com1...), and is at most {MAX_NAME} characters"
            ),
        )
    return name  # type: ignore[return-value]


def parse_ref(ref: str, what: str = "model") -> tuple[str, str | None]:
    """Split ``NAME[@VERSION|@ALIAS]`` into the name and the part after ``@`` (or None).

    The name is checked; the part after ``@`` is the caller's to check (:func:`is_version`,
    or :func:`check_name` for an alias), so that each can say what it expected.
    """
    if not isinstance(ref, str):
        raise InvalidInputError(
            f"a {what} reference must be text, got {type(ref).__name__}",
            where={what: repr(ref)[:200]},
            hint="Write NAME, NAME@VERSION or NAME@ALIAS",
        )
    name, sep, tag = ref.partition("@")
    check_name(name, what)
    if sep and not tag:
        raise InvalidInputError(
            f"empty version after '@' in {ref!r}",
            where={what: ref},
            hint=f"Write {name}@3 for a version, {name}@champion for an alias, or just {name}",
        )
    return name, (tag or None)


def is_version(tag: str) -> bool:
    """Whether the part after ``@`` names a version: ASCII digits only (``"²"`` does not)."""
    return bool(_VERSION.fullmatch(tag))
