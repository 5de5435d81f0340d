"""The whole bundle as one ONNX graph: the fitted feature pipeline, then the estimator.

The graph takes one input per signature column, named after it: numeric columns as double
``[N, 1]``, categorical ones as string ``[N, 1]`` (a missing value is :data:`MISSING`, see
:func:`categorical_feed`). The feature pipeline is rebuilt from its fitted state with plain
ONNX operators, column by column:

- numeric: ``SimpleImputer`` (``Where(IsNaN(x), statistic, x)``), ``StandardScaler``
  (``(x - mean) / scale``, in double as scikit-learn computes it), loopml's ``Identity``;
- categorical: ``SimpleImputer`` and ``OneHotEncoder`` together become one ``LabelEncoder``
  (text -> the one-hot column it lights, or none) and an ``Equal`` against the column
  numbers. Which column each category, a missing value and an unknown text light is read
  from the fitted pipeline itself (it is run on them once), so imputation, unknown handling
  and the order of the columns are the pipeline's own.

Anything else (``DatetimeFeatures``, a user's transformer) raises :class:`NotConvertible`
with the reason. The estimator comes from its flavor's converter
(:meth:`loopml.registry.flavors.Flavor.to_onnx`: skl2onnx, onnxmltools); its values are
renamed under a prefix so that no column name can collide with them, and only what the one
output needs is kept. The graph's single output :data:`OUTPUT` is double: class
probabilities ``[N, k]`` or regression values ``[N, 1]``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from loopml.kinds import CATEGORICAL, DATETIME, NUMERIC, TEXT
from loopml.registry.flavors import get_flavor
from loopml.registry.flavors.base import NotConvertible, class_path
from loopml.registry.signature import Signature

PREFIX = "__loopml_"  # every value the graph adds; no input may start with it
OUTPUT = "__loopml_output"
FEATURES_OUTPUT = "__loopml_features"  # of :func:`feature_model`
#: a missing categorical value in a feed (no category text can hold a NUL and this prefix
#: and be known to the model: :func:`build` checks)
MISSING = "\x00loopml:missing"
#: what a feed sends in place of a text that equals :data:`MISSING` (an unknown category)
UNKNOWN = "\x00loopml:unknown"
MIN_OPSET = 9  # IsNaN and Where
MIN_ML_OPSET = 2  # LabelEncoder with keys_strings / values_int64


@dataclass(frozen=True)
class Graph:
    """The built model and what feeding it needs."""

    model: Any  # onnx.ModelProto
    width: int  # features after the pipeline
    estimator_input: str  # "double" or "float"


def build(bundle: Any) -> Graph:
    """The ONNX graph of ``bundle`` (a :class:`~loopml.registry.ModelBundle`); raises
    :class:`NotConvertible` with the reason for anything without an ONNX form."""
    from onnx import TensorProto, helper

    sig: Signature = bundle.signature
    _check_names(sig)
    g = _Builder(sig)
    features, width = _features(bundle, g)

    estimator, out_name = get_flavor(bundle.flavor).to_onnx(bundle.estimator, width, sig.task)
    est_graph = estimator.graph
    if len(est_graph.input) != 1:
        raise NotConvertible(f"the converted estimator has {len(est_graph.input)} inputs, not 1")
    elem = est_graph.input[0].type.tensor_type.elem_type
    if elem == TensorProto.DOUBLE:
        kind = "double"
    elif elem == TensorProto.FLOAT:
        kind = "float"
    else:
        raise NotConvertible("the converted estimator takes neither double nor float input")
    opsets = _opsets(estimator)
    # the estimator's values, renamed under the prefix; its input is the features
    rename = _renamer(est_graph)
    est_input = rename(est_graph.input[0].name)
    if kind == "double":
        g.node("Identity", [features], [est_input])
    else:
        g.node("Cast", [features], [est_input], to=TensorProto.FLOAT)
    est_copy = type(est_graph)()
    est_copy.CopyFrom(est_graph)
    _rename_graph(est_copy, rename)
    nodes = [*g.nodes, *est_copy.node]
    initializers = [*g.initializers, *est_copy.initializer]
    chosen = rename(out_name)
    nodes.append(helper.make_node("Cast", [chosen], [OUTPUT], to=TensorProto.DOUBLE))
    nodes = _needed(nodes, OUTPUT)
    used = {i for n in nodes for i in _references(n)}
    initializers = [i for i in initializers if i.name in used]
    k = len(sig.classes or []) if sig.task == "classification" else 1
    graph = helper.make_graph(
        nodes,
        "loopml_bundle",
        g.inputs,
        [helper.make_tensor_value_info(OUTPUT, TensorProto.DOUBLE, [None, k])],
        initializer=initializers,
    )
    main = max(opsets.get("", MIN_OPSET), MIN_OPSET)
    ml = max(opsets.get("ai.onnx.ml", MIN_ML_OPSET), MIN_ML_OPSET)
    model = helper.make_model(
        graph,
        opset_imports=[helper.make_opsetid("", main), helper.make_opsetid("ai.onnx.ml", ml)],
        producer_name="loopml",
    )
    model.ir_version = max(int(estimator.ir_version), 7)
    return Graph(model, width, kind)


def _features(bundle: Any, g: _Builder) -> tuple[str, int]:
    """The feature pipeline's part of the graph: its output value and width."""
    columns, select = _split_selection(bundle.features)
    blocks = _feature_blocks(columns, bundle.signature, g)
    width = _width(bundle)
    built = sum(w for _, w in blocks)
    features = g.name("features")
    if len(blocks) == 1:
        g.node("Identity", [blocks[0][0]], [features])
    else:
        g.node("Concat", [b for b, _ in blocks], [features], axis=1)
    if select is not None:
        support = np.asarray(select.support_, dtype=bool).ravel()
        if support.shape != (built,):
            raise NotConvertible("the feature selection does not match the features it selects")
        kept = g.name("selected")
        index = np.flatnonzero(support).astype(np.int64)
        g.node("Gather", [features, g.const("kept", index)], [kept], axis=1)
        features, built = kept, int(support.sum())
    if built != width:
        raise NotConvertible(f"the feature pipeline gives {width} columns, its ONNX form {built}")
    return features, width


