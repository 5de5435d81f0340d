"""Prequential (test-then-train) metrics of an online learner: cumulative and over a sliding
window of the last ``window`` events.

Each event is predicted before it is learned; :meth:`Prequential.update` takes the label,
the prediction and (classification) the class probabilities, and returns the event's error
(0/1, or the absolute error of a regression) for a drift detector. :meth:`snapshot` gives:

- classification: ``accuracy``, ``log_loss`` (probabilities clipped to
  [eps, 1 - eps], eps of float64, as scikit-learn does) and, for two classes, ``roc_auc``
  (the positive label: ``positive``, else True or 1, else the greater of the two);
- regression: ``mae`` and ``rmse``;

each cumulative and over the last ``window`` events, plus ``events``.
Events predicted without probabilities (a learner that has none, or one that knows no class
yet) count for accuracy only; a probability that is NaN (a model that diverged, or River's
``MinMaxScaler`` before it saw a feature twice) is scored by accuracy and log-loss (NaN) and
left out of the ROC-AUC. The windowed metrics are exact (the tests check them against
scikit-learn on the same events); the cumulative ROC-AUC is computed from scores binned to
1/:data:`AUC_BINS`, so it holds in constant memory (ties within a bin count one half).
"""

from __future__ import annotations

import math
import operator
from collections import deque
from collections.abc import Iterable, Mapping
from itertools import repeat
from typing import Any, ClassVar

import numpy as np
import orjson

from loopml.errors import IntegrityError
from loopml.registry.flavors.river import label_key
from loopml.registry.flavors.river_state import decode, encode

EPS = float(np.finfo(np.float64).eps)
AUC_BINS = 1000


def roc_auc(is_positive: np.ndarray, scores: np.ndarray) -> float | None:
    """ROC-AUC by ranks (Mann-Whitney, ties counted one half); None without both classes."""
    n_pos = int(is_positive.sum())
    n_neg = len(is_positive) - n_pos
    if n_pos == 0 or n_neg == 0:
        return None
    order = np.argsort(scores, kind="mergesort")
    ranked = scores[order]
    ranks = np.empty(len(scores), dtype=np.float64)
    # average ranks of ties: the runs of equal scores in sorted order (what np.unique finds,
    # without sorting them again)
    start = np.flatnonzero(np.concatenate(([True], ranked[1:] != ranked[:-1])))
    counts = np.diff(np.append(start, len(ranked)))
    avg = start + (counts - 1) / 2.0 + 1.0
    ranks[order] = np.repeat(avg, counts)
    return float((ranks[is_positive].sum() - n_pos * (n_pos + 1) / 2.0) / (n_pos * n_neg))


