"""Drift between two dataset versions, in process (``loopml data drift REF CUR``).

The same report as :func:`loopml.monitor.drift.compute_drift` on the two versions' shared
numeric, categorical and boolean columns; ``--engine spark`` computes it with Spark doing the
reading and counting (:func:`loopml.engines.spark.drift.dataset_drift`) and gives the same
numbers.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from loopml.data.ingest import get_dataset, read_version
from loopml.errors import InvalidInputError
from loopml.kinds import BOOLEAN, CATEGORICAL, NUMERIC
from loopml.monitor.drift import DriftReport, compute_drift

if TYPE_CHECKING:
    from loopml.stores.records import DatasetVersion
    from loopml.workspace import Workspace


def shared_features(ref: DatasetVersion, cur: DatasetVersion) -> dict[str, str]:
    """Columns both versions hold with the same kind: numeric, or categorical (booleans
    counted as categories); dates, times and text are not tested."""
    kinds = {c["name"]: c.get("kind") for c in cur.schema}
    out: dict[str, str] = {}
    for column in ref.schema:
        kind = column.get("kind")
        if column["name"] not in kinds or kinds[column["name"]] != kind:
            continue
        if kind == NUMERIC:
            out[column["name"]] = NUMERIC
        elif kind in (CATEGORICAL, BOOLEAN):
            out[column["name"]] = CATEGORICAL
    return out


def chosen_features(
    ref: DatasetVersion, cur: DatasetVersion, features: Mapping[str, str] | None
) -> dict[str, str]:
    """``features``, or the shared ones; every one must be a column of both versions."""
    chosen = dict(features) if features is not None else shared_features(ref, cur)
    if not chosen:
        raise InvalidInputError(
            f"{ref.name}@{ref.version} and {cur.name}@{cur.version} share no numeric or "
            "categorical column to compare",
            where={
                "reference": f"{ref.name}@{ref.version}",
                "current": f"{cur.name}@{cur.version}",
            },
            hint="Pass features={column: 'numeric' | 'categorical'} naming shared columns",
        )
    for dv in (ref, cur):
        columns = [c["name"] for c in dv.schema]
        missing = [name for name in chosen if name not in columns]
        if missing:
            raise InvalidInputError(
                f"{dv.name}@{dv.version} has no column {missing[0]!r}",
                where={"dataset": f"{dv.name}@{dv.version}", "column": missing[0]},
                hint=f"Its columns: {', '.join(columns)[:300]}",
            )
    return chosen


def dataset_drift(
    ws: Workspace,
    reference: str | DatasetVersion,
    current: str | DatasetVersion,
    features: Mapping[str, str] | None = None,
    **options: Any,
) -> DriftReport:
    """Drift of ``current`` against ``reference`` (``NAME`` or ``NAME@V`` each), in process.

    ``options`` go to :func:`~loopml.monitor.drift.compute_drift` (``thresholds``,
    ``psi_threshold``, ``alpha``, ``drift_share``, ``bins``, ``min_rows``)."""
    ref = get_dataset(ws, reference) if isinstance(reference, str) else reference
    cur = get_dataset(ws, current) if isinstance(current, str) else current
    chosen = chosen_features(ref, cur, features)
    frames = [read_version(ws, dv).select(list(chosen)).to_pandas() for dv in (ref, cur)]
    return compute_drift(frames[0], frames[1], chosen, **options)
