"""The positive class and the decision threshold a version carries, and applying them.

Both live in the signature's ``extra`` (so they travel inside the bundle and are shown with
the version): ``extra["positive"]`` is the label that ``data.positive`` declared (a binary
target with labels 0/1 or False/True has 1/True), and ``extra["threshold"]`` the cut chosen
on validation data (``evaluation.threshold`` in the project file). A binary model with a
threshold predicts the positive label exactly when P(positive) >= threshold; without one it
predicts the most probable class, as before. Every path (the Python API, batch scoring, both
endpoints of the server) goes through :meth:`loopml.registry.ModelBundle.predict_frame`,
which calls :func:`labels_at`, so they all answer the same label.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

POSITIVE = "positive"
THRESHOLD = "threshold"


def _same(a: Any, b: Any) -> bool:
    return bool(a == b) or str(a) == str(b)


def positive_index(classes: Sequence[Any] | None, extra: Mapping[str, Any]) -> int:
    """Column of P(positive) for a binary model: the declared positive label's, else 1."""
    if classes is None or len(classes) != 2:
        return 1
    pos = extra.get(POSITIVE)
    if pos is None:
        return 1
    for i, c in enumerate(classes):
        if _same(c, pos):
            return i
    return 1


def labels_at(proba: np.ndarray, classes: Sequence[Any], extra: Mapping[str, Any]) -> np.ndarray:
    """The predicted label of each row: at the version's threshold for a binary model that
    has one, else the most probable class."""
    names = np.asarray(classes)
    threshold = extra.get(THRESHOLD)
    if threshold is None or proba.shape[1] != 2:
        return names[proba.argmax(axis=1)]  # type: ignore[no-any-return]
    pos = positive_index(classes, extra)
    chosen = np.where(proba[:, pos] >= float(threshold), pos, 1 - pos)
    return names[chosen]  # type: ignore[no-any-return]
