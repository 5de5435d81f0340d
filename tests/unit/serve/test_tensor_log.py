"""V2 FP32 image tensors on the hot path: one float32 block, validated as before, spooled as
raw float32 rows, compacted into one tensor column and read back as float64 pixel columns."""

from __future__ import annotations

import dataclasses
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from sklearn.datasets import load_digits
from sklearn.linear_model import LogisticRegression

from loopml import predictions
from loopml.registry import register_model, set_alias
from loopml.serve import create_app
from loopml.serve.records import RowBlock, plain_block
from loopml.train import fit_bundle
from loopml.workspace import init

with warnings.catch_warnings():
    warnings.simplefilter("ignore")  # starlette's notice about httpx in its TestClient
    from starlette.testclient import TestClient

URL = "/v2/models/digits/infer"


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    root = tmp_path_factory.mktemp("tensor")
    ws = init(root / "ws")
    frame = load_digits(as_frame=True).frame.head(400)
    frame.columns = [str(c) for c in frame.columns]
    bundle, _ = fit_bundle(
        frame, "target", LogisticRegression(max_iter=200), features={"numeric": {"scale": "none"}}
    )
    spec = {"name": "image", "shape": [-1, 1, 8, 8], "datatype": "FP32"}
    bundle.signature = dataclasses.replace(bundle.signature, extra={"tensor": spec})
    mv = register_model(ws, "digits", bundle)
    set_alias(ws, "digits", "champion", mv.version)
    pixels = frame.drop(columns="target")
    images = pixels.to_numpy(dtype=np.float32).reshape(-1, 1, 8, 8)
    app = create_app(ws, reload_interval=0)
    with TestClient(app, base_url="http://127.0.0.1") as client:
        yield {"ws": ws, "client": client, "app": app, "images": images, "pixels": pixels}
    ws.close()


def _body(shape: list[int], data: Any, datatype: str = "FP32") -> dict[str, Any]:
    return {"inputs": [{"name": "image", "shape": shape, "datatype": datatype, "data": data}]}


def test_plain_block_in_float32_checks_in_float64() -> None:
    names = tuple(f"p{j}" for j in range(600))  # more than SMALL: the NumPy path
    flat: list[Any] = [0.5] * 600
    block = plain_block(flat, 1, names, np.float32)
    assert isinstance(block, RowBlock) and block.block.dtype == np.float32
    for odd in (float("nan"), float("inf"), 3.5e38, -3.5e38, 2**200, True, None, "1"):
        values = list(flat)
        values[7] = odd
        assert plain_block(values, 1, names, np.float32) is None, odd
        # a caller that ruled out bools: NumPy's conversion finds the rest
        if odd is not True:
            assert plain_block(values, 1, names, np.float32, no_bools=True) is None, odd
    ints = plain_block([3] * 600, 1, names, np.float32, no_bools=True)  # ints only: int64
    assert ints is not None and ints.block.dtype == np.float32 and ints.block[0, 0] == 3.0
    mixed: list[Any] = [0.5] * 599 + [2**60 + 1]  # an int beyond 2**53: as np.array(f64)
    got = plain_block(mixed, 1, names, no_bools=True)
    assert got is not None and got.block[0, -1] == float(2**60 + 1)
    small = plain_block([1, 2.5], 1, ("a", "b"), np.float32)  # the builtins' path
    assert small is not None and small.block.dtype == np.float32
    assert plain_block([1, 2.5], 1, ("a", "b")).block.dtype == np.float64  # type: ignore[union-attr]


def test_fp32_tensor_answers_as_pixel_columns(served: dict[str, Any]) -> None:
    client, images, pixels = served["client"], served["images"], served["pixels"]
    ok = client.post(URL, json=_body([32, 1, 8, 8], images[:32].ravel().tolist()))
    assert ok.status_code == 200, ok.text
    outputs = {o["name"]: o for o in ok.json()["outputs"]}
    v1 = client.post(
        "/v1/models/digits:predict", json={"instances": pixels.head(32).to_dict("records")}
    ).json()
    assert outputs["label"]["data"] == [p["prediction"] for p in v1["predictions"]]
    v1_proba = [[p["probabilities"][k] for k in sorted(p["probabilities"], key=int)]
                for p in v1["predictions"]]  # fmt: skip
    proba = np.array(outputs["probabilities"]["data"]).reshape(32, -1)
    assert np.abs(proba - np.array(v1_proba)).max() < 1e-9  # integers: exact in float32
    nested = client.post(URL, json=_body([32, 1, 8, 8], images[:32].tolist()))
    assert nested.json()["outputs"][1]["data"] == outputs["probabilities"]["data"]
    ints = client.post(URL, json=_body([1, 1, 8, 8], [int(v) for v in images[0].ravel()]))
    assert ints.status_code == 200, ints.text  # an int where float is declared: a number
    many = [int(v) for v in images[:10].ravel()]
    ints = client.post(URL, json=_body([10, 1, 8, 8], many))
    assert ints.status_code == 200, ints.text
    # "true" elsewhere in the body (an id): the values are scanned, and answer the same
    body = {"id": "true-or-false", **_body([32, 1, 8, 8], images[:32].ravel().tolist())}
    same = client.post(URL, json=body)
    assert same.json()["outputs"][1]["data"] == outputs["probabilities"]["data"]


