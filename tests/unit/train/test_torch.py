"""The torch flavor: MLP, CNN and a user's module trained, saved, reloaded, compiled."""

from __future__ import annotations

import hashlib
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
from sklearn.datasets import load_breast_cancer, load_diabetes, load_digits

pytest.importorskip("torch")
pytest.importorskip("safetensors")

from loopml.errors import ConfigError, IntegrityError, UnsafeFormatError
from loopml.registry.bundle import ModelBundle
from loopml.registry.compiled import CompiledModel, compile_bundle
from loopml.registry.flavors import flavor_for, get_flavor
from loopml.train import fit_bundle
from loopml.train.deep import (
    CNNClassifier,
    MLPClassifier,
    MLPRegressor,
    ModuleClassifier,
)
from loopml.train.deep.loop import CHECKPOINT

EXAMPLES = Path(__file__).parents[3] / "examples" / "images"  # mynets.py


@pytest.fixture(scope="module")
def cancer() -> pd.DataFrame:
    return load_breast_cancer(as_frame=True).frame


def _weights_sha(bundle: ModelBundle) -> str:
    blob = get_flavor("torch").save(bundle.estimator)["model.safetensors"]
    return hashlib.sha256(blob).hexdigest()


def test_import_loopml_does_not_import_torch() -> None:
    code = "import sys, loopml, loopml.train, loopml.registry; print('torch' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


def test_the_flavor_table_claims_loopml_torch_estimators_only() -> None:
    assert flavor_for("loopml.train.deep.MLPClassifier").name == "torch"
    assert flavor_for(MLPRegressor()).name == "torch"
    assert flavor_for("sklearn.linear_model.LogisticRegression").name == "sklearn"
    assert flavor_for("loopml.features.identity.Identity").name == "sklearn"


@pytest.mark.slow
def test_same_seed_same_weights_other_seed_other_weights(cancer: pd.DataFrame) -> None:
    a, _ = fit_bundle(cancer, "target", MLPClassifier(epochs=3, random_state=7))
    b, _ = fit_bundle(cancer, "target", MLPClassifier(epochs=3, random_state=7))
    c, _ = fit_bundle(cancer, "target", MLPClassifier(epochs=3, random_state=8))
    assert _weights_sha(a) == _weights_sha(b)
    assert _weights_sha(a) != _weights_sha(c)


def test_classifier_round_trips_and_compiles_to_onnx(cancer: pd.DataFrame) -> None:
    bundle, _ = fit_bundle(cancer, "target", MLPClassifier(epochs=15, random_state=0))
    rows = cancer.drop(columns="target")
    before = bundle.predict(rows)
    again = ModelBundle.from_bytes(bundle.to_bytes())
    after = again.predict(rows)
    np.testing.assert_array_equal(before.probabilities, after.probabilities)
    assert (before.labels == cancer["target"]).mean() > 0.9  # it learned something
    compiled = compile_bundle(again)
    assert isinstance(compiled, CompiledModel), getattr(compiled, "reason", None)
    assert compiled.check is not None and compiled.check.max_abs_diff is not None
    assert compiled.check.max_abs_diff <= 1e-5


def test_regressor_unscales_its_output_and_compiles(cancer: pd.DataFrame) -> None:
    df = load_diabetes(as_frame=True).frame
    bundle, _ = fit_bundle(df, "target", MLPRegressor(epochs=40, lr=3e-3, random_state=0))
    pred = bundle.predict(df.drop(columns="target")).labels
    assert abs(pred.mean() - df["target"].mean()) < 25  # in the target's units
    assert np.corrcoef(pred, df["target"])[0, 1] > 0.6
    compiled = compile_bundle(ModelBundle.from_bytes(bundle.to_bytes()))
    assert isinstance(compiled, CompiledModel), getattr(compiled, "reason", None)


def test_early_stopping_keeps_the_best_epoch_and_checkpoints_it(
    cancer: pd.DataFrame, tmp_path: Path
) -> None:
    est = MLPClassifier(
        epochs=200, lr=0.05, patience=2, random_state=0, checkpoint_dir=str(tmp_path)
    )
    bundle, _ = fit_bundle(cancer, "target", est)
    history = bundle.estimator.history
    assert len(history) < 200  # stopped early
    losses = [h["val_loss"] for h in history]
    best = int(np.argmin(losses))
    assert len(history) - 1 - best == 2  # patience epochs after the best one
    info = json.loads((tmp_path / "best.json").read_text())
    assert info["epoch"] == best
    from safetensors.torch import load_file

    saved = load_file(str(tmp_path / CHECKPOINT))
    final = bundle.estimator.net.state_dict()
    assert all(np.array_equal(saved[k].numpy(), final[k].numpy()) for k in final)


