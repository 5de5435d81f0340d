"""Compiling a version to ONNX never runs in the serving process, and moving traffic
compiles first (issue 6): the server's load of a version never compiled is compiled by a
separate process (the pointer names its pid, and nothing is built here); that process's
failure serves the version natively, never fails the load; ``loopml models alias`` and
``loopml deploy`` compile before they record the move; a model that does not convert still
deploys, recorded native with its reason."""

from __future__ import annotations

import os
import warnings
from typing import Any

import orjson
import pandas as pd
import pytest
from sklearn.linear_model import LogisticRegression
from sklearn.semi_supervised import LabelSpreading

from loopml.cli.main import main
from loopml.errors import ConfigError
from loopml.registry import ModelBundle, compiled, register_model, set_alias
from loopml.registry.compiled import STATS, pointer_path, serving_predictor, worker_job
from loopml.registry.deployments import get_deployment
from loopml.serve import create_app
from loopml.serve.runtime import load_ready
from loopml.train.fit import fit_bundle
from loopml.workspace import Workspace, open_workspace

with warnings.catch_warnings():
    warnings.simplefilter("ignore")  # starlette's notice about httpx in its TestClient
    from starlette.testclient import TestClient


def frame(n: int = 200, shift: float = 0.0) -> pd.DataFrame:
    import numpy as np

    rng = np.random.default_rng(0)
    df = pd.DataFrame({"a": rng.normal(0, 1, n), "b": rng.normal(0, 1, n)})
    df["y"] = (df["a"] + shift * df["b"] + rng.normal(0, 0.3, n) > 0).astype(int)
    return df


def small_bundle(estimator: Any = None, shift: float = 0.0) -> ModelBundle:
    est = LogisticRegression() if estimator is None else estimator
    return fit_bundle(frame(shift=shift), "y", est)[0]


def pointer(ws: Workspace, version: int, name: str = "m") -> dict[str, Any] | None:
    record = ws.metadata.get_model_version(name, version)
    try:
        doc = orjson.loads(ws.lake.read_bytes(pointer_path(record.artifact_sha256)))
    except Exception:
        return None
    assert isinstance(doc, dict)
    return doc


def builds() -> int:
    return STATS["compiled"]


# -- the server's load ----------------------------------------------------------------------


def test_the_servers_load_compiles_in_another_process(workspace: Workspace) -> None:
    register_model(workspace, "m", small_bundle())
    assert pointer(workspace, 1) is None
    before = builds()
    loaded = load_ready(workspace, "m@1")
    assert builds() == before  # nothing was converted in this (the serving) process
    doc = pointer(workspace, 1)
    assert doc is not None and doc["kind"] == "onnx"
    assert isinstance(doc["pid"], int) and doc["pid"] != os.getpid()
    predictor = loaded.predictor
    assert predictor.kind == "onnx" and predictor.check is not None and predictor.check.cached
    # a second load finds it cached: no second process, nothing built
    again = load_ready(workspace, "m@1")
    assert again.predictor.kind == "onnx" and builds() == before


def test_a_compile_leaves_no_lock_file_behind(workspace: Workspace) -> None:
    import tempfile
    from pathlib import Path

    register_model(workspace, "m", small_bundle())
    sha = workspace.metadata.get_model_version("m", 1).artifact_sha256
    lock = Path(tempfile.gettempdir()) / f"loopml-compile-{sha[:40]}.lock"
    load_ready(workspace, "m@1")
    assert pointer(workspace, 1) is not None
    assert not lock.exists()  # one empty file per bundle ever compiled piled up in /tmp


def test_a_hot_swap_to_a_version_never_compiled_compiles_elsewhere(
    workspace: Workspace,
) -> None:
    v1 = register_model(workspace, "m", small_bundle()).version
    set_alias(workspace, "m", "champion", v1)
    app = create_app(workspace, reload_interval=0, log_predictions=False)
    token = app.state.server.token
    body = {"instances": [{"a": 0.5, "b": -0.2}]}
    headers = {"Authorization": f"Bearer {token}"}
    with TestClient(app, base_url="http://127.0.0.1", headers=headers) as client:
        assert client.post("/v1/models/m:predict", json=body).json()["version"] == 1
        before = builds()
        v2 = register_model(workspace, "m", small_bundle(shift=1.0)).version
        set_alias(workspace, "m", "champion", v2)  # the Python path: no compile here
        assert pointer(workspace, v2) is None
        assert client.portal is not None
        client.portal.call(app.state.server.models.reload_all)
        resp = client.post("/v1/models/m:predict", json=body)
        assert resp.status_code == 200 and resp.json()["version"] == v2
        assert builds() == before
        doc = pointer(workspace, v2)
        assert doc is not None and doc["kind"] == "onnx" and doc["pid"] != os.getpid()
        runtime = app.state.server.models.runtime("m")
        assert runtime.predictor_kind == "onnx"


