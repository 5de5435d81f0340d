"""The hot path's reader of JSON records, compiled once per model version.

For a model whose features are all numeric, the records of a V1 request are read here
without the general reader (:meth:`loopml.registry.signature.Signature.check_records_columns`)
when they are the common, valid case: every record an object with exactly the model's
features, every value a plain JSON number (``int`` or ``float``, not ``bool``), none beyond
float32. The values are taken with one ``itemgetter`` per record (in signature order) into
one row-major float64 block, the same numbers the general reader makes of them (it builds
its block from the same flat list with the same ``np.array`` call). Anything else (a missing
or extra field, text, ``null``, ``true``, a number beyond float32, a non-object) answers
None and the request goes through the general reader, which names the row, the field and
the reason: the errors are the general reader's, always.

The rows stay a :class:`RowBlock` (a block and its feature names, not yet a mapping). The
micro-batcher joins a call's requests into one RowBlock, which a compiled model whose one
input is the whole block, and the prediction log, take as it is; other models get one
:class:`~loopml.registry.signature.BlockColumns`. A request never builds the per-feature
views of its own block (docs/serving-hotpath.md).
"""

from __future__ import annotations

from array import array
from collections.abc import Callable
from operator import itemgetter
from typing import Any

import numpy as np

from loopml.kinds import NUMERIC
from loopml.project.features import UNKNOWN_POLICIES
from loopml.registry.limits import FLOAT32_MAX
from loopml.registry.signature import BlockColumns, Columns, Signature

_PLAIN = frozenset((float, int))
#: up to this many values, plain_block checks them with Python's builtins, not NumPy
SMALL = 512


class RowBlock:
    """Validated numeric rows: a row-major float64 ``block`` (``block[:, j]`` is feature
    ``names[j]``), before it becomes :class:`BlockColumns` (:meth:`columns`). A V2 ``FP32``
    tensor's block is float32 (:func:`plain_block`); joined with float64 rows it becomes
    float64."""

    __slots__ = ("block", "names")

    def __init__(self, block: np.ndarray, names: tuple[str, ...]) -> None:
        self.block = block
        self.names = names

    def __len__(self) -> int:
        return len(self.block)

    def __getitem__(self, name: str) -> np.ndarray:
        """Feature ``name``'s values (a view), as :data:`Columns` give them."""
        try:
            return self.block[:, self.names.index(name)]  # type: ignore[no-any-return]
        except ValueError:
            raise KeyError(name) from None

    def columns(self) -> BlockColumns:
        return BlockColumns(self.block, self.names)


def as_columns(columns: Columns | RowBlock) -> Columns:
    """``columns`` as :data:`Columns` (a :class:`RowBlock` becomes BlockColumns)."""
    return columns.columns() if isinstance(columns, RowBlock) else columns


class NumericRecords:
    """Reads the plain case of a numeric model's records into a :class:`RowBlock` (module
    docstring); :meth:`read` answers None for anything else."""

    def __init__(self, signature: Signature) -> None:
        self.names: tuple[str, ...] = tuple(signature.names)
        self.name_set = frozenset(self.names)
        self.width = len(self.names)
        one = self.names[0] if self.width == 1 else None
        self._get: Callable[[dict[str, Any]], tuple[Any, ...]] = (
            (lambda rec: (rec[one],)) if one is not None else itemgetter(*self.names)
        )

    @staticmethod
    def applies(signature: Signature) -> bool:
        """Whether a reader can be built: numeric features only, a known unknown-value
        policy (an unknown one is the general reader's error, on every request)."""
        return (
            bool(signature.inputs)
            and all(f.kind == NUMERIC for f in signature.inputs)
            and (signature.unknown is None or signature.unknown in UNKNOWN_POLICIES)
        )

    def read(self, records: list[Any]) -> RowBlock | None:
        if not records:
            return None
        get = self._get
        width = self.width
        flat: list[Any] = []
        try:
            for rec in records:
                # as many keys as features and each feature found: exactly the features
                # (cheaper than comparing the key set)
                if type(rec) is not dict or len(rec) != width:
                    return None
                flat.extend(get(rec))
        except KeyError:  # a feature missing (and so another key in its place)
            return None
        return plain_block(flat, len(records), self.names)


