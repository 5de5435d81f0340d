"""Feedback: validated, known ids only (lake, spool, recent), stored once; HTTP and CLI."""

from __future__ import annotations

import json
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import orjson
import pandas as pd
import pytest
from starlette.routing import Route

import loopml
from loopml.cli.main import main
from loopml.errors import InvalidInputError, NotFoundError
from loopml.feedback import record_feedback
from loopml.predictions import PredictionLogger, write_predictions
from loopml.registry.bundle import Prediction
from loopml.serve import create_app
from loopml.serve.feedback import feedback_endpoint
from loopml.workspace import Workspace

with warnings.catch_warnings():
    warnings.simplefilter("ignore")
    from starlette.testclient import TestClient

IDS = [f"{i:032x}" for i in range(1, 6)]


def logged(ws: Workspace, ids: list[str] = IDS) -> None:
    n = len(ids)
    frame = pd.DataFrame({"x": np.arange(n, dtype=np.float64)})
    pred = Prediction(np.array(["yes"] * n, dtype=object), np.full((n, 2), 0.5), ["no", "yes"])
    write_predictions(ws.lake, "m", 1, frame, pred, ids, latency_ms=1.0, source="server")


def test_same_pair_three_times_is_one_row(workspace: Workspace) -> None:
    logged(workspace)
    item = {"prediction_id": IDS[0], "label": "yes"}
    first = record_feedback(workspace, item)
    assert first.to_dict() == {"received": 1, "inserted": 1, "duplicates": 0}
    again = record_feedback(workspace, [item, item])
    assert (again.inserted, again.duplicates) == (0, 2)
    mixed = loopml.feedback(
        workspace,
        [
            {"prediction_id": IDS[1], "reward": 2.5},
            {"prediction_id": IDS[2].upper(), "label": 1.0},  # stored as 1, id lower-cased
            {"prediction_id": IDS[0], "label": "no"},  # a different outcome: a new row
        ],
    )
    assert (mixed.inserted, mixed.duplicates) == (3, 0)
    stored = workspace.metadata.list_feedback(prediction_ids=IDS[:3])
    assert sorted((f.prediction_id, f.label, f.reward) for f in stored) == [
        (IDS[0], "no", None),
        (IDS[0], "yes", None),
        (IDS[1], None, 2.5),
        (IDS[2], 1, None),
    ]


@pytest.mark.parametrize(
    ("items", "field", "match"),
    [
        ({"prediction_id": "abc", "label": 1}, "prediction_id", "32 hexadecimal"),
        ({"prediction_id": "g" * 32, "label": 1}, "prediction_id", "32 hexadecimal"),
        ({"prediction_id": 7, "label": 1}, "prediction_id", "not a prediction id"),
        ({"prediction_id": IDS[0]}, "label", "neither a label nor a reward"),
        ({"prediction_id": IDS[0], "reward": "high"}, "reward", "not a finite number"),
        ({"prediction_id": IDS[0], "reward": float("inf")}, "reward", "not a finite"),
        ({"prediction_id": IDS[0], "reward": True}, "reward", "not a finite number"),
        ({"prediction_id": IDS[0], "label": [1]}, "label", "not a string, number"),
        ({"prediction_id": IDS[0], "label": 1, "score": 2}, "score", "unknown field"),
        ([{"prediction_id": IDS[0], "label": 1}, "x"], "feedback", "item 1 is a str"),
    ],
)
def test_bad_items_name_item_and_field(
    workspace: Workspace, items: Any, field: str, match: str
) -> None:
    logged(workspace)
    with pytest.raises(InvalidInputError, match=match) as info:
        record_feedback(workspace, items)
    assert info.value.where["field"] == field
    assert "item" in info.value.where
    assert workspace.metadata.list_feedback() == []  # nothing stored


def test_unknown_id_is_not_found_unless_in_flight(workspace: Workspace) -> None:
    logged(workspace)
    stranger = "f" * 32
    with pytest.raises(NotFoundError, match=r"no prediction with id f{32}") as info:
        record_feedback(
            workspace,
            [{"prediction_id": IDS[0], "label": 1}, {"prediction_id": stranger, "label": 1}],
        )
    assert info.value.where == {"item": 1, "field": "prediction_id", "prediction_id": stranger}
    assert workspace.metadata.list_feedback() == []  # all or nothing
    # answered and still in the server's spool (not yet in the lake): accepted
    logger = PredictionLogger(
        workspace.lake, Path(workspace.root) / "spool" / "worker-0", seal_seconds=60
    )
    try:
        pending = "e" * 32
        frame = pd.DataFrame({"x": [1.0]})
        logger.log("m", 1, frame, Prediction(np.array([1.5]), None, None), [pending], 1.0)
        assert record_feedback(workspace, {"prediction_id": pending, "label": "yes"}).inserted == 1
        assert logger.seen({pending, stranger}) == {pending}
    finally:
        logger.close()
    assert (
        record_feedback(
            workspace, {"prediction_id": stranger, "label": 1}, recent=[stranger]
        ).inserted
        == 1
    )
    other = "d" * 32
    assert (
        record_feedback(workspace, {"prediction_id": other, "label": 1}, check_known=False).inserted
        == 1
    )


