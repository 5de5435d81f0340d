"""One reading of input values, shared by training and every validation path.

A value reaches a model from a JSON request (V1 records, V2 tensors), a CSV, Parquet or JSON
Lines file, a pandas frame, or the training dataset. Each kind of feature reads its values in
exactly one way, here, so the same value means the same thing on every path:

``numeric``      numbers (Python, NumPy or ``Decimal``); booleans only where training had
                 nothing but 0/1 (``allow_bool``), as 1.0/0.0; text is refused.
``categorical``  one canonical text per value: integers and integral floats as ``"1"``
                 (so ``1``, ``1.0`` and, for a column of numbers, ``"1.0"`` are one category),
                 other floats by their shortest repr (``"1.5"``), booleans as ``"true"`` and
                 ``"false"``, strings as they are.
``datetime``     instants: ISO-8601 text, ``datetime``/``date`` objects, pandas and NumPy
                 timestamps; time-zone aware values are converted to UTC and naive ones taken
                 as UTC, so ``2018-03-01``, ``2018-03-01 00:00:00`` and
                 ``2018-03-01T00:00:00Z`` are the same instant. Numbers are refused.

The functions take a list (JSON records) or a pandas Series (a column of a table); typed
Series are converted in one vectorised step, everything else value by value. A value that
cannot be read raises :class:`ValueProblem` with its 0-based row; the caller (training or a
signature) turns it into a user error naming the file or request, the row and the field.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable, Sequence
from datetime import date, datetime
from decimal import Decimal
from typing import Any

import numpy as np
import pandas as pd

TIMESTAMP_UNIT = "datetime64[us]"
TRUE, FALSE = "true", "false"
# what inference takes for a date or timestamp written as text (ISO 8601, optional time zone)
ISO_TIMESTAMP = re.compile(
    r"\d{4}-\d{2}-\d{2}([T ]\d{2}:\d{2}(:\d{2}(\.\d{1,9})?)?)?(Z|[+-]\d{2}(:?\d{2})?)?"
)
NUMBER_HINT = "Send a JSON number for numeric features (true/false only where training had 0/1)"
TIMESTAMP_HINT = (
    "Send a date or timestamp as ISO-8601 text, e.g. '2018-03-01' or '2018-03-01T12:30:00Z'"
)


class ValueProblem(Exception):
    """A value that cannot be read as its feature's kind (internal; callers add the where)."""

    def __init__(self, row: int, message: str, hint: str) -> None:
        super().__init__(message)
        self.row = row
        self.message = message
        self.hint = hint


