"""The parts of the ``evaluation:`` section that say how a project is validated: the split
(``evaluation.split``), the slices reported (``evaluation.slices``) and the bootstrap
resamples of the holdout (``evaluation.bootstrap``). Plain data; ``loopml.evaluate`` acts
on it.

```yaml
evaluation:
  split: {kind: time, column: ts, gap: 1d}   # random | stratified | group | time
  folds: 3
  holdout: 0.2
  slices: [region, {column: age, bins: 4}]
  bootstrap: 200                             # resamples for holdout CIs; 0 turns them off
```
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from loopml.errors import ConfigError
from loopml.project.suggest import did_you_mean

SPLIT_KINDS = ("random", "stratified", "group", "time")
#: Kinds that need ``evaluation.split.column``.
COLUMN_KINDS = ("group", "time")
DEFAULT_BOOTSTRAP = 200
DEFAULT_TOP = 10
DEFAULT_BINS = 4

_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(w|d|h|min|m|s|ms)\s*$")
_UNIT_SECONDS = {"w": 604800.0, "d": 86400.0, "h": 3600.0, "min": 60.0, "m": 60.0, "s": 1.0}
_UNIT_SECONDS["ms"] = 0.001


@dataclass(frozen=True)
class SplitSpec:
    """How rows are split into train/holdout and folds.

    ``gap_rows`` (a whole number in the file) or ``gap_seconds`` (a duration such as ``1d``,
    ``6h``, ``30min``) is dropped from the end of every training part, before its test part;
    only for ``kind: time``.
    """

    kind: str = "random"
    column: str | None = None
    gap_rows: int = 0
    gap_seconds: float = 0.0
    gap_text: str | int | None = None

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"kind": self.kind}
        if self.column is not None:
            out["column"] = self.column
        if self.gap_text is not None:
            out["gap"] = self.gap_text
        return out


@dataclass(frozen=True)
class SliceSpec:
    """A column whose values (categorical: the ``top`` most frequent, the rest as
    ``(other)``) or quantile buckets (numeric, ``bins``) get their own holdout metrics."""

    column: str
    bins: int | None = None
    top: int = DEFAULT_TOP

    def to_dict(self) -> dict[str, Any] | str:
        if self.bins is None and self.top == DEFAULT_TOP:
            return self.column
        out: dict[str, Any] = {"column": self.column}
        if self.bins is not None:
            out["bins"] = self.bins
        if self.top != DEFAULT_TOP:
            out["top"] = self.top
        return out


def parse_split(value: Any, source: str) -> SplitSpec:
    """``evaluation.split``: a kind name or ``{kind, column, gap}``."""
    if value is None:
        return SplitSpec()
    if isinstance(value, str):
        value = {"kind": value}
    if not isinstance(value, Mapping):
        raise ConfigError(
            f"evaluation.split must be a mapping, got {value!r}",
            where={"file": source, "field": "evaluation.split"},
            hint="Write split: {kind: time, column: ts, gap: 1d}",
        )
    known = {"kind", "column", "gap"}
    for key in value:
        if key not in known:
            raise ConfigError(
                f"unknown key evaluation.split.{key}",
                where={"file": source, "field": f"evaluation.split.{key}"},
                hint=f"{did_you_mean(str(key), sorted(known))}Known keys here: "
                f"{', '.join(sorted(known))}",
            )
    kind = str(value.get("kind") or "random")
    if kind not in SPLIT_KINDS:
        raise ConfigError(
            f"evaluation.split.kind {kind!r} is not a split kind",
            where={"file": source, "field": "evaluation.split.kind"},
            hint=f"{did_you_mean(kind, SPLIT_KINDS)}Choose one of: {', '.join(SPLIT_KINDS)}",
        )
    column = value.get("column")
    if column is not None:
        column = str(column)
    if kind in COLUMN_KINDS and not column:
        what = "the group of each row" if kind == "group" else "the time of each row"
        raise ConfigError(
            f"evaluation.split kind {kind!r} needs a column",
            where={"file": source, "field": "evaluation.split.column"},
            hint=f"Add column: NAME, the column holding {what}",
        )
    if kind not in COLUMN_KINDS and column:
        raise ConfigError(
            f"evaluation.split kind {kind!r} takes no column",
            where={"file": source, "field": "evaluation.split.column"},
            hint="Use kind: group or kind: time to split by a column, or remove column",
        )
    gap = value.get("gap")
    gap_rows, gap_seconds = 0, 0.0
    if gap is not None:
        if kind != "time":
            raise ConfigError(
                f"evaluation.split.gap is only for kind: time (kind is {kind!r})",
                where={"file": source, "field": "evaluation.split.gap"},
                hint="Remove gap, or use kind: time",
            )
        if isinstance(gap, bool) or not isinstance(gap, int | str):
            raise ConfigError(
                f"evaluation.split.gap is {gap!r}",
                where={"file": source, "field": "evaluation.split.gap"},
                hint="Give a duration (1d, 6h, 30min) or a number of rows (10)",
            )
        if isinstance(gap, int):
            if gap < 0:
                raise ConfigError(
                    f"evaluation.split.gap is {gap}",
                    where={"file": source, "field": "evaluation.split.gap"},
                    hint="Give a gap of 0 or more rows",
                )
            gap_rows = gap
        else:
            m = _DURATION.match(gap)
            if m is None:
                raise ConfigError(
                    f"evaluation.split.gap {gap!r} is not a duration",
                    where={"file": source, "field": "evaluation.split.gap"},
                    hint="Write a number and a unit (w, d, h, min, s, ms), e.g. 1d or 30min; "
                    "or a whole number of rows",
                )
            gap_seconds = float(m.group(1)) * _UNIT_SECONDS[m.group(2)]
    return SplitSpec(kind, column, gap_rows, gap_seconds, gap)


def parse_slices(value: Any, source: str) -> tuple[SliceSpec, ...]:
    """``evaluation.slices``: a list of column names or ``{column, bins, top}``."""
    if value is None:
        return ()
    if isinstance(value, str | Mapping):
        value = [value]
    if not isinstance(value, list):
        raise ConfigError(
            f"evaluation.slices must be a list, got {value!r}",
            where={"file": source, "field": "evaluation.slices"},
            hint="Write slices: [region, {column: age, bins: 4}]",
        )
    out = []
    for item in value:
        if isinstance(item, str):
            out.append(SliceSpec(item))
            continue
        if not isinstance(item, Mapping) or not item.get("column"):
            raise ConfigError(
                f"evaluation.slices entry {item!r} names no column",
                where={"file": source, "field": "evaluation.slices"},
                hint="Each entry is a column name or {column: NAME, bins: 4}",
            )
        for key in item:
            if key not in ("column", "bins", "top"):
                raise ConfigError(
                    f"unknown key {key!r} in evaluation.slices",
                    where={"file": source, "field": f"evaluation.slices.{key}"},
                    hint="A slice takes column, bins (numeric) and top (categorical)",
                )
        bins, top = item.get("bins"), item.get("top", DEFAULT_TOP)
        for name, v in (("bins", bins), ("top", top)):
            if v is not None and (isinstance(v, bool) or not isinstance(v, int) or v < 1):
                raise ConfigError(
                    f"evaluation.slices {name} is {v!r}",
                    where={"file": source, "field": f"evaluation.slices.{name}"},
                    hint=f"Give {name} as a whole number of 1 or more",
                )
        out.append(SliceSpec(str(item["column"]), bins, int(top)))
    return tuple(out)


def parse_bootstrap(value: Any, source: str) -> int:
    """``evaluation.bootstrap``: resamples of the holdout for confidence intervals."""
    if value is None:
        return DEFAULT_BOOTSTRAP
    if value is False:
        return 0
    if isinstance(value, bool) or not isinstance(value, int) or value < 0 or 0 < value < 20:
        raise ConfigError(
            f"evaluation.bootstrap is {value!r}",
            where={"file": source, "field": "evaluation.bootstrap"},
            hint="Give the number of resamples (20 or more, e.g. 200 or 1000), or 0 for none",
        )
    return value
