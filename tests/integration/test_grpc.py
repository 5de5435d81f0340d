"""The Open Inference Protocol over gRPC: a real server on 127.0.0.1 (``grpc_port``), driven by
``tritonclient.grpc`` and by a bare gRPC channel, answering as the HTTP V2 endpoint does."""

from __future__ import annotations

import os
import queue
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import grpc
import httpx
import numpy as np
import orjson
import pandas as pd
import pytest
import tritonclient.grpc as tg
from sklearn.datasets import load_breast_cancer
from sklearn.ensemble import RandomForestClassifier
from sklearn.linear_model import LogisticRegression
from tritonclient.grpc import service_pb2 as triton_pb2
from tritonclient.utils import InferenceServerException

from loopml.registry import register_model, set_alias
from loopml.serve import BackgroundServer, start_background_server
from loopml.serve.grpc_server import ERROR_METADATA, request_body, split_bytes
from loopml.serve.oip import SERVICE, messages
from loopml.serve.oip.proto import GRPC_PREDICT_V2, ProtoSyntaxError, file_descriptor
from loopml.train import fit_bundle
from loopml.workspace import init

pb = messages()


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _register(ws: Any, name: str, df: pd.DataFrame, target: str, est: Any) -> pd.DataFrame:
    bundle, x = fit_bundle(df, target, est, task="classification")
    mv = register_model(ws, name, bundle)
    set_alias(ws, name, "champion", mv.version)
    return x


def _pets(n: int = 200) -> pd.DataFrame:
    rng = np.random.default_rng(1)
    color = rng.choice(["red", "green", "blue"], n)
    size = rng.normal(10, 2, n)
    return pd.DataFrame(
        {"color": color, "size": size, "label": np.where(color == "red", "yes", "no")}
    )


def _start(ws: Any, **options: Any) -> tuple[BackgroundServer, str]:
    server = start_background_server(ws, reload_interval=0, grpc_port=_free_port(), **options)
    handle = server.model_server.grpc_handle  # type: ignore[attr-defined]
    return server, handle.target


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    ws = init(tmp_path_factory.mktemp("grpc") / "ws")
    cancer = load_breast_cancer(as_frame=True).frame
    _register(ws, "cancer", cancer, "target", RandomForestClassifier(10, random_state=1))
    x = _register(ws, "cancer", cancer, "target", RandomForestClassifier(20, random_state=0))
    pets_x = _register(ws, "pets", _pets(), "label", LogisticRegression())
    models = {"cancer": ["cancer@champion", "cancer@1"], "pets": ["pets@champion"]}
    server, target = _start(ws, models=models, log_predictions=False)
    client = tg.InferenceServerClient(target)
    channel = grpc.insecure_channel(target)
    try:
        yield {
            "ws": ws,
            "server": server,
            "target": target,
            "client": client,
            "channel": channel,
            "x": x,
            "pets_x": pets_x,
        }
    finally:
        channel.close()
        client.close()
        server.stop()
        ws.close()


def _http_infer(
    served: dict[str, Any], name: str, body: dict[str, Any], version: str | None = None
):
    path = f"/v2/models/{name}" + (f"/versions/{version}" if version else "") + "/infer"
    return httpx.post(f"{served['server'].url}{path}", json=body, timeout=30)


def _outputs(answer: dict[str, Any]) -> dict[str, Any]:
    return {o["name"]: o for o in answer["outputs"]}


def _model_infer(channel: grpc.Channel, request: Any, metadata: Any = None) -> Any:
    call = channel.unary_unary(
        f"/{SERVICE}/ModelInfer",
        request_serializer=pb.ModelInferRequest.SerializeToString,
        response_deserializer=pb.ModelInferResponse.FromString,
    )
    return call(request, timeout=30, metadata=metadata)


# -- the protocol's definition ----------------------------------------------------------------


