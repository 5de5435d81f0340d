"""The keras flavor: the MLP and a user's model trained, saved as .keras, reloaded with safe
mode, compiled to ONNX; bad input refused with the field named."""

from __future__ import annotations

import importlib.util
import io
import json
import subprocess
import sys
import zipfile
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
from sklearn.datasets import load_breast_cancer, load_diabetes

if importlib.util.find_spec("tensorflow") is None:  # found, not imported: collecting stays fast
    pytest.skip("needs loopml[tensorflow]", allow_module_level=True)

from loopml.errors import ConfigError, UnsafeFormatError
from loopml.project import ModelSpec
from loopml.registry.bundle import ModelBundle
from loopml.registry.compiled import CompiledModel, compile_bundle
from loopml.registry.flavors import flavor_for, get_flavor
from loopml.train import fit_bundle
from loopml.train.deep.keras import MLPClassifier, MLPRegressor, ModelClassifier
from loopml.train.estimators import make_estimator

HERE = Path(__file__).parent
WIDE = "keras_user_models.wide"


@pytest.fixture(scope="module")
def cancer() -> pd.DataFrame:
    return load_breast_cancer(as_frame=True).frame


@pytest.fixture(scope="module")
def mlp(cancer: pd.DataFrame) -> ModelBundle:
    est = MLPClassifier(hidden=[16], epochs=60, lr=0.01, patience=3, random_state=0)
    bundle, _ = fit_bundle(cancer, "target", est)
    return bundle