@pytest.mark.slow
def test_cnn_on_digits_pixels() -> None:
    df = load_digits(as_frame=True).frame
    est = CNNClassifier(epochs=8, lr=3e-3, random_state=0)
    bundle, _ = fit_bundle(df.iloc[:1400], "target", est, features={"numeric": {"scale": "none"}})
    p = bundle.predict(df.iloc[1400:].drop(columns="target"))
    assert (p.labels == df["target"].iloc[1400:].to_numpy()).mean() > 0.85
    # ONNX Runtime has no double Conv on the CPU: the float32 network is compiled instead,
    # checked against the double native model to 1e-5 (the torch flavor's tolerance)
    served = compile_bundle(bundle)
    assert isinstance(served, CompiledModel), getattr(served, "reason", "")
    assert served.check is not None and served.check.max_abs_diff is not None
    assert served.check.max_abs_diff <= 1e-5
    rows = df.iloc[1400:1450].drop(columns="target")
    checked = bundle.signature.validate_frame(rows)
    columns = {n: checked[n].to_numpy() for n in bundle.signature.names}
    compiled = served.predict_columns(columns).probabilities
    assert compiled is not None and p.probabilities is not None
    np.testing.assert_allclose(compiled, p.probabilities[:50], atol=1e-5)


def test_cnn_image_shape_must_fit_the_columns(cancer: pd.DataFrame) -> None:
    with pytest.raises(ConfigError, match="8x8 = 64 pixels, but the rows have 30"):
        fit_bundle(cancer, "target", CNNClassifier(epochs=1))


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


def test_weights_that_do_not_fit_the_architecture_are_refused(cancer: pd.DataFrame) -> None:
    bundle, _ = fit_bundle(cancer, "target", MLPClassifier(hidden=[8], epochs=1))

    def wider(manifest: dict[str, Any]) -> None:
        manifest["model"]["architecture"]["args"]["hidden"] = [16]

    with pytest.raises(IntegrityError, match="do not match the architecture") as err:
        ModelBundle.from_bytes(_rewrite(bundle.to_bytes(), wider), what="m@1")
    assert err.value.where["file"] == "model.safetensors"


def test_an_architecture_outside_the_allowlist_is_refused_before_import(
    cancer: pd.DataFrame,
) -> None:
    bundle, _ = fit_bundle(cancer, "target", MLPClassifier(hidden=[8], epochs=1))

    def other(manifest: dict[str, Any]) -> None:
        manifest["model"]["architecture"]["class"] = "os.system"

    with pytest.raises(UnsafeFormatError, match=r"os\.system"):
        ModelBundle.from_bytes(_rewrite(bundle.to_bytes(), other), what="m@1")


def test_a_users_module_trains_and_loads_only_when_trusted(
    cancer: pd.DataFrame, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.syspath_prepend(str(EXAMPLES))
    est = ModuleClassifier(module="mynets.ResidualMLP", args={"width": 16}, epochs=5)
    bundle, _ = fit_bundle(cancer, "target", est)
    arch = bundle.estimator.architecture
    assert arch == {"class": "mynets.ResidualMLP", "args": {"width": 16, "n_in": 30, "n_out": 2}}
    data = bundle.to_bytes()
    with pytest.raises(UnsafeFormatError, match=r"mynets\.ResidualMLP"):
        ModelBundle.from_bytes(data)
    again = ModelBundle.from_bytes(data, trusted=["mynets.ResidualMLP"])
    assert again.trusted == ("mynets.ResidualMLP",)
    rows = cancer.drop(columns="target")
    np.testing.assert_array_equal(
        again.predict(rows).probabilities, bundle.predict(rows).probabilities
    )


def test_a_module_that_does_not_import_is_a_config_error(cancer: pd.DataFrame) -> None:
    est = ModuleClassifier(module="no_such_package.Net", epochs=1)
    with pytest.raises(ConfigError, match="does not import") as err:
        fit_bundle(cancer, "target", est)
    assert err.value.where == {"field": "model.params.module"}


def test_a_module_whose_output_does_not_fit_the_task_is_a_config_error(
    cancer: pd.DataFrame, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.syspath_prepend(str(EXAMPLES))
    est = ModuleClassifier(module="mynets.ThreeOutputs", epochs=1)
    with pytest.raises(ConfigError, match=r"answers shape \[2, 3\].*\[2, 2\]"):
        fit_bundle(cancer, "target", est)


@pytest.mark.slow
def test_two_ddp_workers_reach_the_quality_of_one(cancer: pd.DataFrame) -> None:
    train, test = cancer.iloc[:450], cancer.iloc[450:]
    accuracy = {}
    for workers in (1, 2):
        est = MLPClassifier(hidden=[32], epochs=20, batch_size=64, random_state=0, workers=workers)
        bundle, _ = fit_bundle(train, "target", est)
        labels = bundle.predict(test.drop(columns="target")).labels
        accuracy[workers] = float((labels == test["target"].to_numpy()).mean())
        assert len(bundle.estimator.history) >= 2
    assert accuracy[1] > 0.93
    assert abs(accuracy[2] - accuracy[1]) <= 0.03  # the stated tolerance


def test_the_progress_bar_runs_and_threads_are_restored(cancer: pd.DataFrame) -> None:
    import torch

    before = torch.get_num_threads()
    est = MLPClassifier(hidden=[4], epochs=2, progress=True, threads=1, random_state=0)
    bundle, _ = fit_bundle(cancer.head(100), "target", est)
    assert len(bundle.estimator.history) == 2
    assert torch.get_num_threads() == before
