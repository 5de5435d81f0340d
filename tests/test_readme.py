"""Every code block in README.md runs here, as a reader would run it.

``sh`` blocks run each ``loopml`` line in order, in a fresh folder holding the README's data
(scikit-learn's breast-cancer frame as ``cancer.csv``, rows to score as ``new.csv``) and its
project file (the ``yaml`` block as ``loopml.yaml``); the ``python`` block runs there with
``frame`` defined; the ``yaml`` block parses as a project file. What cannot run as written is
in the small tables below, each with its reason.
"""

from __future__ import annotations

import os
import re
import shlex
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pandas as pd
import pytest
import yaml
from sklearn.datasets import load_breast_cancer

import loopml
from loopml.cli.main import main

ROOT = Path(__file__).parents[1]
README = ROOT / "README.md"
FENCE = re.compile(r"^```(\w*)\n(.*?)^```", re.MULTILINE | re.DOTALL)

# lines of sh blocks that are not loopml commands: the Makefile's targets, checked to exist
# (`make test` runs this very file; `make demo` is `loopml quickstart`, run by
# tests/e2e/test_quickstart.py)
NOT_LOOPML = "make"
# URIs that stand for a team's services, and the local service each is replaced by
SERVICES = {
    "postgresql://me@db/loopml": "postgres_uri",  # PostgreSQL on 127.0.0.1:5432, db test
    "s3://ml-lake/team": "s3_uri",  # a fresh bucket on moto's server (tests/conftest.py)
    "http://minio:9000": "s3_env",  # moto's endpoint
}
# commands whose documented exit codes include a finding (README: "exit 1 on drift")
EXIT_CODES = {("monitor", "drift"): (0, 1)}
# a placeholder the README writes for an id that only a run can give
PREDICTION_ID = "3f2a…"


def blocks(lang: str | None = None) -> list[tuple[str, str]]:
    found = [(m.group(1), m.group(2)) for m in FENCE.finditer(README.read_text())]
    return [b for b in found if lang is None or b[0] == lang]


def commands(block: str) -> list[list[str]]:
    """The block's command lines as argv lists (comments and blank lines dropped)."""
    return [argv for line in block.splitlines() if (argv := shlex.split(line, comments=True))]


def test_the_readme_has_only_blocks_this_file_runs() -> None:
    langs = [lang for lang, _ in blocks()]
    assert set(langs) == {"sh", "yaml", "python"}, langs
    assert langs.count("yaml") == 1 and langs.count("python") == 1


def test_every_other_line_is_a_make_target() -> None:
    targets = set(re.findall(r"^([a-z][a-z-]*):", (ROOT / "Makefile").read_text(), re.M))
    for _, block in blocks("sh"):
        for argv in commands(block):
            if argv[0] != "loopml":
                assert argv[0] == NOT_LOOPML, argv
                assert argv[1] in targets, f"make {argv[1]}: no such target in the Makefile"


@pytest.fixture
def project(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A folder with the README's files, the current folder for the test."""
    frame = load_breast_cancer(as_frame=True).frame
    frame.to_csv(tmp_path / "cancer.csv", index=False)
    frame.drop(columns=["target"]).sample(120, random_state=1).to_csv(
        tmp_path / "new.csv", index=False
    )
    (tmp_path / "loopml.yaml").write_text(blocks("yaml")[0][1])
    monkeypatch.chdir(tmp_path)
    return tmp_path


def run_loopml(capsys: pytest.CaptureFixture[str], argv: list[str]) -> tuple[int, str]:
    capsys.readouterr()
    code = main(argv)
    captured = capsys.readouterr()
    return code, captured.out + captured.err


SH_BLOCKS = [b for _, b in blocks("sh") if any(a[0] == "loopml" for a in commands(b))]


@pytest.mark.parametrize("block", SH_BLOCKS, ids=[f"sh-{i + 1}" for i in range(len(SH_BLOCKS))])
def test_sh_block(
    block: str,
    project: Path,
    capsys: pytest.CaptureFixture[str],
    request: pytest.FixtureRequest,
) -> None:
    local = {uri: str(request.getfixturevalue(f)) for uri, f in SERVICES.items() if uri in block}
    prediction_ids: list[str] = []
    for argv in commands(block):
        if argv[0] == NOT_LOOPML:
            continue  # see test_every_other_line_is_a_make_target
        args = [local.get(a, a) for a in argv[1:]]
        if args[0] == "serve":
            prediction_ids += serve_and_predict(args, project)
            continue
        if PREDICTION_ID in args:
            assert prediction_ids, "the README traces a prediction before serving one"
            args = [prediction_ids[0] if a == PREDICTION_ID else a for a in args]
        code, text = run_loopml(capsys, args)
        allowed = EXIT_CODES.get(tuple(args[:2]), (0,))
        assert code in allowed, f"loopml {shlex.join(args)} exited {code}:\n{text}"


def serve_and_predict(args: list[str], folder: Path) -> list[str]:
    """Run ``loopml serve ARGS`` (on a free port) in its own process, as the README does,
    send it the rows of new.csv and stop it; returns the prediction ids it answered."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = str(sock.getsockname()[1])
    if "--port" in args:
        args = [*args]
        args[args.index("--port") + 1] = port
    else:
        args = [*args, "--port", port]
    proc = subprocess.Popen(
        [sys.executable, "-m", "loopml", *args],
        cwd=folder,
        env=dict(os.environ),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        url = f"http://127.0.0.1:{port}"
        wait_until_ready(url, proc)
        rows = pd.read_csv(folder / "new.csv").to_dict(orient="records")
        r = httpx.post(f"{url}/v1/models/cancer:predict", json={"instances": rows}, timeout=60)
        assert r.status_code == 200, r.text
        assert httpx.get(f"{url}/docs", timeout=10).status_code == 200  # "docs at /docs"
    finally:
        proc.send_signal(signal.SIGINT)  # a clean stop flushes the prediction log
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
    return [p["prediction_id"] for p in r.json()["predictions"]]


def wait_until_ready(url: str, proc: subprocess.Popen[str]) -> None:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            pytest.fail(f"loopml serve exited with {proc.returncode}: {proc.stderr.read()}")  # type: ignore[union-attr]
        try:
            if httpx.get(f"{url}/v2/health/ready", timeout=2).status_code == 200:
                return
        except httpx.TransportError:
            pass
        time.sleep(0.2)
    pytest.fail("loopml serve was not ready within 60 s")


def test_the_yaml_block_is_a_project_file() -> None:
    config = loopml.ProjectConfig.from_dict(yaml.safe_load(blocks("yaml")[0][1]))
    assert config.name == "cancer"


@pytest.fixture
def namespace(project: Path) -> Iterator[dict[str, object]]:
    frame = pd.read_csv(project / "cancer.csv")
    names: dict[str, object] = {"frame": frame, "__name__": "readme"}
    yield names
    ws = names.get("ws")
    if isinstance(ws, loopml.Workspace):
        ws.close()


def test_the_python_block(namespace: dict[str, object]) -> None:
    code = blocks("python")[0][1]
    exec(compile(code, f"{README}:python", "exec"), namespace)
    assert namespace["result"].passed  # type: ignore[attr-defined]
    version = namespace["version"]
    ws = namespace["ws"]
    run = ws.metadata.get_run(version.run_id)  # type: ignore[attr-defined]
    assert run.status == "succeeded"
