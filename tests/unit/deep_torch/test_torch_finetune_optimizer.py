"""A torch fine-tune (``loopml train --from``) goes on with the parent's Adam: the version's
bundle keeps Adam's state (``optimizer.safetensors``, described in the manifest), serving
does not read it, a fine-tune reads it again from the artifact store and continues it when
it fits; otherwise (an old bundle, another network, a crafted file) Adam starts afresh,
saying why."""

from __future__ import annotations

import io
import json
import zipfile
from typing import Any

import numpy as np
import pandas as pd
import pytest
from sklearn.datasets import load_breast_cancer

torch = pytest.importorskip("torch")
pytest.importorskip("safetensors")

import loopml  # noqa: E402
from loopml.data import ingest  # noqa: E402
from loopml.project import ProjectConfig  # noqa: E402
from loopml.registry import load_model  # noqa: E402
from loopml.registry.bundle import ModelBundle  # noqa: E402
from loopml.registry.flavors.torch import OPTIMIZER, TorchFlavor  # noqa: E402
from loopml.train.deep import MLPClassifier  # noqa: E402
from loopml.train.deep.finetune import FineTuneWarning  # noqa: E402
from loopml.workspace import Workspace  # noqa: E402

MLP = "loopml.train.deep.MLPClassifier"
# no validation split: every epoch takes the same steps and the last epoch's weights are kept
PARAMS: dict[str, Any] = {"hidden": [8], "epochs": 2, "lr": 0.01, "batch_size": 32,
                          "random_state": 0, "validation_fraction": 0.0,
                          "device": "cpu"}  # fmt: skip


@pytest.fixture(scope="module")
def rows() -> tuple[np.ndarray, np.ndarray]:
    frame = load_breast_cancer(as_frame=True).frame.head(96)
    x = frame.drop(columns="target").to_numpy()
    return (x - x.mean(axis=0)) / x.std(axis=0), frame["target"].to_numpy()


def _opt(model: Any) -> Any:
    """The Adam state a model holds in memory (a model trained in this process)."""
    assert model.optimizer is not None
    return model.optimizer


def _bytes_of(files: dict[str, bytes]) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        for name, data in files.items():
            zf.writestr(name, data)
    return buf.getvalue()


def _loaded(model: Any, *, files: dict[str, bytes] | None = None, meta: Any = None) -> Any:
    """``model`` saved and loaded back as a workspace loads it (the optimizer file read
    again from the bundle's bytes only when asked for)."""
    flavor = TorchFlavor()
    files = flavor.save(model) if files is None else files
    meta = flavor.manifest(model) if meta is None else meta
    out = flavor.load({"model.safetensors": files["model.safetensors"]}, trusted=(),
                      what="cancer@1", meta=meta)  # fmt: skip
    flavor.attach_source(out, lambda: _bytes_of(files), "cancer@1")
    return out