def feature_model(bundle: Any) -> Any:
    """The ONNX graph of the bundle's feature pipeline alone, its output
    :data:`FEATURES_OUTPUT` (double ``[N, width]``): to check it gives the native pipeline's
    feature matrix. Raises :class:`NotConvertible` like :func:`build`."""
    from onnx import TensorProto, helper

    sig: Signature = bundle.signature
    _check_names(sig)
    g = _Builder(sig)
    features, width = _features(bundle, g)
    g.node("Identity", [features], [FEATURES_OUTPUT])
    nodes = _needed(g.nodes, FEATURES_OUTPUT)
    used = {i for n in nodes for i in _references(n)}
    inputs = [i for i in g.inputs if i.name in used]
    graph = helper.make_graph(
        nodes,
        "loopml_features",
        inputs,
        [helper.make_tensor_value_info(FEATURES_OUTPUT, TensorProto.DOUBLE, [None, width])],
        initializer=[i for i in g.initializers if i.name in used],
    )
    model = helper.make_model(
        graph,
        opset_imports=[helper.make_opsetid("", 13), helper.make_opsetid("ai.onnx.ml", 2)],
        producer_name="loopml",
    )
    model.ir_version = 7
    return model


def categorical_feed(values: np.ndarray) -> np.ndarray:
    """A categorical column (object array of text, None or NaN where missing) as the
    ``[N, 1]`` string tensor the graph takes."""
    arr = np.asarray(values, dtype=object)
    out = arr.copy()
    missing = pd.isna(arr)
    if missing.any():
        out[missing] = MISSING
    clash = out == MISSING
    clash &= ~missing
    if clash.any():  # a client sending the sentinel's text gets an unknown category
        out[clash] = UNKNOWN
    return out.reshape(-1, 1)


# -- building -----------------------------------------------------------------------------


