"""A model's input signature, and validation of inputs against it.

The signature is recorded at training time (names, kinds, categories and ranges seen) and
travels inside the model artifact, so the server and batch scoring check every input against
exactly what the model was trained on.

Every path reads inputs the same way: JSON records (:meth:`Signature.check_records`, the V1
and V2 endpoints) are turned into columns and go through the same per-column reader as the
columns of a table (:meth:`Signature.check_frame`: batch scoring, drift, the Python API),
which is :mod:`loopml.features.values`, the reader training used. So a row is accepted or
refused, and predicted, identically whichever way it comes. Two policies say what happens
beyond the model's columns and values:

``extra``    a field (or column) the model does not take: ``ignore`` it (the default; the
             result lists it) or ``error``.
``unknown``  a value training never had (a category never seen, a missing value where
             training had none): ``error`` refuses the row; ``flag`` scores it (the one-hot
             encoder ignores the category, the imputer fills the value) and the result says
             which rows and fields. The model's own policy (``features.unknown`` in the
             project file, kept in ``extra["unknown"]``) wins; without one, records default
             to ``error`` (the server) and tables to ``flag`` (batch scoring, drift).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass, field, replace
from functools import cached_property
from typing import Any

import numpy as np
import pandas as pd

from loopml.errors import InvalidInputError
from loopml.features.values import (
    ValueProblem,
    all_binary,
    boolean_categories,
    numeric_categories,
    to_categories,
    to_numbers,
    to_timestamps,
)
from loopml.kinds import CATEGORICAL, DATETIME, NUMERIC, TEXT
from loopml.project.features import UNKNOWN_POLICIES
from loopml.registry.limits import FLOAT32_MAX
from loopml.utils import shorten

#: One 1-D array per signature input (in signature order), all of one length: numeric
#: float64 (NaN: missing), categorical object arrays of canonical text (NaN: missing, as in a
#: validated frame), datetime ``datetime64[us]`` (NaT: missing).
Columns = dict[str, np.ndarray]
_PLAIN_NUMBERS = frozenset((float, int))


class BlockColumns(dict[str, np.ndarray]):
    """:data:`Columns` of numeric features that also keep their row-major float64 block
    (``block[:, j]`` is feature ``names[j]``; the dict's values are views of it), so the
    server's hot path batches, predicts and logs with one array operation instead of one per
    feature. Anything taking :data:`Columns` takes these."""

    __slots__ = ("block", "names")

    def __init__(self, block: np.ndarray, names: tuple[str, ...]) -> None:
        super().__init__(zip(names, block.T, strict=True))
        self.block = block
        self.names = names

    @staticmethod
    def join(parts: Sequence[Columns]) -> BlockColumns | None:
        """The parts as one BlockColumns (rows in order) when all are BlockColumns of the
        same features, else None."""
        first = parts[0]
        if not isinstance(first, BlockColumns):
            return None
        names = first.names
        blocks: list[np.ndarray] = []
        for part in parts:
            if not isinstance(part, BlockColumns) or part.names != names:
                return None
            blocks.append(part.block)
        return BlockColumns(np.concatenate(blocks), names)

    def rows(self, start: int, stop: int) -> BlockColumns:
        return BlockColumns(self.block[start:stop], self.names)


MAX_CATEGORIES_SHOWN = 8
VECTOR_ROWS = 512  # from this many rows, columns are checked with pandas' vectorised lookups
EXTRA_POLICIES = ("ignore", "error")
RECORDS_UNKNOWN = "error"  # the server's default: a client can fix its request
TABLE_UNKNOWN = "flag"  # batch scoring's and drift's: one new category must not sink a file


@dataclass(frozen=True)
class FeatureField:
    """One input column of a model."""

    name: str
    kind: str  # "numeric", "categorical", "datetime" or "text" (free text, no categories)
    dtype: str  # pandas dtype seen in training
    nullable: bool = False  # missing values were seen in training
    categories: list[str] | None = None  # categorical only, canonical text, sorted
    min: float | None = None  # numeric only
    max: float | None = None
    binary: bool = False  # numeric only: every training value was 0/1, so true/false are 1/0
    # categorical only: the encoder takes any text (hashing has no vocabulary), so a category
    # training never had is scored as any other, neither refused nor flagged
    any_category: bool = False

    def to_dict(self) -> dict[str, Any]:
        out = asdict(self)
        if not self.any_category:  # the signature of every other model reads as before
            del out["any_category"]
        return out

    @cached_property
    def known(self) -> frozenset[str]:
        return frozenset(self.categories or ())

    @cached_property
    def numeric_categories(self) -> bool:
        """The categories are numbers (a numeric column declared categorical): text that
        reads as a number is that number, so ``"1.0"`` is category ``"1"``."""
        return numeric_categories(self.categories or ())

    @cached_property
    def boolean_categories(self) -> bool:
        return boolean_categories(self.categories or ())


@dataclass(frozen=True)
class Validated:
    """Inputs checked against a signature: the typed frame to predict, and what was let by.

    ``unseen`` and ``nulls`` map a field to a boolean mask over the rows (only fields with at
    least one such row appear; both are empty unless the unknown policy is ``flag``).
    """

    frame: pd.DataFrame
    unseen: dict[str, np.ndarray] = field(default_factory=dict)  # a category never seen
    nulls: dict[str, np.ndarray] = field(default_factory=dict)  # missing where training had none
    extra: tuple[str, ...] = ()  # fields or columns the model does not take, ignored

    @property
    def any_flagged(self) -> bool:
        return bool(self.unseen or self.nulls)

    @property
    def flagged(self) -> np.ndarray:
        """One boolean per row: the row holds a value training never had."""
        out = np.zeros(len(self.frame), dtype=bool)
        for mask in (*self.unseen.values(), *self.nulls.values()):
            out |= mask
        return out

    def unknown_fields(self) -> list[list[str]]:
        """Per row, the fields holding a value training never had, in signature order."""
        rows: list[list[str]] = [[] for _ in range(len(self.frame))]
        if not self.any_flagged:
            return rows
        for name in self.frame.columns:
            for masks in (self.unseen, self.nulls):
                mask = masks.get(name)
                if mask is not None:
                    for i in np.flatnonzero(mask):
                        rows[i].append(str(name))
        return rows


@dataclass(frozen=True)
class CheckedColumns:
    """Inputs checked against a signature, as :data:`Columns` (the server's hot path: no
    frame is built); ``unseen``/``nulls``/``extra`` as in :class:`Validated`."""

    columns: Columns
    rows: int
    unseen: dict[str, np.ndarray] = field(default_factory=dict)
    nulls: dict[str, np.ndarray] = field(default_factory=dict)
    extra: tuple[str, ...] = ()

    @property
    def any_flagged(self) -> bool:
        return bool(self.unseen or self.nulls)

    def unknown_fields(self) -> list[list[str]]:
        """Per row, the fields holding a value training never had, in signature order."""
        rows: list[list[str]] = [[] for _ in range(self.rows)]
        if not self.any_flagged:
            return rows
        for name in self.columns:
            for masks in (self.unseen, self.nulls):
                mask = masks.get(name)
                if mask is not None:
                    for i in np.flatnonzero(mask):
                        rows[i].append(name)
        return rows


@dataclass(frozen=True)
class _Context:
    """Where an input came from, for error messages: a request's records or a table."""

    source: str | None  # None: records; else the file or frame

    @property
    def noun(self) -> str:
        return "feature" if self.source is None else "column"

    def where(self, f: FeatureField, row: int) -> dict[str, Any]:
        if self.source is None:
            return {"row": row, "field": f.name}
        return {"file": self.source, "row": row, "column": f.name}


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

    @property
    def unknown(self) -> str | None:
        """The model's own unknown-value policy (``features.unknown``), or None."""
        value = self.extra.get("unknown")
        return None if value is None else str(value)

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
        unknown: str | None = None,
        open_categories: Iterable[str] = (),
    ) -> Signature:
        """Record the signature of the training features ``frame`` (columns in order).

        ``frame`` is what the feature pipeline was fitted on (``prepare_frame``'s output);
        categories are recorded in their canonical text. ``unknown`` is the model's policy
        for values training never had (None: each path's default). ``open_categories``: the
        categorical columns whose encoding takes any category (hashing,
        :func:`loopml.features.spec.open_categories`); a category training never had is
        accepted there on every path.
        """
        open_set = frozenset(open_categories)
        if unknown is not None and unknown not in UNKNOWN_POLICIES:
            raise ValueError(f"unknown policy {unknown!r} is not one of {UNKNOWN_POLICIES}")
        fields = []
        for name, kind in kinds.items():
            col = frame[name]
            if kind == NUMERIC and col.dtype == np.float64:
                fields.append(_numeric_field(name, kind, col, None))
                continue
            nullable = bool(col.isna().any())
            if kind == CATEGORICAL:
                texts = to_categories(col.reset_index(drop=True))
                cats = sorted({t for t in texts if isinstance(t, str)})
                fields.append(
                    FeatureField(
                        name,
                        kind,
                        str(col.dtype),
                        nullable,
                        categories=cats,
                        any_category=name in open_set,
                    )
                )
            elif kind in (DATETIME, TEXT):
                fields.append(FeatureField(name, kind, str(col.dtype), nullable))
            else:
                fields.append(_numeric_field(name, kind, col, nullable))
        return cls(
            inputs=fields,
            target=target,
            task=task,
            classes=[_plain(c) for c in classes] if classes is not None else None,
            extra={} if unknown is None else {"unknown": unknown},
        )

    # -- validation -------------------------------------------------------------------------

    def validate_records(
        self, records: object, *, unknown: str | None = None, extra: str = "ignore"
    ) -> pd.DataFrame:
        """:meth:`check_records`, returning only the typed frame."""
        return self.check_records(records, unknown=unknown, extra=extra).frame

    def validate_frame(
        self,
        frame: pd.DataFrame,
        *,
        source: str = "input",
        unknown: str | None = None,
        extra: str = "ignore",
    ) -> pd.DataFrame:
        """:meth:`check_frame`, returning only the typed frame."""
        return self.check_frame(frame, source=source, unknown=unknown, extra=extra).frame

    def check_records(
        self, records: object, *, unknown: str | None = None, extra: str = "ignore"
    ) -> Validated:
        """Check JSON-like records (a list of objects) and return them as a typed frame.

        Missing or mistyped features raise InvalidInputError naming the row (0-based) and
        the field; so do extra fields with ``extra="error"``, and unseen categories or nulls
        where training had none unless the unknown policy is ``flag`` (module docstring).
        """
        policy = self._policy(unknown, RECORDS_UNKNOWN)
        _check_extra_policy(extra)
        if not isinstance(records, list) or not records:
            raise InvalidInputError(
                "'instances' must be a non-empty list of objects",
                where={"field": "instances"},
                hint='Send {"instances": [{"feature": value, ...}]}',
            )
        expected = self.names
        ignored = self._check_structure(records, extra)
        ctx = _Context(None)
        result = _Flags()
        if self._numeric_only:
            # the server's hot path: one 2-D block, laid out as pandas lays out columns (so the
            # numbers match the batch path bit for bit); building a frame from it is far cheaper.
            # Each column is read by the one reader, then one NaN test covers the whole block.
            block = np.empty((len(records), len(self.inputs)), dtype=np.float64, order="F")
            for j, f in enumerate(self.inputs):
                try:
                    self._read(f, [rec[f.name] for rec in records], ctx, out=block[:, j])
                except InvalidInputError:
                    self._check_block(block, j, ctx, policy, result)  # earlier columns first
                    raise
            self._check_block(block, len(self.inputs), ctx, policy, result)
            out = pd.DataFrame(block, columns=self._columns, copy=False)
        else:
            columns: dict[str, Any] = {}
            for f in self.inputs:
                values = [rec[f.name] for rec in records]
                columns[f.name] = self._column(f, values, ctx, policy, result)
            out = pd.DataFrame(columns, columns=expected)
        return Validated(out, result.unseen, result.nulls, tuple(sorted(ignored)))

    def _check_structure(self, records: list[Any], extra: str) -> set[str]:
        """Every record an object with every feature; the extra fields seen (ignored)."""
        expected = self.names
        expected_set = self._name_set
        ignored: set[str] = set()
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
                if missing:
                    raise InvalidInputError(
                        f"row {i} is missing feature {missing[0]!r}"
                        + (f" (and {len(missing) - 1} more)" if len(missing) > 1 else ""),
                        where={"row": i, "field": missing[0]},
                        hint=f"The model expects: {', '.join(expected)}",
                    )
                more = keys - expected_set
                if extra == "error":
                    name = sorted(more)[0]
                    raise InvalidInputError(
                        f"row {i} has unknown feature {name!r}",
                        where={"row": i, "field": name},
                        hint=f"Remove it; the model expects only: {', '.join(expected)}",
                    )
                ignored |= more
        return ignored

    @cached_property
    def _name_set(self) -> frozenset[str]:
        return frozenset(self.names)

    @cached_property
    def _name_tuple(self) -> tuple[str, ...]:
        return tuple(self.names)

    def check_records_columns(
        self, records: object, *, unknown: str | None = None, extra: str = "ignore"
    ) -> CheckedColumns:
        """:meth:`check_records` straight into :data:`Columns`, plus the float32 range check
        (:func:`loopml.registry.limits.check_float32`): the same errors (message, row, field)
        in the same order, without building a frame. Numeric values are read in one
        vectorised step when they are all plain JSON numbers (the common case)."""
        policy = self._policy(unknown, RECORDS_UNKNOWN)
        _check_extra_policy(extra)
        if not isinstance(records, list) or not records:
            raise InvalidInputError(
                "'instances' must be a non-empty list of objects",
                where={"field": "instances"},
                hint='Send {"instances": [{"feature": value, ...}]}',
            )
        ignored = self._check_structure(records, extra)
        n = len(records)
        if self._numeric_only:
            names = self.names
            flat = [rec[name] for rec in records for name in names]
            if set(map(type, flat)) <= _PLAIN_NUMBERS:
                try:
                    block = np.array(flat, dtype=np.float64).reshape(n, len(names))
                except OverflowError:
                    block = None  # an integer beyond float64: the reader names it
                # one reduction: NaN (missing, from the Python API) or beyond float32 take
                # the per-column path, which names the row and field
                if block is not None and np.abs(block).max() <= FLOAT32_MAX:
                    cols = BlockColumns(block, self._name_tuple)
                    return CheckedColumns(cols, n, extra=tuple(sorted(ignored)))
        values = {f.name: [rec[f.name] for rec in records] for f in self.inputs}
        return self._check_column_values(values, n, policy, tuple(sorted(ignored)))

    def check_columns(
        self, columns: Mapping[str, Sequence[Any] | np.ndarray], *, unknown: str | None = None
    ) -> CheckedColumns:
        """Check request columns (V2 tensors, gRPC): one list or array per feature, each read
        as :meth:`check_records_columns` reads records (errors name the row and field).
        Columns the model does not take are ignored (listed in ``extra``)."""
        policy = self._policy(unknown, RECORDS_UNKNOWN)
        missing = [n for n in self.names if n not in columns]
        if missing:
            raise InvalidInputError(
                f"no input for feature {missing[0]!r}"
                + (f" (and {len(missing) - 1} more)" if len(missing) > 1 else ""),
                where={"field": missing[0]},
                hint=f"The model expects: {', '.join(self.names)}",
            )
        lengths = {len(columns[n]) for n in self.names}
        if len(lengths) != 1 or 0 in lengths:
            raise InvalidInputError(
                "the inputs must all have the same number of rows, at least one",
                where={"field": "inputs"},
                hint="Send one value per row for every feature",
            )
        extra = tuple(sorted(str(c) for c in columns if c not in self._name_set))
        return self._check_column_values(columns, lengths.pop(), policy, extra)

    def _check_column_values(
        self,
        values: Mapping[str, Sequence[Any] | np.ndarray],
        n: int,
        policy: str,
        extra: tuple[str, ...],
    ) -> CheckedColumns:
        ctx = _Context(None)
        flags = _Flags()
        cols: Columns = {}
        bad: tuple[int, int, float] | None = None  # the first number beyond float32
        for j, f in enumerate(self.inputs):
            raw = values[f.name]
            if f.kind == NUMERIC:
                out = _plain_numbers(raw, f.binary)
                if out is None:
                    out = self._read(f, _as_list(raw), ctx)
                if not f.nullable:
                    self._check_missing(f, np.isnan(out), ctx, policy, flags)
                with np.errstate(invalid="ignore"):
                    big = np.abs(out) > FLOAT32_MAX
                if big.any():
                    row = int(np.argmax(big))
                    if bad is None or row < bad[0]:  # row-major: the first row, first field
                        bad = (row, j, float(out[row]))
                cols[f.name] = out
            else:
                cols[f.name] = self._column(f, _as_list(raw), ctx, policy, flags)
        if bad is not None:
            row, j, value = bad
            raise _float32_error(self.inputs[j].name, row, value)
        return CheckedColumns(cols, n, flags.unseen, flags.nulls, extra)

    def check_frame(
        self,
        frame: pd.DataFrame,
        *,
        source: str = "input",
        unknown: str | None = None,
        extra: str = "ignore",
    ) -> Validated:
        """Check a whole table (batch scoring, drift) column by column, as records are.

        Extra columns are ignored (listed in the result) unless ``extra="error"``.
        """
        policy = self._policy(unknown, TABLE_UNKNOWN)
        _check_extra_policy(extra)
        missing = [n for n in self.names if n not in frame.columns]
        if missing:
            raise InvalidInputError(
                f"{source} is missing column {missing[0]!r}"
                + (f" (and {len(missing) - 1} more)" if len(missing) > 1 else ""),
                where={"file": source, "column": missing[0]},
                hint=f"The model expects: {', '.join(self.names)}",
            )
        expected = set(self.names)
        more = [str(c) for c in frame.columns if c not in expected]
        if more and extra == "error":
            raise InvalidInputError(
                f"{source} has column {more[0]!r}, which the model does not take",
                where={"file": source, "column": more[0]},
                hint=f"Remove it; the model expects only: {', '.join(self.names)}",
            )
        ctx = _Context(source)
        result = _Flags()
        out: dict[str, Any] = {}
        for f in self.inputs:
            out[f.name] = self._column(f, frame[f.name].reset_index(drop=True), ctx, policy, result)
        typed = pd.DataFrame(out, columns=self.names, index=frame.index)
        return Validated(typed, result.unseen, result.nulls, tuple(more))

    def _policy(self, unknown: str | None, default: str) -> str:
        policy = unknown if unknown is not None else (self.unknown or default)
        if policy not in UNKNOWN_POLICIES:
            raise InvalidInputError(
                f"the policy for unknown values is {policy!r}",
                where={"field": "unknown"},
                hint=f"Choose one of: {', '.join(UNKNOWN_POLICIES)}",
            )
        return policy

    def _check_block(
        self, block: np.ndarray, width: int, ctx: _Context, policy: str, flags: _Flags
    ) -> None:
        """Missing values in the first ``width`` columns of a numeric block, in column order."""
        nan = np.isnan(block[:, :width])
        if nan.any():
            for j, f in enumerate(self.inputs[:width]):
                if not f.nullable:
                    self._check_missing(f, nan[:, j], ctx, policy, flags)

    @cached_property
    def _numeric_only(self) -> bool:
        return all(f.kind == NUMERIC for f in self.inputs)

    @cached_property
    def _columns(self) -> pd.Index:
        """The column index of every validated frame, built once (pandas' Index is
        immutable, and building one from names costs as much as the rest of a row)."""
        return pd.Index(self.names)

    @classmethod
    def _column(
        cls,
        f: FeatureField,
        values: list[Any] | pd.Series,
        ctx: _Context,
        policy: str,
        flags: _Flags,
    ) -> np.ndarray:
        """Read one column as ``f``'s kind (the one reader training used), then check it."""
        out = cls._read(f, values, ctx)
        if not f.nullable:
            cls._check_missing(f, _missing(f, out), ctx, policy, flags)
        if f.kind == CATEGORICAL and not f.any_category:
            cls._check_unseen(f, out, ctx, policy, flags)
        return out

    @staticmethod
    def _read(
        f: FeatureField,
        values: list[Any] | pd.Series,
        ctx: _Context,
        out: np.ndarray | None = None,
    ) -> np.ndarray:
        try:
            if f.kind == NUMERIC:
                return to_numbers(values, allow_bool=f.binary, out=out)
            if f.kind == DATETIME:
                return to_timestamps(values)
            if f.kind == TEXT:  # free text: a string per row (a number reads as its text)
                return to_categories(values)
            return to_categories(values, numeric=f.numeric_categories, boolean=f.boolean_categories)
        except ValueProblem as exc:
            raise InvalidInputError(
                f"{ctx.noun} {f.name!r} {exc.message}",
                where=ctx.where(f, exc.row),
                hint=exc.hint,
            ) from None

    @staticmethod
    def _check_missing(
        f: FeatureField, missing: np.ndarray, ctx: _Context, policy: str, flags: _Flags
    ) -> None:
        """Missing values in a field that training never saw missing: refuse, or flag."""
        if not missing.any():
            return
        if policy == "error":
            row = int(np.flatnonzero(missing)[0])
            raise InvalidInputError(
                f"{ctx.noun} {f.name!r} is missing a value (null or NaN)",
                where=ctx.where(f, row),
                hint="This feature was never missing in training; send a value "
                "(or score such rows and flag them: features.unknown: flag)",
            )
        flags.nulls[f.name] = missing

    @staticmethod
    def _check_unseen(
        f: FeatureField, out: np.ndarray, ctx: _Context, policy: str, flags: _Flags
    ) -> None:
        """Categories never seen in training: refuse, or flag."""
        if len(out) <= VECTOR_ROWS:  # a request: a set lookup per value is the cheapest
            known = f.known
            unseen = np.fromiter(
                (type(v) is str and v not in known for v in out), dtype=bool, count=len(out)
            )
        else:  # a table: one hashed lookup over the column
            seen = pd.Series(out, dtype=object).isin(f.categories or []).to_numpy()
            unseen = ~seen & ~pd.isna(out)
        if not unseen.any():
            return
        if policy == "error":
            row = int(np.flatnonzero(unseen)[0])
            cats = f.categories or []
            shown = ", ".join(repr(c) for c in cats[:MAX_CATEGORIES_SHOWN])
            more = (
                ""
                if len(cats) <= MAX_CATEGORIES_SHOWN
                else f" and {len(cats) - MAX_CATEGORIES_SHOWN} more"
            )
            raise InvalidInputError(
                f"{ctx.noun} {f.name!r} has category {shorten(out[row], 60)!r}, never seen in "
                "training",
                where=ctx.where(f, row),
                hint=f"Known categories: {shown}{more} (or score such rows and flag "
                "them: features.unknown: flag)",
            )
        flags.unseen[f.name] = unseen


