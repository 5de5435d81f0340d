"""Feature pipelines: the kinds of a frame's columns, and the transformer a spec builds.

A :class:`~loopml.project.FeatureSpec` (the ``features:`` section of ``loopml.yaml``) builds a
scikit-learn ``ColumnTransformer`` that is fitted once on training data and then saved inside
the model artifact, so serving transforms inputs exactly as training did.

With ``include: all``, :func:`resolve_kinds` also decides which columns should not be
features at all: identifiers (near-unique keys: a one-hot of them is as wide as the data and
refuses every new row) and free text (a one-hot of it learns nothing). Those are left out
with a :class:`FeatureWarning` saying why and how to keep them; timestamps (datetime columns,
and text that is all ISO-8601 dates) become ``datetime`` features, expanded into date parts.
"""

from __future__ import annotations

import importlib
import re
import warnings
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from typing import Any

import numpy as np
import pandas as pd
from sklearn.compose import ColumnTransformer
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import (
    MinMaxScaler,
    OneHotEncoder,
    OrdinalEncoder,
    PolynomialFeatures,
    PowerTransformer,
    RobustScaler,
    StandardScaler,
    TargetEncoder,
)

from loopml.data.schema import TEXT_DISTINCT_SHARE, TEXT_MEAN_LENGTH, TEXT_MIN_DISTINCT
from loopml.errors import ConfigError, InvalidInputError
from loopml.features.dates import DatetimeFeatures
from loopml.features.identity import Identity
from loopml.features.steps import (
    Bucketize,
    FrequencyEncoder,
    HashEncoder,
    QuantileClipper,
    SelectFeatures,
    SelectionError,
    SignedLog1p,
    Standardizer,
    TextVectorizer,
    TimeSince,
)
from loopml.features.values import (
    ValueProblem,
    looks_like_timestamps,
    to_categories,
    to_numbers,
    to_timestamps,
)
from loopml.kinds import CATEGORICAL, DATETIME, NUMERIC, TEXT
from loopml.project.features import FeatureSpec

# an identifier: (nearly) every value distinct, in a column of at least this many values
ID_MIN_ROWS = 20
ID_DISTINCT_SHARE = 0.95  # with a name that says key (id, uuid, key, ...)
# name parts that say "key": user_id, customerID, uuid, order-key, pk
ID_WORDS = frozenset(("id", "ids", "uuid", "guid", "key", "pk", "uid"))
# without such a name, integers are a key when all distinct and increasing, or all distinct and
# dense (their range at most this many times their count): row numbers, auto-increment keys
ID_SPAN = 1.5


class FeatureWarning(UserWarning):
    """A column was left out of the features (an identifier, free text); the message says
    why and how to keep it."""


@contextmanager
def feature_warnings_to(say: Callable[[str], None]) -> Iterator[None]:
    """Within the block, each :class:`FeatureWarning` goes to ``say`` (e.g. a progress line
    of the CLI) as it happens, instead of Python's warning display; other warnings as usual."""
    with warnings.catch_warnings():  # restores the filters and showwarning on exit
        warnings.simplefilter("always", FeatureWarning)
        previous = warnings.showwarning

        def show(
            message: Warning | str,
            category: type[Warning],
            filename: str,
            lineno: int,
            file: Any = None,
            line: str | None = None,
        ) -> None:
            if issubclass(category, FeatureWarning):
                say(str(message))
            else:
                previous(message, category, filename, lineno, file, line)

        warnings.showwarning = show
        yield


