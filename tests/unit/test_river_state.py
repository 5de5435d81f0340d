"""The online state format: every covered learner survives a round trip mid-stream (same
predictions after, same checksum at the end), the bytes are canonical across processes, and
anything that is not allowlisted data is refused."""

from __future__ import annotations

import collections
import functools
import hashlib
import math
import subprocess
import sys
from collections.abc import Callable
from typing import Any

import numpy as np
import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

pytest.importorskip("river")

from river import datasets, linear_model, naive_bayes, optim, preprocessing, tree

from loopml.errors import IntegrityError, UnsafeFormatError
from loopml.project.online import parse_online
from loopml.registry.allowlist import (
    ONLINE,
    ONLINE_LEARNERS,
    ONLINE_NODES,
    resolve,
)
from loopml.registry.flavors import river_state as rs
from loopml.train.online import OnlineLearner

STREAMS: dict[str, Callable[[], Any]] = {
    "phishing": datasets.Phishing,
    "bananas": datasets.Bananas,
    "trump": datasets.TrumpApproval,
}
_cache: dict[str, list[tuple[dict, Any]]] = {}


def stream(name: str) -> list[tuple[dict, Any]]:
    if name not in _cache:
        _cache[name] = list(STREAMS[name]())
    return _cache[name]


def _roundtrip(model: Any) -> Any:
    data = rs.dumps(rs.encode(model))
    return rs.decode(rs.loads(data))


def _state(model: Any) -> bytes:
    return rs.dumps(rs.encode(model))


# River models as River builds them: (factory, stream, what to compare)
RIVER_MODELS: dict[str, tuple[Callable[[], Any], str, str]] = {
    "logistic+scaler": (
        lambda: preprocessing.StandardScaler() | linear_model.LogisticRegression(),
        "phishing",
        "proba",
    ),
    "logistic adam l2": (
        lambda: (
            preprocessing.MinMaxScaler()
            | linear_model.LogisticRegression(optimizer=optim.Adam(0.05), l2=0.001)
        ),
        "phishing",
        "proba",
    ),
    "linear l1": (
        lambda: (
            preprocessing.StandardScaler()
            | linear_model.LinearRegression(l1=0.01, l2=0.0, optimizer=optim.AdaGrad())
        ),
        "trump",
        "value",
    ),
    "pa classifier": (lambda: linear_model.PAClassifier(C=0.1), "phishing", "label"),
    "pa regressor": (lambda: linear_model.PARegressor(), "trump", "value"),
    "perceptron": (
        lambda: preprocessing.MaxAbsScaler() | linear_model.Perceptron(),
        "phishing",
        "label",
    ),
    "softmax": (
        lambda: preprocessing.StandardScaler() | linear_model.SoftmaxRegression(),
        "bananas",
        "proba",
    ),
    "alma": (lambda: linear_model.ALMAClassifier(), "phishing", "label"),
    "gaussian nb": (lambda: naive_bayes.GaussianNB(), "bananas", "proba"),
    "multinomial nb": (lambda: naive_bayes.MultinomialNB(), "phishing", "proba"),
    "bernoulli nb": (lambda: naive_bayes.BernoulliNB(), "phishing", "proba"),
    "complement nb": (lambda: naive_bayes.ComplementNB(), "phishing", "proba"),
    "hoeffding tree classifier": (
        lambda: tree.HoeffdingTreeClassifier(grace_period=50),
        "phishing",
        "proba",
    ),
    "hoeffding tree classifier mc": (
        lambda: tree.HoeffdingTreeClassifier(
            grace_period=30, leaf_prediction="mc", splitter=tree.splitter.HistogramSplitter()
        ),
        "bananas",
        "proba",
    ),
    "hoeffding tree regressor": (
        lambda: tree.HoeffdingTreeRegressor(grace_period=50, splitter=tree.splitter.QOSplitter()),
        "trump",
        "value",
    ),
}


