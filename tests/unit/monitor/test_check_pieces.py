"""``check_drift`` on a file reads, checks and scores it a bounded piece at a time (peak
memory at 1M rows): the report is the same as from the whole file, and a problem names its
row in the whole file, not in its piece."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
from sklearn.linear_model import LogisticRegression

import loopml.monitor.check as check_module
from loopml.data import ingest
from loopml.errors import InvalidInputError
from loopml.monitor import check_drift
from loopml.registry import register_model, set_alias
from loopml.registry.signature import Signature
from loopml.train import fit_bundle
from loopml.workspace import Workspace


def _frame(n: int, seed: int, shift: float = 0.0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    p = [0.5, 0.3, 0.2] if not shift else [0.2, 0.3, 0.5]
    return pd.DataFrame(
        {
            "x": rng.normal(shift, 1.0, n),
            "z": rng.normal(0, 2.0, n),
            "color": rng.choice(["red", "green", "blue"], n, p=p),
            "label": rng.integers(0, 2, n),
        }
    )


@pytest.fixture
def model(workspace: Workspace) -> Workspace:
    train = _frame(600, 0)
    dv = ingest(workspace, train, "things").dataset
    bundle, _ = fit_bundle(train, "label", LogisticRegression())
    mv = register_model(
        workspace, "m", bundle, metrics={}, dataset_name=dv.name, dataset_version=dv.version
    )
    set_alias(workspace, "m", "champion", mv.version)
    return workspace


def _report(ws: Workspace, data: object) -> dict[str, object]:
    got = check_drift(ws, "m", data=data, write_report=False).to_dict()  # type: ignore[arg-type]
    return {k: got[k] for k in ("features", "prediction", "warnings", "current")}


@pytest.mark.parametrize("suffix", [".parquet", ".csv"])
def test_a_file_read_in_pieces_gives_the_report_of_the_whole_file(
    model: Workspace, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, suffix: str
) -> None:
    current = _frame(700, 1, shift=0.4).drop(columns=["label"])
    current.loc[650:, "color"] = "purple"  # never seen in training, in the last piece only
    path = tmp_path / f"current{suffix}"
    if suffix == ".parquet":
        current.to_parquet(path, row_group_size=100)
    else:
        current.to_csv(path, index=False)
    whole = _report(model, path)
    monkeypatch.setattr(check_module, "SCORE_BATCH_ROWS", 64)
    seen: list[int] = []
    original = Signature.check_frame

    def spy(self: Signature, frame: pd.DataFrame, **kw: Any) -> Any:
        if kw.get("source") == str(path):
            seen.append(len(frame))
        return original(self, frame, **kw)

    monkeypatch.setattr(Signature, "check_frame", spy)
    pieces = _report(model, path)
    assert len(seen) == 11 and max(seen) == 64 and sum(seen) == 700  # 700 rows, 64 at a time
    assert pieces == whole
    warned = [str(w) for w in pieces["warnings"]]  # type: ignore[attr-defined]
    assert any("50 rows" in w and "color" in w for w in warned), warned


def test_a_bad_value_in_a_later_piece_names_its_row_in_the_file(
    model: Workspace, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    current = _frame(300, 2).drop(columns=["label"])
    current["x"] = pd.Series([None] * 300, dtype=object)  # missing (flagged, not refused) ...
    current.loc[250, "x"] = "n/a?"  # ... then not a number, in the fourth piece of 64 rows
    path = tmp_path / "current.parquet"
    current.to_parquet(path)
    monkeypatch.setattr(check_module, "SCORE_BATCH_ROWS", 64)
    with pytest.raises(InvalidInputError) as info:
        check_drift(model, "m", data=path, write_report=False)
    assert info.value.where["row"] == 250 and info.value.where["column"] == "x"
