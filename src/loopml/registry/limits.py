"""Limits of what a model can compute with, checked on validated inputs.

scikit-learn's trees (and ONNX Runtime) compute in 32-bit floats: a finite JSON number such
as ``1e39`` or ``1e308`` passes the signature's type checks and then crashes the model
("Input X contains infinity or a value too large for dtype('float32')"). :func:`check_float32`
turns that into an error naming the row and the field, on every path that predicts: the
server, batch scoring and the Python API.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd

from loopml.errors import InvalidInputError

FLOAT32_MAX = float(np.finfo(np.float32).max)  # about 3.4e38


def _column(frame: pd.DataFrame, position: int) -> np.ndarray:
    """Column ``position`` as an array. pandas' own accessor builds no Series (a Series costs
    ~20 us, which the server's hot path feels); the public route is the fallback."""
    get = getattr(frame, "_get_column_array", None)
    values = get(position) if get is not None else frame.iloc[:, position].to_numpy()
    return np.asarray(values, dtype=np.float64)


def _first_bad(values: np.ndarray) -> np.ndarray:
    with np.errstate(invalid="ignore"):
        return np.abs(values) > FLOAT32_MAX  # NaN compares False


def check_float32(
    frame: pd.DataFrame, columns: Sequence[str] | None = None, *, source: str | None = None
) -> None:
    """Refuse numbers beyond float32 (and infinities) in ``columns`` of a validated frame.

    ``columns`` defaults to every float column. NaN (a missing value) passes: nullability is
    the signature's concern. The first offending row (0-based position) is named with its
    field (``where={"row", "field"}``), or, for a file (``source``), with the file and column.
    A few microseconds for a frame of numeric columns: cheap enough for the hot path.
    """
    if columns is None:
        names = [str(c) for c, dtype in frame.dtypes.items() if dtype.kind == "f"]
    else:
        names = list(columns)
    if not names:
        return
    found: tuple[int, int, float] | None = None  # (row, position, value)
    if len(names) == frame.shape[1]:  # every column: one block, no per-column access
        block = frame.to_numpy(dtype=np.float64, copy=False)
        big = _first_bad(block)
        if big.any():
            rows, cols = np.nonzero(big)  # row-major: the first row, then its first column
            found = (int(rows[0]), int(cols[0]), float(block[rows[0], cols[0]]))
    else:
        index = {c: i for i, c in enumerate(frame.columns.tolist())}  # get_indexer: ~100 us
        for name in names:
            position = index[name]
            values = _column(frame, position)
            big = _first_bad(values)
            if big.any():
                row = int(np.argmax(big))
                if found is None or (row, position) < found[:2]:
                    found = (row, position, float(values[row]))
    if found is None:
        return
    row, position, value = found
    name = str(frame.columns.tolist()[position])
    where: dict[str, object] = (
        {"row": row, "field": name}
        if source is None
        else {"file": source, "row": row, "column": name}
    )
    raise InvalidInputError(
        f"feature {name!r} is {value:g}, beyond what the model computes with "
        f"(float32: at most ±{FLOAT32_MAX:.3g})",
        where=where,
        hint=f"Send a finite number between -{FLOAT32_MAX:.3g} and {FLOAT32_MAX:.3g}",
    )


__all__ = ["FLOAT32_MAX", "check_float32"]