@pytest.mark.parametrize(
    ("command", "said"),
    [
        (("-c", "import sys; sys.exit(3)"), "exited with status 3"),
        (("-c", "import os, signal; os.kill(os.getpid(), signal.SIGKILL)"), "signal 9"),
        (("-c", "import time; time.sleep(60)"), "ran past"),
    ],
    ids=["exits", "crashes", "hangs"],
)
def test_a_failing_compile_process_serves_the_version_natively(
    workspace: Workspace, monkeypatch: pytest.MonkeyPatch, command: tuple[str, ...], said: str
) -> None:
    register_model(workspace, "m", small_bundle())
    monkeypatch.setattr(compiled, "WORKER_COMMAND", command)
    monkeypatch.setattr(compiled, "CHILD_TIMEOUT_S", 1.0)
    before = builds()
    loaded = load_ready(workspace, "m@1")  # never fails because of the process
    predictor = loaded.predictor
    assert predictor.kind == "native"
    assert predictor.reason is not None and said in predictor.reason
    assert "loopml models compile m@1" in predictor.reason
    assert builds() == before and pointer(workspace, 1) is None  # tried again next load
    got = predictor.predict_columns({"a": pd.Series([0.1]).to_numpy(), "b": [0.2]})
    assert got.probabilities is not None and got.probabilities.shape == (1, 2)
    monkeypatch.undo()  # the next load compiles it (in a separate process)
    assert load_ready(workspace, "m@1").predictor.kind == "onnx"


def test_a_failing_compile_process_in_mode_onnx_compiles_here(
    workspace: Workspace, monkeypatch: pytest.MonkeyPatch
) -> None:
    """serve_compile=onnx must not serve natively: it compiles in process, as before."""
    register_model(workspace, "m", small_bundle())
    monkeypatch.setattr(compiled, "WORKER_COMMAND", ("-c", "import sys; sys.exit(1)"))
    record = workspace.metadata.get_model_version("m", 1)
    bundle = ModelBundle.from_bytes(workspace.artifacts.get(record.artifact_sha256))
    before = builds()
    predictor = serving_predictor(workspace, bundle, record.artifact_sha256, mode="onnx")
    assert predictor.kind == "onnx" and builds() == before + 1


def test_two_concurrent_compiles_of_one_bundle_are_harmless(workspace: Workspace) -> None:
    """Two workers (two servers) compiling the same bundle at once both write the pointer."""
    import subprocess
    import sys

    register_model(workspace, "m", small_bundle())
    record = workspace.metadata.get_model_version("m", 1)
    bundle = ModelBundle.from_bytes(workspace.artifacts.get(record.artifact_sha256))
    job = orjson.dumps(worker_job(workspace, bundle, record.artifact_sha256)) + b"\n"
    command = [sys.executable, "-m", "loopml.registry.compile_worker"]
    workers = [
        subprocess.Popen(command, stdin=subprocess.PIPE, stdout=subprocess.PIPE) for _ in range(2)
    ]
    for w in workers:
        assert w.stdin is not None
        w.stdin.write(job)
        w.stdin.close()  # one job each, then they exit
    answers = [orjson.loads(w.stdout.read()) for w in workers if w.stdout is not None]
    assert [w.wait(timeout=600) for w in workers] == [0, 0]
    assert all(a["ok"]["kind"] == "onnx" for a in answers), answers
    doc = pointer(workspace, 1)
    assert doc is not None and doc["kind"] == "onnx"
    assert doc["pid"] in {w.pid for w in workers}
    predictor = serving_predictor(workspace, bundle, record.artifact_sha256)
    assert predictor.kind == "onnx" and predictor.check is not None and predictor.check.cached