def plain_block(
    flat: list[Any], rows: int, names: tuple[str, ...], dtype: Any = None, *, no_bools: bool = False
) -> RowBlock | None:
    """``flat`` (``rows`` rows of ``len(names)`` values, row-major) as a :class:`RowBlock`
    when every value is a plain number (``int`` or ``float``, not ``bool``), none missing
    and none beyond float32: the case where the general reader would pass every value as it
    is. None otherwise (the general reader then names what is wrong).

    ``dtype`` ``np.float32``: the block is stored in float32 (a V2 ``FP32`` tensor, whose
    values are float32 by its datatype; checked in float64 first, so the bounds are exact),
    half the bytes to batch, predict and spool. Default float64.

    ``no_bools``: the caller knows no value is a ``bool`` (a JSON body without ``true`` or
    ``false``). Then the values' types are not scanned one by one: NumPy's conversion finds
    them (:func:`_numbers`), and anything but plain numbers answers None as above."""
    if not flat or len(flat) != rows * len(names):
        return None
    if no_bools and len(flat) > SMALL:
        block = _doubles(flat)
        if block is not None and block.min() > -_INT64_SAFE and block.max() < _INT64_SAFE:
            return _rows(block, rows, names, dtype)  # the bound is within float32's too
        block = _numbers(flat)
        if block is None or not (block.min() >= -FLOAT32_MAX and block.max() <= FLOAT32_MAX):
            return None
        return _rows(block, rows, names, dtype)
    if not set(map(type, flat)) <= _PLAIN:
        return None
    if len(flat) <= SMALL:
        # a few values (one or a few records): Python's builtins check them several times
        # faster than NumPy's reductions, whose fixed cost per call dominates here. A NaN
        # (missing: records from the Python API; JSON has none) makes the sum NaN; an
        # infinity, or a number beyond float32, is outside [-FLOAT32_MAX, FLOAT32_MAX]
        # (compared exactly, ints too: one that only rounds to the bound in float64 goes
        # to the general reader, which then decides)
        try:
            total = sum(flat)
        except OverflowError:  # an int beyond float64 among floats
            return None
        if total != total or max(flat) > FLOAT32_MAX or min(flat) < -FLOAT32_MAX:
            return None
        try:
            block = np.array(flat, dtype=np.float64)
        except OverflowError:  # pragma: no cover - ints beyond float64 fail the bound first
            return None
        return _rows(block, rows, names, dtype)
    # one conversion, then the smallest and the largest value: NaN makes both NaN (and
    # every comparison False), an infinity or a number beyond float32 (ints too) is outside
    # [-FLOAT32_MAX, FLOAT32_MAX]; two reductions, no temporary arrays
    try:
        block = np.array(flat, dtype=np.float64)
    except OverflowError:  # an int beyond float64
        return None
    if not (block.min() >= -FLOAT32_MAX and block.max() <= FLOAT32_MAX):
        return None
    return _rows(block, rows, names, dtype)


def _rows(block: np.ndarray, rows: int, names: tuple[str, ...], dtype: Any) -> RowBlock:
    """The checked float64 values as a :class:`RowBlock` of ``rows`` rows, in ``dtype``."""
    if dtype is not None:
        block = block.astype(dtype)
    return RowBlock(block.reshape(rows, len(names)), names)


#: values strictly within +-2**63 (exact in float64): no int among them is one that NumPy
#: reads as an object rather than int64 (:func:`_doubles`); also within +-FLOAT32_MAX
_INT64_SAFE = float(2**63)


def _doubles(flat: list[Any]) -> np.ndarray | None:
    """``flat`` (values a JSON parser made) as float64 through a C array of doubles
    (:mod:`array`), without NumPy's discovery of the list's dtype (~25 % of the conversion
    of a 2,048-value image tensor): each value must be a real number, converted as
    ``float(v)`` (as NumPy converts a Python int or float into a float64 array; a ``bool``
    passes as 0 or 1, ruled out by the caller as for :func:`_numbers`). None when a value
    is not a number (text, ``None``, a list or an object) or an int beyond float64. Its
    caller takes the block only when every value lies within +-2**63 (:data:`_INT64_SAFE`:
    there :func:`_numbers` reads the same numbers; beyond, an int may be one it refuses),
    else asks :func:`_numbers`, as before."""
    try:
        return np.frombuffer(array("d", flat), dtype=np.float64)
    except (TypeError, OverflowError):
        return None


def _numbers(flat: list[Any]) -> np.ndarray | None:
    """``flat`` as float64 when NumPy reads every value as a number (``float`` and ``int``
    give float64, ``int`` alone int64), else None: text, ``None``, a list or an object among
    them, or an int beyond int64 among ints, make another dtype or shape (or fail); the
    general reader then decides. A ``bool`` would pass as 0 or 1: callers rule them out."""
    try:
        block = np.array(flat)
    except (ValueError, TypeError, OverflowError):  # ragged, or an int beyond float64
        return None
    if block.ndim != 1 or block.dtype.kind not in "fi":
        return None
    return block if block.dtype == np.float64 else block.astype(np.float64)


def compile_reader(signature: Signature) -> NumericRecords | None:
    """The hot path's reader for ``signature``, or None (the general reader then)."""
    return NumericRecords(signature) if NumericRecords.applies(signature) else None


__all__ = ["NumericRecords", "RowBlock", "as_columns", "compile_reader"]
