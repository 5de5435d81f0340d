"""A loaded Keras version keeps none of its ``model.keras`` bytes: a fine-tune reads the file
again from the artifact store for the optimizer (the same bytes, checked by their sha256),
and a version loaded from bytes alone fine-tunes with a fresh Adam, saying why."""

from __future__ import annotations

import gc
import hashlib
import importlib.util
import io
import zipfile
from typing import Any

import pytest
from sklearn.datasets import load_breast_cancer

if importlib.util.find_spec("tensorflow") is None:  # found, not imported: collecting stays fast
    pytest.skip("needs loopml[tensorflow]", allow_module_level=True)

from loopml.errors import IntegrityError
from loopml.registry import load_model
from loopml.registry.bundle import ModelBundle
from loopml.registry.models import register_model
from loopml.train import fit_bundle
from loopml.workspace import Workspace

PARAMS: dict[str, Any] = {"hidden": [8], "epochs": 1, "lr": 0.01, "batch_size": 32,
                          "random_state": 0, "validation_fraction": 0.0}  # fmt: skip


def _reachable_bytes(root: Any, skip: tuple[type, ...], depth: int = 6) -> list[bytes]:
    """Every bytes object reachable from ``root`` within ``depth`` references, not through
    an object of a type in ``skip``."""
    found, seen, level = [], {id(root)}, [root]
    for _ in range(depth):
        nxt = []
        for obj in level:
            for ref in gc.get_referents(obj):
                if id(ref) in seen or isinstance(ref, (*skip, type)):
                    continue
                seen.add(id(ref))
                if isinstance(ref, bytes | bytearray):
                    found.append(bytes(ref))
                else:
                    nxt.append(ref)
        level = nxt
    return found


@pytest.fixture
def registered(workspace: Workspace) -> tuple[Workspace, bytes]:
    from loopml.train.deep.keras import MLPClassifier

    frame = load_breast_cancer(as_frame=True).frame.head(64)
    bundle, _ = fit_bundle(frame, "target", MLPClassifier(**PARAMS), task="classification")
    record = register_model(workspace, "cancer", bundle)
    with zipfile.ZipFile(io.BytesIO(workspace.artifacts.get(record.artifact_sha256))) as zf:
        return workspace, zf.read("model.keras")


def test_a_loaded_version_keeps_no_bytes_of_its_file_and_still_reads_its_optimizer(
    registered: tuple[Workspace, bytes],
) -> None:
    from loopml.registry.flavors.keras import KerasModel, keras_module

    ws, member = registered
    loaded = load_model(ws, "cancer@1").bundle.estimator
    assert isinstance(loaded, KerasModel)
    keras = keras_module()
    # everything the version holds beside the network itself (and the workspace it reads
    # the file from again): no copy of model.keras
    held = _reachable_bytes(loaded, skip=(keras.Model, Workspace))
    assert not [b for b in held if len(b) >= len(member) // 2 or member[:64] in b]
    assert loaded.file_sha256 == hashlib.sha256(member).hexdigest()
    got = loaded.optimizer_state()  # read again from the artifact store
    assert got is not None and got[0] == "Adam"
    by_role = {p.rsplit("/", 1)[-1]: v for p, v in got[1][:2]}
    assert int(by_role["iteration"]) == 2  # 64 rows in batches of 32, one epoch


def test_another_file_under_the_version_is_refused_and_bytes_alone_start_afresh(
    registered: tuple[Workspace, bytes],
) -> None:
    import numpy as np

    from loopml.registry.flavors.keras import KerasFlavor
    from loopml.train.deep.keras import FineTuneWarning, MLPClassifier

    ws, _member = registered
    record = ws.metadata.list_model_versions("cancer")[0]
    data = ws.artifacts.get(record.artifact_sha256)
    loaded = ModelBundle.from_bytes(data, what="cancer@1").estimator
    assert loaded.saved_optimizer is None  # from bytes alone: nothing to read again
    frame = load_breast_cancer(as_frame=True).frame.head(64)
    x, y = frame.drop(columns="target").to_numpy(), frame["target"].to_numpy()
    with pytest.warns(FineTuneWarning, match="was not read.*Adam starts afresh"):
        MLPClassifier(**PARAMS).fit(x, y, init=loaded, classes=[0, 1])
    # a reader that gives another file than the one loaded: refused, not used
    other = load_model(ws, "cancer@1").bundle.estimator
    buf = io.BytesIO()
    with zipfile.ZipFile(io.BytesIO(data)) as zf, zipfile.ZipFile(buf, "w") as out:
        for name in zf.namelist():
            blob = zf.read(name)
            out.writestr(name, blob + b"\0" if name == "model.keras" else blob)
    KerasFlavor().attach_source(other, buf.getvalue, "cancer@1")
    with pytest.raises(IntegrityError, match="not the file loaded"):
        other.optimizer_state()
    with pytest.warns(FineTuneWarning, match="cannot be read.*not the file loaded"):
        again = MLPClassifier(**PARAMS).fit(x, y, init=other, classes=[0, 1])
    assert np.isfinite(again.predict_proba(x)).all()