def _fields(desc: Any) -> dict[str, tuple[Any, ...]]:
    out = {}
    for f in desc.fields:
        kind = f.message_type.full_name if f.message_type is not None else f.type
        oneof = f.containing_oneof.name if f.containing_oneof is not None else None
        out[f.name] = (f.number, kind, f.is_repeated, oneof)
    return out


def _same_message(ours: Any, theirs: Any) -> None:
    assert ours.full_name == theirs.full_name
    assert _fields(ours) == _fields(theirs), ours.full_name
    assert ours.GetOptions().map_entry == theirs.GetOptions().map_entry
    nested = {n.name: n for n in theirs.nested_types}
    assert {n.name for n in ours.nested_types} == set(nested), ours.full_name
    for n in ours.nested_types:
        _same_message(n, nested[n.name])


def test_messages_match_the_public_protocol() -> None:
    """Same package, names, field numbers and types as the Triton/KServe ``inference``
    protocol that tritonclient ships (generated from the upstream .proto)."""
    theirs = triton_pb2.DESCRIPTOR
    assert pb.file.package == theirs.package == "inference"
    for name, desc in pb.file.message_types_by_name.items():
        _same_message(desc, theirs.message_types_by_name[name])
    service = theirs.services_by_name["GRPCInferenceService"]
    assert pb.service.full_name == SERVICE == service.full_name
    for method in pb.service.methods:
        other = service.methods_by_name[method.name]
        assert method.input_type.full_name == other.input_type.full_name
        assert method.output_type.full_name == other.output_type.full_name
    assert {m.name for m in pb.service.methods} >= {
        "ServerLive",
        "ServerReady",
        "ModelReady",
        "ServerMetadata",
        "ModelMetadata",
        "ModelInfer",
    }
    # the wire format is theirs: a message of ours reads back with their class
    request = pb.ModelInferRequest(model_name="m", raw_input_contents=[b"\x00" * 8])
    request.inputs.add(name="f", datatype="FP64", shape=[1]).parameters["p"].int64_param = 3
    back = triton_pb2.ModelInferRequest.FromString(request.SerializeToString())
    assert back.inputs[0].parameters["p"].int64_param == 3
    assert back.raw_input_contents == [b"\x00" * 8]


def test_proto_reader_refuses_what_it_does_not_read() -> None:
    with pytest.raises(ProtoSyntaxError, match="proto3"):
        file_descriptor('syntax = "proto2";')
    with pytest.raises(ProtoSyntaxError, match="unknown type"):
        file_descriptor('syntax = "proto3"; package p; message A { Missing b = 1; }')
    with pytest.raises(ProtoSyntaxError, match="top level"):
        file_descriptor('syntax = "proto3"; enum E { A = 0; }')
    assert "package inference;" in GRPC_PREDICT_V2


# -- health and metadata ----------------------------------------------------------------------


def test_health_and_metadata_as_http(served: dict[str, Any]) -> None:
    client = served["client"]
    assert client.is_server_live() and client.is_server_ready()
    assert client.is_model_ready("cancer") and client.is_model_ready("cancer", "1")
    assert client.is_model_ready("pets")
    meta = client.get_server_metadata(as_json=True)
    assert meta["name"] == "loopml" and meta["version"]
    base = served["server"].url
    for name, version in (("cancer", ""), ("cancer", "1"), ("pets", "")):
        got = client.get_model_metadata(name, version, as_json=True)
        path = f"/v2/models/{name}" + (f"/versions/{version}" if version else "")
        want = httpx.get(base + path, timeout=10).json()
        for key in ("name", "versions", "platform"):
            assert got[key] == want[key]
        for key in ("inputs", "outputs"):  # JSON of int64 shapes are strings in protobuf's JSON
            assert [(t["name"], t["datatype"], [int(d) for d in t["shape"]]) for t in got[key]] == [
                (t["name"], t["datatype"], t["shape"]) for t in want[key]
            ]
    assert client.get_model_metadata("cancer", as_json=True)["versions"] == ["2", "1"]
    index = client.get_model_repository_index(as_json=True)["models"]
    assert sorted((m["name"], m["version"], m["state"]) for m in index) == [
        ("cancer", "1", "READY"),
        ("cancer", "2", "READY"),
        ("pets", "1", "READY"),
    ]
    with pytest.raises(InferenceServerException) as err:
        client.get_model_metadata("nope")
    assert err.value.status() == "StatusCode.NOT_FOUND"
    with pytest.raises(InferenceServerException) as err:
        client.is_model_ready("cancer", "7")
    assert err.value.status() == "StatusCode.NOT_FOUND"


