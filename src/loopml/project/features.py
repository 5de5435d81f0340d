"""The ``features:`` section of the project file: which columns go in and how each kind is
transformed. Plain data; the features stage builds the fitted pipeline from it.

The section declares transforms per kind (``numeric``, ``categorical``, ``datetime``,
``text``) and per column (``columns``: a column's kind and the options that differ from its
kind's), and an optional ``selection``. Every option is checked here, with the field it came
from, before any data is read; what needs the data (a transform on a column of another kind)
is checked by
:func:`loopml.features.spec.check_spec` before any training.
"""

from __future__ import annotations

import importlib
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

from loopml.errors import ConfigError
from loopml.kinds import CATEGORICAL, DATETIME, FEATURE_KINDS, NUMERIC, TEXT

# auto: what the model needs (features.spec.numeric_steps): no imputation for a model that
# handles missing values itself (LightGBM, XGBoost, HistGradientBoosting), no scaling for
# a tree model, median and standard otherwise
NUMERIC_IMPUTE = ("auto", "median", "mean", "zero", "constant", "none")
NUMERIC_SCALE = ("auto", "standard", "minmax", "robust", "none")
NUMERIC_POWER = ("none", "yeo-johnson", "log1p")
CATEGORICAL_IMPUTE = ("most_frequent", "missing", "none")
CATEGORICAL_ENCODE = ("onehot", "ordinal", "frequency", "target", "hash")
BUCKET_STRATEGIES = ("quantile", "uniform")
# text: TF-IDF of a fitted vocabulary, or a hashed bag of words (``hash`` is ``hashing``)
TEXT_ENCODE = ("tfidf", "hashing")
TEXT_ALIASES = {"hash": "hashing"}
DATE_PARTS = ("year", "month", "day", "weekday", "hour", "minute", "dayofyear", "weekend")
# selection methods; f_classif, f_regression and anova are names of f_test
SELECTION_METHODS = ("variance", "mutual_info", "chi2", "f_test", "model", "rfecv")
SELECTION_ALIASES = {"f_classif": "f_test", "f_regression": "f_test", "anova": "f_test"}
# what a model does with a value its training never had (an unseen category, a missing value
# where training had none): refuse the row, or score it (one-hot unknown, null imputed) and
# flag it. Unset: each path's default (flag for batch scoring and drift, error over HTTP).
UNKNOWN_POLICIES = ("error", "flag")

NUMERIC_DEFAULTS: dict[str, Any] = {
    "impute": "auto",
    "fill_value": 0.0,
    "indicator": False,
    "power": "none",
    "clip": None,  # [low, high] quantiles
    "bucketize": None,  # {bins, strategy} or {edges}
    "scale": "auto",
    "polynomial": None,  # {degree, interaction_only}; numeric section only
}
CATEGORICAL_DEFAULTS: dict[str, Any] = {
    "impute": "most_frequent",
    "encode": "onehot",
    "max_categories": None,  # one-hot: the most frequent, the rest in an "other" column
    "min_frequency": None,  # one-hot: rarer categories go to "other" (a count, or a share)
    "n_features": 32,  # hash: columns per input column
}
DATETIME_DEFAULTS: dict[str, Any] = {
    "parts": None,  # None: year, month, day, weekday, hour
    "cyclical": True,
    "since": None,  # a reference timestamp column: days since it instead of date parts
}
TEXT_DEFAULTS: dict[str, Any] = {
    "encode": "tfidf",
    "max_features": 1000,  # tfidf: the most frequent words and n-grams kept (dense columns)
    "ngram_range": [1, 1],  # [shortest, longest] n-grams of words
    "min_df": 1,  # tfidf: in at least this many training rows
    "n_features": 256,  # hashing: columns per text column
    "lowercase": True,
}
SECTION_DEFAULTS = {
    NUMERIC: NUMERIC_DEFAULTS,
    CATEGORICAL: CATEGORICAL_DEFAULTS,
    DATETIME: DATETIME_DEFAULTS,
    TEXT: TEXT_DEFAULTS,
}
# options of a single column beyond its kind's: a user's transformer by import path
CUSTOM_KEYS = ("transform", "params")
_DOTTED = re.compile(r"[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)+")


def _fail(message: str, fld: str, hint: str) -> ConfigError:
    return ConfigError(message, where={"field": fld}, hint=hint)


def _choice(value: Any, allowed: tuple[str, ...], fld: str) -> str:
    if not isinstance(value, str) or value not in allowed:
        raise _fail(f"{fld} is {value!r}", fld, f"Choose one of: {', '.join(allowed)}")
    return value