@pytest.fixture
def user_models(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.syspath_prepend(str(HERE))


def test_import_loopml_does_not_import_tensorflow() -> None:
    code = (
        "import sys, loopml, loopml.train, loopml.registry, loopml.registry.flavors.keras, "
        "loopml.train.deep.keras; print([m for m in ('tensorflow', 'keras') if m in sys.modules])"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def test_the_flavor_table_claims_the_keras_estimators() -> None:
    assert flavor_for("loopml.train.deep.keras.MLPClassifier").name == "keras"
    assert flavor_for(MLPRegressor()).name == "keras"
    assert flavor_for("loopml.train.deep.MLPClassifier").name == "torch"


@pytest.mark.slow
def test_classifier_learns_round_trips_and_compiles_to_onnx(
    mlp: ModelBundle, cancer: pd.DataFrame
) -> None:
    rows = cancer.drop(columns="target")
    before = mlp.predict(rows)
    assert (before.labels == cancer["target"]).mean() > 0.9  # it learned something
    data = mlp.to_bytes()
    with zipfile.ZipFile(io.BytesIO(data)) as zf:
        assert "model.keras" in zf.namelist()
    again = ModelBundle.from_bytes(data)
    np.testing.assert_array_equal(before.probabilities, again.predict(rows).probabilities)
    compiled = compile_bundle(again)
    assert isinstance(compiled, CompiledModel), getattr(compiled, "reason", None)
    assert compiled.check is not None and compiled.check.max_abs_diff is not None
    assert compiled.check.max_abs_diff <= 1e-9  # the same double graph on both sides


@pytest.mark.slow
def test_early_stopping_keeps_per_epoch_metrics(mlp: ModelBundle) -> None:
    history = mlp.estimator.history
    assert 1 <= len(history) < 60  # stopped early
    assert {"loss", "val_loss", "accuracy"} <= set(history[0])
    steps = get_flavor("keras").steps(mlp.estimator)  # type: ignore[attr-defined]
    assert [s for k, s, _ in steps if k == "epoch.val_loss"] == list(range(len(history)))


@pytest.mark.slow
def test_regressor_unscales_its_output_and_compiles() -> None:
    df = load_diabetes(as_frame=True).frame
    est = MLPRegressor(hidden=[16], epochs=60, lr=0.01, random_state=0)
    bundle, _ = fit_bundle(df, "target", est)
    pred = bundle.predict(df.drop(columns="target")).labels
    assert abs(pred.mean() - df["target"].mean()) < 25  # in the target's units
    assert np.corrcoef(pred, df["target"])[0, 1] > 0.6
    compiled = compile_bundle(ModelBundle.from_bytes(bundle.to_bytes()))
    assert isinstance(compiled, CompiledModel), getattr(compiled, "reason", None)


def _weights(bundle: ModelBundle) -> list[np.ndarray]:
    return [np.asarray(w) for w in bundle.estimator.model.get_weights()]


@pytest.mark.slow
def test_same_seed_same_weights_other_seed_other_weights(cancer: pd.DataFrame) -> None:
    small = cancer.iloc[:200]
    a, _ = fit_bundle(small, "target", MLPClassifier(hidden=[8], epochs=2, random_state=7))
    b, _ = fit_bundle(small, "target", MLPClassifier(hidden=[8], epochs=2, random_state=7))
    c, _ = fit_bundle(small, "target", MLPClassifier(hidden=[8], epochs=2, random_state=8))
    assert all(np.array_equal(x, y) for x, y in zip(_weights(a), _weights(b), strict=True))
    assert not all(np.array_equal(x, y) for x, y in zip(_weights(a), _weights(c), strict=True))


def _rewrite_keras(data: bytes, change: Any) -> bytes:
    """The bundle with its model.keras config changed by ``change``."""
    src = zipfile.ZipFile(io.BytesIO(data))
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as out:
        for item in src.infolist():
            blob = src.read(item.filename)
            if item.filename == "model.keras":
                inner_src = zipfile.ZipFile(io.BytesIO(blob))
                inner = io.BytesIO()
                with zipfile.ZipFile(inner, "w") as zf:
                    for part in inner_src.infolist():
                        piece = inner_src.read(part.filename)
                        if part.filename == "config.json":
                            config = json.loads(piece)
                            change(config)
                            piece = json.dumps(config).encode()
                        zf.writestr(part, piece)
                blob = inner.getvalue()
            out.writestr(item, blob)
    return buf.getvalue()


@pytest.mark.slow
def test_a_config_naming_another_module_is_refused_before_keras_reads_it(
    mlp: ModelBundle,
) -> None:
    def other(config: dict[str, Any]) -> None:
        config["config"]["layers"][1]["module"] = "os"
        config["config"]["layers"][1]["class_name"] = "system"

    with pytest.raises(UnsafeFormatError, match=r"os\.system") as err:
        ModelBundle.from_bytes(_rewrite_keras(mlp.to_bytes(), other), what="m@1")
    assert err.value.where["file"] == "model.keras"


@pytest.mark.slow
def test_a_builtin_with_a_registered_name_is_refused(mlp: ModelBundle) -> None:
    def registered(config: dict[str, Any]) -> None:
        config["config"]["layers"][1]["registered_name"] = "Custom>Other"

    with pytest.raises(
        UnsafeFormatError, match=r"keras\.layers\.Dense \(registered as Custom>Other"
    ):
        ModelBundle.from_bytes(_rewrite_keras(mlp.to_bytes(), registered), what="m@1")


@pytest.mark.slow
def test_a_users_model_loads_only_when_trusted(cancer: pd.DataFrame, user_models: None) -> None:
    est = ModelClassifier(model=WIDE, args={"width": 8}, epochs=3, random_state=0)
    bundle, _ = fit_bundle(cancer, "target", est)
    data = bundle.to_bytes()
    with pytest.raises(UnsafeFormatError, match=r"keras_user_models\.wide"):
        ModelBundle.from_bytes(data)
    again = ModelBundle.from_bytes(data, trusted=[WIDE])
    assert again.trusted == (WIDE,)
    rows = cancer.drop(columns="target")
    np.testing.assert_array_equal(
        again.predict(rows).probabilities, bundle.predict(rows).probabilities
    )


@pytest.mark.slow
def test_a_lambda_layer_is_refused_and_safe_mode_refuses_its_code(
    cancer: pd.DataFrame, user_models: None
) -> None:
    path = "keras_user_models.with_lambda"
    bundle, _ = fit_bundle(cancer, "target", ModelClassifier(model=path, epochs=1))
    data = bundle.to_bytes()
    with pytest.raises(UnsafeFormatError, match=r"keras\.layers\.Lambda"):
        ModelBundle.from_bytes(data, trusted=[path])
    # even with the layer's class trusted, Keras' safe mode refuses the Python lambda
    with pytest.raises(UnsafeFormatError, match="safe mode") as err:
        ModelBundle.from_bytes(data, trusted=[path, "keras.layers.Lambda"])
    assert err.value.types == ["keras.safe_mode"]


def test_a_users_model_from_the_project_file_needs_its_trust_before_import() -> None:
    spec = ModelSpec(
        cls="loopml.train.deep.keras.ModelClassifier",
        params={"model": "no_such_package_xyz.build"},
    )
    with pytest.raises(ConfigError, match=r"only when model\.trust names it") as err:
        make_estimator(spec, "classification")
    assert err.value.where["field"] == "model.trust"
    assert "no_such_package_xyz" not in sys.modules
    trusted = ModelSpec(cls=spec.cls, params=spec.params, trust=("no_such_package_xyz.build",))
    assert make_estimator(trusted, "classification").model == "no_such_package_xyz.build"


@pytest.mark.slow
def test_a_module_that_does_not_import_is_a_config_error(cancer: pd.DataFrame) -> None:
    est = ModelClassifier(model="no_such_package_xyz.build", epochs=1)
    with pytest.raises(ConfigError, match="does not import") as err:
        fit_bundle(cancer, "target", est)
    assert err.value.where == {"field": "model.params.model"}


@pytest.mark.slow
@pytest.mark.parametrize(
    ("path", "message"),
    [
        ("keras_user_models.three_outputs", r"answers shape \[2, 3\] for 2 rows"),
        ("keras_user_models.logits", "do not sum to 1"),
        ("keras_user_models.not_a_model", "not a keras.Model"),
    ],
)
def test_a_model_whose_output_does_not_fit_the_task_is_a_config_error(
    cancer: pd.DataFrame, user_models: None, path: str, message: str
) -> None:
    with pytest.raises(ConfigError, match=message) as err:
        fit_bundle(cancer, "target", ModelClassifier(model=path, epochs=1))
    assert err.value.where == {"field": "model.params.model"}