class _Builder:
    def __init__(self, sig: Signature) -> None:
        from onnx import TensorProto, helper

        self.nodes: list[Any] = []
        self.initializers: list[Any] = []
        self.inputs = [
            helper.make_tensor_value_info(
                f.name,
                TensorProto.STRING if f.kind == CATEGORICAL else TensorProto.DOUBLE,
                [None, 1],
            )
            for f in sig.inputs
        ]
        self._n = 0

    def name(self, what: str) -> str:
        self._n += 1
        return f"{PREFIX}{what}_{self._n}"

    def node(self, op: str, inputs: Sequence[str], outputs: Sequence[str], **attrs: Any) -> None:
        from onnx import helper

        domain = "ai.onnx.ml" if op == "LabelEncoder" else ""
        self.nodes.append(
            helper.make_node(
                op, list(inputs), list(outputs), name=self.name(op), domain=domain, **attrs
            )
        )

    def const(self, what: str, value: np.ndarray) -> str:
        from onnx import numpy_helper

        name = self.name(what)
        self.initializers.append(numpy_helper.from_array(np.asarray(value), name))
        return name


def _check_names(sig: Signature) -> None:
    names = sig.names
    for n in names:
        if not n or n.startswith(PREFIX):
            raise NotConvertible(f"column name {n!r} cannot name an ONNX input")
    if len(set(names)) != len(names):
        raise NotConvertible("the signature names a column twice")


def _width(bundle: Any) -> int:
    sample = bundle.sample
    if sample is None or len(sample) == 0:
        raise NotConvertible("the bundle has no sample rows to check a compiled graph against")
    return int(np.asarray(bundle.features.transform(sample)).shape[1])


def _steps(trans: Any) -> list[Any]:
    if trans == "passthrough":
        return []
    steps = getattr(trans, "steps", None)
    if isinstance(steps, list):
        return [s for _, s in steps if s is not None and s != "passthrough"]
    return [trans]


def _split_selection(features: Any) -> tuple[Any, Any]:
    """The ColumnTransformer of a feature pipeline and its selection step (or None)."""
    steps = getattr(features, "steps", None)
    if class_path(features) == "sklearn.pipeline.Pipeline" and isinstance(steps, list):
        parts = [s for _, s in steps if s is not None and s != "passthrough"]
        if len(parts) == 2 and class_path(parts[1]) == "loopml.features.steps.SelectFeatures":
            return parts[0], parts[1]
        raise NotConvertible("a feature pipeline of other steps than columns and a selection")
    return features, None


def _feature_blocks(features: Any, sig: Signature, g: _Builder) -> list[tuple[str, int]]:
    """The graph of each part of the ColumnTransformer, in its output order: (value, width)."""
    if class_path(features) != "sklearn.compose._column_transformer.ColumnTransformer":
        raise NotConvertible(f"{class_path(features)} as a feature pipeline has no ONNX converter")
    if getattr(features, "sparse_output_", False):
        raise NotConvertible("the feature pipeline's output is sparse")
    kinds = sig.kinds()
    blocks: list[tuple[str, int]] = []
    for _, trans, cols in features.transformers_:
        if isinstance(trans, str) and trans == "drop":
            continue
        names = _column_names(cols, sig)
        if not names:
            continue
        col_kinds = {kinds[c] for c in names}
        steps = _steps(trans)
        if DATETIME in col_kinds:
            dates = next(
                (s for s in steps if class_path(s).startswith("loopml.features.dates")), None
            )
            what = "features.dates.DatetimeFeatures" if dates is not None else "a datetime feature"
            raise NotConvertible(f"{what} has no ONNX converter")
        if TEXT in col_kinds:
            # tokenizing and n-grams as scikit-learn's regular expression does them: ONNX's
            # StringNormalizer and Tokenizer split text differently, so it would not be exact
            raise NotConvertible(
                "features.steps.TextVectorizer (a text column's words) has no exact ONNX form"
            )
        if col_kinds == {NUMERIC}:
            blocks.append(_numeric(names, steps, g))
        elif col_kinds == {CATEGORICAL} and _one_hot_only(steps):
            blocks.append(_categorical(names, trans, steps, sig, g))
        elif col_kinds == {CATEGORICAL}:
            blocks.append(_lookup(names, trans, steps, sig, g))
        else:
            raise NotConvertible("a feature step takes numeric and categorical columns together")
    if not blocks:
        raise NotConvertible("the feature pipeline has no columns")
    return blocks