def resolve_kinds(
    spec: FeatureSpec, frame: pd.DataFrame, target: str, source: str = "dataset"
) -> dict[str, str]:
    """The feature columns of ``frame`` in order, mapped to their kind.

    Declared kinds (``features.kinds``) win. With ``include: all``, identifier and free-text
    columns without a declared kind are left out with a :class:`FeatureWarning`; listing a
    column in ``features.include`` keeps it whatever it looks like.
    """
    columns = list(frame.columns)
    chosen = spec.include if spec.include is not None else [c for c in columns if c != target]
    for col in [*chosen, *spec.exclude, *spec.kinds]:
        if col not in columns:
            raise InvalidInputError(
                f"feature column {col!r} is not in the {source}",
                where={"column": col, "dataset": source},
                hint=f"Columns are: {', '.join(map(str, columns[:30]))}",
            )
    if target in chosen:
        raise ConfigError(
            f"the target {target!r} is listed as a feature",
            where={"field": "features.include", "column": target},
            hint="Remove the target from features.include",
        )
    chosen = [c for c in chosen if c not in set(spec.exclude)]
    kinds: dict[str, str] = {}
    for c in chosen:
        declared = spec.kinds.get(c)
        if declared:
            kinds[c] = declared
            continue
        if spec.include is None:
            reason = not_a_feature(frame[c], str(c))
            if reason is not None:
                warnings.warn(
                    f"column {c!r} of the {source} is not used as a feature: it {reason}. "
                    "To use it anyway, list it in features.include or declare its kind in "
                    "features.kinds (kind: text vectorizes free text: TF-IDF or hashed "
                    "words); to silence this, add it to features.exclude",
                    FeatureWarning,
                    stacklevel=2,
                )
                continue
        kinds[c] = infer_kind(frame[c])
    if not kinds:
        raise ConfigError(
            "no feature columns left",
            where={"field": "features"},
            hint="Include at least one column besides the target",
        )
    return kinds


def not_a_feature(col: pd.Series, name: str) -> str | None:
    """Why a column should not be a feature (an identifier, free text), or None."""
    if pd.api.types.is_bool_dtype(col.dtype) or pd.api.types.is_datetime64_any_dtype(col.dtype):
        return None
    if isinstance(col.dtype, np.dtype) and col.dtype.kind == "f" and _continuous(col.to_numpy()):
        return None  # what the check below decides for it, from its first values
    present = col.dropna()
    count = len(present)
    if count == 0:
        return None
    named = _key_name(name)
    if pd.api.types.is_numeric_dtype(col.dtype):
        values = present.to_numpy(dtype=np.float64)
        if count < ID_MIN_ROWS or not np.all(values == np.floor(values)):
            return None  # a genuinely continuous number is never an identifier
        distinct = int(pd.unique(values).size)
        share = distinct / count
        span = float(values.max() - values.min()) + 1.0
        sequential = distinct == count and (
            span <= ID_SPAN * count or bool((np.diff(values) > 0).all())
        )
        if (named and share >= ID_DISTINCT_SHARE) or sequential:
            return f"looks like an identifier ({distinct} distinct integers in {count} rows)"
        return None
    if looks_like_timestamps(col):
        return None
    texts = present.astype(str)
    distinct = int(texts.nunique())
    share = distinct / count
    mean_length = float(texts.str.len().mean())
    spaced = float(texts.str.contains(r"\s", regex=True).mean())
    near_unique = count >= ID_MIN_ROWS and share >= ID_DISTINCT_SHARE
    if near_unique and (named or spaced < 0.5) and mean_length < TEXT_MEAN_LENGTH:
        return f"looks like an identifier ({distinct} distinct values in {count} rows)"
    if mean_length >= TEXT_MEAN_LENGTH:
        return f"looks like free text (values are {mean_length:.0f} characters long on average)"
    if near_unique:
        return f"looks like free text ({distinct} distinct values in {count} rows)"
    if distinct >= TEXT_MIN_DISTINCT:
        share_text = f", {share:.0%} of its rows" if share > TEXT_DISTINCT_SHARE else ""
        return (
            f"has {distinct} distinct values{share_text}, too many to one-hot "
            f"(at most {TEXT_MIN_DISTINCT - 1})"
        )
    return None


def _continuous(values: np.ndarray, head: int = 1024) -> bool:
    """Whether a float column holds a number that is not an integer among its first
    ``head`` values (then it is no identifier: :func:`not_a_feature` would read every value
    to find that out)."""
    first = values[:head]
    first = first[~np.isnan(first)]
    return bool(first.size) and not bool(np.all(first == np.floor(first)))


def _key_name(name: str) -> bool:
    """Whether a column name says it is a key: id, user_id, customerID, uuid, order-key."""
    spaced = re.sub(r"([a-z0-9])([A-Z])", r"\1 \2", name)
    words = [w.lower() for w in re.split(r"[^A-Za-z0-9]+", spaced) if w]
    return bool(words) and words[-1] in ID_WORDS