def test_the_bundle_keeps_adams_state_and_a_reload_reads_it_back_equal(
    rows: tuple[np.ndarray, np.ndarray],
) -> None:
    x, y = rows
    parent = MLPClassifier(**PARAMS).fit(x, y).model_
    flavor = TorchFlavor()
    files, meta = flavor.save(parent), flavor.manifest(parent)
    assert set(files) == {"model.safetensors", OPTIMIZER}
    steps = 2 * -(-96 // 32)
    assert meta["optimizer"]["kind"] == "Adam" and meta["optimizer"]["step"] == steps
    assert meta["optimizer"]["params"] == [n for n, _ in parent.net.named_parameters()]
    assert meta["optimizer"]["file"] == OPTIMIZER and meta["optimizer"]["lr"] == 0.01
    loaded = _loaded(parent)
    assert loaded.optimizer is None  # nothing read at load: serving never needs it
    got = loaded.optimizer_state()
    assert got is not None and set(got.tensors) == set(_opt(parent).tensors)
    for key, value in _opt(parent).tensors.items():
        torch.testing.assert_close(got.tensors[key], value, rtol=0, atol=0)
    assert {float(v) for k, v in got.tensors.items() if k.endswith(".step")} == {steps}


def test_a_fine_tune_continues_adam_as_an_uninterrupted_fit(
    rows: tuple[np.ndarray, np.ndarray],
) -> None:
    """One full batch per epoch (so the shuffle does not matter): 1 epoch, then a fine-tune
    of 1 epoch from the reloaded version, reaches the weights of 2 epochs in one fit."""
    x, y = rows
    full = {**PARAMS, "batch_size": 96, "epochs": 1}
    parent = _loaded(MLPClassifier(**full).fit(x, y).model_)
    with_state = MLPClassifier(**full).fit(x, y, init=parent, classes=[0, 1])
    assert with_state.notes_ == []
    both = MLPClassifier(**{**full, "epochs": 2}).fit(x, y)
    for name, value in both.model_.net.state_dict().items():
        torch.testing.assert_close(with_state.model_.net.state_dict()[name], value)
    assert _opt(with_state.model_).meta["step"] == 2
    # a fresh Adam from the same weights takes another second step
    bare = _loaded(MLPClassifier(**full).fit(x, y).model_)
    bare.optimizer_meta = None
    bare.saved_optimizer = None
    with pytest.warns(FineTuneWarning, match="holds no optimizer state"):
        fresh = MLPClassifier(**full).fit(x, y, init=bare, classes=[0, 1])
    gap = max(
        float((fresh.model_.net.state_dict()[k] - v).abs().max())
        for k, v in both.model_.net.state_dict().items()
    )
    assert gap > 1e-4


def test_a_parent_trained_in_this_process_is_continued_and_left_unchanged(
    rows: tuple[np.ndarray, np.ndarray],
) -> None:
    x, y = rows
    parent = MLPClassifier(**PARAMS).fit(x, y).model_
    before = {k: v.clone() for k, v in _opt(parent).tensors.items()}
    child = MLPClassifier(**{**PARAMS, "epochs": 1}).fit(x, y, init=parent, classes=[0, 1])
    assert child.notes_ == [] and _opt(child.model_).meta["step"] == 9
    for key, value in before.items():  # the child's steps moved its own copy
        torch.testing.assert_close(_opt(parent).tensors[key], value, rtol=0, atol=0)


def test_an_old_bundle_without_the_file_loads_and_fine_tunes_with_a_fresh_adam(
    rows: tuple[np.ndarray, np.ndarray],
) -> None:
    x, y = rows
    model = MLPClassifier(**PARAMS).fit(x, y).model_
    flavor = TorchFlavor()
    # what loopml wrote before: the weights alone, no optimizer in the manifest
    files = {"model.safetensors": flavor.save(model)["model.safetensors"]}
    meta = {k: v for k, v in flavor.manifest(model).items() if k != "optimizer"}
    old = _loaded(model, files=files, meta=meta)
    assert old.saved_optimizer is None and old.optimizer_state() is None
    np.testing.assert_allclose(old.predict(x[:5]), model.predict(x[:5]))
    with pytest.warns(FineTuneWarning, match=r"no optimizer\.safetensors.*starts afresh"):
        child = MLPClassifier(**{**PARAMS, "epochs": 1}).fit(x, y, init=old, classes=[0, 1])
    assert len(child.notes_) == 1 and "step 0" in child.notes_[0]
    assert _opt(child.model_).meta["step"] == 3  # its own 3 steps from 0


def _crafted(model: Any, change: Any) -> Any:
    """``model`` reloaded with its optimizer file's tensors (and manifest) changed."""
    from safetensors.torch import save

    flavor = TorchFlavor()
    files, meta = flavor.save(model), flavor.manifest(model)
    tensors = {k: v.clone() for k, v in _opt(model).tensors.items()}
    opt = json.loads(json.dumps(meta["optimizer"]))
    change(tensors, opt)
    files = {**files, OPTIMIZER: save(tensors)}
    return _loaded(model, files=files, meta={**meta, "optimizer": opt})


def _drop(key: str) -> Any:
    return lambda t, _m: t.pop(key)


CRAFTED = {
    "a missing tensor": (_drop("1.exp_avg_sq"), "lacks tensor '1.exp_avg_sq'"),
    "a foreign tensor": (lambda t, _m: t.update({"0.payload": torch.zeros(1)}), "'0.payload'"),
    "another shape": (
        lambda t, _m: t.update({"0.exp_avg": torch.zeros(3, 3)}),
        r"'0.exp_avg' \(of net.0.weight\) is float32 \[3, 3\]; the parameter is float32 \[8, 30\]",
    ),
    "another dtype": (
        lambda t, _m: t.update({"1.exp_avg": t["1.exp_avg"].double()}),
        r"'1.exp_avg' \(of net.0.bias\) is float64 \[8\]",
    ),
    "a non-finite moment": (
        lambda t, _m: t["2.exp_avg"].view(-1).__setitem__(0, float("nan")),
        "not finite",
    ),
    "a negative second moment": (
        lambda t, _m: t["2.exp_avg_sq"].view(-1).__setitem__(0, -1.0),
        "negative",
    ),
    "another step count": (
        lambda t, _m: t.update({"0.step": torch.tensor(99.0)}),
        "is 99.0, not the manifest's step count 6",
    ),
    "another optimizer": (lambda _t, m: m.update({"kind": "SGD"}), "trained with 'SGD'"),
    "other parameter names": (
        lambda _t, m: m["params"].__setitem__(0, "evil.weight"),
        "parameter 0 is 'evil.weight', this network's 'net.0.weight'",
    ),
    "another network": (
        lambda _t, m: m["params"].append("net.4.weight"),
        "state of 5 parameters, this network has 4",
    ),
}


@pytest.mark.parametrize("case", sorted(CRAFTED))
def test_an_optimizer_file_that_does_not_fit_is_refused_for_a_fresh_adam(
    rows: tuple[np.ndarray, np.ndarray], case: str
) -> None:
    x, y = rows
    model = MLPClassifier(**PARAMS).fit(x, y).model_
    change, message = CRAFTED[case]
    parent = _crafted(model, change)
    with pytest.warns(FineTuneWarning, match=message) as caught:
        child = MLPClassifier(**{**PARAMS, "epochs": 1}).fit(x, y, init=parent, classes=[0, 1])
    assert "Adam starts afresh" in str(caught[0].message)
    assert _opt(child.model_).meta["step"] == 3  # nothing of the file was loaded
    with pytest.warns(FineTuneWarning, match=message):  # the weights are the parent's start
        still = MLPClassifier(**{**PARAMS, "epochs": 1, "lr": 0.0}).fit(
            x, y, init=parent, classes=[0, 1]
        )
    torch.testing.assert_close(
        still.model_.net.state_dict()["net.0.weight"], model.net.state_dict()["net.0.weight"]
    )


def test_a_damaged_optimizer_file_is_said_and_adam_starts_afresh(
    rows: tuple[np.ndarray, np.ndarray],
) -> None:
    x, y = rows
    model = MLPClassifier(**PARAMS).fit(x, y).model_
    files = {**TorchFlavor().save(model), OPTIMIZER: b"\x80\x04not safetensors"}
    parent = _loaded(model, files=files)
    with pytest.warns(FineTuneWarning, match="optimizer state cannot be read.*safetensors"):
        MLPClassifier(**{**PARAMS, "epochs": 1}).fit(x, y, init=parent, classes=[0, 1])


def _config(dataset: str, params: dict[str, Any]) -> ProjectConfig:
    return ProjectConfig.from_dict(
        {
            "name": "cancer",
            "data": {"dataset": dataset, "target": "target", "positive": 1},
            "model": {"class": MLP, "params": params},
            "evaluation": {"metric": "roc_auc", "folds": 0, "holdout": 0.2,
                           "gate": "roc_auc >= 0", "refit": False},
        }
    )  # fmt: skip


def test_loopml_train_from_a_version_continues_its_step_count(workspace: Workspace) -> None:
    frame = load_breast_cancer(as_frame=True).frame.sample(n=200, random_state=3)
    frame = frame.reset_index(drop=True)
    ingest(workspace, frame.iloc[:100].reset_index(drop=True), "cancer")
    ingest(workspace, frame.iloc[100:].reset_index(drop=True), "cancer")
    assert loopml.train(workspace, _config("cancer@1", PARAMS)).passed
    steps = -(-80 // 32)  # 80 training rows (the holdout is 20), batches of 32
    parent = load_model(workspace, "cancer@1").bundle.estimator
    assert parent.optimizer is None and parent.optimizer_meta["step"] == 2 * steps
    saved = parent.optimizer_state()  # read again from the artifact store
    assert saved is not None and float(saved.tensors["0.step"]) == 2 * steps
    child = loopml.train(workspace, _config("cancer@2", {**PARAMS, "epochs": 1, "lr": 0.005}),
                         from_version="cancer@1")  # fmt: skip
    assert child.passed, child.reason
    got = load_model(workspace, "cancer@2").bundle.estimator
    assert got.optimizer_meta["step"] == 3 * steps  # the parent's, then its own
    assert got.optimizer_meta["lr"] == 0.005  # this run's learning rate
    assert float(got.optimizer_state().tensors["0.step"]) == 3 * steps
    # an old bundle (the weights alone), registered as a version, fine-tunes afresh
    from loopml.registry.models import register_model

    old = load_model(workspace, "cancer@1").bundle
    old.estimator.optimizer_meta = None
    record = register_model(workspace, "cancer", ModelBundle.from_bytes(old.to_bytes()))
    with zipfile.ZipFile(io.BytesIO(workspace.artifacts.get(record.artifact_sha256))) as zf:
        assert OPTIMIZER not in zf.namelist()
    with pytest.warns(FineTuneWarning, match="registered before loopml kept it"):
        again = loopml.train(workspace, _config("cancer@2", {**PARAMS, "epochs": 1}),
                             from_version=f"cancer@{record.version}")  # fmt: skip
    assert again.passed, again.reason
    newest = load_model(workspace, f"cancer@{record.version + 1}").bundle.estimator
    assert newest.optimizer_meta["step"] == steps
    assert isinstance(pd.DataFrame(newest.history), pd.DataFrame)


@pytest.mark.slow
def test_a_fine_tune_over_two_workers_starts_every_worker_from_the_parents_adam(
    rows: tuple[np.ndarray, np.ndarray],
) -> None:
    x, y = rows
    parent = _loaded(MLPClassifier(**PARAMS).fit(x, y).model_)  # 6 steps
    child = MLPClassifier(**{**PARAMS, "epochs": 1, "workers": 2}).fit(
        x, y, init=parent, classes=[0, 1]
    )
    assert child.notes_ == []
    # a step of two workers is one step on the whole batch: 3 more
    assert _opt(child.model_).meta["step"] == 9
    assert {float(v) for k, v in _opt(child.model_).tensors.items() if k.endswith(".step")} == {9.0}