def test_one_worker_compiles_one_version_after_another(workspace: Workspace) -> None:
    """The worker stays up between compiles: only the first pays for its imports."""
    register_model(workspace, "m", small_bundle())
    register_model(workspace, "m", small_bundle(shift=1.0))
    load_ready(workspace, "m@1")
    load_ready(workspace, "m@2")
    one, two = pointer(workspace, 1), pointer(workspace, 2)
    assert one is not None and two is not None
    assert one["pid"] == two["pid"] != os.getpid()


# -- moving traffic compiles first ----------------------------------------------------------


def test_models_alias_compiles_before_the_move(
    workspace: Workspace, capsys: pytest.CaptureFixture[str]
) -> None:
    register_model(workspace, "m", small_bundle())
    root = str(workspace.root)
    capsys.readouterr()
    assert main(["models", "alias", "m", "champion", "1", "-w", root]) == 0
    said = capsys.readouterr().out
    assert "compiled m@1 to ONNX in" in said and "checked on" in said
    doc = pointer(workspace, 1)
    assert doc is not None and doc["kind"] == "onnx"
    with open_workspace(root) as ws:
        (event,) = ws.metadata.list_alias_events("m", "champion", limit=5)
    assert pd.Timestamp(doc["created_at"]) <= pd.Timestamp(event.at)
    assert main(["models", "alias", "m", "stable", "1", "-w", root]) == 0
    assert "m@1 is compiled to ONNX already" in capsys.readouterr().out


def test_deploy_compiles_the_versions_it_routes_to_before_recording(
    workspace: Workspace, capsys: pytest.CaptureFixture[str]
) -> None:
    register_model(workspace, "m", small_bundle())
    register_model(workspace, "m", small_bundle(shift=1.0))
    register_model(workspace, "m", small_bundle(shift=2.0))
    root = str(workspace.root)
    capsys.readouterr()
    assert main(["deploy", "m", "--ab", "1=50,2=50", "--shadow", "3", "-w", root]) == 0
    said = capsys.readouterr().out
    dep = get_deployment(workspace, "m")
    assert dep is not None and dep.updated_at is not None
    for version in (1, 2, 3):
        assert f"compiled m@{version} to ONNX in" in said
        doc = pointer(workspace, version)
        assert doc is not None and doc["kind"] == "onnx"
        assert pd.Timestamp(doc["created_at"]) <= pd.Timestamp(dep.updated_at)


def test_a_model_that_does_not_convert_still_deploys_native(
    workspace: Workspace, capsys: pytest.CaptureFixture[str]
) -> None:
    register_model(workspace, "m", small_bundle(LabelSpreading()))
    root = str(workspace.root)
    capsys.readouterr()
    assert main(["deploy", "m", "--single", "1", "-w", root]) == 0
    said = capsys.readouterr().out
    assert "m@1 does not compile to ONNX; served natively" in said
    assert "LabelSpreading has no ONNX converter" in said
    doc = pointer(workspace, 1)
    assert doc is not None and doc["kind"] == "native"
    assert "LabelSpreading has no ONNX converter" in doc["reason"]
    dep = get_deployment(workspace, "m")
    assert dep is not None and dep.routes == ((1, 100.0),)


def test_deploy_in_mode_onnx_refuses_a_model_that_does_not_convert(
    workspace: Workspace, monkeypatch: pytest.MonkeyPatch
) -> None:
    register_model(workspace, "m", small_bundle(LabelSpreading()))
    monkeypatch.setenv("LOOPML_SERVE_COMPILE", "onnx")
    with open_workspace(str(workspace.root)) as ws:
        from loopml.registry.compiled import compile_for_traffic

        with pytest.raises(ConfigError, match="does not compile to ONNX"):
            compile_for_traffic(ws, "m", [1])
    assert get_deployment(workspace, "m") is None


def test_deploy_from_python_compiles_first_unless_told_not_to(workspace: Workspace) -> None:
    from loopml.registry.deployments import deploy

    register_model(workspace, "m", small_bundle())
    register_model(workspace, "m", small_bundle(shift=1.0))
    dep = deploy(workspace, "m", single=1, compile=False)
    assert pointer(workspace, 1) is None
    dep = deploy(workspace, "m", canary={2: 10})  # the primary (1) serves already
    doc = pointer(workspace, 2)
    assert doc is not None and doc["kind"] == "onnx" and doc["pid"] == os.getpid()
    assert dep.updated_at is not None
    assert pd.Timestamp(doc["created_at"]) <= pd.Timestamp(dep.updated_at)
