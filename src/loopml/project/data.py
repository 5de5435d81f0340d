"""What a dataset must look like: ``data.datasets`` in ``loopml.yaml``.

```yaml
data:
  datasets:
    tx:
      schema:                       # declared columns (others are allowed unless strict)
        id: int64                   # a type alone: required, nulls allowed
        amount: {type: double, nullable: false}
        country: {type: string, required: false}
      strict: false                 # true: columns not declared are refused
      expectations:
        - {column: amount, range: [0, 10000]}      # either bound may be null
        - {column: country, allowed: [FR, DE, IT]}
        - {column: email, regex: '^[^@ ]+@[^@ ]+$'}
        - {unique: [id]}                           # a key: one or more columns
        - {rows: [1, 5000000]}                     # bounds on the version's row count
        - {column: ts, freshness: 2d}              # newest ts at most 2 days old (s, m, h, d)
```

Types are Arrow type names (``int64``, ``double``, ``string``, ``bool``, ``date32[day]``,
``timestamp[us]``...) or the aliases ``int``, ``float``, ``str``, ``date``, ``timestamp``.
A dataset without a declared schema gets one inferred on its first ingest: later versions may
not change a column's type unless ``--allow-schema-change``.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from loopml.errors import ConfigError
from loopml.names import check_name

ALIASES = {
    "int": "int64",
    "integer": "int64",
    "float": "double",
    "float64": "double",
    "number": "double",
    "str": "string",
    "text": "string",
    "boolean": "bool",
    "date": "date32[day]",
    "datetime": "timestamp[us]",
    "timestamp": "timestamp[us]",
}
RULES = ("range", "allowed", "regex", "unique", "rows", "freshness")
_DURATION = re.compile(r"^\s*([0-9]+(?:\.[0-9]+)?)\s*([smhd])\s*$")
_SECONDS = {"s": 1, "m": 60, "h": 3600, "d": 86400}


@dataclass(frozen=True)
class ColumnSpec:
    name: str
    type: str | None = None  # an Arrow type name; None: any
    nullable: bool = True
    required: bool = True


@dataclass(frozen=True)
class Expectation:
    rule: str  # one of RULES
    columns: tuple[str, ...] = ()
    low: float | None = None
    high: float | None = None
    allowed: tuple[Any, ...] = ()
    pattern: str | None = None
    seconds: float | None = None

    def describe(self) -> str:
        col = ", ".join(self.columns)
        if self.rule == "range":
            return f"{col} in [{self.low}, {self.high}]"
        if self.rule == "allowed":
            return f"{col} in {list(self.allowed)}"
        if self.rule == "regex":
            return f"{col} matches {self.pattern!r}"
        if self.rule == "unique":
            return f"({col}) unique"
        if self.rule == "rows":
            return f"row count in [{self.low}, {self.high}]"
        return f"newest {col} at most {self.seconds:g} s old"


@dataclass(frozen=True)
class DatasetSpec:
    name: str
    columns: tuple[ColumnSpec, ...] = ()
    strict: bool = False
    expectations: tuple[Expectation, ...] = field(default_factory=tuple)

    def column(self, name: str) -> ColumnSpec | None:
        return next((c for c in self.columns if c.name == name), None)


def arrow_type(name: str, where: str, source: str | None = None) -> Any:
    """The pyarrow type named ``name`` (or an alias), or a ConfigError at ``where``."""
    import pyarrow as pa

    text = ALIASES.get(str(name).strip().lower(), str(name).strip())
    try:
        return pa.type_for_alias(text)
    except (ValueError, KeyError):
        pass
    match = re.fullmatch(r"timestamp\[(s|ms|us|ns)(?:,\s*tz=([^\]]+))?\]", text)
    if match:
        return pa.timestamp(match.group(1), tz=match.group(2))
    raise ConfigError(
        f"unknown column type {name!r}",
        where={**({"file": source} if source else {}), "field": where},
        hint="Use an Arrow type name: int64, int32, double, string, bool, date32[day], "
        "timestamp[us] (or int, float, str, date, timestamp)",
    )


def parse_datasets(value: Any, source: str) -> dict[str, DatasetSpec]:
    """``data.datasets`` of a project file, checked; ``source`` names the file in errors."""
    if value is None:
        return {}
    if not isinstance(value, Mapping):
        raise ConfigError(
            "data.datasets must be a mapping of dataset name to its schema and expectations",
            where={"file": source, "field": "data.datasets"},
            hint="Write data: {datasets: {NAME: {schema: {...}, expectations: [...]}}}",
        )
    return {str(k): _dataset(str(k), v, source) for k, v in value.items()}


def _err(message: str, source: str, fieldname: str, hint: str) -> ConfigError:
    return ConfigError(message, where={"file": source, "field": fieldname}, hint=hint)


def _dataset(name: str, value: Any, source: str) -> DatasetSpec:
    prefix = f"data.datasets.{name}"
    check_name(name, "dataset")
    if value is None:
        value = {}
    if not isinstance(value, Mapping):
        raise _err(f"{prefix} must be a mapping", source, prefix, "Give schema: and expectations:")
    for key in value:
        if key not in ("schema", "strict", "expectations"):
            raise _err(
                f"unknown key {prefix}.{key}",
                source,
                f"{prefix}.{key}",
                "Known keys here: expectations, schema, strict",
            )
    columns = []
    schema = value.get("schema") or {}
    if not isinstance(schema, Mapping):
        raise _err(
            f"{prefix}.schema must map column names to types",
            source,
            f"{prefix}.schema",
            "Write schema: {amount: double, id: {type: int64, nullable: false}}",
        )
    for col, spec in schema.items():
        where = f"{prefix}.schema.{col}"
        if isinstance(spec, str) or spec is None:
            spec = {"type": spec}
        if not isinstance(spec, Mapping):
            raise _err(f"{where} must be a type or a mapping", source, where, "e.g. {type: int64}")
        unknown = set(spec) - {"type", "nullable", "required"}
        if unknown:
            raise _err(
                f"unknown key {where}.{sorted(unknown)[0]}",
                source,
                where,
                "Known keys here: nullable, required, type",
            )
        typ = spec.get("type")
        if typ is not None:
            arrow_type(str(typ), where, source)
        for flag in ("nullable", "required"):
            if flag in spec and not isinstance(spec[flag], bool):
                raise _err(f"{where}.{flag} must be true or false", source, f"{where}.{flag}", "")
        columns.append(
            ColumnSpec(
                name=str(col),
                type=None if typ is None else str(arrow_type(str(typ), where)),
                nullable=bool(spec.get("nullable", True)),
                required=bool(spec.get("required", True)),
            )
        )
    strict = value.get("strict", False)
    if not isinstance(strict, bool):
        raise _err(f"{prefix}.strict must be true or false", source, f"{prefix}.strict", "")
    items = value.get("expectations") or []
    if not isinstance(items, list):
        raise _err(
            f"{prefix}.expectations must be a list",
            source,
            f"{prefix}.expectations",
            "Write expectations: [{column: amount, range: [0, 100]}]",
        )
    expectations = tuple(
        _expectation(item, source, f"{prefix}.expectations[{i}]") for i, item in enumerate(items)
    )
    return DatasetSpec(name=name, columns=tuple(columns), strict=strict, expectations=expectations)


def _bounds(value: Any, source: str, where: str) -> tuple[float | None, float | None]:
    if not isinstance(value, list | tuple) or len(value) != 2:
        raise _err(f"{where} must be [low, high]", source, where, "Use null for an open bound")
    out = []
    for v in value:
        if v is not None and (isinstance(v, bool) or not isinstance(v, int | float)):
            raise _err(f"{where} bounds must be numbers or null", source, where, "e.g. [0, 100]")
        out.append(None if v is None else float(v))
    return out[0], out[1]


def _expectation(item: Any, source: str, where: str) -> Expectation:
    if not isinstance(item, Mapping):
        raise _err(f"{where} must be a mapping", source, where, "e.g. {column: x, range: [0, 1]}")
    rules = [r for r in RULES if r in item]
    unknown = set(item) - {*RULES, "column"}
    if unknown or len(rules) != 1:
        raise _err(
            f"{where} must hold exactly one rule of {', '.join(RULES)}"
            + (f" (unknown key {sorted(unknown)[0]!r})" if unknown else ""),
            source,
            where,
            "e.g. {column: amount, range: [0, 10000]} or {unique: [id]}",
        )
    rule = rules[0]
    raw = item[rule]
    column = item.get("column")
    if rule in ("range", "allowed", "regex", "freshness") and not isinstance(column, str):
        raise _err(f"{where}: the {rule} rule needs column: NAME", source, where, "")
    if rule == "unique":
        cols = [raw] if isinstance(raw, str) else raw
        if not isinstance(cols, list) or not cols or not all(isinstance(c, str) for c in cols):
            raise _err(f"{where}.unique must list key columns", source, where, "e.g. unique: [id]")
        return Expectation(rule, tuple(cols))
    if rule == "rows":
        low, high = _bounds(raw, source, f"{where}.rows")
        return Expectation(rule, (), low=low, high=high)
    assert isinstance(column, str)
    if rule == "range":
        low, high = _bounds(raw, source, f"{where}.range")
        return Expectation(rule, (column,), low=low, high=high)
    if rule == "allowed":
        if not isinstance(raw, list) or not raw:
            raise _err(f"{where}.allowed must be a list of values", source, where, "")
        return Expectation(rule, (column,), allowed=tuple(raw))
    if rule == "regex":
        try:
            re.compile(str(raw))
        except re.error as exc:
            raise _err(f"{where}.regex is not a regular expression: {exc}", source, where, "")
        return Expectation(rule, (column,), pattern=str(raw))
    match = _DURATION.match(str(raw))
    if not match:
        raise _err(
            f"{where}.freshness must be a duration like 30m, 6h or 2d, got {raw!r}",
            source,
            where,
            "Units: s, m, h, d",
        )
    seconds = float(match.group(1)) * _SECONDS[match.group(2)]
    return Expectation(rule, (column,), seconds=seconds)


def load_dataset_specs(path: str | Path | None = None) -> dict[str, DatasetSpec]:
    """``data.datasets`` of the project file at ``path`` (default: ./loopml.yaml, when there
    is one); only that part of the file is read, so a file without a model section is fine."""
    p = Path(path) if path is not None else Path("loopml.yaml")
    if not p.is_file():
        if path is not None:
            raise ConfigError(
                f"project file not found: {p}",
                where={"file": str(p)},
                hint="Give the path of a loopml.yaml with a data.datasets section",
            )
        return {}
    try:
        data = yaml.safe_load(p.read_text())
    except yaml.YAMLError as exc:
        raise ConfigError(
            f"{p} is not valid YAML: {exc}", where={"file": str(p)}, hint="Fix the syntax"
        ) from exc
    section = data.get("data") if isinstance(data, Mapping) else None
    if not isinstance(section, Mapping):
        return {}
    return parse_datasets(section.get("datasets"), str(p))


__all__ = [
    "ColumnSpec",
    "DatasetSpec",
    "Expectation",
    "arrow_type",
    "load_dataset_specs",
    "parse_datasets",
]