def _bool(value: Any, fld: str) -> bool:
    if not isinstance(value, bool):
        raise _fail(f"{fld} must be true or false, got {value!r}", fld, "Write true or false")
    return value


def _int(value: Any, fld: str, low: int, high: int | None = None) -> int:
    ok = isinstance(value, int) and not isinstance(value, bool) and value >= low
    if ok and high is not None:
        ok = value <= high
    if not ok:
        span = f"from {low} to {high}" if high is not None else f"of at least {low}"
        raise _fail(f"{fld} is {value!r}", fld, f"Give a whole number {span}")
    return int(value)


def _number(value: Any, fld: str) -> float:
    if not isinstance(value, int | float) or isinstance(value, bool):
        raise _fail(f"{fld} must be a number, got {value!r}", fld, "Write a number, e.g. 0.5")
    return float(value)


def _mapping(value: Any, fld: str, hint: str) -> dict[str, Any]:
    if not isinstance(value, Mapping):
        raise _fail(f"{fld} must be a mapping, got {value!r}", fld, hint)
    return dict(value)


def _keys(data: Mapping[str, Any], known: tuple[str, ...], fld: str, what: str) -> None:
    for key in data:
        if key not in known:
            raise _fail(
                f"unknown {what} {key!r} under {fld}",
                f"{fld}.{key}",
                f"Known here: {', '.join(known)}",
            )


def _option(kind: str, key: str, value: Any, fld: str) -> Any:
    """One validated option of a ``kind`` section (or of a column of that kind)."""
    if kind == NUMERIC:
        if key == "impute":
            return _choice(value, NUMERIC_IMPUTE, fld)
        if key == "fill_value":
            return _number(value, fld)
        if key == "indicator":
            return _bool(value, fld)
        if key == "power":
            return _choice(value, NUMERIC_POWER, fld)
        if key == "scale":
            return _choice(value, NUMERIC_SCALE, fld)
        if key == "clip":
            if value is None:
                return None
            ok = isinstance(value, list | tuple) and len(value) == 2
            low, high = (_number(v, fld) for v in value) if ok else (0.0, 0.0)
            if not ok or not 0.0 <= low < high <= 1.0:
                raise _fail(
                    f"{fld} is {value!r}",
                    fld,
                    "Give the low and high quantiles to clip at, e.g. clip: [0.01, 0.99]",
                )
            return [low, high]
        if key == "bucketize":
            return _bucketize(value, fld)
        if key == "polynomial":
            return _polynomial(value, fld)
    elif kind == CATEGORICAL:
        if key == "impute":
            return _choice(value, CATEGORICAL_IMPUTE, fld)
        if key == "encode":
            return _choice(value, CATEGORICAL_ENCODE, fld)
        if key == "max_categories":
            return None if value is None else _int(value, fld, 2)
        if key == "min_frequency":
            if value is None:
                return None
            x = _number(value, fld)
            if x <= 0 or (isinstance(value, float) and x >= 1):
                raise _fail(
                    f"{fld} is {value!r}",
                    fld,
                    "Give a count of rows (e.g. 10) or a share of them below 1 (e.g. 0.01)",
                )
            return value
        if key == "n_features":
            return _int(value, fld, 2, 1 << 20)
    elif kind == DATETIME:
        if key == "parts":
            if value is None:
                return None
            if not isinstance(value, list) or not value:
                raise _fail(f"{fld} is {value!r}", fld, f"List parts of: {', '.join(DATE_PARTS)}")
            return [_choice(v, DATE_PARTS, fld) for v in value]
        if key == "cyclical":
            return _bool(value, fld)
        if key == "since":
            if value is not None and not isinstance(value, str):
                raise _fail(f"{fld} is {value!r}", fld, "Name the reference timestamp column")
            return value
    elif kind == TEXT:
        return _text_option(key, value, fld)
    raise AssertionError(key)  # pragma: no cover - keys are checked first