def _column_names(cols: Any, sig: Signature) -> list[str]:
    names = sig.names
    if isinstance(cols, str):
        cols = [cols]
    out: list[str] = []
    for c in list(cols):
        if isinstance(c, str) and c in names:
            out.append(c)
        elif isinstance(c, int | np.integer) and not isinstance(c, bool) and 0 <= c < len(names):
            out.append(names[int(c)])
        elif isinstance(c, bool | np.bool_):
            raise NotConvertible("the feature pipeline selects columns by a boolean mask")
        else:
            raise NotConvertible(f"the feature pipeline takes column {c!r}, not in the signature")
    if isinstance(cols, np.ndarray) and cols.dtype == bool:
        raise NotConvertible("the feature pipeline selects columns by a boolean mask")
    return out


def _fill_missing(g: _Builder, x: str, values: Any, m: int, what: str) -> str:
    """``x`` with each NaN replaced by its column's ``values`` (an imputer's statistics)."""
    fill = np.asarray(values, dtype=np.float64)
    if fill.shape != (m,) or not np.isfinite(fill).all():
        raise NotConvertible(f"{what} with a column it could not fill (all missing)")
    mask = g.name("isnan")
    g.node("IsNaN", [x], [mask])
    y = g.name("imputed")
    g.node("Where", [mask, g.const("fill", fill.reshape(1, m)), x], [y])
    return y


def _numeric(names: list[str], steps: list[Any], g: _Builder) -> tuple[str, int]:
    from onnx import TensorProto

    x = g.name("numeric")
    if len(names) == 1:
        g.node("Identity", names, [x])
    else:
        g.node("Concat", names, [x], axis=1)
    m = len(names)
    for step in steps:
        path = class_path(step)
        if path == "loopml.features.identity.Identity":
            continue
        if path == "sklearn.impute._base.SimpleImputer":
            if getattr(step, "add_indicator", False):
                raise NotConvertible("SimpleImputer with add_indicator has no ONNX form here")
            missing = step.missing_values
            if not (isinstance(missing, float) and np.isnan(missing)):
                raise NotConvertible(f"SimpleImputer of missing_values={missing!r}")
            x = _fill_missing(g, x, step.statistics_, m, "SimpleImputer")
        elif path == "sklearn.preprocessing._data.StandardScaler":
            if step.mean_ is not None and step.with_mean:
                y = g.name("centred")
                g.node(
                    "Sub",
                    [x, g.const("mean", np.asarray(step.mean_, np.float64).reshape(1, m))],
                    [y],
                )
                x = y
            if step.scale_ is not None and step.with_std:
                y = g.name("scaled")
                g.node(
                    "Div",
                    [x, g.const("scale", np.asarray(step.scale_, np.float64).reshape(1, m))],
                    [y],
                )
                x = y
        elif path == "loopml.features.steps.Standardizer":
            # SimpleImputer then StandardScaler, as above (features/steps.py)
            y = _fill_missing(g, x, np.ravel(step.fill_), m, "Standardizer")
            centred = g.name("centred")
            g.node("Sub", [y, g.const("mean", _row(step.mean_, m))], [centred])
            x = g.name("scaled")
            g.node("Div", [centred, g.const("scale", _row(step.scale_, m))], [x])
        elif path == "sklearn.preprocessing._data.MinMaxScaler":
            if getattr(step, "clip", False):
                raise NotConvertible("MinMaxScaler with clip has no ONNX form here")
            y = g.name("minmax_scaled")
            g.node("Mul", [x, g.const("scale", _row(step.scale_, m))], [y])
            z = g.name("minmax")
            g.node("Add", [y, g.const("min", _row(step.min_, m))], [z])
            x = z
        elif path == "sklearn.preprocessing._data.RobustScaler":
            if step.center_ is not None and step.with_centering:
                y = g.name("centred")
                g.node("Sub", [x, g.const("center", _row(step.center_, m))], [y])
                x = y
            if step.scale_ is not None and step.with_scaling:
                y = g.name("scaled")
                g.node("Div", [x, g.const("scale", _row(step.scale_, m))], [y])
                x = y
        elif path == "loopml.features.steps.QuantileClipper":
            low = g.name("clip_low")
            g.node("Max", [x, g.const("lower", _row(step.lower_, m))], [low])
            high = g.name("clip_high")
            g.node("Min", [low, g.const("upper", _row(step.upper_, m))], [high])
            x = _keep_nan(x, high, g)
        elif path == "loopml.features.steps.SignedLog1p":
            x = _signed_log1p(x, g)
        elif path == "loopml.features.steps.Bucketize":
            x = _bucketize(x, np.asarray(step.edges_, dtype=np.float64), m, g)
        elif path == "sklearn.preprocessing._data.PowerTransformer":
            x = _yeo_johnson(x, step, m, g)
        elif path == "sklearn.preprocessing._polynomial.PolynomialFeatures":
            x, m = _polynomial(x, step, m, g)
        elif path == "sklearn.impute._base.MissingIndicator":
            features = np.asarray(step.features_)
            if len(features) != m or getattr(step, "features", "") != "all":
                raise NotConvertible("MissingIndicator of some columns only")
            mask = g.name("isnan")
            g.node("IsNaN", [x], [mask])
            y = g.name("indicator")
            g.node("Cast", [mask], [y], to=TensorProto.DOUBLE)
            x = y
        else:
            raise NotConvertible(f"{path} in the feature pipeline has no ONNX converter")
    return x, m