def check_spec(
    spec: FeatureSpec,
    kinds: Mapping[str, str],
    task: str | None = None,
    where: str = "features",
) -> FeatureSpec:
    """``spec`` resolved for these feature columns (see :meth:`FeatureSpec.resolved`), every
    declaration checked against the data's columns and kinds: a ConfigError naming the
    ``loopml.yaml`` field for a transform on a column of another kind, a column that is not a
    feature, a reference column that is not a timestamp feature, a target encoding or a
    supervised selection without a target (``task`` None), chi-square for a regression."""
    resolved = spec.resolved(kinds, where)
    for col, entry in resolved.columns.items():
        fld = f"{where}.columns.{col}"
        if col not in kinds:
            raise ConfigError(
                f"{fld}: column {col!r} is not a feature column",
                where={"field": fld, "column": col},
                hint="Name a column of the dataset that is not the target and not excluded, "
                f"or remove {fld}",
            )
        since = entry.get("options", {}).get("since")
        if since is not None and kinds.get(since) != DATETIME:
            raise ConfigError(
                f"{fld}.since is {since!r}, which is not a datetime feature column",
                where={"field": f"{fld}.since", "column": since},
                hint="Name a timestamp column that is a feature (declare kind: datetime)",
            )
    encodes = {
        c: resolved.options(c, k).get("encode") for c, k in kinds.items() if k == CATEGORICAL
    }
    if task is None and "target" in encodes.values():
        col = next(c for c, e in encodes.items() if e == "target")
        fld = (
            f"{where}.columns.{col}.encode"
            if "encode" in resolved.columns.get(col, {}).get("options", {})
            else f"{where}.categorical.encode"
        )
        raise ConfigError(
            f"{fld} is target, but there is no target to encode {col!r} by",
            where={"field": fld, "column": col},
            hint="Target encoding learns from the target: train with data.target set, or "
            "choose onehot, ordinal, frequency or hash",
        )
    sel = resolved.selection
    if sel is not None:
        method = sel["method"]
        if task is None and method != "variance":
            raise ConfigError(
                f"{where}.selection.method is {method}, which needs a target",
                where={"field": f"{where}.selection.method"},
                hint="Train with data.target set, or select by variance",
            )
        if method == "chi2" and task == "regression":
            raise ConfigError(
                f"{where}.selection.method is chi2, which scores classes, for a regression",
                where={"field": f"{where}.selection.method"},
                hint="Use f_test or mutual_info for a regression",
            )
    for col, kind in kinds.items():
        opts = resolved.options(col, kind)
        if kind == NUMERIC and opts.get("indicator") and opts.get("impute") == "none":
            fld = f"{where}.numeric.indicator"
            if "indicator" in resolved.columns.get(col, {}).get("options", {}):
                fld = f"{where}.columns.{col}.indicator"
            raise ConfigError(
                f"{fld} is true but {col!r} is not imputed",
                where={"field": fld, "column": col},
                hint="A missing-value indicator goes with imputation: set impute "
                "(median, mean, zero, constant), or drop indicator",
            )
    return resolved