def test_the_docs_example_runs(served: dict[str, Any], capsys: pytest.CaptureFixture[str]) -> None:
    doc = (Path(__file__).resolve().parents[2] / "docs" / "serving-grpc.md").read_text()
    code = doc.split("```python\n", 1)[1].split("```", 1)[0]
    assert "127.0.0.1:8001" in code
    exec(compile(code.replace("127.0.0.1:8001", served["target"]), "serving-grpc.md", "exec"), {})
    assert capsys.readouterr().out.splitlines()[0] == "1"


# -- inference ----------------------------------------------------------------------------------


@pytest.mark.parametrize("version", [None, "1"])
def test_infer_matches_http_v2(served: dict[str, Any], version: str | None) -> None:
    x = served["x"].iloc[:7]
    client = served["client"]
    matrix = x.to_numpy(dtype=np.float64)
    body = {
        "inputs": [
            {
                "name": "x",
                "shape": list(matrix.shape),
                "datatype": "FP64",
                "data": matrix.ravel().tolist(),
            }
        ]
    }
    http = _http_infer(served, "cancer", body, version)
    assert http.status_code == 200, http.text
    want = _outputs(http.json())
    assert http.json()["model_version"] == (version or "2")
    label_want = np.asarray(want["label"]["data"])
    proba_want = np.asarray(want["probabilities"]["data"]).reshape(want["probabilities"]["shape"])

    # one [N, F] tensor, raw (tritonclient's way)
    inp = tg.InferInput("x", list(matrix.shape), "FP64")
    inp.set_data_from_numpy(matrix)
    result = client.infer("cancer", [inp], model_version=version or "")
    assert result.get_response().model_version == (version or "2")
    assert result.as_numpy("label").tolist() == label_want.tolist()
    np.testing.assert_allclose(result.as_numpy("probabilities"), proba_want, rtol=0, atol=1e-9)
    ids = result.as_numpy("prediction_id")
    assert ids.shape == (7,) and len({bytes(i) for i in ids}) == 7
    out = result.get_output("probabilities")
    assert orjson.loads(out.parameters["classes"].string_param) == ["0", "1"]

    # one tensor per feature, raw, and only the outputs asked for
    per_feature = []
    for col in x.columns:
        t = tg.InferInput(col, [len(x)], "FP64")
        t.set_data_from_numpy(x[col].to_numpy(dtype=np.float64))
        per_feature.append(t)
    asked = [tg.InferRequestedOutput("probabilities")]
    result = client.infer("cancer", per_feature, model_version=version or "", outputs=asked)
    assert [o.name for o in result.get_response().outputs] == ["probabilities"]
    np.testing.assert_allclose(result.as_numpy("probabilities"), proba_want, rtol=0, atol=1e-9)

    # typed contents in, typed contents out
    request = pb.ModelInferRequest(model_name="cancer", model_version=version or "", id="r-1")
    tensor = request.inputs.add(name="x", datatype="FP64", shape=list(matrix.shape))
    tensor.contents.fp64_contents.extend(matrix.ravel().tolist())
    typed = _model_infer(served["channel"], request)
    assert typed.id == "r-1" and not typed.raw_output_contents
    by_name = {o.name: o for o in typed.outputs}
    assert list(by_name["label"].contents.int64_contents) == label_want.tolist()
    got = np.asarray(by_name["probabilities"].contents.fp64_contents).reshape(proba_want.shape)
    np.testing.assert_allclose(got, proba_want, rtol=0, atol=1e-9)
    assert len(by_name["prediction_id"].contents.bytes_contents) == 7