class Prequential:
    """Test-then-train metrics for ``task`` (classification or regression)."""

    def __init__(self, task: str, window: int = 1000, positive: Any = None) -> None:
        if task not in ("classification", "regression"):
            raise ValueError(f"task {task!r} is not classification or regression")
        if window < 1:
            raise ValueError(f"window {window} must be at least 1")
        self.task = task
        self.window = int(window)
        self.positive = positive
        self.n = 0
        self.labels: list[Any] = []
        # the positive label the labels seen give (positive unset): see _positive
        self._label_set: set[Any] = set()
        self._label_pos: Any = None
        self._snapshot: tuple[int, dict[str, Any]] | None = None  # (n, snapshot at n)
        if task == "classification":
            self.correct = 0
            self.n_proba = 0
            self.loss_sum = 0.0
            self.w_correct: deque[bool] = deque(maxlen=self.window)
            # per event with probabilities: (log loss, label, P(each label)) for the window
            self.w_loss: deque[float] = deque(maxlen=self.window)
            self.w_scores: deque[tuple[Any, float | None]] = deque(maxlen=self.window)
            # cumulative ROC-AUC: dense (positive, negative) counts per score bin, by label
            # (a checkpoint keeps them sparse: see state())
            self.bins: dict[Any, tuple[list[int], list[int]]] = {}
        else:
            self.abs_sum = 0.0
            self.sq_sum = 0.0
            self.w_abs: deque[float] = deque(maxlen=self.window)

    def update(self, y_true: Any, y_pred: Any, proba: Mapping[Any, float] | None = None) -> float:
        """Score one prediction; returns its error (0/1, or the absolute error)."""
        self.n += 1
        if self.task == "regression":
            err = abs(float(y_true) - float(y_pred if y_pred is not None else 0.0))
            self.abs_sum += err
            self.sq_sum += err * err
            self.w_abs.append(err)
            return err
        if y_true not in self._label_set:
            self.labels.append(y_true)
            self.labels.sort(key=label_key)
            self._labels_changed()
        right = y_pred is not None and y_pred == y_true
        self.correct += right
        self.w_correct.append(right)
        if proba:
            p = float(proba.get(y_true, 0.0))
            loss = -math.log(min(max(p, EPS), 1.0 - EPS))
            self.n_proba += 1
            self.loss_sum += loss
            self.w_loss.append(loss)
            pos = self._positive(proba)
            score = None if pos is None else float(proba.get(pos, 0.0))
            if score != score:  # a NaN probability (a model that diverged) ranks nowhere
                score = None
            self.w_scores.append((y_true, score))
            if score is not None and pos is not None:
                b = int(score * AUC_BINS)
                b = 0 if b < 0 else (AUC_BINS - 1 if b >= AUC_BINS else b)
                counts = self.bins.get(pos)
                if counts is None:
                    counts = self.bins[pos] = ([0] * AUC_BINS, [0] * AUC_BINS)
                counts[0 if y_true == pos else 1][b] += 1
        return 0.0 if right else 1.0

    def _labels_changed(self) -> None:
        self._label_set = set(self.labels)
        self._label_pos = self._positive_of(self._label_set)

    def _positive(self, proba: Mapping[Any, float]) -> Any:
        if self.positive is not None:
            return self.positive
        label_set = self._label_set
        for k in proba:
            if k not in label_set:
                return self._positive_of(label_set | set(proba))
        # every label of proba is known: the union is the labels seen (computed once)
        return self._label_pos

    @staticmethod
    def _positive_of(labels: set[Any]) -> Any:
        if len(labels) != 2:
            return None
        if all(type(v) in (bool, int) and v in (0, 1) for v in labels):
            return next((v for v in labels if v == 1), None)
        return max(labels, key=label_key)

    def snapshot(self) -> dict[str, Any]:
        """``{"events": n, "cumulative": {name: value}, "window": {name: value}}`` (names
        in the module docstring); a metric not defined yet (no event, one class only) is
        left out."""
        cached = self._snapshot
        if cached is None or cached[0] != self.n:  # (a window's and a checkpoint's)
            cached = self._snapshot = (self.n, self._compute_snapshot())
        snap = cached[1]
        return {**snap, "cumulative": dict(snap["cumulative"]), "window": dict(snap["window"])}

    def _compute_snapshot(self) -> dict[str, Any]:
        cumulative: dict[str, float] = {}
        window: dict[str, float] = {}
        out: dict[str, Any] = {"events": self.n, "cumulative": cumulative, "window": window}
        if self.n == 0:
            return out
        if self.task == "regression":
            w = list(self.w_abs)
            cumulative["mae"] = self.abs_sum / self.n
            cumulative["rmse"] = math.sqrt(self.sq_sum / self.n)
            window["mae"] = math.fsum(w) / len(w)
            window["rmse"] = math.sqrt(math.fsum(e * e for e in w) / len(w))
            return out
        cumulative["accuracy"] = self.correct / self.n
        window["accuracy"] = sum(self.w_correct) / len(self.w_correct)
        if self.n_proba:
            cumulative["log_loss"] = self.loss_sum / self.n_proba
            window["log_loss"] = math.fsum(self.w_loss) / len(self.w_loss)
        window_auc = self._window_auc()
        if window_auc is not None:
            window["roc_auc"] = window_auc
        binned = self._binned_auc()
        if binned is not None:
            cumulative["roc_auc"] = binned
        return out

    def flat(self) -> dict[str, float]:
        """:meth:`snapshot` as one level: ``accuracy``, ``window.accuracy``, ... ``events``."""
        snap = self.snapshot()
        out = {"events": float(snap["events"]), **snap["cumulative"]}
        out.update({f"window.{k}": v for k, v in snap["window"].items()})
        return out

    def _window_auc(self) -> float | None:
        window = self.w_scores
        if not window:
            return None
        labels, scores = zip(*window, strict=True)  # (columns: C loops below)
        if _NONE in set(map(type, scores)):  # scores not ranked (NaN probabilities)
            pairs = [(y, s) for y, s in window if s is not None]
            if not pairs:
                return None
            labels, scores = zip(*pairs, strict=True)
        pos = self._positive(dict.fromkeys(set(labels), 0.0))
        if pos is None:
            return None
        return roc_auc(
            np.fromiter(map(operator.eq, labels, repeat(pos)), dtype=bool, count=len(labels)),
            np.asarray(scores, dtype=np.float64),
        )

    def _binned_auc(self) -> float | None:
        pos = self._positive({})
        counts = self.bins.get(pos) if pos is not None else None
        if not counts:
            return None
        dense = np.asarray(counts, dtype=np.float64)
        n_pos, n_neg = dense[0].sum(), dense[1].sum()
        if n_pos == 0 or n_neg == 0:
            return None
        below = np.concatenate([[0.0], np.cumsum(dense[1])[:-1]])  # negatives in lower bins
        wins = (dense[0] * (below + dense[1] / 2.0)).sum()
        return float(wins / (n_pos * n_neg))

    # -- state --------------------------------------------------------------------------

    #: the attributes a checkpoint keeps, in the order it writes them (classification,
    #: regression); the layout is that of the generic encoding of ``vars()`` it replaced
    STATE_ATTRS: ClassVar[dict[str, tuple[str, ...]]] = {
        "classification": (
            "n",
            "labels",
            "correct",
            "n_proba",
            "loss_sum",
            "w_correct",
            "w_loss",
            "w_scores",
            "bins",
        ),
        "regression": ("n", "labels", "abs_sum", "sq_sum", "w_abs"),
    }

    def state(self, *, framed: bool = False) -> dict[str, Any]:
        """The metrics' state as JSON values (a checkpoint keeps it): the tree
        :func:`~loopml.registry.flavors.river_state.encode` gives for a dict of the
        attributes (the windows as lists, the ROC-AUC bins sparse: ``[bin, count, ...]``),
        with the windows written directly (the generic encoder took ~17 ms for them).

        ``framed``: a window of ``(label, score)`` pairs may be an ``orjson.Fragment``, the
        very bytes orjson writes for its tree (:func:`_framed_pairs`), for a checkpoint,
        which orjson serialises; the tree is then for orjson only."""
        pairs: list[list[Any]] = []
        for key in self.STATE_ATTRS[self.task]:
            value = getattr(self, key)
            node: Any
            if key == "bins":  # counts are ints: only the labels need the encoder
                node = {
                    "$dict": [
                        [encode(pos, "metrics.bins.<key>"), [_sparse(row) for row in rows]]
                        for pos, rows in value.items()
                    ]
                }
            elif isinstance(value, deque):
                node = _framed_pairs(value) if framed else None
                if node is None:
                    node = _plain_window(value)
                if node is None:
                    node = encode(list(value), f"metrics.{key}")
            else:
                node = encode(value, f"metrics.{key}")
            pairs.append([key, node])
        return {
            "task": self.task,
            "window": self.window,
            "positive": encode(self.positive, "metrics.positive"),
            "attrs": {"$dict": pairs},
        }

    @classmethod
    def from_state(cls, doc: Mapping[str, Any]) -> Prequential:
        """The metrics of :meth:`state`; IntegrityError for a damaged document."""
        try:
            out = cls(
                str(doc["task"]),
                int(doc["window"]),
                decode(doc.get("positive"), "metrics.positive"),
            )
            for key, value in decode(doc["attrs"], "metrics").items():
                if key not in cls.STATE_ATTRS[out.task]:
                    raise KeyError(f"unknown attribute {key!r}")
                current = getattr(out, key)
                if isinstance(current, deque):
                    current.extend(tuple(v) if isinstance(v, list) else v for v in value)
                elif key == "bins":
                    out.bins = {pos: _dense(rows) for pos, rows in value.items()}
                else:
                    setattr(out, key, value)
            out._labels_changed()
            return out
        except (KeyError, TypeError, ValueError, AttributeError, IndexError) as exc:
            raise IntegrityError(
                f"prequential metrics' state is damaged: {type(exc).__name__}: {exc}"[:300],
                where={"field": "metrics"},
                hint="Use another checkpoint, or start the learner again",
            ) from exc