def _text_option(key: str, value: Any, fld: str) -> Any:
    if key == "encode":
        value = TEXT_ALIASES.get(value, value) if isinstance(value, str) else value
        return _choice(value, TEXT_ENCODE, fld)
    if key == "max_features":
        return None if value is None else _int(value, fld, 1, 1 << 20)
    if key == "n_features":
        return _int(value, fld, 2, 1 << 20)
    if key == "min_df":
        return _int(value, fld, 1)
    if key == "lowercase":
        return _bool(value, fld)
    if key == "ngram_range":
        ok = (
            isinstance(value, list | tuple)
            and len(value) == 2
            and all(isinstance(v, int) and not isinstance(v, bool) for v in value)
            and 1 <= value[0] <= value[1] <= 5
        )
        if not ok:
            raise _fail(
                f"{fld} is {value!r}",
                fld,
                "Give the shortest and longest n-grams of words, from 1 to 5, e.g. "
                "ngram_range: [1, 2]",
            )
        return [int(value[0]), int(value[1])]
    raise AssertionError(key)  # pragma: no cover - keys are checked first


def _bucketize(value: Any, fld: str) -> dict[str, Any] | None:
    if value is None:
        return None
    if isinstance(value, int) and not isinstance(value, bool):
        value = {"bins": value}
    hint = "Write bucketize: {bins: 5, strategy: quantile} or bucketize: {edges: [0, 10, 100]}"
    data = _mapping(value, fld, hint)
    _keys(data, ("bins", "strategy", "edges"), fld, "option")
    if "edges" in data:
        edges = data["edges"]
        if "bins" in data or not isinstance(edges, list) or not edges:
            raise _fail(f"{fld}.edges is {edges!r}", f"{fld}.edges", hint)
        return {"edges": sorted(_number(e, f"{fld}.edges") for e in edges)}
    return {
        "bins": _int(data.get("bins", 5), f"{fld}.bins", 2, 1000),
        "strategy": _choice(data.get("strategy", "quantile"), BUCKET_STRATEGIES, f"{fld}.strategy"),
    }


def _polynomial(value: Any, fld: str) -> dict[str, Any] | None:
    if value is None or value is False:
        return None
    if value is True:
        value = {}
    if isinstance(value, int) and not isinstance(value, bool):
        value = {"degree": value}
    data = _mapping(value, fld, "Write polynomial: {degree: 2, interaction_only: true}")
    _keys(data, ("degree", "interaction_only"), fld, "option")
    return {
        "degree": _int(data.get("degree", 2), f"{fld}.degree", 2, 3),
        "interaction_only": _bool(data.get("interaction_only", False), f"{fld}.interaction_only"),
    }


def _section(kind: str, data: Any, fld: str, *, column: bool = False) -> dict[str, Any]:
    """The validated options of a kind section, or a column's (only what it sets)."""
    body = _mapping(data or {}, fld, f"Write {fld}: {{option: value}}")
    known = tuple(SECTION_DEFAULTS[kind])
    if column:
        known = tuple(k for k in known if k != "polynomial")
    for key in body:
        if key not in known:
            hint = f"{kind.capitalize()} transforms: {', '.join(known)}"
            others = [k for k, d in SECTION_DEFAULTS.items() if k != kind and key in d]
            if kind == NUMERIC and key == "polynomial" and column:
                hint = "polynomial features are declared for all numeric columns together, "
                hint += "under features.numeric.polynomial"
            elif others and column:
                raise _fail(
                    f"{fld}.{key} is a {others[0]} transform, but the column is {kind}",
                    f"{fld}.{key}",
                    f"Remove {key} from {fld}, or declare kind: {others[0]} for the column "
                    f"({kind} transforms: {', '.join(known)})",
                )
            raise _fail(f"unknown transform {key!r} under {fld}", f"{fld}.{key}", hint)
    return {key: _option(kind, key, value, f"{fld}.{key}") for key, value in body.items()}


