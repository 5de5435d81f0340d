"""Drift of a tensor input (a CNN's image), by summary statistics rather than per pixel.

A model whose signature records a tensor input (:class:`~loopml.registry.signature.
TensorSpec`: its values, row-major, are the signature's inputs in order) is also checked as
a whole image, embedding-free, on three summaries of each window against the training
reference:

* **per-image mean intensity** and **per-image standard deviation**: one value per image,
  each tested as a numeric feature (:func:`~loopml.monitor.drift.compute_drift`: PSI, KS and
  the normalised Wasserstein, with the same thresholds);
* the **intensity histogram**: every pixel value of the window in :data:`BINS` fixed,
  equal-width bins over the reference's range (values beyond it fall into the end bins and are
  counted as out of range), compared by PSI and the Jensen–Shannon distance. Pixels of one
  image are not independent, so the chi-square test of the two histograms counts images, not
  pixels: each histogram is divided by the pixels per image before the test.

The tensor drifts when either per-image summary drifts, or when the histogram's PSI or JS
distance reaches its threshold with the image-count chi-square p-value below ``alpha / 3``
(Bonferroni over the three summaries). A brightness shift moves the mean, added noise moves
the standard deviation and the histogram; an unchanged stream of images moves none of them.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from loopml.kinds import NUMERIC
from loopml.monitor.stats import chi2_from_counts, js_distance_from_counts, psi_from_counts
from loopml.monitor.thresholds import DriftThresholds

BINS = 16
SUMMARIES = ("mean", "std")


@dataclass(frozen=True)
class TensorInput:
    """A tensor input as the drift check reads it: its name, shape and columns in order."""

    name: str
    shape: tuple[int, ...]
    columns: tuple[str, ...]


@dataclass(frozen=True)
class TensorDrift:
    """Drift of one tensor input: its summaries, their tests and the verdict."""

    name: str
    shape: list[int]
    n_reference: int
    n_current: int
    mean: dict[str, float]  # reference / current average of the per-image mean
    std: dict[str, float]  # reference / current average of the per-image std
    summaries: list[dict[str, Any]]  # the per-image summaries' FeatureDrift dicts
    histogram: dict[str, Any]  # edges, reference/current shares, psi, js_distance, p_value
    drifted: bool
    reasons: list[str] = field(default_factory=list)
    note: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @property
    def line(self) -> str:
        """One line for ``loopml monitor``: ``image [1, 8, 8]: drift (mean 4.9 -> 9.1, ...)``."""
        said = "drift" if self.drifted else "no drift"
        if self.note:
            said = f"not decided ({self.note})"
        h = self.histogram
        parts = [
            f"mean {self.mean['reference']:.3g} -> {self.mean['current']:.3g}",
            f"std {self.std['reference']:.3g} -> {self.std['current']:.3g}",
            f"histogram PSI {_fmt(h.get('psi'))}, JS distance {_fmt(h.get('js_distance'))}",
        ]
        why = f"; {'; '.join(self.reasons)}" if self.reasons else ""
        return f"tensor {self.name} {self.shape}: {said} ({', '.join(parts)}){why}"


def tensor_inputs(signature: Any) -> list[TensorInput]:
    """The tensor inputs ``signature`` records (at most one today), with their columns."""
    from loopml.registry.signature import tensor_of

    spec = tensor_of(signature)
    if spec is None:
        return []
    size = math.prod(spec.shape)
    names = tuple(signature.names)
    if len(names) != size:
        return []  # a signature whose inputs are not the tensor's values
    return [TensorInput(spec.name, tuple(spec.shape), names)]


def tensor_drift(
    reference: pd.DataFrame,
    current: pd.DataFrame,
    tensor: TensorInput,
    *,
    thresholds: DriftThresholds | None = None,
    bins: int = BINS,
) -> TensorDrift:
    """Compare the images of ``current`` with those of ``reference`` (see the module)."""
    from loopml.monitor.drift import compute_drift

    limits = thresholds if thresholds is not None else DriftThresholds()
    ref = _pixels(reference, tensor)
    cur = _pixels(current, tensor)
    ref_sum = _summaries(ref)
    cur_sum = _summaries(cur)
    alpha_adj = limits.alpha / (len(SUMMARIES) + 1)  # Bonferroni over the three summaries
    kinds = dict.fromkeys(ref_sum.columns, NUMERIC)
    # compute_drift divides its alpha by the two summaries: each is tested at alpha / 3
    report = compute_drift(
        ref_sum, cur_sum, kinds, thresholds=limits, alpha=alpha_adj * len(SUMMARIES)
    )
    hist = _histogram(ref, cur, bins, alpha_adj, limits)
    reasons = [f"per-image {f.feature}: {'; '.join(f.reasons)}" for f in report.features
               if f.drifted]  # fmt: skip
    reasons += hist.pop("reasons")
    note = report.insufficient
    if note is not None:
        reasons = []
    return TensorDrift(
        name=tensor.name,
        shape=list(tensor.shape),
        n_reference=len(ref),
        n_current=len(cur),
        mean=_pair(ref_sum["mean"], cur_sum["mean"]),
        std=_pair(ref_sum["std"], cur_sum["std"]),
        summaries=[f.to_dict() for f in report.features],
        histogram=hist,
        drifted=bool(reasons),
        reasons=reasons,
        note=note,
    )


def _pixels(frame: pd.DataFrame, tensor: TensorInput) -> np.ndarray:
    """One row of float pixel values per image (rows with a missing pixel left out)."""
    values = frame.loc[:, list(tensor.columns)].to_numpy(dtype=np.float64, na_value=np.nan)
    return values[np.isfinite(values).all(axis=1)]


def _summaries(pixels: np.ndarray) -> pd.DataFrame:
    if len(pixels) == 0:
        return pd.DataFrame({"mean": np.array([], dtype=np.float64), "std": np.array([])})
    return pd.DataFrame({"mean": pixels.mean(axis=1), "std": pixels.std(axis=1)})


def _histogram(
    ref: np.ndarray, cur: np.ndarray, bins: int, alpha_adj: float, limits: DriftThresholds
) -> dict[str, Any]:
    """The fixed-bin intensity histograms and their comparison."""
    lo, hi = (float(ref.min()), float(ref.max())) if ref.size else (0.0, 1.0)
    if hi <= lo:
        hi = lo + 1.0
    edges = np.linspace(lo, hi, bins + 1)
    ref_counts = _counts(ref, edges)
    cur_counts = _counts(cur, edges)
    outside = float(((cur < lo) | (cur > hi)).mean()) if cur.size else None
    out: dict[str, Any] = {
        "edges": edges.tolist(),
        "reference": (ref_counts / max(ref_counts.sum(), 1)).tolist(),
        "current": (cur_counts / max(cur_counts.sum(), 1)).tolist(),
        "out_of_range": outside,
        "psi": None,
        "js_distance": None,
        "p_value": None,
        "reasons": [],
    }
    if not cur.size or not ref.size:
        return out
    psi = float(psi_from_counts(ref_counts, cur_counts))
    js = float(js_distance_from_counts(ref_counts, cur_counts))
    # pixels of one image move together: the test counts images (counts / pixels per image)
    per_image = ref.shape[1]
    _, p = chi2_from_counts(ref_counts / per_image, cur_counts / per_image)
    out.update(psi=psi, js_distance=js, p_value=float(p))
    hits = [
        f"{n} {v:.3g} >= {t:g}"
        for n, v, t in (("histogram PSI", psi, limits.psi), ("JS distance", js, limits.js))
        if v >= t
    ]
    if hits and p < alpha_adj:
        out["reasons"] = [f"{', '.join(hits)} (image-count p-value {p:.2g} < {alpha_adj:.2g})"]
    return out


def _counts(values: np.ndarray, edges: np.ndarray) -> np.ndarray:
    """Counts per bin; values beyond the edges go to the end bins."""
    flat = np.clip(values.ravel(), edges[0], edges[-1])
    idx = np.clip(np.searchsorted(edges, flat, side="right") - 1, 0, len(edges) - 2)
    return np.bincount(idx, minlength=len(edges) - 1).astype(np.float64)


def _pair(ref: pd.Series, cur: pd.Series) -> dict[str, float]:
    return {
        "reference": float(ref.mean()) if len(ref) else math.nan,
        "current": float(cur.mean()) if len(cur) else math.nan,
    }


def _fmt(value: float | None) -> str:
    return "-" if value is None else f"{value:.3g}"


def summary_lines(tensors: Sequence[TensorDrift]) -> list[str]:
    """The lines ``loopml monitor`` prints for a report's tensors."""
    return [t.line for t in tensors]