def build_transformer(
    spec: FeatureSpec,
    kinds: Mapping[str, str],
    estimator: Any = None,
    task: str | None = None,
) -> Any:
    """An unfitted feature pipeline for these feature kinds (output is dense): a
    ColumnTransformer, followed by a :class:`SelectFeatures` step in a Pipeline when
    ``features.selection`` is declared.

    Columns that share their options are transformed together; each column with options of
    its own (``features.columns``) gets its own part. Numeric columns are imputed, clipped,
    power-transformed, bucketized and scaled in that order; a missing-value indicator is a
    part of its own. Datetime features are expanded into date parts (or days since their
    reference column), then imputed and scaled as ``features.numeric`` says; ``auto`` is
    decided for ``estimator`` (see :func:`numeric_choices`). ``task`` (classification or
    regression; None when there is no target) chooses the target encoding's and the
    selection's form.
    """
    resolved = check_spec(spec, kinds, task)
    groups: dict[tuple[str, str], tuple[str, dict[str, Any], list[str]]] = {}
    for col, kind in kinds.items():
        opts = resolved.options(col, kind)
        own = col in resolved.columns and (
            resolved.columns[col].get("options") or resolved.columns[col].get("transform")
        )
        key = (kind, repr(sorted(opts.items())) if own else "")
        if kind == TEXT:  # a vocabulary per text column: each is a part of its own
            key = (kind, col)
        if key not in groups:
            groups[key] = (kind, opts, [])
        groups[key][2].append(col)
    transformers: list[tuple[str, Any, list[str]]] = []
    used: set[str] = set()
    for (kind, own), (_, opts, cols) in groups.items():
        name = kind if not own and kind != TEXT else f"{kind}_{cols[0]}"
        while name in used:
            name += "_"
        used.add(name)
        if opts.get("transform"):
            step = _custom(opts, cols[0])
            transformers.append((f"custom_{cols[0]}", step, cols))
            continue
        if kind == NUMERIC:
            polynomial = not own and bool(resolved.numeric.get("polynomial"))
            fast = _standardizer(opts, estimator, polynomial, resolved.selection is not None)
            steps = (
                [("standardize", fast)]
                if fast is not None
                else _numeric_steps(*_choices(opts, estimator), opts)
            )
            if polynomial:
                poly = resolved.numeric["polynomial"]
                steps.append(
                    (
                        "polynomial",
                        PolynomialFeatures(
                            degree=poly["degree"],
                            interaction_only=poly["interaction_only"],
                            include_bias=False,
                        ),
                    )
                )
            transformers.append((name, Pipeline(steps) if steps else Identity(), cols))
            if opts.get("indicator"):
                from sklearn.impute import MissingIndicator  # on use: loads sklearn.neighbors

                transformers.append(
                    (f"{name}_missing", MissingIndicator(features="all", error_on_new=False), cols)
                )
        elif kind == CATEGORICAL:
            transformers.append((name, Pipeline(_categorical_steps(opts, task)), cols))
        elif kind == TEXT:
            transformers.append((name, _text_step(opts), cols))
        else:
            impute, scale = _choices(resolved.numeric, estimator)
            numeric = _numeric_steps(impute, scale, {})
            since = opts.get("since")
            if since is not None:
                transformers.append(
                    (
                        f"{name}_since_{since}",
                        Pipeline([("since", TimeSince()), *numeric]),
                        [*cols, since],
                    )
                )
                continue
            parts = opts.get("parts")
            dsteps: list[tuple[str, Any]] = [
                (
                    "parts",
                    DatetimeFeatures(
                        cyclical=bool(opts.get("cyclical", True)),
                        parts=None if parts is None else tuple(parts),
                    ),
                ),
                *numeric,
            ]
            transformers.append((name, Pipeline(dsteps), cols))
    columns = ColumnTransformer(transformers, remainder="drop", sparse_threshold=0.0)
    sel = resolved.selection
    if sel is None:
        return columns
    select = SelectFeatures(
        method=sel["method"],
        task=task or "classification",
        k=sel.get("k"),
        percentile=sel.get("percentile"),
        threshold=sel.get("threshold"),
        cv=sel.get("cv", 3),
    )
    return Pipeline([("columns", columns), ("select", select)])


def fit_features(features: Any, x: pd.DataFrame, y: Any = None) -> np.ndarray:
    """Fit the feature pipeline from :func:`build_transformer` on ``x`` (and the target
    ``y``) and return the training features, as ``fit_transform`` gives them: a target
    encoding's are out of fold. They are float64, or float32 where the pipeline gives
    float32 (a torch network's :class:`Standardizer`: the rows as the network trains on
    them). A selection left with no feature is a ConfigError naming
    ``features.selection``."""
    target = None if y is None else np.asarray(y)
    try:
        with warnings.catch_warnings():
            # the target encoding's random_state keeps its folds reproducible; scikit-learn
            # 1.9 asks for a splitter object instead, which a model artifact cannot hold
            warnings.filterwarnings(
                "ignore", message=".*TargetEncoder.shuffle", category=FutureWarning
            )
            encoded = np.asarray(features.fit_transform(x, target))
            if encoded.dtype == np.float32:
                return encoded
            return np.asarray(encoded, dtype=np.float64)
    except SelectionError as exc:
        raise ConfigError(
            f"features.selection: {exc}",
            where={"field": "features.selection"},
            hint="Lower features.selection.threshold, select by k or percentile, or choose "
            "another features.selection.method",
        ) from None


