"""``train.weight`` in the project file: a weight per training row, passed to the model's fit.

```yaml
train:
  weight:
    column: w                    # a column of non-negative weights (not a feature) ...
    recency:                     # ... and/or a weight that halves with each half-life of age
      time: when                 # a time column (not a feature): age = newest time - time
      half_life: 30d             # 12h, 30d, 2w; or a number of rows without time:, the
                                 # dataset's rows taken in time order (newest last)
```

Both given: their product. The weights are relative: each fit scales its rows' weights to
average 1, so a model's regularisation and minimum leaf sizes mean what they mean unweighted.
``policy.data.weight`` (:mod:`loopml.project.policy`) takes the same mapping for the closed
loop's retrains. Checked against the data by :mod:`loopml.train.weights`.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from loopml.errors import ConfigError
from loopml.project.suggest import check_known

_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86_400, "w": 604_800}
_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([smhdw])\s*$")
WEIGHT_KEYS = ("column", "recency")
RECENCY_KEYS = ("time", "half_life")


@dataclass(frozen=True)
class RecencySpec:
    """A weight of ``0.5 ** (age / half_life)``: age in seconds of ``time`` before the newest
    row's (``half_life_s``), or, without a time column, in rows before the last
    (``half_life_rows``)."""

    time: str | None = None
    half_life_s: float | None = None
    half_life_rows: int | None = None

    def to_dict(self) -> dict[str, Any]:
        if self.half_life_rows is not None:
            return {"half_life": self.half_life_rows}
        return {"time": self.time, "half_life": f"{self.half_life_s:g}s"}


@dataclass(frozen=True)
class WeightSpec:
    """``train.weight``: a weight column, a recency weight, or both (multiplied)."""

    column: str | None = None
    recency: RecencySpec | None = None
    field: str = "train.weight"  # where it was declared, for the errors about the data

    def columns(self) -> list[str]:
        """The dataset columns it reads (never features unless listed as such)."""
        out = [] if self.column is None else [self.column]
        if self.recency is not None and self.recency.time is not None:
            out.append(self.recency.time)
        return out

    def named(self) -> list[tuple[str, str]]:
        """``(field, column)`` of each column it reads, for the errors about the dataset."""
        out = [] if self.column is None else [(f"{self.field}.column", self.column)]
        if self.recency is not None and self.recency.time is not None:
            out.append((f"{self.field}.recency.time", self.recency.time))
        return out

    def to_dict(self) -> dict[str, Any]:
        return {
            **({"column": self.column} if self.column is not None else {}),
            **({"recency": self.recency.to_dict()} if self.recency is not None else {}),
        }


def parse_weight(data: Any, source: str, field_name: str = "train.weight") -> WeightSpec | None:
    """The weight mapping at ``field_name`` (None when absent or ``none``); ConfigError
    naming the field for anything else than a column name and/or a recency mapping."""
    if data is None or data == "none":
        return None
    where = {"file": source, "field": field_name}
    if not isinstance(data, Mapping) or not data:
        raise ConfigError(
            f"{field_name} must be a mapping, got {data!r}",
            where=where,
            hint="Write weight: {column: w} or weight: {recency: {time: when, half_life: 30d}}",
        )
    check_known(data, WEIGHT_KEYS, field_name, source)
    column = data.get("column")
    if column is not None and (not isinstance(column, str) or not column):
        raise ConfigError(
            f"{field_name}.column must be a column name, got {column!r}",
            where={"file": source, "field": f"{field_name}.column"},
            hint="Name the dataset column that holds each row's weight",
        )
    recency = None
    if data.get("recency") is not None:
        recency = _recency(data["recency"], source, f"{field_name}.recency")
    if column is None and recency is None:
        raise ConfigError(
            f"{field_name} declares neither column nor recency",
            where=where,
            hint="Give column: NAME, recency: {time: NAME, half_life: 30d}, or both",
        )
    return WeightSpec(column, recency, field_name)


def _recency(data: Any, source: str, field_name: str) -> RecencySpec:
    if not isinstance(data, Mapping):
        raise ConfigError(
            f"{field_name} must be a mapping, got {data!r}",
            where={"file": source, "field": field_name},
            hint="Write recency: {time: when, half_life: 30d}, or {half_life: 20000} (rows)",
        )
    check_known(data, RECENCY_KEYS, field_name, source)
    time, half = data.get("time"), data.get("half_life")
    hwhere = {"file": source, "field": f"{field_name}.half_life"}
    if time is not None and (not isinstance(time, str) or not time):
        raise ConfigError(
            f"{field_name}.time must be a column name, got {time!r}",
            where={"file": source, "field": f"{field_name}.time"},
            hint="Name the dataset column with each row's time (a datetime column)",
        )
    if time is None:
        if isinstance(half, bool) or not isinstance(half, int) or half < 1:
            raise ConfigError(
                f"{field_name}.half_life is {half!r} and no time column is given",
                where=hwhere,
                hint="Without time: give the half-life as a number of rows (e.g. 20000), "
                "the rows in time order; or add time: COLUMN and a duration such as 30d",
            )
        return RecencySpec(half_life_rows=half)
    m = _DURATION.match(half) if isinstance(half, str) else None
    if m is None or float(m.group(1)) <= 0:
        raise ConfigError(
            f"{field_name}.half_life is {half!r}",
            where=hwhere,
            hint="Give a duration such as 12h, 30d or 2w (the age at which a row weighs half)",
        )
    return RecencySpec(time=time, half_life_s=float(m.group(1)) * _UNITS[m.group(2)])