def test_fp32_matrix_matches_http_on_the_same_values(served: dict[str, Any]) -> None:
    matrix = served["x"].iloc[10:14].to_numpy(dtype=np.float32)
    inp = tg.InferInput("x", list(matrix.shape), "FP32")
    inp.set_data_from_numpy(matrix)
    result = served["client"].infer("cancer", [inp])
    data = matrix.astype(np.float64).ravel().tolist()  # the same float32 values, as JSON
    body = {
        "inputs": [{"name": "x", "shape": list(matrix.shape), "datatype": "FP32", "data": data}]
    }
    want = _outputs(_http_infer(served, "cancer", body).json())
    got = result.as_numpy("probabilities").ravel()
    np.testing.assert_allclose(got, want["probabilities"]["data"], rtol=0, atol=1e-9)


def test_categorical_model_with_bytes_tensors(served: dict[str, Any]) -> None:
    x = served["pets_x"].iloc[:9]
    client = served["client"]
    color = tg.InferInput("color", [len(x)], "BYTES")
    color.set_data_from_numpy(x["color"].to_numpy(dtype=object))
    size = tg.InferInput("size", [len(x), 1], "FP64")
    size.set_data_from_numpy(x["size"].to_numpy(dtype=np.float64).reshape(-1, 1))
    result = client.infer("pets", [color, size])
    body = {
        "inputs": [
            {"name": "color", "shape": [len(x)], "datatype": "BYTES", "data": x["color"].tolist()},
            {"name": "size", "shape": [len(x), 1], "datatype": "FP64", "data": x["size"].tolist()},
        ]
    }
    want = _outputs(_http_infer(served, "pets", body).json())
    assert want["label"]["datatype"] == "BYTES"
    assert [v.decode() for v in result.as_numpy("label").tolist()] == want["label"]["data"]
    np.testing.assert_allclose(
        result.as_numpy("probabilities").ravel(), want["probabilities"]["data"], rtol=0, atol=1e-9
    )
    # typed: bytes_contents in, bytes_contents out
    request = pb.ModelInferRequest(model_name="pets")
    t = request.inputs.add(name="color", datatype="BYTES", shape=[len(x)])
    t.contents.bytes_contents.extend(c.encode() for c in x["color"])
    t = request.inputs.add(name="size", datatype="FP64", shape=[len(x)])
    t.contents.fp64_contents.extend(x["size"].tolist())
    typed = {o.name: o for o in _model_infer(served["channel"], request).outputs}
    assert [b.decode() for b in typed["label"].contents.bytes_contents] == want["label"]["data"]


def test_predictions_are_counted_under_the_grpc_endpoint(served: dict[str, Any]) -> None:
    matrix = served["x"].iloc[:2].to_numpy(dtype=np.float64)
    inp = tg.InferInput("x", list(matrix.shape), "FP64")
    inp.set_data_from_numpy(matrix)
    served["client"].infer("cancer", [inp])
    text = httpx.get(f"{served['server'].url}/metrics", timeout=10).text
    assert 'endpoint="grpc_infer",status="200"' in text


# -- errors -----------------------------------------------------------------------------------


def _grpc_error(served: dict[str, Any], request: Any) -> grpc.RpcError:
    with pytest.raises(grpc.RpcError) as err:
        _model_infer(served["channel"], request)
    return err.value


def _metadata_body(err: grpc.RpcError) -> dict[str, Any]:
    trailing = dict(err.trailing_metadata() or ())  # type: ignore[attr-defined]
    return orjson.loads(trailing[ERROR_METADATA])  # type: ignore[no-any-return]