@pytest.mark.parametrize("name", sorted(RIVER_MODELS))
def test_river_model_continues_identically(name: str) -> None:
    make, data_name, compare = RIVER_MODELS[name]
    data = stream(data_name)
    half = len(data) // 2
    model = make()
    for x, y in data[:half]:
        model.learn_one(x, y)
    reloaded = _roundtrip(model)
    assert _state(reloaded) == _state(model)
    for x, y in data[half:]:
        if compare == "proba":
            assert reloaded.predict_proba_one(x) == model.predict_proba_one(x)
        else:
            assert reloaded.predict_one(x) == model.predict_one(x)
        model.learn_one(x, y)
        reloaded.learn_one(x, y)
    assert hashlib.sha256(_state(reloaded)).digest() == hashlib.sha256(_state(model)).digest()


_SK = "sklearn.linear_model."
_LOG = {"loss": "log_loss"}
SK_SPECS = {
    "sgd classifier": ({"learner": _SK + "SGDClassifier", "params": _LOG}, "phishing"),
    "sgd regressor": ({"learner": _SK + "SGDRegressor", "params": {"eta0": 0.001}}, "trump"),
    "passive aggressive": ({"learner": _SK + "PassiveAggressiveClassifier"}, "phishing"),
    "passive aggressive regressor": ({"learner": _SK + "PassiveAggressiveRegressor"}, "trump"),
    "perceptron": ({"learner": _SK + "Perceptron"}, "phishing"),
    "multinomial nb": ({"learner": "sklearn.naive_bayes.MultinomialNB"}, "phishing"),
    "gaussian nb": ({"learner": "sklearn.naive_bayes.GaussianNB"}, "phishing"),
    "bernoulli nb": ({"learner": "sklearn.naive_bayes.BernoulliNB"}, "phishing"),
}  # fmt: skip


def _spec(extra: dict[str, Any], data_name: str) -> Any:
    regression = data_name == "trump"
    raw = {
        "stream": "s.jsonl",
        "target": "y",
        "batch": 16,
        **({"task": "regression"} if regression else {"classes": [False, True]}),
        **extra,
    }
    if regression:
        raw["preprocessing"] = ["river.preprocessing.StandardScaler"]
    return parse_online(raw, name="m")


@pytest.mark.parametrize("name", sorted(SK_SPECS))
def test_sklearn_learner_continues_identically(name: str) -> None:
    extra, data_name = SK_SPECS[name]
    data = [dict(x, y=y) for x, y in stream(data_name)]
    learner = OnlineLearner.from_spec(_spec(extra, data_name))
    half = len(data) // 2 // 16 * 16

    def feed(lr: OnlineLearner, chunk: list[dict]) -> None:
        for i in range(0, len(chunk), 16):
            part = chunk[i : i + 16]
            lr.learn_many([lr.features_of(e) for e in part], [lr.label_of(e) for e in part])

    feed(learner, data[:half])
    reloaded = OnlineLearner.from_state_bytes(learner.state_bytes())
    assert reloaded.checksum() == learner.checksum()
    rest = data[half:]
    for e in rest[:100]:
        x = learner.features_of(e)
        assert reloaded.predict_one(x) == learner.predict_one(x)
        assert reloaded.predict_proba_one(x) == learner.predict_proba_one(x)
    feed(learner, rest)
    feed(reloaded, rest)
    assert reloaded.checksum() == learner.checksum()


@pytest.mark.slow  # a second interpreter imports River
def test_state_bytes_are_the_same_in_another_process() -> None:
    code = (
        "from river import datasets, linear_model, preprocessing\n"
        "from loopml.registry.flavors import river_state as rs\n"
        "import hashlib\n"
        "m = preprocessing.StandardScaler() | linear_model.LogisticRegression()\n"
        "for x, y in list(datasets.Phishing())[:300]: m.learn_one(x, y)\n"
        "print(hashlib.sha256(rs.dumps(rs.encode(m))).hexdigest())\n"
    )
    model = preprocessing.StandardScaler() | linear_model.LogisticRegression()
    for x, y in stream("phishing")[:300]:
        model.learn_one(x, y)
    here = hashlib.sha256(_state(model)).hexdigest()
    # another interpreter, another hash seed: the same bytes
    env = {"PYTHONHASHSEED": "12345", "PATH": "/usr/bin:/bin"}
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, env=env
    )
    assert out.stdout.strip() == here


def test_every_allowlisted_class_exists_under_its_name() -> None:
    missing = [name for name in ONLINE if resolve(name) != name]
    assert not missing, f"moved or gone: {missing}"
    assert set(ONLINE_NODES) <= set(ONLINE) and set(ONLINE_LEARNERS) <= set(ONLINE)