@pytest.mark.parametrize(
    ("value", "field"),
    [(True, None), ("bright", None), (None, None), (1e39, None), ([1.0], None)],
)
def test_a_bad_value_is_the_general_readers_422(
    served: dict[str, Any], value: Any, field: Any
) -> None:
    # 10 images: more values than plain_block's builtins path takes (the NumPy one)
    data: list[Any] = served["images"][:10].ravel().tolist()
    data[64 + 5] = value  # image 1, pixel 5
    resp = served["client"].post(URL, json=_body([10, 1, 8, 8], data))
    assert resp.status_code == 422, resp.text
    assert resp.json()["code"] == "invalid_input"


def test_wrong_shape_ragged_and_datatype_are_422(served: dict[str, Any]) -> None:
    client, images = served["client"], served["images"]
    flat = images[:2].ravel().tolist()
    resp = client.post(URL, json=_body([2, 1, 8, 7], flat[:112]))
    assert resp.status_code == 422 and resp.json()["where"]["field"] == "inputs[0].shape"
    resp = client.post(URL, json=_body([2, 1, 8, 8], flat, "FP64"))
    assert resp.status_code == 422 and resp.json()["where"]["field"] == "inputs[0].datatype"
    ragged = images[:2].tolist()
    ragged[1][0][3] = ragged[1][0][3][:5]  # one row of image 1 is short
    resp = client.post(URL, json=_body([2, 1, 8, 8], ragged))
    assert resp.status_code == 422 and resp.json()["where"]["field"] == "inputs[0].data"
    resp = client.post(URL, json=_body([2, 1, 8, 8], flat[:-1]))
    assert resp.status_code == 422 and resp.json()["where"]["field"] == "inputs[0].data"


def test_tensor_rows_are_logged_as_one_column_and_read_back(served: dict[str, Any]) -> None:
    client, images, ws = served["client"], served["images"], served["ws"]
    server = served["app"].state.server
    server.logger.flush()
    before = len(predictions.read_prediction_log(ws.lake, "digits"))
    sent = images[40:72]
    resp = client.post(URL, json=_body([32, 1, 8, 8], sent.ravel().tolist()))
    ids = {o["name"]: o for o in resp.json()["outputs"]}["prediction_id"]["data"]
    # a V1 request of the same model in the same segment: its own part, feature columns
    v1 = client.post(
        "/v1/models/digits:predict",
        json={"instances": served["pixels"].iloc[[3]].to_dict("records")},
    ).json()
    server.logger.flush()
    log = predictions.read_prediction_log(ws.lake, "digits")
    assert len(log) == before + 33
    names = list(served["pixels"].columns)
    assert predictions.TENSOR_COLUMN not in log.columns
    rows = log.set_index("prediction_id").loc[ids, names]
    assert rows.dtypes.unique().tolist() == [np.dtype(np.float64)]
    assert np.array_equal(rows.to_numpy(), sent.reshape(32, -1).astype(np.float64))
    one = log.set_index("prediction_id").loc[v1["predictions"][0]["prediction_id"], names]
    assert np.array_equal(one.to_numpy(dtype=np.float64), served["pixels"].iloc[3].to_numpy())
    # the lake part holds the images as one column of raw float32 rows
    found = [
        p
        for p in ws.lake.list("predictions/digits/")
        if p.endswith(".parquet")
        and predictions.TENSOR_COLUMN in ws.lake.read_table(_rel(p)).column_names
    ]
    assert found
    table = ws.lake.read_table(_rel(found[-1]))
    assert table.schema.field(predictions.TENSOR_COLUMN).type.byte_width == 64 * 4
    # a prediction is found by id with its pixels (loopml trace)
    row, _path = predictions.find_prediction(ws.lake, ids[5])
    inputs = predictions.logged_inputs(row, names)
    assert [inputs[n] for n in names] == sent[5].ravel().astype(np.float64).tolist()


def _rel(path: str) -> str:
    return path if path.startswith("predictions/") else f"predictions/digits/{path.lstrip('/')}"


def test_an_older_feature_major_record_still_compacts(tmp_path: Path) -> None:
    """Spool records written before the row-major layout (no ``rows`` in the header) are
    compacted as they were."""
    import orjson

    from loopml import spool

    ws = init(tmp_path / "ws")
    try:
        block = np.arange(6, dtype=np.float64).reshape(3, 2)  # 3 rows, features a and b
        head = orjson.dumps(
            {
                "model": "m",
                "version": 1,
                "columns": ["a", "b"],
                "numeric": ["a", "b"],
                "text": {},
                "ids": ["1" * 32, "2" * 32, "3" * 32],
                "labels": ["x", "y", "x"],
                "entries": [[1_700_000_000_000_000, 3, 1.0, "server", None]],
            }
        )
        payload = b"".join(
            (
                predictions._RAW,
                predictions._RAW_HEAD.pack(len(head)),
                head,
                np.ascontiguousarray(block.T).tobytes(),
                np.array([0.1, 0.2, 0.3]).tobytes(),
            )
        )
        folder = tmp_path / "spool"
        folder.mkdir()
        writer = spool.SegmentWriter(folder, segment_bytes=1 << 20)
        writer.write([payload])
        writer.seal()
        assert predictions.compact_spool(ws.lake, folder) == 3
        log = predictions.read_prediction_log(ws.lake, "m")
        assert log["a"].tolist() == [0.0, 2.0, 4.0] and log["b"].tolist() == [1.0, 3.0, 5.0]
    finally:
        ws.close()
