"""Batch scoring on Spark (local[2]): the same predictions as ``loopml predict`` and the HTTP
server, row for row; deterministic parts and ids, a marker written last, nothing committed on
an error."""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import lightgbm
import numpy as np
import pandas as pd
import pyarrow.parquet as pq
import pytest
from sklearn.ensemble import RandomForestClassifier

from loopml.data.ingest import get_dataset, ingest, version_urls
from loopml.errors import ConfigError, InvalidInputError, StoreError
from loopml.registry import register_model, set_alias
from loopml.serve import start_background_server
from loopml.serve.scoring import predict_file
from loopml.train import fit_bundle
from loopml.workspace import Workspace, init

pytestmark = pytest.mark.slow

ROWS = 2_000


def _frame(n: int, seed: int) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    df = pd.DataFrame(
        {
            "x1": rng.normal(size=n),
            "x2": rng.uniform(0, 10, size=n),
            "colour": rng.choice(["red", "green", "blue"], n),
            "row": np.arange(n, dtype=np.int64),
        }
    )
    df.loc[df.index % 97 == 3, "x1"] = np.nan  # missing values, seen in training
    return df


@pytest.fixture(scope="module")
def ws(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Workspace]:
    root = tmp_path_factory.mktemp("spark-score")
    workspace = init(root / "ws")
    train = _frame(1_500, 0)
    train["label"] = np.where(train.x1.fillna(0) + (train.colour == "red") > 0.4, "yes", "no")
    bundle, _ = fit_bundle(
        train.drop(columns=["row"]),
        "label",
        lightgbm.LGBMClassifier(n_estimators=25, num_leaves=15, verbose=-1),
    )
    mv = register_model(workspace, "churn", bundle)
    set_alias(workspace, "churn", "champion", mv.version)
    forest, _ = fit_bundle(
        train.drop(columns=["row"]),
        "label",
        RandomForestClassifier(n_estimators=15, max_depth=6, random_state=0),
    )
    register_model(workspace, "forest", forest)
    score = _frame(ROWS, 1)
    score.loc[7, "colour"] = "purple"  # a category training never had: scored and flagged
    source = root / "score.parquet"
    score.to_parquet(source, row_group_size=500)
    ingest(workspace, str(source), "traffic")
    try:
        yield workspace
    finally:
        workspace.close()


def _read_output(folder: str) -> pd.DataFrame:
    """The parts in name order: the input's order."""
    path = Path(folder.removeprefix("file://"))
    parts = sorted(p for p in path.iterdir() if p.name.startswith("part-"))
    return pd.concat([pq.read_table(p).to_pandas() for p in parts], ignore_index=True)


@pytest.mark.parametrize("model", ["churn", "forest@1"])
def test_spark_scores_equal_local_predict_row_for_row(
    spark: Any, ws: Workspace, tmp_path: Path, model: str
) -> None:
    from loopml.engines.spark.score import score_version

    res = score_version(ws, model, "traffic", spark=spark, batch_size=300, rows_per_file=700)
    assert res.rows == ROWS and res.parts >= 3 and res.flagged == 1
    got = _read_output(res.output)
    local_out = tmp_path / "local.parquet"
    dv = get_dataset(ws, "traffic")
    (part,) = version_urls(ws, dv)
    local = predict_file(ws, model, part.removeprefix("file://"), local_out, log=False)
    want = pq.read_table(local_out).to_pandas()
    assert local.predictor == res.predictor
    assert list(got.columns) == list(want.columns)
    assert got["row"].tolist() == list(range(ROWS))  # the input's order, every row once
    assert got["prediction"].tolist() == want["prediction"].tolist()
    for column in ("proba_no", "proba_yes"):
        np.testing.assert_allclose(got[column], want[column], rtol=0, atol=1e-12)
    assert got["unknown_fields"].tolist() == want["unknown_fields"].tolist()
    assert got.loc[7, "unknown_fields"] == "colour"
    assert (got["model_version"] == 1).all()
    ids = got["prediction_id"]
    assert ids.is_unique and all(re.fullmatch(r"[0-9a-f]{32}", i) for i in ids)


def test_spark_scores_equal_the_http_server(spark: Any, ws: Workspace) -> None:
    from loopml.engines.spark.score import score_version

    res = score_version(ws, "churn", "traffic", spark=spark)
    got = _read_output(res.output)
    known = got[got["unknown_fields"].isna()].iloc[:400]
    rows = [
        {k: (None if isinstance(v, float) and np.isnan(v) else v) for k, v in r.items()}
        for r in known[["x1", "x2", "colour"]].to_dict("records")
    ]
    server = start_background_server(ws, reload_interval=0, log_predictions=False)
    try:
        with httpx.Client(base_url=server.url, timeout=30) as client:
            answers = []
            for start in range(0, len(rows), 100):
                resp = client.post(
                    "/v1/models/churn:predict", json={"instances": rows[start : start + 100]}
                )
                assert resp.status_code == 200, resp.text
                answers.extend(resp.json()["predictions"])
    finally:
        server.stop()
    assert [a["prediction"] for a in answers] == known["prediction"].tolist()
    served = np.array([a["probabilities"]["yes"] for a in answers])
    np.testing.assert_allclose(served, known["proba_yes"].to_numpy(), rtol=0, atol=1e-12)