def _custom(opts: Mapping[str, Any], column: str) -> Any:
    path = str(opts["transform"])
    module_name, _, attr = path.rpartition(".")
    cls = getattr(importlib.import_module(module_name), attr)
    try:
        return cls(**dict(opts.get("params") or {}))
    except TypeError as exc:
        raise ConfigError(
            f"features.columns.{column}.params do not fit {path}: {exc}",
            where={"field": f"features.columns.{column}.params"},
            hint=f"Give the arguments {attr} takes",
        ) from None


def _text_step(opts: Mapping[str, Any]) -> TextVectorizer:
    low, high = opts.get("ngram_range") or (1, 1)
    return TextVectorizer(
        encode=str(opts.get("encode", "tfidf")),
        max_features=opts.get("max_features", 1000),
        ngram_range=(int(low), int(high)),
        n_features=int(opts.get("n_features", 256)),
        lowercase=bool(opts.get("lowercase", True)),
        min_df=int(opts.get("min_df", 1)),
    )


def open_categories(spec: FeatureSpec, kinds: Mapping[str, str]) -> list[str]:
    """The categorical columns whose encoding takes any text (hashing: no vocabulary), so
    that a category training never had is scored, not refused (the signature's
    ``any_category``)."""
    resolved = spec.resolved(kinds)
    return [
        c
        for c, k in kinds.items()
        if k == CATEGORICAL
        and resolved.options(c, k).get("encode") == "hash"
        and not resolved.options(c, k).get("transform")
    ]


def check_selection(
    spec: FeatureSpec,
    kinds: Mapping[str, str],
    x: pd.DataFrame,
    y: Any = None,
    task: str | None = None,
    estimator: Any = None,
) -> None:
    """A variance selection that would keep no feature of ``x`` (a threshold above every
    feature's variance on the training rows) is a ConfigError naming
    ``features.selection.threshold``, raised before any run is recorded. Only the column
    transforms are fitted (once, on all of ``x``); other methods are checked as each fold
    fits."""
    sel = spec.selection
    if sel is None or sel["method"] != "variance" or len(x) == 0:
        return
    features = build_transformer(spec, kinds, estimator, task=task)
    columns, select = features.steps[0][1], features.steps[1][1]
    target = None if y is None else np.asarray(y)
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*TargetEncoder.shuffle", category=FutureWarning)
        encoded = np.asarray(columns.fit_transform(x, target), dtype=np.float64)
    try:
        select.fit(encoded, target)  # the step's own scores: what each fold computes
        return
    except SelectionError:
        pass
    threshold = float(sel.get("threshold") or 0.0)
    scores = select._scores(encoded, target) if encoded.shape[1] else np.zeros(0)
    top = float(scores.max()) if scores.size else 0.0
    raise ConfigError(
        f"features.selection: a variance threshold of {threshold:g} keeps none of the "
        f"{encoded.shape[1]} features (the largest variance on the training rows is {top:.4g})",
        where={"field": "features.selection.threshold"},
        hint=f"Set features.selection.threshold below {top:.4g}, or select by another "
        "features.selection.method",
    )


def _categorical_steps(opts: Mapping[str, Any], task: str | None) -> list[tuple[str, Any]]:
    from sklearn.impute import SimpleImputer  # on use: it loads sklearn.neighbors

    steps: list[tuple[str, Any]] = []
    impute = opts.get("impute", "most_frequent")
    if impute == "most_frequent":
        steps.append(("impute", SimpleImputer(strategy="most_frequent")))
    elif impute == "missing":
        steps.append(("impute", SimpleImputer(strategy="constant", fill_value="__missing__")))
    encode = opts.get("encode", "onehot")
    if encode == "onehot":
        capped = opts.get("max_categories") is not None or opts.get("min_frequency") is not None
        encoder: Any = OneHotEncoder(
            handle_unknown="infrequent_if_exist" if capped else "ignore",
            max_categories=opts.get("max_categories"),
            min_frequency=opts.get("min_frequency"),
            sparse_output=False,
        )
    elif encode == "ordinal":
        encoder = OrdinalEncoder(
            handle_unknown="use_encoded_value", unknown_value=-1, encoded_missing_value=-1
        )
    elif encode == "frequency":
        encoder = FrequencyEncoder()
    elif encode == "target":
        target_type = "continuous" if task == "regression" else "auto"
        encoder = TargetEncoder(target_type=target_type, random_state=0)
    else:
        encoder = HashEncoder(n_features=int(opts.get("n_features", 32)))
    steps.append(("encode", encoder))
    return steps