@dataclass
class _Flags:
    unseen: dict[str, np.ndarray] = field(default_factory=dict)
    nulls: dict[str, np.ndarray] = field(default_factory=dict)


def _missing(f: FeatureField, values: np.ndarray) -> np.ndarray:
    if f.kind == NUMERIC:
        return np.isnan(values)
    if f.kind == DATETIME:
        return np.isnat(values)
    return pd.isna(values)  # type: ignore[no-any-return]


def _check_extra_policy(extra: str) -> None:
    if extra not in EXTRA_POLICIES:
        raise InvalidInputError(
            f"the policy for extra fields is {extra!r}",
            where={"field": "extra"},
            hint=f"Choose one of: {', '.join(EXTRA_POLICIES)}",
        )


def _as_list(values: Sequence[Any] | np.ndarray) -> list[Any]:
    if isinstance(values, list):
        return values
    if isinstance(values, np.ndarray):
        return values.tolist()  # type: ignore[no-any-return]
    return list(values)


def _plain_numbers(values: Sequence[Any] | np.ndarray, allow_bool: bool) -> np.ndarray | None:
    """float64 values in one step when they are all plain numbers, else None (the reader
    then goes value by value and names what it refuses)."""
    if isinstance(values, np.ndarray):
        kind = values.dtype.kind
        if kind in "fiu" or (kind == "b" and allow_bool):
            return values.astype(np.float64)
        return None
    if not set(map(type, values)) <= _PLAIN_NUMBERS:
        return None
    try:
        return np.array(values, dtype=np.float64)
    except OverflowError:
        return None


