"""A torch network's numeric features through one Standardizer (issue 12): the predictions of
SimpleImputer + StandardScaler, saved as data, compiled to the same ONNX outputs."""

from __future__ import annotations

import io
import json
import zipfile
from typing import Any

import numpy as np
import pandas as pd
import pytest
import torch
from sklearn.datasets import load_breast_cancer

from loopml.errors import IntegrityError
from loopml.features.spec import build_transformer, fit_features
from loopml.features.steps import Standardizer
from loopml.project import FeatureSpec
from loopml.registry.bundle import FEATURES_JSON, ModelBundle
from loopml.registry.compiled import CompiledModel, compile_bundle
from loopml.registry.flavors.torch_nets import MLP, TorchModel
from loopml.train import fit_bundle
from loopml.train.deep import MLPClassifier, MLPRegressor

FEATURES = {"numeric": {"impute": "mean", "scale": "standard"}}


@pytest.fixture(scope="module")
def holey() -> pd.DataFrame:
    """Breast cancer with a tenth of its feature values missing."""
    frame = load_breast_cancer(as_frame=True).frame
    rng = np.random.default_rng(0)
    cols = [c for c in frame.columns if c != "target"]
    values = frame[cols].to_numpy(copy=True)
    values[rng.random(values.shape) < 0.1] = np.nan
    frame[cols] = values
    return frame


def _standardizer(bundle: ModelBundle) -> Standardizer:
    (_, part, _), *_ = bundle.features.transformers_
    (step,) = [s for _, s in part.steps]
    assert isinstance(step, Standardizer)
    return step


def test_the_predictions_of_the_scikit_learn_pipeline(holey: pd.DataFrame) -> None:
    bundle, x = fit_bundle(
        holey, "target", MLPClassifier(epochs=3, random_state=0), features=FEATURES
    )
    step = _standardizer(bundle)
    assert step.fit_dtype == "float32"
    # the same network trained on the features of SimpleImputer + StandardScaler
    spec = FeatureSpec.from_config(FEATURES)
    kinds = dict.fromkeys(x.columns, "numeric")
    reference = build_transformer(spec, kinds, None)
    encoded = fit_features(reference, x)
    assert encoded.dtype == np.float64
    net = MLPClassifier(epochs=3, random_state=0).fit(encoded, holey["target"])
    expected = net.predict_proba(reference.transform(x))
    got = bundle.predict_frame(x).probabilities
    assert got is not None
    np.testing.assert_allclose(got, expected, rtol=0, atol=1e-6)


def test_saved_as_data_reloaded_and_compiled_to_the_same_outputs(holey: pd.DataFrame) -> None:
    mlp = MLPRegressor(epochs=3, random_state=0)
    bundle, _ = fit_bundle(holey, "target", mlp, task="regression", features=FEATURES)
    data = bundle.to_bytes()
    with zipfile.ZipFile(io.BytesIO(data)) as zf:
        features = zf.read(FEATURES_JSON).decode()
    assert "loopml.features.steps.Standardizer" in features  # data, not a pickle
    again = ModelBundle.from_bytes(data)
    rows = holey.drop(columns="target")
    np.testing.assert_array_equal(again.predict(rows).labels, bundle.predict(rows).labels)
    compiled = compile_bundle(again)
    assert isinstance(compiled, CompiledModel), getattr(compiled, "reason", None)
    assert compiled.check is not None and compiled.check.max_abs_diff is not None
    assert compiled.check.max_abs_diff <= 1e-5
    columns = {c: rows[c].to_numpy() for c in rows.columns}  # missing values included
    served = compiled.predict_columns(columns).labels
    np.testing.assert_allclose(served, bundle.predict(rows).labels, rtol=1e-5, atol=1e-5)


SEEN: list[int] = []


class _Counting(torch.nn.Module):
    """An MLP that notes how many threads torch runs it on."""

    def __init__(self) -> None:
        super().__init__()
        self.mlp = MLP(3, 2, [4])

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        SEEN.append(torch.get_num_threads())
        out: torch.Tensor = self.mlp(x)
        return out


def test_a_fitted_network_predicts_on_the_threads_it_trained_on() -> None:
    before = torch.get_num_threads()
    arch = {"class": "x", "args": {}}
    model = TorchModel(_Counting(), arch, "classification", threads=1)
    x = np.random.default_rng(0).normal(size=(5, 3))
    torch.set_num_threads(2)
    try:
        SEEN.clear()
        out = model.predict(x)
        assert SEEN == [1] and torch.get_num_threads() == 2  # restored
        loaded = TorchModel(model.net, arch, "classification")  # a reload: torch's setting
        SEEN.clear()
        np.testing.assert_allclose(loaded.predict(x), out, rtol=0, atol=1e-12)
        assert SEEN == [2]
    finally:
        torch.set_num_threads(before)
    fitted = MLPClassifier(epochs=1, threads=1, random_state=0).fit(x, [0, 1, 0, 1, 1])
    assert fitted.model_.threads == 1


def test_integer_classes_by_counting_are_those_of_unique() -> None:
    from loopml.train.deep.estimators import _classes

    rng = np.random.default_rng(0)
    cases = [
        rng.integers(0, 2, 1000),
        np.array([127, -128, 0], dtype=np.int8),
        rng.integers(-5, 7, 300).astype(np.int16),
        rng.integers(0, 10**9, 100),  # too wide to count: sorted
        np.array([2**64 - 1, 0], dtype=np.uint64),
        np.array(["b", "a", "b"]),
    ]
    for y in cases:
        known, codes = _classes(y)
        expected, inverse = np.unique(y, return_inverse=True)
        assert known.dtype == expected.dtype
        np.testing.assert_array_equal(known, expected)
        np.testing.assert_array_equal(codes, inverse)


def _rewrite(data: bytes, change: Any) -> bytes:
    src = zipfile.ZipFile(io.BytesIO(data))
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as out:
        for item in src.infolist():
            blob = src.read(item.filename)
            if item.filename == "manifest.json":
                manifest = json.loads(blob)
                change(manifest)
                blob = json.dumps(manifest).encode()
            out.writestr(item, blob)
    return buf.getvalue()


def test_a_saved_network_keeps_its_threads(holey: pd.DataFrame) -> None:
    bundle, _ = fit_bundle(holey, "target", MLPClassifier(epochs=1, threads=1, random_state=0))
    data = bundle.to_bytes()
    assert ModelBundle.from_bytes(data).estimator.threads == 1

    def unset(manifest: dict[str, Any]) -> None:  # a version saved before: torch's setting
        del manifest["model"]["threads"]

    assert ModelBundle.from_bytes(_rewrite(data, unset)).estimator.threads is None
    for bad in ("2", 0, True, 10**6):

        def crafted(manifest: dict[str, Any], bad: Any = bad) -> None:
            manifest["model"]["threads"] = bad

        with pytest.raises(IntegrityError, match="threads") as err:
            ModelBundle.from_bytes(_rewrite(data, crafted), what="m@1")
        assert err.value.where["file"] == "manifest.json"
