"""A model's input signature, and validation of inputs against it.

The signature is recorded at training time (names, types, categories and ranges seen) and
travels inside the model artifact, so the server and batch scoring check every input against
exactly what the model was trained on.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from loopml.errors import InvalidInputError
from loopml.kinds import CATEGORICAL, NUMERIC

MAX_CATEGORIES_SHOWN = 8


@dataclass(frozen=True)
class FeatureField:
    """One input column of a model."""

    name: str
    kind: str  # "numeric" or "categorical"
    dtype: str  # pandas dtype seen in training
    nullable: bool = False  # missing values were seen in training
    categories: list[str] | None = None  # categorical only, sorted
    min: float | None = None  # numeric only
    max: float | None = None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class Signature:
    """What a model takes and what it answers."""

    inputs: list[FeatureField]
    target: str
    task: str  # "classification" or "regression"
    classes: list[Any] | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def names(self) -> list[str]:
        return [f.name for f in self.inputs]

    def kinds(self) -> dict[str, str]:
        return {f.name: f.kind for f in self.inputs}

    def to_dict(self) -> dict[str, Any]:
        return {
            "inputs": [f.to_dict() for f in self.inputs],
            "target": self.target,
            "task": self.task,
            "classes": self.classes,
            "extra": self.extra,
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Signature:
        return cls(
            inputs=[FeatureField(**f) for f in data["inputs"]],
            target=data["target"],
            task=data["task"],
            classes=data.get("classes"),
            extra=dict(data.get("extra") or {}),
        )

    @classmethod
    def from_frame(
        cls,
        frame: pd.DataFrame,
        kinds: Mapping[str, str],
        *,
        target: str,
        task: str,
        classes: Sequence[Any] | None = None,
    ) -> Signature:
        """Record the signature of the training features ``frame`` (columns in order)."""
        fields = []
        for name, kind in kinds.items():
            col = frame[name]
            nullable = bool(col.isna().any())
            if kind == CATEGORICAL:
                cats = sorted({str(v) for v in col.dropna().unique()})
                fields.append(FeatureField(name, kind, str(col.dtype), nullable, categories=cats))
            else:
                values = pd.to_numeric(col, errors="coerce")
                lo, hi = values.min(), values.max()
                fields.append(
                    FeatureField(
                        name,
                        kind,
                        str(col.dtype),
                        nullable,
                        min=None if pd.isna(lo) else float(lo),
                        max=None if pd.isna(hi) else float(hi),
                    )
                )
        return cls(
            inputs=fields,
            target=target,
            task=task,
            classes=[_plain(c) for c in classes] if classes is not None else None,
        )

    # -- validation -------------------------------------------------------------------------

    def validate_records(self, records: object) -> pd.DataFrame:
        """Check JSON-like records (a list of objects) and return them as a typed frame.

        Missing, extra or mistyped features, nulls where training had none and unseen
        categories raise InvalidInputError naming the row (0-based) and the field.
        """
        if not isinstance(records, list) or not records:
            raise InvalidInputError(
                "'instances' must be a non-empty list of objects",
                where={"field": "instances"},
                hint='Send {"instances": [{"feature": value, ...}]}',
            )
        expected = self.names
        expected_set = set(expected)
        for i, rec in enumerate(records):
            if not isinstance(rec, dict):
                raise InvalidInputError(
                    f"row {i} is {type(rec).__name__}, not an object",
                    where={"row": i},
                    hint="Each instance is an object mapping feature names to values",
                )
            if rec.keys() != expected_set:
                keys = set(rec)
                missing = [n for n in expected if n not in keys]
                extra = sorted(keys - expected_set)
                if missing:
                    raise InvalidInputError(
                        f"row {i} is missing feature {missing[0]!r}"
                        + (f" (and {len(missing) - 1} more)" if len(missing) > 1 else ""),
                        where={"row": i, "field": missing[0]},
                        hint=f"The model expects: {', '.join(expected)}",
                    )
                raise InvalidInputError(
                    f"row {i} has unknown feature {extra[0]!r}",
                    where={"row": i, "field": extra[0]},
                    hint=f"Remove it; the model expects only: {', '.join(expected)}",
                )
        if all(f.kind == NUMERIC for f in self.inputs):
            # one 2-D block, laid out as pandas lays out columns (so the numbers match the
            # batch path bit for bit); building a frame from it is far cheaper
            block = np.empty((len(records), len(self.inputs)), dtype=np.float64, order="F")
            for j, f in enumerate(self.inputs):
                block[:, j] = self._check_column(f, [rec[f.name] for rec in records])
            return pd.DataFrame(block, columns=expected, copy=False)
        columns: dict[str, Any] = {}
        for f in self.inputs:
            values = [rec[f.name] for rec in records]
            columns[f.name] = self._check_column(f, values)
        return pd.DataFrame(columns, columns=expected)

    def _check_column(self, f: FeatureField, values: list[Any]) -> Any:
        if f.kind == NUMERIC:
            out = np.empty(len(values), dtype=np.float64)
            for i, v in enumerate(values):
                t = type(v)
                if t is float or t is int or (t is bool and f.dtype == "bool"):
                    if t is float and math.isnan(v):
                        self._null(f, i)
                        out[i] = np.nan
                        continue
                    out[i] = v
                elif v is None:
                    self._null(f, i)
                    out[i] = np.nan
                elif isinstance(v, int | float | np.integer | np.floating) and t is not bool:
                    out[i] = float(v)
                    if math.isnan(out[i]):
                        self._null(f, i)
                else:
                    raise InvalidInputError(
                        f"feature {f.name!r} must be a number, got {type(v).__name__} {v!r}",
                        where={"row": i, "field": f.name},
                        hint="Send a JSON number for numeric features",
                    )
            return out
        cats = f.categories or []
        allowed = set(cats)
        col: list[Any] = []
        for i, v in enumerate(values):
            if v is None or (isinstance(v, float) and math.isnan(v)):
                self._null(f, i)
                col.append(np.nan)
                continue
            if isinstance(v, bool | int | float | str):
                s = str(v)
                if s not in allowed:
                    shown = ", ".join(repr(c) for c in cats[:MAX_CATEGORIES_SHOWN])
                    more = "" if len(cats) <= MAX_CATEGORIES_SHOWN else f" and {len(cats) - 8} more"
                    raise InvalidInputError(
                        f"feature {f.name!r} has category {s!r}, never seen in training",
                        where={"row": i, "field": f.name},
                        hint=f"Known categories: {shown}{more}",
                    )
                col.append(s)
            else:
                raise InvalidInputError(
                    f"feature {f.name!r} must be a string, got {type(v).__name__}",
                    where={"row": i, "field": f.name},
                    hint="Send categorical features as JSON strings",
                )
        return np.array(col, dtype=object)

    @staticmethod
    def _null(f: FeatureField, row: int) -> None:
        if not f.nullable:
            raise InvalidInputError(
                f"feature {f.name!r} is missing a value (null or NaN)",
                where={"row": row, "field": f.name},
                hint="This feature was never missing in training; send a value",
            )

    def validate_frame(self, frame: pd.DataFrame, *, source: str = "input") -> pd.DataFrame:
        """Check a whole table (batch scoring); extra columns are ignored, vectorised checks."""
        missing = [n for n in self.names if n not in frame.columns]
        if missing:
            raise InvalidInputError(
                f"{source} is missing column {missing[0]!r}"
                + (f" (and {len(missing) - 1} more)" if len(missing) > 1 else ""),
                where={"file": source, "column": missing[0]},
                hint=f"The model expects: {', '.join(self.names)}",
            )
        out: dict[str, Any] = {}
        for f in self.inputs:
            col = frame[f.name]
            if f.kind == NUMERIC:
                if col.dtype == object or isinstance(col.dtype, pd.StringDtype):
                    num = pd.to_numeric(col, errors="coerce")
                    bad = num.isna() & col.notna()
                    if bad.any():
                        row = int(np.flatnonzero(bad.to_numpy())[0])
                        raise InvalidInputError(
                            f"column {f.name!r} must be numeric, got {col.iloc[row]!r}",
                            where={"file": source, "row": row, "column": f.name},
                            hint="Fix the value or the column type",
                        )
                    col = num
                values = col.astype("float64")
                nulls = values.isna().to_numpy()
                if nulls.any() and not f.nullable:
                    row = int(np.flatnonzero(nulls)[0])
                    self._null_frame(f, row, source)
                out[f.name] = values.to_numpy()
            else:
                nulls = col.isna().to_numpy()
                if nulls.any() and not f.nullable:
                    self._null_frame(f, int(np.flatnonzero(nulls)[0]), source)
                raw = col.astype(object).to_numpy(dtype=object)
                strs = pd.Series(
                    [np.nan if n else str(v) for v, n in zip(raw, nulls, strict=True)],
                    index=col.index,
                    dtype=object,
                )
                unseen = ~strs.isin(f.categories or []) & ~nulls
                if unseen.any():
                    row = int(np.flatnonzero(unseen.to_numpy())[0])
                    raise InvalidInputError(
                        f"column {f.name!r} has category {strs.iloc[row]!r}, never seen in "
                        "training",
                        where={"file": source, "row": row, "column": f.name},
                        hint=f"Known categories: {', '.join(map(repr, (f.categories or [])[:8]))}",
                    )
                out[f.name] = strs.to_numpy(dtype=object)
        return pd.DataFrame(out, columns=self.names, index=frame.index)

    @staticmethod
    def _null_frame(f: FeatureField, row: int, source: str) -> None:
        raise InvalidInputError(
            f"column {f.name!r} has a missing value",
            where={"file": source, "row": row, "column": f.name},
            hint="This feature was never missing in training; fill it in",
        )


def _plain(value: Any) -> Any:
    """numpy scalars -> Python scalars, for JSON."""
    if isinstance(value, np.generic):
        return value.item()
    return value
