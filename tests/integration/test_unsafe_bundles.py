"""Crafted model artifacts with a correct sha256 in a real workspace: refused with an
UnsafeFormatError naming the type on every load path, and their payload never runs.

Paths: ``loopml.load_model``, ``ModelBundle.from_bytes``, a running server's hot reload,
``loopml predict`` (the CLI) and ``loopml.check_drift``. The opt-in that lets a user's own
function load is recorded on the version, honoured from that record only, and shown by
``loopml models show``.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import httpx
import numpy as np
import pytest
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import FunctionTransformer

from loopml.cli.main import main
from loopml.errors import UnsafeFormatError
from loopml.monitor import check_drift
from loopml.registry import ModelBundle, load_model, register_model, set_alias
from loopml.serve import start_background_server
from loopml.serve.metrics import parse_exposition
from loopml.stores.records import ModelVersion
from loopml.train import fit_bundle
from loopml.workspace import Workspace
from tests.unit.registry.crafted import (
    CRAFTED,
    FT,
    cancer_frame,
    genuine,
    member,
    replace_member,
    store,
)

NAMES = sorted(CRAFTED)


@pytest.fixture
def champion(workspace: Workspace) -> ModelVersion:
    """cancer@1: a genuine model, the champion."""
    bundle, _ = genuine()
    mv = register_model(workspace, "cancer", bundle)
    set_alias(workspace, "cancer", "champion", mv.version)
    return mv


def _crafted(ws: Workspace, champion: ModelVersion, name: str, marker: Path) -> ModelVersion:
    make, _ = CRAFTED[name]
    mv = store(ws, "cancer", make(marker), champion.signature)
    assert ws.artifacts.get(mv.artifact_sha256)  # the stored sha256 is right
    return mv


def _refused(exc: pytest.ExceptionInfo[UnsafeFormatError], name: str, version: int) -> None:
    err = exc.value
    assert CRAFTED[name][1] in err.message, err.message
    assert CRAFTED[name][1] in err.types
    assert err.where["artifact"] == f"cancer@{version}"
    assert err.code == "unsafe_format"


@pytest.mark.parametrize("name", NAMES)
def test_load_model_and_from_bytes_refuse(
    workspace: Workspace, champion: ModelVersion, name: str, tmp_path: Path
) -> None:
    marker = tmp_path / "pwned"
    mv = _crafted(workspace, champion, name, marker)
    with pytest.raises(UnsafeFormatError) as info:
        load_model(workspace, f"cancer@{mv.version}")
    _refused(info, name, mv.version)
    data = workspace.artifacts.get(mv.artifact_sha256)
    with pytest.raises(UnsafeFormatError):
        ModelBundle.from_bytes(data, what=f"cancer@{mv.version}")
    assert not marker.exists()


@pytest.mark.parametrize("name", NAMES)
def test_loopml_predict_refuses(
    workspace: Workspace,
    champion: ModelVersion,
    name: str,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    marker = tmp_path / "pwned"
    mv = _crafted(workspace, champion, name, marker)
    rows = tmp_path / "rows.csv"
    cancer_frame().drop(columns="target").head(20).to_csv(rows, index=False)
    output = tmp_path / "scored.csv"
    ws = str(workspace.root)
    code = main(
        ["-w", ws, "predict", "-m", f"cancer@{mv.version}", "-i", str(rows), "-o", str(output)]
    )
    err = capsys.readouterr().err
    assert code == 2
    assert CRAFTED[name][1] in err and "bug" not in err
    assert not output.exists() and not marker.exists()


@pytest.mark.parametrize("name", NAMES)
def test_check_drift_refuses(
    workspace: Workspace, champion: ModelVersion, name: str, tmp_path: Path
) -> None:
    marker = tmp_path / "pwned"
    mv = _crafted(workspace, champion, name, marker)
    with pytest.raises(UnsafeFormatError) as info:
        check_drift(workspace, f"cancer@{mv.version}", data=cancer_frame().head(100))
    _refused(info, name, mv.version)
    assert not marker.exists()


def _refused_reloads(url: str) -> float:
    samples = parse_exposition(httpx.get(f"{url}/metrics", timeout=5).text)
    return sum(
        v
        for k, v in samples.items()
        if k.startswith("loopml_model_reloads_total{")
        and 'model="cancer"' in k
        and 'result="swapped"' not in k
    )


@pytest.mark.parametrize("name", NAMES)
def test_a_running_server_keeps_serving_the_old_version(
    workspace: Workspace, champion: ModelVersion, name: str, tmp_path: Path
) -> None:
    marker = tmp_path / "pwned"
    mv = _crafted(workspace, champion, name, marker)
    rows = cancer_frame().drop(columns="target").head(3).to_dict("records")
    server = start_background_server(workspace, reload_interval=0.05, log_predictions=False)
    try:
        with httpx.Client(base_url=server.url, timeout=10) as client:
            before = client.post("/v1/models/cancer:predict", json={"instances": rows})
            assert before.status_code == 200 and before.json()["version"] == champion.version
            set_alias(workspace, "cancer", "champion", mv.version)  # the attacker's move
            deadline = time.monotonic() + 60
            while _refused_reloads(server.url) < 1 and time.monotonic() < deadline:
                time.sleep(0.05)  # a bounded wait for the reloader to try (and refuse)
            assert _refused_reloads(server.url) >= 1
            after = client.post("/v1/models/cancer:predict", json={"instances": rows})
            assert after.status_code == 200
            assert after.json()["version"] == champion.version
            answers = [
                [(p["prediction"], p["probabilities"]) for p in r.json()["predictions"]]
                for r in (before, after)
            ]
            assert answers[0] == answers[1]
    finally:
        server.stop()
    assert not marker.exists()


def _own_function_model() -> tuple[ModelBundle, list[str]]:
    pipe = Pipeline([("tanh", FunctionTransformer(np.tanh)), ("m", LogisticRegression())])
    bundle, _ = fit_bundle(cancer_frame(), "target", pipe)
    return bundle, sorted([FT, "numpy.tanh"])


def test_an_own_function_needs_an_opt_in_that_is_recorded_and_shown(
    workspace: Workspace, capsys: pytest.CaptureFixture[str]
) -> None:
    bundle, needed = _own_function_model()
    with pytest.raises(UnsafeFormatError) as info:
        register_model(workspace, "tanh", bundle)
    assert sorted(info.value.types) == needed
    assert workspace.metadata.list_model_versions("tanh") == []  # nothing recorded
    mv = register_model(workspace, "tanh", bundle, trust=[*needed, "unused.Name"])
    assert mv.trusted == needed  # what it needs, not every name given
    assert workspace.metadata.get_model_version("tanh", mv.version).trusted == needed
    assert load_model(workspace, f"tanh@{mv.version}").bundle.trusted == tuple(needed)
    # the same opt-in from fit_bundle
    pipe = Pipeline([("tanh", FunctionTransformer(np.tanh)), ("m", LogisticRegression())])
    again, _ = fit_bundle(cancer_frame(), "target", pipe, trust=needed)
    assert register_model(workspace, "tanh", again).trusted == needed

    ws = str(workspace.root)
    assert main(["-w", ws, "models", "show", f"tanh@{mv.version}"]) == 0
    text = capsys.readouterr().out
    assert "trusted beyond loopml's allowlist" in text and "numpy.tanh" in text
    assert main(["-w", ws, "models", "show", f"tanh@{mv.version}", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["trusted"] == needed


def test_the_opt_in_comes_from_the_record_never_from_the_bundle(workspace: Workspace) -> None:
    """The same bytes under a version recorded without the opt-in are refused, and a
    manifest claiming trust changes nothing."""
    bundle, needed = _own_function_model()
    trusted = register_model(workspace, "tanh", bundle, trust=needed)
    data = workspace.artifacts.get(trusted.artifact_sha256)
    manifest = json.loads(member(data, "manifest.json"))
    manifest["trusted"] = needed
    manifest["trust"] = needed
    claimed = replace_member(data, "manifest.json", json.dumps(manifest).encode())
    for payload in (data, claimed):
        mv = store(workspace, "tanh", payload, trusted.signature)
        assert mv.trusted == []
        with pytest.raises(UnsafeFormatError, match=r"numpy\.tanh"):
            load_model(workspace, f"tanh@{mv.version}")
    assert load_model(workspace, f"tanh@{trusted.version}").version == trusted.version


def test_a_version_without_trust_shows_the_allowlist_only(
    workspace: Workspace, champion: ModelVersion, capsys: pytest.CaptureFixture[str]
) -> None:
    assert champion.trusted == []
    assert main(["-w", str(workspace.root), "models", "show", "cancer@1"]) == 0
    assert "loopml's allowlist only" in capsys.readouterr().out