def _row(values: Any, m: int) -> np.ndarray:
    arr = np.asarray(values, dtype=np.float64).reshape(-1)
    if arr.shape != (m,):
        raise NotConvertible("a fitted step's parameters do not match its columns")
    return arr.reshape(1, m)


def _keep_nan(x: str, y: str, g: _Builder) -> str:
    """``y`` where ``x`` is a number, NaN (``x`` itself) where it is missing."""
    mask = g.name("isnan")
    g.node("IsNaN", [x], [mask])
    out = g.name("kept_nan")
    g.node("Where", [mask, x, y], [out])
    return out


def _signed_log1p(x: str, g: _Builder) -> str:
    absolute = g.name("abs")
    g.node("Abs", [x], [absolute])
    shifted = g.name("plus_one")
    g.node("Add", [absolute, g.const("one", np.asarray(1.0))], [shifted])
    log = g.name("log")
    g.node("Log", [shifted], [log])
    sign = g.name("sign")
    g.node("Sign", [x], [sign])
    out = g.name("log1p")
    g.node("Mul", [sign, log], [out])
    return out


def _bucketize(x: str, edges: np.ndarray, m: int, g: _Builder) -> str:
    """The number of edges at or below each value: ``sum(x >= edge)``, NaN kept."""
    if edges.ndim != 2 or edges.shape[0] != m:
        raise NotConvertible("Bucketize's edges do not match its columns")
    e = edges.shape[1]
    cube = g.name("cube")
    g.node("Reshape", [x, g.const("shape", np.asarray([-1, m, 1], np.int64))], [cube])
    below = g.name("below")
    g.node("Less", [cube, g.const("edges", edges.reshape(1, m, e))], [below])
    at_or_above = g.name("at_or_above")
    g.node("Not", [below], [at_or_above])
    hits = g.name("hits")
    g.node("Cast", [at_or_above], [hits], to=_double())
    count = g.name("count")
    g.node("MatMul", [hits, g.const("ones", np.ones((e, 1), np.float64))], [count])
    flat = g.name("buckets")
    g.node("Reshape", [count, g.const("shape", np.asarray([-1, m], np.int64))], [flat])
    return _keep_nan(x, flat, g)


def _double() -> int:
    from onnx import TensorProto

    return int(TensorProto.DOUBLE)