def shown(value: Any, limit: int = 60) -> str:
    """``repr`` of a value for an error message, cut to ``limit`` characters."""
    text = repr(value.item() if isinstance(value, np.generic) else value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _is_null(v: Any) -> bool:
    return v is None or v is pd.NA or v is pd.NaT or (isinstance(v, float) and math.isnan(v))


# -- numbers ----------------------------------------------------------------------------------


def to_numbers(
    values: Sequence[Any] | pd.Series | np.ndarray,
    *,
    allow_bool: bool,
    out: np.ndarray | None = None,
) -> np.ndarray:
    """float64 values, NaN where missing (written into ``out`` when given, a float64 array
    of the same length: the server fills one column of its block this way)."""
    if isinstance(values, pd.Series):
        dtype = values.dtype
        typed = pd.api.types.is_numeric_dtype(dtype)
        if pd.api.types.is_bool_dtype(dtype) and not allow_bool:
            rows = np.flatnonzero(values.notna().to_numpy())
            if len(rows):
                _bad_number(int(rows[0]), values.iloc[int(rows[0])])
        if typed or pd.api.types.is_bool_dtype(dtype):
            result = values.to_numpy(dtype=np.float64, na_value=np.nan)
            if out is None:
                return result
            out[:] = result
            return out
        values = values.to_numpy(dtype=object)
    if out is None:
        out = np.empty(len(values), dtype=np.float64)
    i = 0
    try:
        for i, v in enumerate(values):
            t = type(v)
            if t is float or t is int:
                out[i] = v
            elif v is None:
                out[i] = np.nan
            elif t is bool or t is np.bool_:
                if not allow_bool:
                    _bad_number(i, v)
                out[i] = float(v)
            elif isinstance(v, int | float | np.integer | np.floating | Decimal):
                out[i] = float(v)
            elif v is pd.NA or v is pd.NaT:
                out[i] = np.nan
            else:
                _bad_number(i, v)
    except OverflowError:
        raise ValueProblem(
            i, f"is {shown(values[i])}, too large for a 64-bit float", NUMBER_HINT
        ) from None
    return out


def _bad_number(row: int, v: Any) -> None:
    raise ValueProblem(row, f"must be a number, got {type(v).__name__} {shown(v)}", NUMBER_HINT)


def all_binary(values: np.ndarray) -> bool:
    """Whether every non-missing value is 0 or 1 (then true/false are accepted as 1/0)."""
    present = values[~np.isnan(values)]
    return bool(len(present)) and bool(np.isin(present, (0.0, 1.0)).all())


# -- categories -------------------------------------------------------------------------------


def number_text(x: float) -> str:
    """``1.0`` -> ``"1"``, ``1.5`` -> ``"1.5"``: the canonical text of a number."""
    if math.isfinite(x) and x == int(x):
        return str(int(x))
    return repr(float(x))


def category_text(v: Any, *, numeric: bool = False, boolean: bool = False) -> str | None:
    """The canonical text of one category value; None when missing.

    ``numeric``: the field's categories are numbers, so text that reads as a number is that
    number (``"1.0"`` -> ``"1"``). ``boolean``: they are ``true``/``false``, so ``"True"`` is
    ``"true"``. Raises TypeError for a value that is not a scalar.
    """
    t = type(v)
    if t is str or isinstance(v, str):
        if numeric:
            try:
                x = float(v)
            except ValueError:
                return str(v)
            return number_text(x) if not math.isnan(x) else str(v)
        if boolean and v.lower() in (TRUE, FALSE):
            return v.lower()
        return str(v)
    if _is_null(v):
        return None
    if t is bool or t is np.bool_:
        return TRUE if v else FALSE
    if isinstance(v, int | np.integer):
        return str(int(v))
    if isinstance(v, float | np.floating | Decimal):
        x = float(v)
        return None if math.isnan(x) else number_text(x)
    if isinstance(v, list | dict | tuple | set | bytes | bytearray):
        raise TypeError(type(v).__name__)
    return str(v)


def to_categories(
    values: Sequence[Any] | pd.Series, *, numeric: bool = False, boolean: bool = False
) -> np.ndarray:
    """Canonical category texts (object array), NaN where missing."""
    if isinstance(values, pd.Series) and values.dtype != object:
        # typed columns: canonicalise each distinct value once
        codes, uniques = pd.factorize(values, use_na_sentinel=True)
        texts = [category_text(u, numeric=numeric, boolean=boolean) for u in uniques]
        table = np.array([np.nan if t is None else t for t in texts] + [np.nan], dtype=object)
        return table[codes]  # type: ignore[no-any-return]  # code -1 (missing) -> the NaN
    raw = values.to_numpy(dtype=object) if isinstance(values, pd.Series) else values
    out = np.empty(len(raw), dtype=object)
    for i, v in enumerate(raw):
        if type(v) is str and not numeric and not boolean:
            out[i] = v
            continue
        try:
            text = category_text(v, numeric=numeric, boolean=boolean)
        except TypeError:
            raise ValueProblem(
                i,
                f"must be a string or a number, got {type(v).__name__}",
                "Send categorical features as JSON strings (or numbers)",
            ) from None
        out[i] = np.nan if text is None else text
    return out


def numeric_categories(categories: Iterable[str]) -> bool:
    """Whether every category is the canonical text of a number (a numeric-coded column)."""
    cats = list(categories)
    if not cats:
        return False
    for c in cats:
        try:
            x = float(c)
        except ValueError:
            return False
        if math.isnan(x) or number_text(x) != c:
            return False
    return True


def boolean_categories(categories: Iterable[str]) -> bool:
    cats = set(categories)
    return bool(cats) and cats <= {TRUE, FALSE}


# -- timestamps -------------------------------------------------------------------------------


def to_timestamps(values: Sequence[Any] | pd.Series) -> np.ndarray:
    """UTC instants as naive ``datetime64[us]``, NaT where missing."""
    if isinstance(values, pd.Series) and pd.api.types.is_datetime64_any_dtype(values.dtype):
        s = values
        if getattr(s.dt, "tz", None) is not None:
            s = s.dt.tz_convert("UTC").dt.tz_localize(None)
        return s.to_numpy(dtype=TIMESTAMP_UNIT)
    raw = values.to_numpy(dtype=object) if isinstance(values, pd.Series) else values
    obj = np.empty(len(raw), dtype=object)
    nulls = np.zeros(len(raw), dtype=bool)
    for i, v in enumerate(raw):
        if isinstance(v, str | datetime | date | np.datetime64):
            obj[i] = v
        elif _is_null(v):
            nulls[i] = True
            obj[i] = None
        else:
            raise ValueProblem(
                i, f"must be a timestamp, got {type(v).__name__} {shown(v)}", TIMESTAMP_HINT
            )
    if nulls.all():
        return np.full(len(raw), np.datetime64("NaT"), dtype=TIMESTAMP_UNIT)
    try:
        parsed = pd.to_datetime(
            pd.Series(obj, dtype=object), utc=True, errors="coerce", format="ISO8601"
        )
    except (ValueError, OverflowError) as exc:  # e.g. a date beyond what pandas holds
        raise ValueProblem(_first(~nulls), f"is not a timestamp ({exc})", TIMESTAMP_HINT) from None
    bad = parsed.isna().to_numpy() & ~nulls
    if bad.any():
        row = _first(bad)
        raise ValueProblem(row, f"is {shown(raw[row])}, not a timestamp", TIMESTAMP_HINT)
    return parsed.dt.tz_localize(None).to_numpy(dtype=TIMESTAMP_UNIT)


def looks_like_timestamps(col: pd.Series) -> bool:
    """Whether a column holds instants: a datetime dtype, date/datetime objects, or text that
    is all ISO-8601 dates or timestamps (and parses)."""
    if pd.api.types.is_datetime64_any_dtype(col.dtype):
        return True
    if pd.api.types.is_bool_dtype(col.dtype) or pd.api.types.is_numeric_dtype(col.dtype):
        return False
    present = col.dropna()
    if present.empty:
        return False
    inferred = pd.api.types.infer_dtype(present, skipna=True)
    if inferred in ("date", "datetime", "datetime64"):
        return True
    if inferred != "string":
        return False
    texts = present.astype(str)
    if not texts.str.fullmatch(ISO_TIMESTAMP).all():
        return False
    try:
        to_timestamps(present)
    except ValueProblem:
        return False
    return True


def _first(mask: np.ndarray) -> int:
    return int(np.flatnonzero(mask)[0])


__all__ = [
    "ValueProblem",
    "all_binary",
    "boolean_categories",
    "category_text",
    "looks_like_timestamps",
    "number_text",
    "numeric_categories",
    "to_categories",
    "to_numbers",
    "to_timestamps",
]