@pytest.mark.parametrize(
    ("name", "shape", "datatype", "data"),
    [
        ("x", [2, 5], "FP64", [0.5] * 10),  # too few columns for the model
        ("x", [2, 30], "FP64", [0.5] * 59),  # fewer values than the shape
        ("x", [2, 30], "BYTES", ["a"] * 60),  # the features are numeric
        ("x", [2, 30], "FP99", []),  # not a V2 datatype
    ],
)
def test_bad_tensor_is_invalid_argument_with_the_http_message(
    served: dict[str, Any], name: str, shape: list[int], datatype: str, data: list[Any]
) -> None:
    http = _http_infer(
        served,
        "cancer",
        {"inputs": [{"name": name, "shape": shape, "datatype": datatype, "data": data}]},
    )
    assert http.status_code in (400, 422), http.text
    request = pb.ModelInferRequest(model_name="cancer")
    tensor = request.inputs.add(name=name, datatype=datatype, shape=shape)
    if datatype == "BYTES":
        tensor.contents.bytes_contents.extend(v.encode() for v in data)
    elif data:
        tensor.contents.fp64_contents.extend(data)
    err = _grpc_error(served, request)
    assert err.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert err.details() == http.json()["message"]
    body = _metadata_body(err)
    assert {k: body[k] for k in ("code", "message", "where", "hint")} == {
        k: http.json()[k] for k in ("code", "message", "where", "hint")
    }
    # tritonclient sees the same
    if datatype == "FP64" and len(data) == np.prod(shape):
        inp = tg.InferInput(name, shape, datatype)
        inp.set_data_from_numpy(np.asarray(data, dtype=np.float64).reshape(shape))
        with pytest.raises(InferenceServerException) as exc:
            served["client"].infer("cancer", [inp])
        assert exc.value.status() == "StatusCode.INVALID_ARGUMENT"
        assert exc.value.message() == http.json()["message"]


def test_malformed_raw_contents_are_invalid_argument(served: dict[str, Any]) -> None:
    width = served["x"].shape[1]
    request = pb.ModelInferRequest(model_name="cancer", raw_input_contents=[b"\x00" * 13])
    request.inputs.add(name="x", datatype="FP64", shape=[1, width])
    err = _grpc_error(served, request)
    assert err.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "not a whole number of 8-byte FP64 values" in err.details()
    # one raw entry per input
    request = pb.ModelInferRequest(model_name="cancer", raw_input_contents=[b"", b""])
    request.inputs.add(name="x", datatype="FP64", shape=[0, width])
    assert _grpc_error(served, request).code() == grpc.StatusCode.INVALID_ARGUMENT
    # values in the wrong typed field
    request = pb.ModelInferRequest(model_name="cancer")
    tensor = request.inputs.add(name="x", datatype="FP64", shape=[1, width])
    tensor.contents.fp32_contents.extend([1.0] * width)
    err = _grpc_error(served, request)
    assert err.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "contents.fp32_contents" in err.details()
    # a BYTES element whose length runs past the end, and text that is not UTF-8
    request = pb.ModelInferRequest(
        model_name="pets", raw_input_contents=[b"\x09\x00\x00\x00ab", b""]
    )
    request.inputs.add(name="color", datatype="BYTES", shape=[1])
    request.inputs.add(name="size", datatype="FP64", shape=[1])
    assert "9-byte element" in _grpc_error(served, request).details()
    request = pb.ModelInferRequest(model_name="pets")
    request.inputs.add(name="color", datatype="BYTES", shape=[1]).contents.bytes_contents.append(
        b"\xff\xfe"
    )
    request.inputs.add(name="size", datatype="FP64", shape=[1]).contents.fp64_contents.append(1.0)
    err = _grpc_error(served, request)
    assert err.code() == grpc.StatusCode.INVALID_ARGUMENT and "UTF-8" in err.details()
    # the server still answers correctly afterwards
    matrix = served["x"].iloc[:1].to_numpy(dtype=np.float64)
    inp = tg.InferInput("x", list(matrix.shape), "FP64")
    inp.set_data_from_numpy(matrix)
    assert served["client"].infer("cancer", [inp]).as_numpy("label").shape == (1,)


