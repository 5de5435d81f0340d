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
yet) count for accuracy only. The windowed metrics are exact (the tests check them against
scikit-learn on the same events); the cumulative ROC-AUC is computed from scores binned to
1/:data:`AUC_BINS`, so it holds in constant memory (ties within a bin count one half).
"""

from __future__ import annotations

import math
from collections import deque
from collections.abc import Mapping
from typing import Any

import numpy as np

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
    # average ranks of ties
    _, start, counts = np.unique(ranked, return_index=True, return_counts=True)
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
        if task == "classification":
            self.correct = 0
            self.n_proba = 0
            self.loss_sum = 0.0
            self.w_correct: deque[bool] = deque(maxlen=self.window)
            # per event with probabilities: (log loss, label, P(each label)) for the window
            self.w_loss: deque[float] = deque(maxlen=self.window)
            self.w_scores: deque[tuple[Any, float | None]] = deque(maxlen=self.window)
            # cumulative ROC-AUC: (positive, negative) counts per score bin, by label
            self.bins: dict[Any, list[list[int]]] = {}
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
        if y_true not in self.labels:
            self.labels.append(y_true)
            self.labels.sort(key=label_key)
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
            self.w_scores.append((y_true, score))
            if score is not None and pos is not None:
                b = min(max(int(score * AUC_BINS), 0), AUC_BINS - 1)
                counts = self.bins.setdefault(pos, [[], []])
                self._count(counts[0 if y_true == pos else 1], b)
        return 0.0 if right else 1.0

    @staticmethod
    def _count(counts: list[int], b: int) -> None:
        # sparse [bin, count, bin, count, ...] kept sorted by bin: small in a checkpoint
        for i in range(0, len(counts), 2):
            if counts[i] == b:
                counts[i + 1] += 1
                return
            if counts[i] > b:
                counts[i:i] = [b, 1]
                return
        counts += [b, 1]

    def _positive(self, proba: Mapping[Any, float]) -> Any:
        if self.positive is not None:
            return self.positive
        labels = set(self.labels) | set(proba)
        if len(labels) != 2:
            return None
        if all(type(v) in (bool, int) and v in (0, 1) for v in labels):
            return next((v for v in labels if v == 1), None)
        return max(labels, key=label_key)

    def snapshot(self) -> dict[str, Any]:
        """``{"events": n, "cumulative": {name: value}, "window": {name: value}}`` (names
        in the module docstring); a metric not defined yet (no event, one class only) is
        left out."""
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
        pairs = [(y, s) for y, s in self.w_scores if s is not None]
        if not pairs:
            return None
        labels = {y for y, _ in pairs}
        pos = self._positive(dict.fromkeys(labels, 0.0))
        if pos is None:
            return None
        return roc_auc(
            np.asarray([y == pos for y, _ in pairs], dtype=bool),
            np.asarray([s for _, s in pairs], dtype=np.float64),
        )

    def _binned_auc(self) -> float | None:
        pos = self._positive({})
        counts = self.bins.get(pos) if pos is not None else None
        if not counts:
            return None
        dense = np.zeros((2, AUC_BINS), dtype=np.float64)
        for row, sparse in enumerate(counts):
            dense[row, sparse[0::2]] = sparse[1::2]
        n_pos, n_neg = dense[0].sum(), dense[1].sum()
        if n_pos == 0 or n_neg == 0:
            return None
        below = np.concatenate([[0.0], np.cumsum(dense[1])[:-1]])  # negatives in lower bins
        wins = (dense[0] * (below + dense[1] / 2.0)).sum()
        return float(wins / (n_pos * n_neg))

    # -- state --------------------------------------------------------------------------

    def state(self) -> dict[str, Any]:
        """The metrics' state as JSON values (a checkpoint keeps it)."""
        attrs = {k: v for k, v in vars(self).items() if k not in ("task", "window", "positive")}
        return {
            "task": self.task,
            "window": self.window,
            "positive": encode(self.positive, "metrics.positive"),
            "attrs": encode({k: list(v) if isinstance(v, deque) else v for k, v in attrs.items()}),
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
                current = getattr(out, key)
                if isinstance(current, deque):
                    current.extend(tuple(v) if isinstance(v, list) else v for v in value)
                else:
                    setattr(out, key, value)
            return out
        except (KeyError, TypeError, ValueError, AttributeError) as exc:
            raise IntegrityError(
                f"prequential metrics' state is damaged: {type(exc).__name__}: {exc}"[:300],
                where={"field": "metrics"},
                hint="Use another checkpoint, or start the learner again",
            ) from exc


__all__ = ["AUC_BINS", "Prequential", "roc_auc"]