@pytest.fixture
def client(workspace: Workspace) -> Iterator[TestClient]:
    app = create_app(workspace, models={}, reload_interval=0)
    server = app.state.server

    async def endpoint(request: Any) -> Any:
        return await feedback_endpoint(server, request)

    app.router.routes.insert(0, Route("/v1/feedback", endpoint, methods=["POST"]))
    with TestClient(app, base_url="http://127.0.0.1") as c:
        yield c


def post(client: TestClient, body: Any) -> Any:
    return client.post(
        "/v1/feedback", content=orjson.dumps(body), headers={"content-type": "application/json"}
    )


def test_http_single_and_batch(workspace: Workspace, client: TestClient) -> None:
    logged(workspace)
    for _ in range(3):
        resp = post(client, {"prediction_id": IDS[0], "label": "yes"})
        assert resp.status_code == 200, resp.text
    assert resp.json() == {"received": 1, "inserted": 0, "duplicates": 1}
    batch = [{"prediction_id": i, "reward": 1} for i in IDS[1:4]]
    resp = post(client, {"feedback": batch})
    assert resp.json() == {"received": 3, "inserted": 3, "duplicates": 0}
    assert len(workspace.metadata.list_feedback()) == 4
    resp = post(client, {"prediction_id": "f" * 32, "label": "yes"})
    assert resp.status_code == 404 and resp.json()["where"]["prediction_id"] == "f" * 32
    resp = post(client, {"feedback": [batch[0], {"prediction_id": "nope", "label": 1}]})
    assert resp.status_code == 422
    assert resp.json()["where"] == {"item": 1, "field": "prediction_id"}
    for bad in ([1, 2], {"feedback": {}}, {"feedback": [], "x": 1}):
        resp = post(client, bad)
        assert 400 <= resp.status_code < 500, resp.text
        assert "Traceback" not in resp.text


def _cli(capsys: pytest.CaptureFixture[str], ws: Workspace, *args: str) -> tuple[int, str, str]:
    capsys.readouterr()
    code = main([*args, "-w", str(ws.root)])
    got = capsys.readouterr()
    return code, got.out, got.err


def test_cli_bulk_files(
    workspace: Workspace, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    logged(workspace)
    csv = tmp_path / "fb.csv"
    csv.write_text(f"prediction_id,label\n{IDS[0]},yes\n{IDS[1]},no\n{IDS[1]},no\n")
    code, out, _ = _cli(capsys, workspace, "feedback", str(csv), "--json")
    assert code == 0
    assert json.loads(out)["inserted"] == 2 and json.loads(out)["duplicates"] == 1
    jsonl = tmp_path / "fb.jsonl"
    jsonl.write_text(f'{{"prediction_id": "{IDS[2]}", "reward": 0.5}}\n')
    code, out, _ = _cli(capsys, workspace, "feedback", str(jsonl))
    assert code == 0 and "1 stored" in out
    parquet = tmp_path / "fb.parquet"
    pd.DataFrame({"prediction_id": IDS[3:5], "label": [1, None], "reward": [None, 2.0]}).to_parquet(
        parquet
    )
    code, out, _ = _cli(capsys, workspace, "feedback", str(parquet), "--json")
    assert code == 0 and json.loads(out)["inserted"] == 2
    bad = tmp_path / "bad.csv"
    bad.write_text(f"prediction_id,reward\n{IDS[0]},1\n{IDS[1]},lots\n")
    code, _, err = _cli(capsys, workspace, "feedback", str(bad))
    assert code == 2
    assert "row 2" in err and "reward" in err and "Traceback" not in err
    nocol = tmp_path / "nocol.csv"
    nocol.write_text("id,label\nx,1\n")
    code, _, err = _cli(capsys, workspace, "feedback", str(nocol))
    assert code == 2 and "prediction_id" in err
    unknown = tmp_path / "unknown.csv"
    unknown.write_text(f"prediction_id,label\n{'c' * 32},1\n")
    code, _, err = _cli(capsys, workspace, "feedback", str(unknown))
    assert code != 0 and "c" * 32 in err
    code, _, _ = _cli(capsys, workspace, "feedback", str(unknown), "--allow-unknown")
    assert code == 0