def test_unknown_model_or_version_is_not_found(served: dict[str, Any]) -> None:
    matrix = served["x"].iloc[:1].to_numpy(dtype=np.float64)
    inp = tg.InferInput("x", list(matrix.shape), "FP64")
    inp.set_data_from_numpy(matrix)
    with pytest.raises(InferenceServerException) as exc:
        served["client"].infer("nope", [inp])
    assert exc.value.status() == "StatusCode.NOT_FOUND"
    http = _http_infer(served, "nope", {"inputs": []})
    assert http.status_code == 404 and exc.value.message() == http.json()["message"]
    with pytest.raises(InferenceServerException) as exc:
        served["client"].infer("cancer", [inp], model_version="9")
    assert exc.value.status() == "StatusCode.NOT_FOUND"
    assert "not 9" in exc.value.message()


def test_overload_is_unavailable_with_retry_after(served: dict[str, Any]) -> None:
    model_server = served["server"].model_server
    runtime = model_server.models.runtime("cancer")
    batcher = runtime.batcher
    predict = batcher._predict
    release = threading.Event()

    def held(columns: Any) -> Any:  # a model busy until the test lets it go (bounded)
        release.wait(10)
        return predict(columns)

    matrix = served["x"].iloc[:2].to_numpy(dtype=np.float64)
    first = tg.InferInput("x", list(matrix.shape), "FP64")
    first.set_data_from_numpy(matrix)
    queue_rows = model_server.queue_rows
    model_server.queue_rows = 2
    batcher._predict = held
    inline, batcher._inline = batcher._inline, False  # held in a worker thread, not the loop
    answers: list[Any] = []
    worker = threading.Thread(
        target=lambda: answers.append(served["client"].infer("cancer", [first]))
    )
    try:
        worker.start()
        deadline = time.monotonic() + 10
        while batcher.queued_rows == 0 and time.monotonic() < deadline:
            time.sleep(0.005)
        assert batcher.queued_rows == 2
        request = pb.ModelInferRequest(model_name="cancer")
        request.inputs.add(
            name="x", datatype="FP64", shape=[1, matrix.shape[1]]
        ).contents.fp64_contents.extend(matrix[0].tolist())
        err = _grpc_error(served, request)
        assert err.code() == grpc.StatusCode.UNAVAILABLE
        trailing = dict(err.trailing_metadata() or ())  # type: ignore[attr-defined]
        assert trailing["retry-after"] == str(model_server.retry_after)
        assert _metadata_body(err)["code"] == "overloaded"
    finally:
        release.set()
        worker.join(15)
        batcher._predict = predict
        batcher._inline = inline
        model_server.queue_rows = queue_rows
    assert answers and answers[0].as_numpy("label").shape == (2,)


# -- bounds and lifecycle -----------------------------------------------------------------------


