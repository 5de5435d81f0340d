"""The MF recommender from loopml.yaml: `loopml train` registers it (safetensors weights and
JSON ids, no pickle), `:recommend` answers top-k over HTTP with the popular fallback for a
user never seen, bad requests are 4xx naming the field; `--from` fine-tunes it as a child."""

from __future__ import annotations

import io
import warnings
import zipfile
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

pytest.importorskip("torch")

from loopml.registry import load_model
from loopml.serve import create_app
from loopml.workspace import open_workspace

from .conftest import Result

with warnings.catch_warnings():
    warnings.simplefilter("ignore")  # starlette's notice about httpx in its TestClient
    from starlette.testclient import TestClient

PROJECT = """
name: recs
data: {dataset: ratings, target: rating}
model:
  class: loopml.train.deep.MFRecommender
  params: {user: user, item: item, min_rating: 3, dim: 8, epochs: 40, lr: 0.05,
           batch_size: 256, k: 5}
evaluation:
  split: {kind: time, column: ts}
  holdout: 0.2
  folds: 0
  metric: ndcg_at_5
  gate: "ndcg_at_5 >= 0.2"
"""


def _ratings(seed: int = 0, users: int = 40, offset: int = 0) -> pd.DataFrame:
    """Two groups of users, each rating its own half of the items high (and a few of the
    other half low); timestamps increase within each user's history."""
    rng = np.random.default_rng(seed)
    rows = []
    for u in range(users):
        own = range(0, 20) if u % 2 == 0 else range(20, 40)
        other = range(20, 40) if u % 2 == 0 else range(0, 20)
        liked = rng.choice(list(own), 12, replace=False)
        disliked = rng.choice(list(other), 2, replace=False)
        t = offset
        for i in liked:
            rows.append((u, int(i), 5, t))
            t += 1
        for i in disliked:
            rows.append((u, int(i), 1, t))
            t += 1
    return pd.DataFrame(rows, columns=["user", "item", "rating", "ts"])


@pytest.fixture
def ws(tmp_path: Path, cli: Callable[..., Result]) -> Path:
    folder = tmp_path / "ws"
    assert cli("init", "--workspace", folder).code == 0
    csv = tmp_path / "ratings.csv"
    _ratings().to_csv(csv, index=False)
    assert cli("data", "ingest", csv, "--name", "ratings", "-w", folder).code == 0
    (tmp_path / "loopml.yaml").write_text(PROJECT)
    return folder


@pytest.mark.slow
def test_train_registers_and_serves_top_k(
    tmp_path: Path, cli: Callable[..., Result], ws: Path
) -> None:
    res = cli("train", "-f", tmp_path / "loopml.yaml", "-w", ws)
    assert res.code == 0, res.err
    with open_workspace(ws) as w:
        model = load_model(w, "recs@1")
        assert model.bundle.flavor == "recommender"
        blob = w.artifacts.get(model.record.artifact_sha256)
        names = set(zipfile.ZipFile(io.BytesIO(blob)).namelist())
        assert {"model.safetensors", "recommender.json"} <= names
        assert not any(n.endswith((".pkl", ".pt", ".skops")) for n in names)
        run = w.metadata.get_run(model.record.run_id)
        holdout = run.metrics["holdout"]
        assert holdout["ndcg_at_5"] > holdout["popular_ndcg_at_5"]
        assert len(w.metadata.list_steps(run.id, "epoch.train_loss")) == 40
        app = create_app(w, reload_interval=0, log_predictions=False)
        with TestClient(app, base_url="http://127.0.0.1") as client:
            url = "/v1/models/recs:recommend"
            answer = client.post(url, json={"user": 2, "k": 5, "exclude_seen": True})
            assert answer.status_code == 200, answer.text
            body = answer.json()
            assert body["known_user"] and body["fallback"] is None and body["version"] == 1
            seen = set(_ratings().query("user == 2")["item"])
            assert len(body["items"]) == 5 and not seen & set(body["items"])
            assert all(i < 20 for i in body["items"])  # its group's half
            assert body["scores"] == sorted(body["scores"], reverse=True)
            # the same answer as the Python API
            local = model.bundle.estimator.recommend(2, 5)
            assert body["items"] == local.items
            kept = client.post(url, json={"user": 2, "k": 40, "exclude_seen": False}).json()
            assert seen <= set(kept["items"])
            unknown = client.post(url, json={"user": "nobody", "k": 3}).json()
            assert unknown["fallback"] == "popular" and not unknown["known_user"]
            assert unknown["scores"] is None and len(unknown["items"]) == 3
            for body_, field in (
                ({"user": 2, "k": 0}, "k"),
                ({"user": 2, "k": "ten"}, "k"),
                ({"user": [2]}, "user"),
                ({"user": 2.5}, "user"),
                ({"k": 3}, "user"),
                ({"user": 2, "exclude_seen": "yes"}, "exclude_seen"),
                ({"user": 2, "top": 3}, "top"),
            ):
                bad = client.post(url, json=body_)
                assert bad.status_code == 422, (body_, bad.text)  # invalid_input
                assert bad.json()["where"]["field"] == field, bad.json()
            # pairs score through :predict (the signature takes user and item)
            pair = client.post(
                "/v1/models/recs:predict", json={"instances": [{"user": 2, "item": 3}]}
            )
            assert pair.status_code == 200, pair.text
            want = model.bundle.estimator.score_pairs([2], [3])[0]
            assert pair.json()["predictions"][0]["prediction"] == pytest.approx(want)
            spec = client.get("/openapi.json").json()
            assert "/v1/models/{name}:recommend" in spec["paths"]