def _yeo_johnson(x: str, step: Any, m: int, g: _Builder) -> str:
    """scikit-learn's Yeo-Johnson transform, column by column (NaN kept)."""
    if step.method != "yeo-johnson" or getattr(step, "standardize", False):
        raise NotConvertible("PowerTransformer other than yeo-johnson without standardize")
    lam = np.asarray(step.lambdas_, dtype=np.float64).reshape(-1)
    if lam.shape != (m,) or np.any(np.abs(lam) < 1e-19) or np.any(np.abs(lam - 2) < 1e-19):
        raise NotConvertible("PowerTransformer with a lambda of 0 or 2 (its log branch)")
    negative = g.name("negative")
    g.node("Less", [x, g.const("zero", np.asarray(0.0))], [negative])
    power = g.name("power")
    g.node(
        "Where",
        [
            negative,
            g.const("lam_neg", (2.0 - lam).reshape(1, m)),
            g.const("lam", lam.reshape(1, m)),
        ],
        [power],
    )
    absolute = g.name("abs")
    g.node("Abs", [x], [absolute])
    shifted = g.name("plus_one")
    g.node("Add", [absolute, g.const("one", np.asarray(1.0))], [shifted])
    raised = g.name("raised")
    g.node("Pow", [shifted, power], [raised])
    less_one = g.name("less_one")
    g.node("Sub", [raised, g.const("one", np.asarray(1.0))], [less_one])
    ratio = g.name("ratio")
    g.node("Div", [less_one, power], [ratio])
    signed = g.name("signed")
    g.node("Neg", [ratio], [signed])
    out = g.name("yeo_johnson")
    g.node("Where", [negative, signed, ratio], [out])
    return _keep_nan(x, out, g)


def _polynomial(x: str, step: Any, m: int, g: _Builder) -> tuple[str, int]:
    """Each output column of PolynomialFeatures as the product of its input powers."""
    powers = np.asarray(step.powers_, dtype=np.int64)
    if powers.ndim != 2 or powers.shape[1] != m or (powers < 0).any() or powers.max() > 3:
        raise NotConvertible("PolynomialFeatures of a degree above 3")
    cols: list[str] = []
    for j in range(m):
        c = g.name("column")
        g.node("Gather", [x, g.const("index", np.asarray([j], np.int64))], [c], axis=1)
        cols.append(c)
    outs: list[str] = []
    for row in powers:
        factors = [cols[j] for j in range(m) for _ in range(int(row[j]))]
        if not factors:
            one = g.name("bias")
            g.node("Mul", [cols[0], g.const("zero", np.asarray(0.0))], [one])
            term = g.name("bias1")
            g.node("Add", [one, g.const("one", np.asarray(1.0))], [term])
            outs.append(term)
            continue
        term = factors[0]
        for f in factors[1:]:
            nxt = g.name("product")
            g.node("Mul", [term, f], [nxt])
            term = nxt
        outs.append(term)
    y = g.name("polynomial")
    g.node("Concat", outs, [y], axis=1)
    return y, len(outs)


def _categorical(
    names: list[str], trans: Any, steps: list[Any], sig: Signature, g: _Builder
) -> tuple[str, int]:
    from onnx import TensorProto

    allowed = (
        "sklearn.impute._base.SimpleImputer",
        "sklearn.preprocessing._encoders.OneHotEncoder",
    )
    for step in steps:
        if class_path(step) not in allowed:
            raise NotConvertible(
                f"{class_path(step)} in the feature pipeline has no ONNX converter"
            )
    if not steps or class_path(steps[-1]) != allowed[1]:
        raise NotConvertible("a categorical step that does not end in a OneHotEncoder")
    encoder = steps[-1]
    if (
        encoder.drop is not None
        or getattr(encoder, "min_frequency", None) is not None
        or getattr(encoder, "max_categories", None) is not None
    ):
        raise NotConvertible("OneHotEncoder with drop or infrequent categories")
    if getattr(encoder, "sparse_output", False):
        raise NotConvertible("OneHotEncoder with sparse output")
    widths = [len(c) for c in encoder.categories_]
    keys, out = _probe_categories(names, trans, steps, sig)
    blocks: list[str] = []
    start = 0
    for j, name in enumerate(names):
        part = out[:, start : start + widths[j]]
        start += widths[j]
        lit: list[int] = []
        for i in range(len(keys[j]) + 2):
            row = part[i]
            on = np.flatnonzero(row)
            if (
                len(on) > 1
                or (len(on) == 1 and row[on[0]] != 1.0)
                or not np.isin(row, (0.0, 1.0)).all()
            ):
                raise NotConvertible(f"the encoding of column {name!r} is not one-hot")
            lit.append(int(on[0]) if len(on) else -1)
        code = g.name("code")
        g.node(
            "LabelEncoder",
            [name],
            [code],
            keys_strings=[*keys[j], MISSING],
            values_int64s=[*lit[: len(keys[j])], lit[len(keys[j])]],
            default_int64=lit[len(keys[j]) + 1],
        )
        hot = g.name("hot")
        g.node(
            "Equal",
            [code, g.const("columns", np.arange(widths[j], dtype=np.int64).reshape(1, -1))],
            [hot],
        )
        block = g.name("onehot")
        g.node("Cast", [hot], [block], to=TensorProto.DOUBLE)
        blocks.append(block)
    if start != out.shape[1]:
        raise NotConvertible("the one-hot encoder's columns do not add up")
    if len(blocks) == 1:
        return blocks[0], start
    x = g.name("categorical")
    g.node("Concat", blocks, [x], axis=1)
    return x, start