def _float32_error(name: str, row: int, value: float) -> InvalidInputError:
    """The error of :func:`loopml.registry.limits.check_float32`, for columns."""
    return InvalidInputError(
        f"feature {name!r} is {value:g}, beyond what the model computes with "
        f"(float32: at most ±{FLOAT32_MAX:.3g})",
        where={"row": row, "field": name},
        hint=f"Send a finite number between -{FLOAT32_MAX:.3g} and {FLOAT32_MAX:.3g}",
    )


def _plain(value: Any) -> Any:
    """numpy scalars -> Python scalars, for JSON."""
    if isinstance(value, np.generic):
        return value.item()
    return value


@dataclass(frozen=True)
class TensorSpec:
    """An input a model also takes as one tensor ``[n, *shape]`` of ``datatype`` (an image
    ``[n, 1, 28, 28]`` FP32 for a CNN): its values, row-major, are the signature's inputs in
    order (``prod(shape)`` of them). Declared by the model's flavor (the torch CNN's
    architecture); :meth:`check` validates a V2 tensor against it."""

    name: str
    shape: tuple[int, ...]
    datatype: str = "FP32"

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "shape": [-1, *self.shape], "datatype": self.datatype}

    def check(self, name: str, shape: Sequence[int], datatype: str, field: str) -> None:
        """InvalidInputError naming the input and its field unless ``shape`` is
        ``[n, *self.shape]`` and ``datatype`` is this one's."""
        want = f"[n, {', '.join(map(str, self.shape))}]"
        if datatype != self.datatype:
            raise InvalidInputError(
                f"input {name!r} has datatype {datatype}; this model takes {self.datatype} "
                f"tensors of shape {want}",
                where={"input": name, "field": f"{field}.datatype"},
                hint=f"Send datatype {self.datatype!r}",
            )
        if len(shape) != len(self.shape) + 1 or tuple(shape[1:]) != self.shape:
            raise InvalidInputError(
                f"input {name!r} has shape {list(shape)}; this model takes {want}",
                where={"input": name, "field": f"{field}.shape"},
                hint=f"Send images of shape {list(self.shape)} (channels, height, width), "
                "n of them",
            )

    @classmethod
    def from_dict(cls, data: Any) -> TensorSpec | None:
        """The spec a signature's ``extra["tensor"]`` records; None when absent or malformed
        (the model then takes its columns only)."""
        if not isinstance(data, Mapping):
            return None
        name, shape, datatype = data.get("name"), data.get("shape"), data.get("datatype")
        if not isinstance(name, str) or not isinstance(datatype, str):
            return None
        if not isinstance(shape, list) or len(shape) < 2 or shape[0] != -1:
            return None
        if not all(isinstance(d, int) and not isinstance(d, bool) and d > 0 for d in shape[1:]):
            return None
        return cls(name, tuple(shape[1:]), datatype)