def _selection(data: Any, where: str) -> dict[str, Any] | None:
    if data is None:
        return None
    fld = f"{where}.selection"
    hint = "Write selection: {method: mutual_info, k: 10}"
    body = _mapping(data, fld, hint)
    _keys(body, ("method", "k", "percentile", "threshold", "cv"), fld, "option")
    method = body.get("method")
    method = SELECTION_ALIASES.get(method, method) if isinstance(method, str) else method
    if method is None:
        raise _fail(f"{fld}.method is missing", f"{fld}.method", hint)
    out: dict[str, Any] = {"method": _choice(method, SELECTION_METHODS, f"{fld}.method")}
    if "k" in body:
        k = body["k"]
        if isinstance(k, int) and not isinstance(k, bool) and k <= 0:
            raise _fail(
                f"{fld}.k is {k}: the selection would keep no feature",
                f"{fld}.k",
                "Keep at least one feature: k: 1 or more",
            )
        out["k"] = _int(k, f"{fld}.k", 1)
    if "percentile" in body:
        p = _number(body["percentile"], f"{fld}.percentile")
        if not 0 < p <= 100:
            raise _fail(
                f"{fld}.percentile is {body['percentile']!r}"
                + (": the selection would keep no feature" if p <= 0 else ""),
                f"{fld}.percentile",
                "Give the share of features to keep, above 0 and at most 100",
            )
        out["percentile"] = p
    if "threshold" in body:
        out["threshold"] = _number(body["threshold"], f"{fld}.threshold")
    if "cv" in body:
        out["cv"] = _int(body["cv"], f"{fld}.cv", 2, 20)
    m = out["method"]
    if "k" in out and "percentile" in out:
        raise _fail(f"{fld} gives both k and percentile", f"{fld}.percentile", "Give one of them")
    if m in ("mutual_info", "chi2", "f_test") and "threshold" in out:
        raise _fail(
            f"{fld}.threshold does not apply to {m}",
            f"{fld}.threshold",
            "Univariate selection keeps the top k or percentile",
        )
    if m in ("mutual_info", "chi2", "f_test") and "k" not in out and "percentile" not in out:
        out["k"] = 10
    if m == "variance" and ("k" in out or "percentile" in out):
        raise _fail(
            f"{fld}: variance selection keeps the columns above a threshold",
            f"{fld}.k" if "k" in out else f"{fld}.percentile",
            "Write selection: {method: variance, threshold: 0.01}",
        )
    if m == "variance" and out.get("threshold", 0.0) < 0:
        raise _fail(f"{fld}.threshold is negative", f"{fld}.threshold", "Give 0 or more")
    if m == "model" and "k" in out and "threshold" in out:
        raise _fail(f"{fld} gives both k and threshold", f"{fld}.threshold", "Give one of them")
    if m == "rfecv" and ("percentile" in out or "threshold" in out):
        raise _fail(
            f"{fld}: rfecv chooses how many to keep itself",
            f"{fld}.method",
            "Give k (the fewest it may keep) and cv at most",
        )
    return out


def check_custom(path: Any, fld: str) -> str:
    """The import path of a user's transformer, checked to import and to be one."""
    hint = "Name a scikit-learn-compatible transformer class, e.g. mypackage.steps.MyScaler"
    if not isinstance(path, str) or not _DOTTED.fullmatch(path):
        raise _fail(f"{fld} is {path!r}, not an import path", fld, hint)
    module_name, _, attr = path.rpartition(".")
    try:
        obj = getattr(importlib.import_module(module_name), attr)
    except ImportError as exc:
        raise _fail(f"{fld}: {path!r} does not import ({exc})", fld, hint) from None
    except AttributeError:
        raise _fail(f"{fld}: module {module_name!r} has no {attr!r}", fld, hint) from None
    if not isinstance(obj, type) or not all(
        callable(getattr(obj, m, None)) for m in ("fit", "transform")
    ):
        raise _fail(f"{fld}: {path!r} is not a transformer class (fit and transform)", fld, hint)
    return path


def _check_trusted(path: str, trust: Sequence[str], fld: str) -> None:
    name = skops_name(path)
    if name in trust or path in trust:
        return
    raise _fail(
        f"{fld} is {path!r}, a transformer outside loopml's artifact allowlist, and "
        "model.trust does not name it",
        fld,
        f"A custom transformer is code the model artifact loads: opt in with "
        f"model: {{trust: [{name}]}} (recorded on the version), or use a built-in transform",
    )


def skops_name(path: str) -> str:
    """The name skops writes for the class at ``path`` (its defining module and name)."""
    module_name, _, attr = path.rpartition(".")
    obj = getattr(importlib.import_module(module_name), attr)
    return f"{obj.__module__}.{obj.__name__}"