def _one_hot_only(steps: list[Any]) -> bool:
    """A categorical part the one-hot graph handles: imputing, then a plain one-hot."""
    if not steps or class_path(steps[-1]) != "sklearn.preprocessing._encoders.OneHotEncoder":
        return False
    encoder = steps[-1]
    return (
        encoder.drop is None
        and getattr(encoder, "min_frequency", None) is None
        and getattr(encoder, "max_categories", None) is None
    )


# encoders whose output for a column depends on that column's value alone: a lookup table
LOOKUP_ENCODERS = (
    "sklearn.preprocessing._encoders.OneHotEncoder",
    "sklearn.preprocessing._encoders.OrdinalEncoder",
    "sklearn.preprocessing._target_encoder.TargetEncoder",
    "loopml.features.steps.FrequencyEncoder",
)


def _encoder_widths(encoder: Any, n: int) -> list[int]:
    path = class_path(encoder)
    if path == LOOKUP_ENCODERS[0]:
        widths = getattr(encoder, "_n_features_outs", None)
        if widths is None or len(widths) != n:
            raise NotConvertible("the one-hot encoder's widths are not known")
        return [int(w) for w in widths]
    if path == LOOKUP_ENCODERS[2] and getattr(encoder, "target_type_", "") == "multiclass":
        return [len(encoder.classes_)] * n
    return [1] * n


def _lookup(
    names: list[str], trans: Any, steps: list[Any], sig: Signature, g: _Builder
) -> tuple[str, int]:
    """A categorical part as one table per column: its text -> the row of the values the
    fitted part gives it (read by running the part on every known text, a missing value and
    an unknown one), then a Gather of that row."""
    allowed = ("sklearn.impute._base.SimpleImputer", *LOOKUP_ENCODERS)
    for step in steps:
        if class_path(step) not in allowed:
            raise NotConvertible(
                f"{class_path(step)} in the feature pipeline has no ONNX converter"
            )
    if not steps or class_path(steps[-1]) not in LOOKUP_ENCODERS:
        raise NotConvertible("a categorical step that does not end in an encoder")
    encoder = steps[-1]
    widths = _encoder_widths(encoder, len(names))
    keys, out = _probe_categories(names, trans, steps, sig)
    if out.shape[1] != sum(widths):
        raise NotConvertible("the categorical encoder's columns do not add up")
    blocks: list[str] = []
    start = 0
    for j, name in enumerate(names):
        n_keys = len(keys[j])
        table = out[: n_keys + 2, start : start + widths[j]]
        start += widths[j]
        code = g.name("code")
        g.node(
            "LabelEncoder",
            [name],
            [code],
            keys_strings=[*keys[j], MISSING],
            values_int64s=[*range(n_keys), n_keys],
            default_int64=n_keys + 1,
        )
        flat = g.name("code_flat")
        g.node("Reshape", [code, g.const("shape", np.asarray([-1], np.int64))], [flat])
        block = g.name("encoded")
        g.node("Gather", [g.const("table", table), flat], [block], axis=0)
        blocks.append(block)
    if len(blocks) == 1:
        return blocks[0], start
    x = g.name("categorical")
    g.node("Concat", blocks, [x], axis=1)
    return x, start