#: where a signature records its tensor input (:class:`TensorSpec`)
TENSOR_KEY = "tensor"


def with_tensor(signature: Signature, flavor: Any, model: Any) -> Signature:
    """``signature`` with the tensor input ``model`` declares (its flavor's
    ``tensor_input``, a CNN's image) in ``extra["tensor"]``; unchanged when none."""
    hook = getattr(flavor, "tensor_input", None)
    spec = hook(model, len(signature.inputs)) if callable(hook) else None
    if spec is None:
        return signature
    return replace(signature, extra={**signature.extra, TENSOR_KEY: spec.to_dict()})


def tensor_of(signature: Signature) -> TensorSpec | None:
    """The tensor input the signature records, else None."""
    return TensorSpec.from_dict(signature.extra.get(TENSOR_KEY))


def _numeric_field(name: str, kind: str, col: pd.Series, nullable: bool | None) -> FeatureField:
    """The field of one numeric training column: its range, and whether it is all 0/1.

    A float64 column (what training reads numbers as) is read in place: its missing values
    are its NaNs, and only a column whose range is within [0, 1] is checked for 0/1."""
    if col.dtype == np.float64:
        values = col.to_numpy()
    else:
        values = pd.to_numeric(col, errors="coerce").to_numpy(dtype=np.float64, na_value=np.nan)
    missing = np.isnan(values)
    has_missing = bool(missing.any())
    present = values[~missing] if has_missing else values
    low = float(present.min()) if len(present) else None
    high = float(present.max()) if len(present) else None
    binary = low in (0.0, 1.0) and high in (0.0, 1.0) and all_binary(values)
    return FeatureField(
        name,
        kind,
        str(col.dtype),
        has_missing if nullable is None else nullable,
        min=low,
        max=high,
        binary=bool(binary),
    )