def test_a_classifier_version_is_not_a_recommender(tmp_path: Path) -> None:
    from sklearn.linear_model import LogisticRegression

    import loopml

    frame = pd.DataFrame({"x": np.arange(40.0) % 7 + 0.5, "y": [0, 1] * 20})
    with loopml.init(tmp_path / "w") as w:
        bundle, _ = loopml.fit_bundle(frame, "y", LogisticRegression())
        loopml.register_model(w, "clf", bundle)
        app = create_app(w, models={"clf": "clf@1"}, reload_interval=0, log_predictions=False)
        with TestClient(app, base_url="http://127.0.0.1") as client:
            bad = client.post("/v1/models/clf:recommend", json={"user": 1})
            assert bad.status_code == 422 and "not a recommender" in bad.json()["message"]


@pytest.mark.slow
def test_fine_tune_is_a_child_and_a_wrong_dim_is_refused(
    tmp_path: Path, cli: Callable[..., Result], ws: Path
) -> None:
    assert cli("train", "-f", tmp_path / "loopml.yaml", "-w", ws).code == 0
    csv = tmp_path / "more.csv"
    more = _ratings(seed=1, users=44, offset=100)  # four new users
    more.to_csv(csv, index=False)
    assert cli("data", "ingest", csv, "--name", "ratings", "-w", ws).code == 0
    project = tmp_path / "loopml.yaml"
    wrong = tmp_path / "wrong.yaml"
    wrong.write_text(PROJECT.replace("dim: 8", "dim: 16"))
    res = cli("train", "-f", wrong, "-w", ws, "--from", "recs@1")
    assert res.code != 0 and "model.params.dim" in res.err + res.out
    res = cli("train", "-f", project, "-w", ws, "--from", "recs@1")
    assert res.code == 0, res.err
    with open_workspace(ws) as w:
        child = load_model(w, "recs@2")
        parent = load_model(w, "recs@1")
        run = w.metadata.get_run(child.record.run_id)
        assert run.parent_id == parent.record.run_id
        assert run.params["continued_from"] == "recs@1"
        assert run.params["parent_dataset"] == "ratings@1"
        assert run.params["dataset"] == "ratings@2"
        rec = child.bundle.estimator
        assert rec.knows(43) and not parent.bundle.estimator.knows(43)
        # the parent's users keep their places (their embeddings were the starting point)
        assert rec.users[: len(parent.bundle.estimator.users)] == parent.bundle.estimator.users