def _probe_categories(
    names: list[str], trans: Any, steps: list[Any], sig: Signature
) -> tuple[list[list[str]], np.ndarray]:
    """Every text the model knows per column (its encoder's categories, the signature's, an
    imputer's fill value), and what the fitted part gives each: rows ``0..len(keys[j])-1`` are
    the texts of column ``j`` in order, then a missing value, then an unknown text."""
    encoder = steps[-1]
    cats = getattr(encoder, "categories_", None)
    fields = {f.name: f for f in sig.inputs}
    keys: list[list[str]] = []
    for j, name in enumerate(names):
        known = {str(c) for c in cats[j] if isinstance(c, str)} if cats is not None else set()
        known |= set(fields[name].categories or [])
        for step in steps[:-1]:
            stats = getattr(step, "statistics_", None)
            if stats is not None and isinstance(stats[j], str):
                known.add(str(stats[j]))
        if MISSING in known or UNKNOWN in known:
            raise NotConvertible("a category holds loopml's missing-value marker")
        keys.append(sorted(known))
    rows = max(len(k) for k in keys) + 2  # each text, then a missing value, then an unknown
    frame = {}
    for j, name in enumerate(names):
        col: list[Any] = [*keys[j], np.nan, UNKNOWN]
        col += [keys[j][0] if keys[j] else UNKNOWN] * (rows - len(col))
        frame[name] = np.asarray(col[:rows], dtype=object)
    try:
        out = np.asarray(_run(trans, pd.DataFrame(frame, columns=names)), dtype=np.float64)
    except Exception as exc:
        raise NotConvertible(f"the categorical features could not be probed: {exc}"[:200]) from exc
    return keys, out


def _run(trans: Any, frame: pd.DataFrame) -> np.ndarray:
    return np.asarray(trans.transform(frame))


# -- the estimator's part ------------------------------------------------------------------


def _opsets(model: Any) -> dict[str, int]:
    out: dict[str, int] = {}
    for op in model.opset_import:
        domain = "" if op.domain == "ai.onnx" else op.domain
        out[domain] = max(out.get(domain, 0), int(op.version))
    return out


def _renamer(graph: Any) -> Any:
    def rename(name: str) -> str:
        return f"{PREFIX}m_{name}" if name else ""

    return rename


def _rename_graph(graph: Any, rename: Any) -> None:
    """Every value and node name of ``graph`` and its subgraphs under the prefix, in place
    (the same function everywhere, so references from a subgraph to outer values hold)."""
    for value in (*graph.input, *graph.output, *graph.value_info):
        value.name = rename(value.name)
    for init in graph.initializer:
        init.name = rename(init.name)
    for sparse in graph.sparse_initializer:
        sparse.values.name = rename(sparse.values.name)
        sparse.indices.name = rename(sparse.indices.name)
    for i, node in enumerate(graph.node):
        node.input[:] = [rename(n) for n in node.input]
        node.output[:] = [rename(n) for n in node.output]
        node.name = rename(node.name or f"node{i}")
        for attr in node.attribute:
            if attr.HasField("g"):
                _rename_graph(attr.g, rename)
            for sub in attr.graphs:
                _rename_graph(sub, rename)


def _references(node: Any) -> list[str]:
    """The values a node reads: its inputs, and what its subgraphs read from outside."""
    names = [n for n in node.input if n]
    for attr in node.attribute:
        subs = [attr.g] if attr.HasField("g") else []
        for sub in [*subs, *attr.graphs]:
            for inner in sub.node:
                names.extend(_references(inner))
    return names


def _needed(nodes: list[Any], output: str) -> list[Any]:
    """The nodes ``output`` depends on, in their order."""
    producers = {o: i for i, n in enumerate(nodes) for o in n.output}
    keep: set[int] = set()
    todo = [output]
    while todo:
        name = todo.pop()
        i = producers.get(name)
        if i is None or i in keep:
            continue
        keep.add(i)
        todo.extend(_references(nodes[i]))
    return [n for i, n in enumerate(nodes) if i in keep]
