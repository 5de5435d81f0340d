"""Batch scoring streams a file in batches and answers what the server and the Python API do."""

from __future__ import annotations

import re
import warnings
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import orjson
import pandas as pd
import pyarrow as pa
import pytest
from sklearn.linear_model import LogisticRegression

from loopml.errors import InvalidInputError
from loopml.registry import load_model, register_model, set_alias
from loopml.serve import create_app, read_prediction_log
from loopml.serve.scoring import IdSequence, predict_file
from loopml.train import fit_bundle
from loopml.workspace import Workspace, init

with warnings.catch_warnings():
    warnings.simplefilter("ignore")
    from starlette.testclient import TestClient

HEX32 = re.compile(r"^[0-9a-f]{32}$")


def pets(n: int, seed: int = 0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    color = rng.choice(["red", "green", "blue"], n)
    size = rng.normal(10, 2, n)
    weight = rng.normal(5, 1, n)
    weight[::7] = np.nan
    return pd.DataFrame(
        {
            "row_id": np.arange(n),  # a column the model does not take: passed through
            "color": color,
            "size": size,
            "weight": weight,
            "label": np.where((color == "red") | (size > 11), "yes", "no"),
        }
    )


@pytest.fixture(scope="module")
def ws(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Workspace]:
    workspace = init(tmp_path_factory.mktemp("scoring") / "ws")
    bundle, _ = fit_bundle(
        pets(300), "label", LogisticRegression(), features={"exclude": ["row_id"]}
    )
    mv = register_model(workspace, "pets", bundle)
    set_alias(workspace, "pets", "champion", mv.version)
    try:
        yield workspace
    finally:
        workspace.close()


def write(frame: pd.DataFrame, path: Path, row_group: int | None = None) -> Path:
    if path.suffix == ".csv":
        frame.to_csv(path, index=False)
    else:
        frame.to_parquet(path, index=False, row_group_size=row_group)
    return path


def read(path: Path) -> pd.DataFrame:
    return pd.read_csv(path) if path.suffix == ".csv" else pd.read_parquet(path)


@pytest.mark.parametrize(("src", "dst"), [("csv", "parquet"), ("parquet", "csv")])
def test_a_file_streamed_in_batches_equals_the_whole_frame_predicted(
    ws: Workspace, tmp_path: Path, src: str, dst: str
) -> None:
    frame = pets(1000, seed=1).drop(columns=["label"])
    path = write(frame, tmp_path / f"rows.{src}")
    out = tmp_path / f"scored.{dst}"
    seen: list[tuple[int, int | None]] = []
    res = predict_file(
        ws, "pets", path, out, batch_size=64, progress=lambda d, t: seen.append((d, t))
    )
    assert res.rows == 1000
    assert res.batches == 16  # 15 of 64 rows and one of 40: streamed, not read whole
    assert [d for d, _ in seen] == [min(64 * (i + 1), 1000) for i in range(16)]
    if src == "parquet":
        assert {t for _, t in seen} == {1000}
    scored = read(out)
    assert scored["row_id"].tolist() == list(range(1000))  # order and extra columns kept
    expected = load_model(ws, "pets").predict(frame)
    assert scored["prediction"].tolist() == expected.labels.tolist()
    assert expected.classes is not None
    for j, cls in enumerate(expected.classes):
        np.testing.assert_allclose(scored[f"proba_{cls}"], expected.probabilities[:, j], atol=1e-12)  # type: ignore[index]
    assert (scored["model_version"] == 1).all()
    ids = scored["prediction_id"].tolist()
    assert len(set(ids)) == 1000 and all(HEX32.match(i) for i in ids)
    logged = read_prediction_log(ws.lake, "pets")
    assert set(ids) <= set(logged["prediction_id"])  # every id in the output is traceable
    assert len(res.log_files) == 16


def test_batch_scoring_answers_what_the_server_answers(ws: Workspace, tmp_path: Path) -> None:
    frame = pets(200, seed=2).drop(columns=["label", "row_id"])
    out = tmp_path / "scored.parquet"
    predict_file(ws, "pets", write(frame, tmp_path / "rows.parquet"), out, batch_size=50)
    scored = pd.read_parquet(out)
    records = [
        {k: (None if isinstance(v, float) and np.isnan(v) else v) for k, v in row.items()}
        for row in frame.to_dict("records")
    ]
    app = create_app(ws, reload_interval=0, log_predictions=False)
    with TestClient(app, base_url="http://127.0.0.1") as client:
        resp = client.post(
            "/v1/models/pets:predict",
            content=orjson.dumps({"instances": records}),
            headers={"content-type": "application/json"},
        )
    assert resp.status_code == 200, resp.text
    answers = resp.json()["predictions"]
    assert [a["prediction"] for a in answers] == scored["prediction"].tolist()
    for cls in ("no", "yes"):
        np.testing.assert_allclose(
            [a["probabilities"][cls] for a in answers], scored[f"proba_{cls}"], atol=1e-9
        )


def test_a_refused_row_is_named_by_its_row_in_the_file_and_leaves_no_output(
    ws: Workspace, tmp_path: Path
) -> None:
    frame = pets(500, seed=3).drop(columns=["label"])
    frame.loc[333, "color"] = "purple"  # a category never seen, refused with unknown=error
    path = write(frame, tmp_path / "rows.csv")
    out = tmp_path / "scored.parquet"
    with pytest.raises(InvalidInputError) as info:
        predict_file(ws, "pets", path, out, batch_size=100, unknown="error")
    assert info.value.where["row"] == 333  # not 33, its row in the fourth batch
    assert info.value.where["column"] == "color"
    assert not out.exists()
    assert not list(tmp_path.glob(".scored*"))  # the partial output is removed


def test_text_in_a_numeric_column_names_the_row_column_and_value(
    ws: Workspace, tmp_path: Path
) -> None:
    frame = pets(400, seed=4).drop(columns=["label"]).astype({"size": object})
    frame.loc[271, "size"] = "big"
    path = write(frame, tmp_path / "rows.csv")
    with pytest.raises(InvalidInputError) as info:
        predict_file(ws, "pets", path, tmp_path / "scored.csv", batch_size=64)
    assert info.value.where == {"file": str(path), "row": 271, "column": "size"}
    assert "'big'" in info.value.message


def test_a_flagged_row_is_scored_and_names_its_fields(ws: Workspace, tmp_path: Path) -> None:
    frame = pets(150, seed=5).drop(columns=["label"])
    frame.loc[120, "color"] = "purple"
    out = tmp_path / "scored.parquet"
    res = predict_file(ws, "pets", write(frame, tmp_path / "rows.parquet"), out, batch_size=32)
    assert res.flagged == 1
    flags = pd.read_parquet(out)["unknown_fields"]
    assert flags.iloc[120] == "color"
    assert flags.drop(index=120).isna().all()


def test_memory_is_bounded_by_the_batch_not_the_file(ws: Workspace, tmp_path: Path) -> None:
    """Arrow's allocations while scoring a 200,000-row file 2,000 rows at a time stay far
    below the file's size in memory (reading it whole, as before, holds all of it). A
    Parquet file is read a row group at a time: this one has row groups of 10,000 rows."""
    n = 200_000
    frame = pets(n, seed=6).drop(columns=["label"])
    path = write(frame, tmp_path / "rows.parquet", row_group=10_000)
    whole = pa.Table.from_pandas(frame).nbytes
    base = pa.total_allocated_bytes()
    peak = 0

    def sample(done: int, total: int | None) -> None:
        nonlocal peak
        peak = max(peak, pa.total_allocated_bytes() - base)

    res = predict_file(
        ws, "pets", path, tmp_path / "scored.parquet", batch_size=2_000, progress=sample, log=False
    )
    assert res.rows == n
    assert 0 < peak < whole / 5, (peak, whole)


def test_prediction_ids_are_unique_hex_and_differ_between_jobs() -> None:
    first = IdSequence()
    ids = np.concatenate([first.take(300_000), first.take(1), first.take(200_000)])
    assert len(ids) == 500_001
    assert len(set(ids.tolist())) == len(ids)
    assert all(HEX32.match(i) for i in ids[:1000])
    assert len({i[:12] for i in ids[:100_000].tolist()}) >= 99_990  # a 12-digit prefix finds one
    other = IdSequence().take(1000)
    assert not set(other.tolist()) & set(ids[:1000].tolist())
    seeded = [IdSequence(b"k" * 16).take(3).tolist() for _ in range(2)]
    assert seeded[0] == seeded[1]  # deterministic from the seed: the mixer is a function


def test_a_bad_batch_size_is_refused(ws: Workspace, tmp_path: Path) -> None:
    path = write(pets(5).drop(columns=["label"]), tmp_path / "rows.csv")
    with pytest.raises(InvalidInputError) as info:
        predict_file(ws, "pets", path, tmp_path / "o.csv", batch_size=0)
    assert info.value.where == {"field": "batch_size"}


def test_a_header_only_csv_has_no_rows(ws: Workspace, tmp_path: Path) -> None:
    path = tmp_path / "rows.csv"
    path.write_text("row_id,color,size,weight\n")
    with pytest.raises(InvalidInputError, match="no rows"):
        predict_file(ws, "pets", path, tmp_path / "o.csv")
    assert not (tmp_path / "o.csv").exists()


def test_a_large_batch_predicted_in_parallel_slices_equals_the_whole_frame(
    ws: Workspace, tmp_path: Path
) -> None:
    """Batches of 10,000 rows are split in one slice per core for a compiled predictor; the
    pieces come back in order."""
    frame = pets(25_000, seed=7).drop(columns=["label"])
    out = tmp_path / "scored.parquet"
    res = predict_file(
        ws, "pets", write(frame, tmp_path / "rows.parquet"), out, batch_size=10_000, log=False
    )
    assert res.predictor == load_model(ws, "pets").predictor.kind
    scored = pd.read_parquet(out)
    expected = load_model(ws, "pets").predict(frame)
    assert scored["prediction"].tolist() == expected.labels.tolist()
    np.testing.assert_allclose(scored["proba_yes"], expected.probabilities[:, 1], atol=1e-6)  # type: ignore[index]
    assert scored["row_id"].tolist() == list(range(25_000))


def test_a_csv_column_that_changes_type_after_its_first_block_is_named(
    ws: Workspace, tmp_path: Path
) -> None:
    """Column types are fixed from the first block (about 4 MiB); a column the model does not
    take that turns from numbers to text later is refused by name, not with a traceback."""
    frame = pets(120_000, seed=8).drop(columns=["label"]).astype({"row_id": object})
    frame.loc[119_990, "row_id"] = "A7"
    path = write(frame, tmp_path / "rows.csv")
    assert path.stat().st_size > 5 << 20  # more than one block
    out = tmp_path / "scored.parquet"
    with pytest.raises(InvalidInputError) as info:
        predict_file(ws, "pets", path, out, log=False)
    assert info.value.where == {"file": str(path), "column": "row_id"}
    assert "changes type" in info.value.message
    assert not out.exists()