def _sparse(dense: list[int]) -> list[int]:
    """``[bin, count, bin, count, ...]`` of the non-empty bins, by bin."""
    counts = np.asarray(dense, dtype=np.int64)
    bins = np.flatnonzero(counts)
    return np.column_stack((bins, counts[bins])).ravel().tolist()  # type: ignore[no-any-return]


def _dense(rows: Any) -> tuple[list[int], list[int]]:
    """The dense (positive, negative) counts of a checkpoint's sparse rows."""
    if not isinstance(rows, list) or len(rows) != 2:
        raise ValueError(f"ROC-AUC bins are {type(rows).__name__}, not two rows")
    out: tuple[list[int], list[int]] = ([0] * AUC_BINS, [0] * AUC_BINS)
    for dense, sparse in zip(out, rows, strict=True):
        if len(sparse) % 2:
            raise ValueError("a row of ROC-AUC bins has an odd length")
        for b, c in zip(sparse[0::2], sparse[1::2], strict=True):
            if not (isinstance(b, int) and isinstance(c, int) and 0 <= b < AUC_BINS and c >= 0):
                raise ValueError(f"ROC-AUC bin {b!r} of count {c!r}")
            dense[b] += c
    return out


_INT64 = (-(2**63), 2**63 - 1)


def _plain(v: Any) -> bool:
    """Whether the encoded tree of ``v`` is ``v`` itself (a JSON scalar)."""
    t = type(v)
    if v is None or t is bool or t is str:
        return True
    if t is float:
        return math.isfinite(v)
    return t is int and _INT64[0] <= v <= _INT64[1]