@dataclass(frozen=True)
class FeatureSpec:
    """Columns and transforms. ``include=None`` means every column but the target.

    ``numeric``, ``categorical``, ``datetime`` and ``text`` hold every option of their kind
    (defaults filled in); ``columns`` holds, per column, its declared ``kind`` (or None) and
    the options it sets itself; ``selection`` the selection step, or None.
    """

    include: list[str] | None = None
    exclude: list[str] = field(default_factory=list)
    kinds: dict[str, str] = field(default_factory=dict)  # overrides of inferred kinds
    unknown: str | None = None  # UNKNOWN_POLICIES, or None for each path's default
    numeric: dict[str, Any] = field(default_factory=lambda: dict(NUMERIC_DEFAULTS))
    categorical: dict[str, Any] = field(default_factory=lambda: dict(CATEGORICAL_DEFAULTS))
    datetime: dict[str, Any] = field(default_factory=lambda: dict(DATETIME_DEFAULTS))
    text: dict[str, Any] = field(default_factory=lambda: dict(TEXT_DEFAULTS))
    columns: dict[str, dict[str, Any]] = field(default_factory=dict)
    selection: dict[str, Any] | None = None

    @property
    def numeric_impute(self) -> str:
        return str(self.numeric.get("impute", "auto"))

    @property
    def numeric_scale(self) -> str:
        return str(self.numeric.get("scale", "auto"))

    @property
    def categorical_impute(self) -> str:
        return str(self.categorical.get("impute", "most_frequent"))

    @property
    def categorical_encode(self) -> str:
        return str(self.categorical.get("encode", "onehot"))

    def options(self, column: str, kind: str) -> dict[str, Any]:
        """Every option for ``column`` of ``kind``: its kind's, then what it sets itself."""
        base = {
            NUMERIC: self.numeric,
            CATEGORICAL: self.categorical,
            DATETIME: self.datetime,
            TEXT: self.text,
        }
        out = dict(base.get(kind, {}))
        out.update(self.columns.get(column, {}).get("options", {}))
        custom = self.columns.get(column, {}).get("transform")
        if custom is not None:
            out["transform"] = custom
            out["params"] = self.columns[column].get("params", {})
        return out

    @classmethod
    def from_config(
        cls,
        data: Mapping[str, Any] | None,
        where: str = "features",
        *,
        trust: Sequence[str] | None = None,
    ) -> FeatureSpec:
        """Parse the section. ``trust`` (the project's ``model.trust``), when given, must name
        each custom transformer's class: it is code, loaded from the model artifact only
        with that opt-in (recorded on the version)."""
        data = dict(data or {})
        known = {
            *("include", "exclude", "kinds", "numeric", "categorical", "datetime", "text"),
            *("columns", "selection", "unknown"),
        }
        for key in data:
            if key not in known:
                raise ConfigError(
                    f"unknown key {key!r} under {where}",
                    where={"field": f"{where}.{key}"},
                    hint=f"Known keys: {', '.join(sorted(known))}",
                )
        include = data.get("include", "all")
        if include == "all" or include is None:
            include_list = None
        elif isinstance(include, list) and all(isinstance(c, str) for c in include):
            include_list = list(include)
        else:
            raise ConfigError(
                f"{where}.include must be 'all' or a list of column names",
                where={"field": f"{where}.include"},
                hint="Write include: [col_a, col_b] or include: all",
            )
        sections = {
            kind: {**SECTION_DEFAULTS[kind], **_section(kind, data.get(kind), f"{where}.{kind}")}
            for kind in (NUMERIC, CATEGORICAL, DATETIME, TEXT)
        }
        kinds = dict(data.get("kinds") or {})
        for col, kind in kinds.items():
            if kind not in FEATURE_KINDS:
                raise ConfigError(
                    f"{where}.kinds.{col} is {kind!r}",
                    where={"field": f"{where}.kinds.{col}"},
                    hint=f"A kind is one of: {', '.join(FEATURE_KINDS)}",
                )
        columns = _columns(data.get("columns"), where, kinds)
        unknown = None if data.get("unknown") is None else str(data["unknown"])
        if unknown is not None and unknown not in UNKNOWN_POLICIES:
            raise ConfigError(
                f"{where}.unknown is {unknown!r}",
                where={"field": f"{where}.unknown"},
                hint="Choose flag (score and flag rows with values training never had) or "
                "error (refuse them); leave it out for each path's default",
            )
        for col, entry in columns.items():
            if entry.get("kind") is not None:
                kinds[col] = entry["kind"]
            if trust is not None and entry.get("transform"):
                _check_trusted(entry["transform"], trust, f"{where}.columns.{col}.transform")
        return cls(
            include=include_list,
            exclude=list(data.get("exclude") or []),
            kinds=kinds,
            unknown=unknown,
            numeric=sections[NUMERIC],
            categorical=sections[CATEGORICAL],
            datetime=sections[DATETIME],
            text=sections[TEXT],
            columns=columns,
            selection=_selection(data.get("selection"), where),
        )

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "include": self.include or "all",
            "exclude": self.exclude,
            "kinds": self.kinds,
            "numeric": {"impute": self.numeric_impute, "scale": self.numeric_scale},
            "categorical": {"impute": self.categorical_impute, "encode": self.categorical_encode},
        }
        for kind, values in (
            (NUMERIC, self.numeric),
            (CATEGORICAL, self.categorical),
            (DATETIME, self.datetime),
            (TEXT, self.text),
        ):
            for key, value in values.items():
                if value != SECTION_DEFAULTS[kind][key]:
                    out.setdefault(kind, {})[key] = value
        if self.columns:
            out["columns"] = {
                col: {
                    **({"kind": e["kind"]} if e.get("kind") else {}),
                    **e.get("options", {}),
                    **({"transform": e["transform"]} if e.get("transform") else {}),
                    **({"params": e["params"]} if e.get("params") else {}),
                }
                for col, e in self.columns.items()
            }
        if self.selection is not None:
            out["selection"] = dict(self.selection)
        if self.unknown is not None:
            out["unknown"] = self.unknown
        return out

    def resolved(self, kinds: Mapping[str, str], where: str = "features") -> FeatureSpec:
        """This spec with every ``columns`` entry given its column's kind (declared or
        inferred, from ``kinds``) and its options checked against that kind: a transform of
        another kind is a ConfigError naming the field."""
        columns: dict[str, dict[str, Any]] = {}
        for col, entry in self.columns.items():
            fld = f"{where}.columns.{col}"
            kind = entry.get("kind") or kinds.get(col)
            if kind is None:  # not a feature column (excluded); checked by resolve_kinds
                columns[col] = entry
                continue
            out = dict(entry, kind=kind)
            if entry.get("options"):
                out["options"] = _section(kind, entry["options"], fld, column=True)
            columns[col] = out
        return replace(self, columns=columns)

    @property
    def custom_transformers(self) -> list[tuple[str, str]]:
        """``(column, import path)`` of each user's transformer the section declares."""
        return [(c, e["transform"]) for c, e in self.columns.items() if e.get("transform")]


