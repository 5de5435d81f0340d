"""Promotion: does a version that passed its gate take the alias from the current holder?

The champion is scored on the *same* holdout rows as the new version and the two are
compared with a paired test (:mod:`loopml.evaluate.compare`). Which predictions of the
champion: when the champion was trained on the same dataset version with the same holdout
rows, its own holdout model's predictions of them (kept with its run), because a champion
refit on all the data has seen those rows and re-scoring it would flatter it; otherwise the
registered champion re-scores the rows, which must pass its signature (when they do not, it
says why and nothing is promoted unless ``registry.promote: always``).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd
import pyarrow as pa

from loopml.errors import LoopmlError
from loopml.project.promotion import PromotionSpec
from loopml.registry.bundle import Prediction
from loopml.registry.models import load_model
from loopml.workspace import Workspace

if TYPE_CHECKING:  # imported when a champion is compared (it needs scipy.stats)
    from loopml.evaluate.compare import Comparison

MetricsFn = Callable[[pd.Series, Prediction], dict[str, float]]


@dataclass(frozen=True)
class ChampionCheck:
    """The current holder of the alias, scored on this run's holdout rows."""

    alias: str
    version: int | None = None  # None: no version holds the alias yet
    metrics: dict[str, float] | None = None  # its metrics on the same rows
    comparison: Comparison | None = None
    problem: str | None = None  # why it could not be scored
    source: str = ""  # which predictions of the champion were compared

    @property
    def for_gate(self) -> dict[str, float] | str | None:
        """What :meth:`loopml.project.Gate.check` takes as ``champion``."""
        if self.version is None:
            return None
        return self.problem if self.problem is not None else self.metrics


def save_holdout_predictions(
    ws: Workspace, name: str, run_id: str, index: pd.Index, p: Prediction
) -> dict[str, Any]:
    """Keep the holdout model's predictions of the holdout rows (by row number of the
    dataset version) so that a later run on the same rows compares with them."""
    cols: dict[str, Any] = {"row": pa.array(np.asarray(index, dtype=np.int64))}
    if p.probabilities is None:
        cols["value"] = pa.array(np.asarray(p.labels, dtype=np.float64))
    else:
        cols["label"] = pa.array(np.asarray(p.labels).astype(str), pa.string())
        for j in range(p.probabilities.shape[1]):
            cols[f"proba_{j}"] = pa.array(p.probabilities[:, j])
    path = f"references/{name}/run={run_id}/holdout.parquet"
    ws.lake.write_table(path, pa.table(cols))
    classes = None if p.classes is None else [str(c) for c in p.classes]
    return {"path": path, "rows": len(index), "classes": classes}


def check_champion(
    ws: Workspace,
    *,
    name: str,
    alias: str,
    task: str,
    metric: str,
    dataset: tuple[str, int],
    raw_rows: pd.DataFrame | Callable[[], pd.DataFrame],
    y: pd.Series,
    new: Prediction,
    positive: Any,
    metrics_fn: MetricsFn,
    seed: int,
) -> ChampionCheck:
    """Score the holder of ``alias`` on the holdout rows ``raw_rows`` (labels ``y``; a
    function giving them, called only when the alias has a holder) and compare it with the
    new version's predictions ``new`` of the same rows."""
    aliases = ws.metadata.get_aliases(name)
    if alias not in aliases:
        return ChampionCheck(alias)
    rows = raw_rows() if callable(raw_rows) else raw_rows
    version = aliases[alias]
    ref = f"{name}@{version}"
    try:
        record = ws.metadata.get_model_version(name, version)
        stored = _stored(ws, record.metrics, record.dataset_name, record.dataset_version, dataset)
        if stored is not None and stored.index.equals(pd.Index(rows.index).sort_values()):
            old = _from_stored(stored.loc[rows.index], record.metrics, new)
            source = f"{ref}'s holdout model's predictions of the same rows (kept with its run)"
        else:
            model = load_model(ws, ref)
            old = model.predict(rows, source=f"this run's holdout rows (for {ref})")
            source = f"{ref} re-scored on this run's holdout rows"
    except LoopmlError as exc:
        return ChampionCheck(alias, version, problem=f"{type(exc).__name__}: {exc}"[:400])
    if task == "classification" and {str(c) for c in old.classes or []} != {
        str(c) for c in new.classes or []
    }:
        return ChampionCheck(
            alias,
            version,
            problem=f"{ref} predicts the classes {old.classes}, this run {new.classes}",
        )
    if old.classes is not None and new.classes is not None:
        old = _in_order(old, new.classes)
    from loopml.evaluate.compare import Scored, compare

    comparison = compare(
        task,
        metric,
        y,
        Scored(new.labels, new.probabilities, new.classes),
        Scored(old.labels, old.probabilities, old.classes),
        positive=positive,
        seed=seed,
    )
    return ChampionCheck(alias, version, metrics_fn(y, old), comparison, source=source)