def test_no_skops_file_may_name_an_online_class() -> None:
    from loopml.registry.allowlist import allowed_types

    river_classes = {name for name in ONLINE if name.startswith("river.")}
    assert river_classes and not river_classes & allowed_types()


# -- values ---------------------------------------------------------------------------------

keys = st.one_of(st.text(max_size=8), st.integers(-(2**70), 2**70), st.booleans())
scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-(2**80), 2**80),
    st.floats(allow_nan=True, allow_infinity=True),
    st.text(max_size=20),
)
values = st.recursive(
    scalars,
    lambda inner: st.one_of(
        st.lists(inner, max_size=4),
        st.tuples(inner, inner),
        st.dictionaries(keys, inner, max_size=4),
        st.builds(collections.Counter, st.dictionaries(st.text(max_size=4), st.integers(0, 9))),
        st.builds(
            lambda d: collections.defaultdict(float, d),
            st.dictionaries(st.text(max_size=4), st.floats(allow_nan=False)),
        ),
        st.builds(collections.OrderedDict, st.dictionaries(keys, inner, max_size=3)),
        st.builds(lambda xs: collections.deque(xs, maxlen=5), st.lists(inner, max_size=6)),
        st.frozensets(st.integers(-5, 5), max_size=4),
    ),
    max_leaves=25,
)


def _same(a: Any, b: Any) -> bool:
    if type(a) is not type(b):
        return False
    if isinstance(a, float):
        return (math.isnan(a) and math.isnan(b)) or (
            a == b and math.copysign(1, a) == math.copysign(1, b)
        )
    if isinstance(a, dict):
        if isinstance(a, collections.defaultdict) and a.default_factory is not b.default_factory:
            return False
        return list(a) == list(b) and all(_same(a[k], b[k]) for k in a)
    if isinstance(a, list | tuple | collections.deque):
        return len(a) == len(b) and all(_same(x, y) for x, y in zip(a, b, strict=True))
    return bool(a == b)


@settings(max_examples=150, deadline=None)
@given(values)
def test_any_plain_value_round_trips_exactly(value: Any) -> None:
    data = rs.dumps(rs.encode(value))
    back = rs.decode(rs.loads(data))
    assert _same(back, value)
    assert rs.dumps(rs.encode(back)) == data


@settings(max_examples=50, deadline=None)
@given(
    st.sampled_from(["<f8", "<f4", "<i8", "<i4", "<u1", "|b1", "<c16"]),
    st.lists(st.integers(0, 4), min_size=0, max_size=3),
)
def test_arrays_round_trip_with_dtype_and_shape(dtype: str, shape: list[int]) -> None:
    rng = np.random.default_rng(0)
    a = (rng.normal(size=shape) * 100).astype(dtype)
    back = rs.decode(rs.loads(rs.dumps(rs.encode(a))))
    assert back.dtype == a.dtype and back.shape == a.shape
    np.testing.assert_array_equal(back, a)
    scalar = rs.decode(rs.encode(np.float32(1.5)))
    assert type(scalar) is np.float32 and scalar == 1.5


def test_shared_objects_stay_shared() -> None:
    inner = [1.0, 2.0]
    back = rs.decode(rs.loads(rs.dumps(rs.encode({"a": inner, "b": inner, "c": [1.0, 2.0]}))))
    assert back["a"] is back["b"] and back["a"] is not back["c"]


# -- refusals -------------------------------------------------------------------------------


class _Mine:
    pass


@pytest.mark.parametrize(
    ("value", "named"),
    [
        (print, "function"),
        (lambda: 1, "function"),
        (_Mine(), "test_river_state._Mine"),
        (functools.partial(print, 1), "callable"),
        (np.array([object()]), "dtype object"),
        (subprocess.Popen, "subprocess.Popen"),
    ],
)
def test_what_is_not_data_is_refused_by_name(value: Any, named: str) -> None:
    with pytest.raises(UnsafeFormatError, match=named.replace(".", r"\.")):
        rs.encode({"x": value})


def test_an_object_that_holds_itself_is_refused() -> None:
    loop: list[Any] = []
    loop.append(loop)
    with pytest.raises(UnsafeFormatError, match="holds itself"):
        rs.encode(loop)