def _columns(data: Any, where: str, kinds: Mapping[str, str]) -> dict[str, dict[str, Any]]:
    if data is None:
        return {}
    fld = f"{where}.columns"
    body = _mapping(data, fld, "Write columns: {city: {encode: hash, n_features: 64}}")
    out: dict[str, dict[str, Any]] = {}
    for col, raw in body.items():
        cfld = f"{fld}.{col}"
        entry = _mapping(raw or {}, cfld, "Write the column's kind and options as a mapping")
        kind = entry.pop("kind", None)
        if kind is not None and kind not in FEATURE_KINDS:
            raise _fail(
                f"{cfld}.kind is {kind!r}",
                f"{cfld}.kind",
                f"A kind is one of: {', '.join(FEATURE_KINDS)}",
            )
        if kind is not None and kinds.get(col) not in (None, kind):
            raise _fail(
                f"{cfld}.kind is {kind!r} but {where}.kinds.{col} is {kinds[col]!r}",
                f"{cfld}.kind",
                "Declare the kind in one place",
            )
        kind = kind or kinds.get(col)
        result: dict[str, Any] = {"kind": kind}
        if "params" in entry and "transform" not in entry:
            raise _fail(
                f"{cfld}.params without a transform",
                f"{cfld}.params",
                "params are the arguments of a custom transform: add transform: pkg.mod.Class",
            )
        if "transform" in entry:
            result["transform"] = check_custom(entry.pop("transform"), f"{cfld}.transform")
            params = entry.pop("params", None) or {}
            result["params"] = _mapping(params, f"{cfld}.params", "Write params: {name: value}")
        options = _column_options(entry, kind, cfld)
        if options:
            result["options"] = options
        out[str(col)] = result
    return out


def _column_options(entry: dict[str, Any], kind: str | None, fld: str) -> dict[str, Any]:
    """A column's options, validated for its declared kind. Without one, only their names
    are checked here (each must belong to some kind); :meth:`FeatureSpec.resolved` checks
    them against the column's inferred kind."""
    if not entry:
        return {}
    if kind is not None:
        return _section(kind, entry, fld, column=True)
    for key in entry:
        if all(key not in d for d in SECTION_DEFAULTS.values()) or key == "polynomial":
            known = sorted({k for d in SECTION_DEFAULTS.values() for k in d} - {"polynomial"})
            raise _fail(
                f"unknown transform {key!r} under {fld}",
                f"{fld}.{key}",
                f"Known: kind, {', '.join([*known, *CUSTOM_KEYS])}",
            )
    return dict(entry)