@pytest.mark.slow
def test_message_bound_sticky_key_and_stop(tmp_path: Any) -> None:
    ws = init(tmp_path / "ws")
    try:
        cancer = load_breast_cancer(as_frame=True).frame
        x = _register(ws, "cancer", cancer, "target", RandomForestClassifier(5, random_state=0))
        server, target = _start(ws, max_body_bytes=4096)
        try:
            client = tg.InferenceServerClient(target)
            big = x.iloc[:40].to_numpy(dtype=np.float64)  # 9600 bytes of values
            inp = tg.InferInput("x", list(big.shape), "FP64")
            inp.set_data_from_numpy(big)
            with pytest.raises(InferenceServerException) as exc:
                client.infer("cancer", [inp])
            assert exc.value.status() == "StatusCode.RESOURCE_EXHAUSTED"
            small = tg.InferInput("x", [1, big.shape[1]], "FP64")
            small.set_data_from_numpy(big[:1])
            keyed = client.infer("cancer", [small], headers={"x-loopml-key": "user-7"})
            assert keyed.as_numpy("label").shape == (1,)
            client.close()
        finally:
            server.stop()
        with grpc.insecure_channel(target) as channel:
            live = channel.unary_unary(
                f"/{SERVICE}/ServerLive",
                request_serializer=pb.ServerLiveRequest.SerializeToString,
                response_deserializer=pb.ServerLiveResponse.FromString,
            )
            with pytest.raises(grpc.RpcError) as err:
                live(pb.ServerLiveRequest(), timeout=2)
            assert err.value.code() == grpc.StatusCode.UNAVAILABLE
    finally:
        ws.close()


def _read_lines(stream: Any, out: queue.Queue[str]) -> None:
    for line in stream:
        out.put(line)


@pytest.mark.slow
def test_loopml_serve_grpc_port_with_workers(tmp_path: Any) -> None:
    """`loopml serve --grpc-port P --workers 2`: every worker serves gRPC on the one port,
    and SIGTERM stops them."""
    ws = init(tmp_path / "ws")
    try:
        cancer = load_breast_cancer(as_frame=True).frame
        x = _register(ws, "cancer", cancer, "target", RandomForestClassifier(5, random_state=0))
    finally:
        ws.close()
    grpc_port = _free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("LOOPML_")}
    args = ["serve", "--port", "0", "--grpc-port", str(grpc_port), "--workers", "2"]
    proc = subprocess.Popen(
        [sys.executable, "-m", "loopml", *args, "-w", str(tmp_path / "ws")],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    lines: queue.Queue[str] = queue.Queue()
    threading.Thread(target=_read_lines, args=(proc.stderr, lines), daemon=True).start()
    seen: list[str] = []
    try:
        deadline = time.monotonic() + 120
        while not any("over gRPC on" in line for line in seen):
            assert proc.poll() is None, "".join(seen)
            assert time.monotonic() < deadline, "".join(seen)
            try:
                seen.append(lines.get(timeout=1))
            except queue.Empty:
                continue
        assert f"over gRPC on 127.0.0.1:{grpc_port}" in "".join(seen)
        client = tg.InferenceServerClient(f"127.0.0.1:{grpc_port}")
        assert client.is_server_ready()
        matrix = x.iloc[:3].to_numpy(dtype=np.float64)
        inp = tg.InferInput("x", list(matrix.shape), "FP64")
        inp.set_data_from_numpy(matrix)
        for _ in range(10):  # connections land on either worker
            assert client.infer("cancer", [inp]).as_numpy("label").shape == (3,)
        client.close()
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            code = proc.wait(timeout=60)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
            raise
    assert code == 0, "".join(seen)


# -- the conversions on their own -------------------------------------------------------------


def test_raw_bytes_and_request_body() -> None:
    raw = b"".join(len(s).to_bytes(4, "little") + s for s in (b"red", b"", "blå".encode()))
    assert split_bytes(raw, "color", 0) == [b"red", b"", "blå".encode()]
    request = pb.ModelInferRequest(model_name="m", id="q", raw_input_contents=[raw])
    request.inputs.add(name="color", datatype="BYTES", shape=[3])
    request.outputs.add(name="label")
    assert request_body(request) == {
        "id": "q",
        "inputs": [
            {"name": "color", "shape": [3], "datatype": "BYTES", "data": ["red", "", "blå"]}
        ],
        "outputs": [{"name": "label"}],
    }
    both = pb.ModelInferRequest(raw_input_contents=[b"\x00" * 8])
    both.inputs.add(name="a", datatype="FP64", shape=[1]).contents.fp64_contents.append(1.0)
    with pytest.raises(ValueError, match="raw_input_contents"):
        request_body(both)