def test_a_rerun_writes_the_same_parts_and_replaces_a_partial_output(
    spark: Any, ws: Workspace, tmp_path: Path
) -> None:
    from loopml.engines.spark.score import MARKER, score_version

    out = tmp_path / "scores"
    first = score_version(ws, "churn", "traffic", output=out, spark=spark, rows_per_file=600)
    names = sorted(p.name for p in out.iterdir())
    assert names[0] == MARKER and len(names) == first.parts + 1
    ids = _read_output(first.output)["prediction_id"].tolist()
    # a job that died half-way: a staging folder with a torn part; and junk in the output
    staging = tmp_path / ".scores.staging"
    staging.mkdir()
    (staging / "part-00000-000000000000.parquet").write_bytes(b"torn")
    (out / "part-99999-000000000000.parquet").write_bytes(b"left over")
    again = score_version(
        ws, "churn", "traffic", output=out, spark=spark, rows_per_file=600, batch_size=111
    )
    assert again.sha256 == first.sha256  # the same parts, byte for byte
    assert sorted(p.name for p in out.iterdir()) == names
    assert _read_output(again.output)["prediction_id"].tolist() == ids
    assert not staging.exists() and not list(tmp_path.glob("scores.old-*"))
    # another model version of the same rows: other ids
    other = score_version(ws, "forest@1", "traffic", output=tmp_path / "f", spark=spark)
    assert set(_read_output(other.output)["prediction_id"]).isdisjoint(ids)


def test_each_task_loads_the_bundle_once(spark: Any, ws: Workspace, tmp_path: Path) -> None:
    from loopml.engines.spark.score import score_version

    folder = tmp_path / "in"
    folder.mkdir()
    frame = _frame(900, 2)
    for i in range(3):  # three files: at least two tasks on local[2]
        frame.iloc[i * 300 : (i + 1) * 300].to_parquet(folder / f"f{i}.parquet")
    res = score_version(ws, "churn", str(folder), spark=spark, batch_size=50)
    assert res.tasks >= 2 and res.loads == res.tasks  # 900 rows in 50-row batches
    got = _read_output(res.output)
    assert got["row"].tolist() == list(range(900)) and res.rows == 900


def test_a_bad_row_commits_nothing(spark: Any, ws: Workspace, tmp_path: Path) -> None:
    from loopml.engines.spark.score import score_version

    frame = _frame(300, 3)
    frame.loc[123, "x2"] = 1e39  # beyond float32: the model would crash on it
    source = tmp_path / "bad.parquet"
    frame.to_parquet(source)
    out = tmp_path / "out"
    with pytest.raises(InvalidInputError) as err:
        score_version(ws, "churn", str(source), output=out, spark=spark)
    assert err.value.where.get("row") == 123 and "x2" in str(err.value)
    assert not out.exists() and not (tmp_path / ".out.staging").exists()


def test_a_flavor_executors_do_not_load_is_refused(
    spark: Any, ws: Workspace, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from loopml.engines.spark import score

    monkeypatch.setattr(score, "SHIPPABLE_FLAVORS", ("xgboost",))
    with pytest.raises(ConfigError, match="does not ship to Spark executors"):
        score.score_version(ws, "churn", "traffic", output=tmp_path / "o", spark=spark)
    assert not (tmp_path / "o").exists()


def test_an_artifact_store_executors_cannot_read_is_one_error(
    ws: Workspace, tmp_path: Path
) -> None:
    from loopml.engines.spark.score import ModelTicket, load_ticket

    record = ws.metadata.get_model_version("churn", 1)
    ticket = ModelTicket(
        "churn", 1, record.artifact_sha256, (), (tmp_path / "elsewhere").as_uri(), None
    )
    with pytest.raises(StoreError, match="executor cannot read churn@1") as err:
        load_ticket(ticket)
    assert "artifacts URI every machine reaches" in str(err.value)


def test_a_path_spark_cannot_read_is_one_error(spark: Any, ws: Workspace, tmp_path: Path) -> None:
    from loopml.engines.spark.score import score_version

    with pytest.raises(InvalidInputError, match="Spark cannot read"):
        score_version(ws, "churn", str(tmp_path / "nothing-here"), spark=spark)
    with pytest.raises(InvalidInputError, match="reads Parquet"):
        score_version(ws, "churn", str(tmp_path / "rows.csv"), spark=spark)


def test_the_command_line_scores_on_spark(
    spark: Any, ws: Workspace, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    import json

    from loopml.cli.main import main

    out = tmp_path / "cli-scores"
    args = ["predict", "--engine", "spark", "-m", "churn", "-i", "traffic@1", "-o", str(out)]
    capsys.readouterr()
    assert main([*args, "-w", str(ws.root), "--json"]) == 0
    doc = json.loads(capsys.readouterr().out)
    assert (
        doc["rows"] == ROWS
        and doc["engine"] == "spark"
        and (out / doc["marker"].rsplit("/", 1)[-1]).exists()
    )
    assert main([*args, "-w", str(ws.root)]) == 0
    line = capsys.readouterr().out.strip()
    assert (
        line.startswith(f"scored {ROWS} rows with churn@1 on Spark")
        and "_loopml_commit.json" in line
    )
    code = main(["predict", "--spark-master", "local[2]", *args[3:], "-w", str(ws.root)])
    assert code == 2 and "--spark-master is given without --engine spark" in capsys.readouterr().err


def test_an_empty_input_and_a_bad_policy_are_refused(
    spark: Any, ws: Workspace, tmp_path: Path
) -> None:
    from loopml.engines.spark.score import score_version

    empty = tmp_path / "empty.parquet"
    _frame(10, 4).iloc[:0].to_parquet(empty)
    out = tmp_path / "out"
    with pytest.raises(InvalidInputError, match="has no rows"):
        score_version(ws, "churn", str(empty), output=out, spark=spark)
    assert not out.exists()
    with pytest.raises(InvalidInputError, match="unknown must be one of"):
        score_version(ws, "churn", "traffic", unknown="maybe", spark=spark)