def test_a_deep_chain_is_refused_with_a_hint() -> None:
    deep: Any = 0
    for _ in range(rs.MAX_DEPTH + 5):
        deep = [deep]
    with pytest.raises(UnsafeFormatError, match="nests deeper") as info:
        rs.encode(deep)
    assert "QOSplitter" in (info.value.hint or "")


@pytest.mark.parametrize(
    ("doc", "error", "text"),
    [
        ({"$object": "os.system", "state": {}}, UnsafeFormatError, r"os\.system"),
        ({"$object": "builtins.eval", "state": {}}, UnsafeFormatError, "eval"),
        ({"$type": "subprocess.Popen"}, UnsafeFormatError, "Popen"),
        ({"$partial": "os.system", "args": ["ls"]}, UnsafeFormatError, "system"),
        (
            {"$defaultdict": [], "factory": {"$type": "builtins.eval"}},
            UnsafeFormatError,
            "eval",
        ),
        (
            {"$ndarray": {"dtype": "<f8", "shape": [3], "data": "AAAA"}},
            IntegrityError,
            "shape",
        ),
        ({"$ndarray": {"dtype": "|O", "shape": [1], "data": ""}}, IntegrityError, "dtype"),
        ({"$ref": 7}, IntegrityError, "not there"),
        ({"$float": "1e999"}, IntegrityError, "float"),
        ({"$unknown": 1}, IntegrityError, "unknown node"),
        ({"$dict": [[[1], 2]]}, IntegrityError, "unhashable"),
        (
            {"$object": "river.optim.sgd.SGD", "params": {"lr": "x"}, "state": {"n_iterations": 0}},
            None,
            "",
        ),
        ({"$method": "learn_one"}, IntegrityError, "outside"),
        ({"$int": "9" * 5000}, IntegrityError, "damaged"),
        ({"$object": "builtins.int", "state": {}}, UnsafeFormatError, "builtins.int"),
        (
            {"$object": "river.stats.mean.Mean", "params": {}, "state": {"n": {"$type": "x"}}},
            UnsafeFormatError,
            "x",
        ),
    ],
)
def test_forged_documents_are_refused(doc: Any, error: type | None, text: str) -> None:
    if error is None:  # a parameter the class takes as it is: rebuilt, nothing imported
        assert type(rs.decode(doc)).__name__ == "SGD"
        return
    with pytest.raises(error, match=text):
        rs.decode(doc)


def test_a_learner_document_that_is_not_json_or_not_ours() -> None:
    with pytest.raises(IntegrityError, match="not JSON"):
        OnlineLearner.from_state_bytes(b"\x80\x04pickle")
    with pytest.raises(IntegrityError, match="format"):
        OnlineLearner.from_state_bytes(orjson.dumps({"format": "other"}))
    spec = parse_online(
        {"stream": "s", "target": "y", "learner": "river.linear_model.LogisticRegression"},
        name="m",
    )
    good = orjson.loads(OnlineLearner.from_spec(spec).state_bytes())
    good["version"] = 99
    with pytest.raises(IntegrityError, match="version 99"):
        OnlineLearner.from_state_bytes(orjson.dumps(good))


@pytest.mark.parametrize(
    "optimizer",
    ["SGD", "Adam", "AdaGrad", "RMSProp", "Momentum", "NesterovMomentum", "AdaDelta", "AdaMax",
     "AMSGrad", "AdaBound", "FTRLProximal"],
)  # fmt: skip
@pytest.mark.parametrize("step", ["Normalizer", "Binarizer", "StandardScaler"])
def test_every_listed_optimizer_and_scaler_round_trips(optimizer: str, step: str) -> None:
    make = getattr(optim, optimizer)
    model = getattr(preprocessing, step)() | linear_model.LogisticRegression(optimizer=make())
    data = stream("phishing")[:300]
    for x, y in data[:150]:
        model.learn_one(x, y)
    reloaded = _roundtrip(model)
    for x, y in data[150:]:
        assert reloaded.predict_proba_one(x) == model.predict_proba_one(x)
        model.learn_one(x, y)
        reloaded.learn_one(x, y)
    assert _state(reloaded) == _state(model)