#: estimators that split on thresholds: scaling a feature changes nothing for them
TREE_MODULES = ("lightgbm", "xgboost", "sklearn.tree", "sklearn.ensemble")
#: ... and of those, the ones that route missing values themselves (learned per split)
NATIVE_MISSING = ("lightgbm", "xgboost")
NATIVE_MISSING_CLASSES = ("HistGradientBoostingClassifier", "HistGradientBoostingRegressor")


def _final_step(estimator: Any) -> Any:
    steps = getattr(estimator, "steps", None)  # a Pipeline: its model is the last step
    return steps[-1][1] if isinstance(steps, list) and steps else estimator


def numeric_choices(spec: FeatureSpec, estimator: Any = None) -> tuple[str, str]:
    """``(impute, scale)`` for numeric features, ``auto`` decided for ``estimator``.

    A tree model (scikit-learn's trees and ensembles of them, LightGBM, XGBoost) gets no
    scaling: it splits on thresholds, so scaling costs time and changes no prediction.
    LightGBM, XGBoost and HistGradientBoosting get no imputation either: they learn where
    missing values go at each split, which imputing would hide from them. Anything else
    (and no estimator) gets median imputation and standard scaling.
    """
    return _choices({"impute": spec.numeric_impute, "scale": spec.numeric_scale}, estimator)


def _choices(opts: Mapping[str, Any], estimator: Any) -> tuple[str, str]:
    model = _final_step(estimator)
    module = type(model).__module__ if model is not None else ""
    tree = model is not None and module.startswith(TREE_MODULES)
    if tree and module.startswith("sklearn.ensemble"):
        # ensembles of trees only: bagging or voting over a linear model needs its scaling
        inner = getattr(model, "estimator", None)
        tree = inner is None or type(inner).__module__.startswith("sklearn.tree")
    native = model is not None and (
        module.startswith(NATIVE_MISSING) or type(model).__name__ in NATIVE_MISSING_CLASSES
    )
    impute = str(opts.get("impute", "auto"))
    if impute == "auto":
        impute = "none" if native else "median"
    scale = str(opts.get("scale", "auto"))
    if scale == "auto":
        scale = "none" if tree else "standard"
    return impute, scale


#: the estimators whose numeric block is a :class:`Standardizer` where the options allow:
#: loopml's torch networks (the module of ``loopml.train.deep.MLPClassifier`` and its kin)
STANDARDIZED_MODULES = ("loopml.train.deep.estimators",)
#: numeric options that take steps a Standardizer does not make
_OTHER_STEPS = ("clip", "bucketize", "transform")


def _standardizer(
    opts: Mapping[str, Any], estimator: Any, polynomial: bool, selection: bool
) -> Standardizer | None:
    """The one step that imputes and standardizes a torch network's numeric block (the
    numbers of SimpleImputer then StandardScaler, without their copies; its training rows
    in float32, as the network takes them), or None where the options ask for more (a
    clip, a power transform, buckets, polynomial features) or the estimator is another."""
    model = _final_step(estimator)
    if model is None or type(model).__module__ not in STANDARDIZED_MODULES:
        return None
    impute, scale = _choices(opts, estimator)
    if scale != "standard" or impute not in ("mean", "median", "zero", "constant"):
        return None
    if polynomial or opts.get("power", "none") != "none":
        return None
    if any(opts.get(k) is not None for k in _OTHER_STEPS):
        return None
    fill = float(opts.get("fill_value", 0.0)) if impute == "constant" else 0.0
    return Standardizer(
        impute="constant" if impute in ("zero", "constant") else impute,
        fill_value=fill,
        # a selection scores the features in float64, as the other steps give them
        fit_dtype="float64" if selection else "float32",
    )