_FRAME_LABELS = frozenset({bool, int, type(None)})  # JSON scalars without brackets in them


def _framed_pairs(window: deque[Any]) -> orjson.Fragment | None:
    """The JSON bytes of :func:`_plain_window`'s tree of a window of ``(label, score)``
    pairs whose labels are booleans, integers or null: orjson writes the pairs as arrays
    (``[[true,0.5],[false,0.25]]``, C loops) and each becomes ``{"$tuple":[...]}`` by one
    replace of ``],[`` — exact, as no value holds a bracket. None for any other window
    (text labels, a non-finite score, other items): :func:`_plain_window` writes it."""
    if not window or type(window[0]) is not tuple:  # a window of scalars: at once
        return None
    if set(map(type, window)) != {tuple} or set(map(len, window)) != {2}:
        return None
    labels, scores = zip(*window, strict=True)
    label_kinds = set(map(type, labels))
    if not label_kinds <= _FRAME_LABELS or not _plain_all(labels, label_kinds):
        return None
    score_kinds = set(map(type, scores))
    if not score_kinds <= _FLOAT_OR_NONE or not _plain_all(scores, score_kinds):
        return None
    raw = orjson.dumps(list(window))  # [[a,b],[c,d]]
    return orjson.Fragment(b'[{"$tuple":[' + raw[2:-2].replace(b"],[", b']},{"$tuple":[') + b"]}]")


def _plain_window(window: deque[Any]) -> list[Any] | None:
    """The encoded tree of a window's list, built directly: scalars as they are, the
    ``(label, score)`` pairs as ``{"$tuple": [label, score]}``; None when an item needs
    the generic encoder (a non-finite float, a label of another type). A window of one
    kind is checked a column at a time (C loops); a mixed one item by item."""
    kinds = set(map(type, window))
    if kinds == {tuple}:
        if set(map(len, window)) == {2}:
            labels, scores = zip(*window, strict=True)
            if _plain_all(labels) and _plain_all(scores):
                return [{"$tuple": [a, b]} for a, b in window]
            return None
    elif tuple not in kinds:
        return list(window) if _plain_all(window) else None
    out: list[Any] = []
    for v in window:
        if type(v) is tuple:
            if not all(_plain(x) for x in v):
                return None
            out.append({"$tuple": list(v)})
        elif _plain(v):
            out.append(v)
        else:
            return None
    return out


_NONE = type(None)
_PLAIN_KINDS = frozenset({_NONE, bool, str, float, int})
_FLOAT_OR_NONE = frozenset({float, _NONE})


def _plain_all(values: Any, kinds: set[type] | None = None) -> bool:
    """Whether :func:`_plain` holds for each of ``values`` (a sequence; ``kinds``: the set
    of their types, when the caller has it already)."""
    if kinds is None:
        kinds = set(map(type, values))
    if not kinds <= _PLAIN_KINDS:
        return False
    if float in kinds:
        if len(kinds) == 1:
            floats = values
        elif kinds == _FLOAT_OR_NONE:
            floats = list(filter(None, values))  # the floats (less the zeros: finite anyway)
        else:
            floats = [v for v in values if type(v) is float]
        if not _finite(floats):
            return False
    if int in kinds:
        ints = values if len(kinds) == 1 else [v for v in values if type(v) is int]
        if min(ints) < _INT64[0] or max(ints) > _INT64[1]:
            return False
    return True


def _finite(floats: Iterable[float]) -> bool:
    """Whether every one of ``floats`` is finite: their sum is (a NaN or an infinity makes
    any sum NaN or infinite), else each is checked (finite values whose sum overflows)."""
    return math.isfinite(sum(floats)) or all(map(math.isfinite, floats))


__all__ = ["AUC_BINS", "Prequential", "roc_auc"]
