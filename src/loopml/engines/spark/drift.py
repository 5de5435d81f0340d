"""Drift between two dataset versions, with Spark doing the reading and the counting.

The statistics are :func:`loopml.monitor.drift.compute_drift`'s, computed by that function,
so the report is the local one: Spark reduces each feature of each side to its distinct values
and their counts (one ``GROUP BY`` per feature; nulls, NaN and infinities are groups like any
other, so the missing counts come out as locally), and the driver rebuilds the feature's
values from those counts, in the order of first appearance (so ties among categories rank as
they do locally), and hands them to ``compute_drift``. The driver holds one value per row per
feature (8 bytes for a number), never the rows themselves: Spark does the reading, decoding
and counting of the full datasets.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd
import pyarrow as pa

from loopml.data.ingest import get_dataset
from loopml.engines.spark.session import spark_session
from loopml.engines.spark.stats import read_version
from loopml.errors import InvalidInputError
from loopml.monitor.datasets import chosen_features
from loopml.monitor.drift import DriftReport, compute_drift
from loopml.project.data import arrow_type

if TYPE_CHECKING:
    from pyspark.sql import DataFrame

    from loopml.stores.records import DatasetVersion
    from loopml.workspace import Workspace


def dataset_drift(
    ws: Workspace,
    reference: str | DatasetVersion,
    current: str | DatasetVersion,
    features: Mapping[str, str] | None = None,
    *,
    master: str | None = None,
    **options: Any,
) -> DriftReport:
    """Drift of ``current`` against ``reference`` (``NAME`` or ``NAME@V`` each), on Spark.

    ``features`` maps columns to ``"numeric"`` or ``"categorical"``; by default every numeric,
    categorical and boolean column the two versions share (booleans as categories; dates and
    times are not tested). ``options`` go to :func:`~loopml.monitor.drift.compute_drift`
    (``thresholds``, ``psi_threshold``, ``alpha``, ``drift_share``, ``bins``, ``min_rows``).
    """
    ref = get_dataset(ws, reference) if isinstance(reference, str) else reference
    cur = get_dataset(ws, current) if isinstance(current, str) else current
    chosen = chosen_features(ref, cur, features)
    spark = spark_session(ws.settings, master=master)
    frames = []
    for dv in (ref, cur):
        types = {c["name"]: arrow_type(c["type"], c["name"]) for c in dv.schema}
        frames.append(_rebuilt(read_version(spark, ws, dv), chosen, types, dv.num_rows))
    return compute_drift(frames[0], frames[1], chosen, **options)


def _rebuilt(
    frame: DataFrame, features: Mapping[str, str], types: dict[str, pa.DataType], rows: int
) -> pd.DataFrame:
    """Each feature's values, rebuilt from Spark's counts (one GROUP BY per feature)."""
    from pyspark.sql import functions as F

    numbered = frame.withColumn("__row", F.monotonically_increasing_id())
    columns: dict[str, Any] = {}
    for name in features:
        c = numbered[f"`{name}`"]
        found = (
            numbered.groupBy(c.alias("value"))
            .agg(F.count(F.lit(1)).alias("n"), F.min("__row").alias("first"))
            .orderBy("first")
            .toArrow()
        )
        counts = found.column("n").to_numpy()
        if int(counts.sum()) != rows:
            raise InvalidInputError(
                f"column {name!r} counts {int(counts.sum())} rows, the version records {rows}",
                where={"column": name},
                hint="The version's files changed outside loopml; ingest the source again",
            )
        values = found.column("value").combine_chunks()
        index = pa.array(np.repeat(np.arange(len(values)), counts))
        columns[name] = values.take(index).cast(types[name])
    return pa.table(columns).to_pandas()


__all__ = ["dataset_drift"]
