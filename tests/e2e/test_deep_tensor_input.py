"""A CNN version takes V2 image tensors ``[n, 1, 8, 8]`` FP32, checked against the shape
and datatype its architecture declares; the answers are those of its pixel columns."""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
import pytest
from sklearn.datasets import load_digits

pytest.importorskip("torch")

import loopml
from loopml.serve import create_app

with warnings.catch_warnings():
    warnings.simplefilter("ignore")  # starlette's notice about httpx in its TestClient
    from starlette.testclient import TestClient


@pytest.mark.slow
def test_image_tensors_are_validated_and_answer_as_pixel_columns(tmp_path: Path) -> None:
    from loopml.train.deep import CNNClassifier

    frame = load_digits(as_frame=True).frame.head(300)
    frame.columns = [str(c) for c in frame.columns]
    cnn = CNNClassifier(epochs=2, batch_size=64, random_state=0)
    with loopml.init(tmp_path / "w") as ws:
        bundle, _ = loopml.fit_bundle(frame, "target", cnn)
        spec = {"name": "image", "shape": [-1, 1, 8, 8], "datatype": "FP32"}
        assert bundle.signature.extra["tensor"] == spec  # recorded on the version
        mv = loopml.register_model(ws, "digits", bundle)
        assert mv.signature["extra"]["tensor"] == spec
        pixels = frame.drop(columns="target").head(6)
        images = pixels.to_numpy(dtype=np.float32).reshape(6, 1, 8, 8)
        app = create_app(
            ws, models={"digits": "digits@1"}, reload_interval=0, log_predictions=False
        )
        with TestClient(app, base_url="http://127.0.0.1") as client:
            url = "/v2/models/digits/infer"

            def infer(shape: list[int], datatype: str, data: list[float]) -> object:
                tensor = {"name": "image", "shape": shape, "datatype": datatype, "data": data}
                return client.post(url, json={"inputs": [tensor]})

            ok = infer([6, 1, 8, 8], "FP32", images.ravel().tolist())
            assert ok.status_code == 200, ok.text
            outputs = {o["name"]: o for o in ok.json()["outputs"]}
            v1 = client.post(
                "/v1/models/digits:predict", json={"instances": pixels.to_dict(orient="records")}
            ).json()
            assert outputs["label"]["data"] == [p["prediction"] for p in v1["predictions"]]
            probs = np.array(outputs["probabilities"]["data"]).reshape(6, -1)
            local = bundle.predict(pixels).probabilities
            assert np.allclose(probs, local, atol=1e-5)  # the CNN is compiled in float32
            nested = infer([6, 1, 8, 8], "FP32", images.tolist())  # nested data works too
            assert nested.status_code == 200
            meta = client.get("/v2/models/digits").json()
            assert meta["inputs"][0] == {
                "name": "image",
                "shape": [-1, 1, 8, 8],
                "datatype": "FP32",
            }
            bad = infer([1, 1, 28, 28], "FP32", [0.0] * 784)
            assert bad.status_code == 422, bad.text
            assert bad.json()["where"] == {"input": "image", "field": "inputs[0].shape"}
            assert "[n, 1, 8, 8]" in bad.json()["message"]
            bad = infer([6, 1, 8, 8], "FP64", images.ravel().tolist())
            assert bad.status_code == 422, bad.text
            assert bad.json()["where"] == {"input": "image", "field": "inputs[0].datatype"}
            bad = infer([6, 64], "FP32", images.ravel().tolist())  # the tensor's name: its shape
            assert bad.status_code == 422 and bad.json()["where"]["field"] == "inputs[0].shape"
            # plain numbers: read as one block, never split into 64 checked pixel columns;
            # anything else goes through the general reader, which names the pixel
            from loopml.serve.records import RowBlock
            from loopml.serve.v2 import parse_infer_request

            runtime = app.server._models().runtime("digits", None)  # type: ignore[attr-defined]
            tensor = {"name": "image", "shape": [6, 1, 8, 8], "datatype": "FP32"}
            plain = parse_infer_request(
                {"inputs": [{**tensor, "data": images.ravel().tolist()}]}, runtime, 100
            )
            assert isinstance(plain.columns, RowBlock)
            assert plain.columns.block.shape == (6, 64)
            assert plain.records[2] == {k: float(v) for k, v in pixels.iloc[2].items()}
            texts: list[object] = images.ravel().tolist()
            texts[64 + 5] = "bright"  # image 1, pixel 5
            odd = parse_infer_request({"inputs": [{**tensor, "data": texts}]}, runtime, 100)
            assert not isinstance(odd.columns, RowBlock)
            bad = infer([6, 1, 8, 8], "FP32", texts)  # type: ignore[arg-type]
            assert bad.status_code == 422, bad.text
            assert "bright" in bad.text or "row 1" in bad.text or "5" in str(bad.json()["where"])