def _numeric_steps(
    impute: str, scale: str, opts: Mapping[str, Any] | None = None
) -> list[tuple[str, Any]]:
    """Impute, clip, power, bucketize, scale: the steps ``opts`` asks for, in that order."""
    opts = opts or {}
    steps: list[tuple[str, Any]] = []
    if impute != "none":
        from sklearn.impute import SimpleImputer  # on use: a LightGBM run imputes nothing

        strategy = "constant" if impute in ("zero", "constant") else impute
        fill = float(opts.get("fill_value", 0.0)) if impute == "constant" else 0.0
        steps.append(("impute", SimpleImputer(strategy=strategy, fill_value=fill)))
    clip = opts.get("clip")
    if clip is not None:
        steps.append(("clip", QuantileClipper(low=float(clip[0]), high=float(clip[1]))))
    power = opts.get("power", "none")
    if power == "yeo-johnson":
        steps.append(("power", PowerTransformer(method="yeo-johnson", standardize=False)))
    elif power == "log1p":
        steps.append(("power", SignedLog1p()))
    buckets = opts.get("bucketize")
    if buckets is not None:
        steps.append(
            (
                "bucketize",
                Bucketize(
                    bins=int(buckets.get("bins", 5)),
                    strategy=str(buckets.get("strategy", "quantile")),
                    edges=buckets.get("edges"),
                ),
            )
        )
    if scale == "standard":
        steps.append(("scale", StandardScaler()))
    elif scale == "minmax":
        steps.append(("scale", MinMaxScaler()))
    elif scale == "robust":
        steps.append(("scale", RobustScaler()))
    return steps


def infer_kind(col: pd.Series) -> str:
    """Numbers and booleans are numeric, timestamps (and ISO-8601 date text) are datetime;
    everything else is categorical."""
    if pd.api.types.is_bool_dtype(col) or pd.api.types.is_numeric_dtype(col):
        return NUMERIC
    if looks_like_timestamps(col):
        return DATETIME
    return CATEGORICAL


def prepare_frame(
    frame: pd.DataFrame, kinds: Mapping[str, str], source: str = "dataset"
) -> pd.DataFrame:
    """The feature columns in order, read as every validation path reads them: numeric as
    float64 (booleans as 0/1), categorical as canonical text (``1``, ``1.0`` -> ``"1"``),
    datetime as UTC instants. A value that cannot be read names its column and row.

    All-numeric features come back as one float64 block: the frame's own columns where
    they are float64 already (no copy: pandas copies on write), else read into one array
    (not one per column, then stacked)."""
    if kinds and all(k == NUMERIC for k in kinds.values()):
        return _numeric_frame(frame, kinds, source)
    out: dict[str, Any] = {}
    for col, kind in kinds.items():
        s = frame[col].reset_index(drop=True)
        try:
            if kind == NUMERIC:
                out[col] = to_numbers(s, allow_bool=True)
            elif kind == DATETIME:
                out[col] = to_timestamps(s)
            else:  # categorical and text: canonical text
                out[col] = to_categories(s)
        except ValueProblem as exc:
            raise _misdeclared(col, kind, source, exc) from None
    return pd.DataFrame(out, columns=list(kinds), index=frame.index)


def _misdeclared(col: str, kind: str, source: str, exc: ValueProblem) -> InvalidInputError:
    return InvalidInputError(
        f"column {col!r} of the {source} is declared {kind}, but row {exc.row} {exc.message}",
        where={"dataset": source, "column": col, "row": exc.row},
        hint=f"Declare another kind in features.kinds.{col}, or fix the value",
    )


def _numeric_frame(frame: pd.DataFrame, kinds: Mapping[str, str], source: str) -> pd.DataFrame:
    """:func:`prepare_frame` of numeric features only: the same float64 values."""
    cols = list(kinds)
    if all(isinstance(frame[c].dtype, np.dtype) and frame[c].dtype == np.float64 for c in cols):
        return frame[cols]  # already what to_numbers reads: NaN where missing
    block = np.empty((len(cols), len(frame)), dtype=np.float64)  # pandas' own layout
    for j, col in enumerate(cols):
        try:
            to_numbers(frame[col].reset_index(drop=True), allow_bool=True, out=block[j])
        except ValueProblem as exc:
            raise _misdeclared(col, NUMERIC, source, exc) from None
    return pd.DataFrame(block.T, columns=cols, index=frame.index, copy=False)