def _stored(
    ws: Workspace,
    metrics: dict[str, Any],
    ds_name: str | None,
    ds_version: int | None,
    dataset: tuple[str, int],
) -> pd.DataFrame | None:
    kept = metrics.get("holdout_predictions")
    if not isinstance(kept, dict) or (ds_name, ds_version) != dataset:
        return None
    frame = ws.lake.read_table(kept["path"]).to_pandas()
    return frame.set_index("row").sort_index()


def _from_stored(rows: pd.DataFrame, metrics: dict[str, Any], new: Prediction) -> Prediction:
    if "value" in rows.columns:
        return Prediction(rows["value"].to_numpy(), None, None)
    stored_classes = metrics["holdout_predictions"]["classes"]
    by_text = {str(c): c for c in new.classes or []}
    classes = [by_text.get(c, c) for c in stored_classes]
    proba = rows[[f"proba_{j}" for j in range(len(classes))]].to_numpy(dtype=np.float64)
    return Prediction(_labels(rows["label"], classes), proba, classes)


def _labels(values: Any, classes: list[Any]) -> np.ndarray:
    """``values`` as labels of ``classes`` (matched by text), in the classes' own dtype."""
    where = {str(c): i for i, c in enumerate(classes)}
    return np.asarray(classes)[[where[str(v)] for v in values]]  # type: ignore[no-any-return]


def _in_order(p: Prediction, classes: list[Any]) -> Prediction:
    """``p`` with its probability columns (and labels) in the order of ``classes``."""
    own = [str(c) for c in p.classes or []]
    order = [own.index(str(c)) for c in classes]
    proba = None if p.probabilities is None else p.probabilities[:, order]
    return Prediction(
        _labels(p.labels, list(classes)), proba, list(classes), positive_index=p.positive_index
    )


def decide(spec: PromotionSpec, check: ChampionCheck, name: str) -> tuple[bool, str]:
    """(promote, reason) under ``registry.promote``."""
    ref = f"{name}@{check.version}"
    if check.version is None:
        return True, f"no version holds {check.alias} yet"
    if spec.promote == "always":
        return True, "registry.promote is always" + (
            f" ({check.problem})" if check.problem else f" ({_versus(check)})"
        )
    if check.problem is not None or check.comparison is None:
        return False, (
            f"{ref} ({check.alias}) could not be scored on this run's holdout rows: "
            f"{check.problem}; set registry.promote: always to promote anyway"
        )
    c = check.comparison
    tol = spec.tolerance
    if not math.isfinite(c.improvement):
        return False, f"{c.metric} is not defined on the holdout rows for both models"
    if spec.promote == "if_not_worse":
        ok = c.improvement >= -tol - 1e-12
        rule = "not worse" + (f" (tolerance {tol:g})" if tol else "")
    else:
        ok = c.improvement > tol and c.ci_low > 0
        rule = "better" + (f" by more than {tol:g}" if tol else "") + ", with the interval above 0"
    verdict = "promoted" if ok else "not promoted"
    return ok, f"{_versus(check)}: {verdict} (registry.promote {spec.promote}: needs {rule})"


def _versus(check: ChampionCheck) -> str:
    c = check.comparison
    if c is None:
        return f"{check.alias} v{check.version}"
    pct = round(c.confidence * 100)
    return (
        f"{c.metric} {c.challenger:.4f} vs {check.alias} v{check.version} {c.champion:.4f}, "
        f"improvement {c.improvement:+.4f} ({pct}% CI {c.ci_low:+.4f} to {c.ci_high:+.4f}, "
        f"{_p(c.p_value)}, {c.test})"
    )


def _p(value: float) -> str:
    return "p < 0.001" if value < 0.001 else f"p = {value:.3g}"


def champion_record(check: ChampionCheck, promoted: bool, reason: str) -> dict[str, Any]:
    """What the run records under ``metrics["champion"]``."""
    out: dict[str, Any] = {
        "alias": check.alias,
        "version": check.version,
        "promoted": promoted,
        "reason": reason,
    }
    if check.comparison is not None:
        out.update(check.comparison.to_dict())
        out["scored_from"] = check.source
        out["champion_metrics"] = check.metrics
    if check.problem is not None:
        out["problem"] = check.problem
    return out
