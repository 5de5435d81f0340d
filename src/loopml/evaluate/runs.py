"""Runs side by side: their parameters and metrics flattened to ``a.b.c`` keys, compared."""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from loopml.stores.records import Run

#: metric keys that name files or bulky data, not scores (they differ between any two runs)
SKIPPED_METRICS = (
    *("reference_scores", "holdout_predictions", "report", "curves", "slices"),
    "feature_selection",  # shown as its own table
)
#: nested keys left out wherever they are (another model's scores, kept for the record)
SKIPPED_NESTED = frozenset({"champion_metrics"})
#: a list longer than this is shown by its length, not its items
LIST_SHOWN = 8


def flatten(data: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    """``{"a": {"b": 1}}`` as ``{"a.b": 1}``; short lists as JSON text, long ones counted."""
    flat: dict[str, Any] = {}
    for key, value in data.items():
        if key in SKIPPED_NESTED:
            continue
        name = f"{prefix}{key}"
        if isinstance(value, Mapping):
            flat.update(flatten(value, f"{name}."))
        elif isinstance(value, list | tuple):
            flat[name] = (
                json.dumps(value, default=str)
                if len(value) <= LIST_SHOWN
                else f"[{len(value)} items]"
            )
        else:
            flat[name] = value
    return flat


def run_params(run: Run) -> dict[str, Any]:
    """The run's parameters, flattened (estimator parameters and project settings)."""
    return flatten(run.params)


def run_metrics(run: Run) -> dict[str, Any]:
    """The run's scores, flattened, without file paths and bulky parts."""
    kept = {k: v for k, v in run.metrics.items() if k not in SKIPPED_METRICS}
    return flatten(kept)


@dataclass(frozen=True)
class RunComparison:
    """Runs side by side: one row per parameter or metric, one value per run."""

    runs: list[Run]
    params: list[tuple[str, list[Any]]]
    metrics: list[tuple[str, list[Any]]]

    @staticmethod
    def differs(values: Sequence[Any]) -> bool:
        return len({json.dumps(v, sort_keys=True, default=str) for v in values}) > 1

    def to_dict(self) -> dict[str, Any]:
        def rows(items: list[tuple[str, list[Any]]]) -> list[dict[str, Any]]:
            return [{"key": k, "values": v, "differs": self.differs(v)} for k, v in items]

        return {
            "runs": [
                {
                    "id": r.id,
                    "name": r.name,
                    "status": r.status,
                    "dataset": f"{r.dataset_name}@{r.dataset_version}",
                    "model_version": r.model_version,
                }
                for r in self.runs
            ],
            "params": rows(self.params),
            "metrics": rows(self.metrics),
        }


def compare_runs(runs: Sequence[Run]) -> RunComparison:
    """Every parameter and metric any of ``runs`` has, with each run's value (None: absent)."""
    per_run_params = [run_params(r) for r in runs]
    per_run_metrics = [run_metrics(r) for r in runs]

    def side_by_side(dicts: list[dict[str, Any]]) -> list[tuple[str, list[Any]]]:
        keys = sorted({k for d in dicts for k in d})
        return [(k, [d.get(k) for d in dicts]) for k in keys]

    return RunComparison(list(runs), side_by_side(per_run_params), side_by_side(per_run_metrics))
