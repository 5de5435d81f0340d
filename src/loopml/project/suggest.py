"""The closest known name to a misspelled one, for hints ("Did you mean 'cv.roc_auc'?")."""

from __future__ import annotations

import difflib
from collections.abc import Iterable, Mapping
from typing import Any

from loopml.errors import ConfigError


def closest(word: str, choices: Iterable[str], cutoff: float = 0.6) -> str | None:
    """The choice most like ``word`` (:func:`difflib.get_close_matches`), if any is close."""
    found = difflib.get_close_matches(str(word), [str(c) for c in choices], n=1, cutoff=cutoff)
    return found[0] if found else None


def did_you_mean(word: str, choices: Iterable[str]) -> str:
    """``"Did you mean 'x'? "`` for the closest choice, or ``""`` when none is close."""
    match = closest(word, choices)
    return f"Did you mean {match!r}? " if match is not None else ""


def check_known(d: Mapping[str, Any], known: tuple[str, ...], where: str, source: str) -> None:
    """ConfigError for the first key of section ``where`` (``policy.data``...) that is not in
    ``known``, naming the field (and the file, when ``source`` is given) and the closest key."""
    for key in d:
        if key not in known:
            field_name = f"{where}.{key}"
            raise ConfigError(
                f"unknown key {field_name}",
                where={"file": source, "field": field_name} if source else {"field": field_name},
                hint=f"{did_you_mean(str(key), known)}Known keys: {', '.join(known)}",
            )
