"""The same features and predictions on every path (issue 10).

A version with every kind of convertible transform and a selection is registered once; random
rows (hypothesis) then go through the ONNX form of its feature pipeline, the Python API
(``loopml.load_model(...).predict``), batch scoring (``loopml predict``) and the HTTP server
(in process), and must agree with the native pipeline to 1e-6. A version whose features do
not convert (hashing) is served natively, with the reason, and agrees too.
"""

from __future__ import annotations

import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import orjson
import pandas as pd
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sklearn.linear_model import LogisticRegression

from loopml.cli.main import main
from loopml.registry import load_model, register_model, set_alias
from loopml.registry.compiled import CompiledModel, NativeFallback, compile_bundle
from loopml.registry.onnx_graph import FEATURES_OUTPUT, categorical_feed, feature_model
from loopml.serve import create_app
from loopml.train import fit_bundle
from loopml.workspace import init

with warnings.catch_warnings():
    warnings.simplefilter("ignore")  # starlette's notice about httpx in its TestClient
    from starlette.testclient import TestClient

pytest.importorskip("onnxruntime")

CITIES = ["oslo", "lima", "pune", "kyiv", "rome", "baku"]
PLANS = ["free", "pro", "team"]
TIERS = ["a", "b", "c", "d"]

CONVERTIBLE = {
    "numeric": {
        "impute": "median",
        "indicator": True,
        "clip": [0.02, 0.98],
        "power": "yeo-johnson",
        "scale": "robust",
    },
    "categorical": {"encode": "target"},
    "columns": {
        "b": {"bucketize": {"bins": 4}, "scale": "minmax", "indicator": False},
        "e": {"power": "log1p", "scale": "standard", "indicator": False},
        "city": {"encode": "onehot", "max_categories": 4},
        "plan": {"encode": "frequency"},
        "tier": {"encode": "ordinal"},
    },
    "selection": {"method": "f_test", "k": 9},
}
HASHED = {"categorical": {"encode": "hash", "n_features": 16}, "numeric": {"scale": "minmax"}}


def training(n: int = 400, seed: int = 0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    city = rng.choice(CITIES, n, p=[0.4, 0.3, 0.1, 0.1, 0.05, 0.05])
    a = rng.normal(size=n)
    b = rng.exponential(size=n) * 10
    df = pd.DataFrame(
        {
            "a": a,
            "b": b,
            "e": rng.normal(size=n) * 5,
            "city": city,
            "plan": rng.choice(PLANS, n),
            "tier": rng.choice(TIERS, n),
        }
    )
    signal = a + (city == "oslo") - 0.05 * b + rng.normal(scale=0.5, size=n)
    df["y"] = np.where(signal > 0, "yes", "no")
    df.loc[::9, "a"] = np.nan  # "a" has missing values in training, so serving takes them
    return df


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    root = tmp_path_factory.mktemp("paths")
    ws = init(root / "ws")
    df = training()
    bundles = {}
    for name, cfg in (("convertible", CONVERTIBLE), ("hashed", HASHED)):
        bundle, _ = fit_bundle(df, "y", LogisticRegression(max_iter=2000), features=cfg)
        mv = register_model(ws, name, bundle)
        set_alias(ws, name, "champion", mv.version)
        bundles[name] = bundle
    app = create_app(ws, reload_interval=0, log_predictions=False)
    with TestClient(app, base_url="http://127.0.0.1") as client:
        yield {"ws": ws, "root": root, "client": client, "bundles": bundles}
    ws.close()


rows = st.lists(
    st.fixed_dictionaries(
        {
            "a": st.one_of(st.none(), st.floats(-50, 50, allow_nan=False)),
            "b": st.floats(0, 80, allow_nan=False),
            "e": st.floats(-40, 40, allow_nan=False),
            "city": st.sampled_from(CITIES),
            "plan": st.sampled_from(PLANS),
            "tier": st.sampled_from(TIERS),
        }
    ),
    min_size=1,
    max_size=12,
)


def onnx_features(bundle: Any, frame: pd.DataFrame) -> np.ndarray:
    import onnxruntime as ort

    session = ort.InferenceSession(feature_model(bundle).SerializeToString())
    feed = {}
    for i in session.get_inputs():
        if i.type == "tensor(string)":
            feed[i.name] = categorical_feed(frame[i.name].to_numpy(dtype=object))
        else:
            feed[i.name] = frame[i.name].to_numpy(dtype=np.float64).reshape(-1, 1)
    out = session.run([FEATURES_OUTPUT], feed)[0]
    return np.asarray(out, dtype=np.float64)


def test_the_convertible_version_compiles_and_the_hashed_one_says_why(
    served: dict[str, Any],
) -> None:
    compiled = compile_bundle(served["bundles"]["convertible"])
    assert isinstance(compiled, CompiledModel), getattr(compiled, "reason", None)
    assert compiled.check is not None and compiled.check.max_abs_diff is not None
    assert compiled.check.max_abs_diff <= 1e-6
    native = compile_bundle(served["bundles"]["hashed"])
    assert isinstance(native, NativeFallback)
    assert "HashEncoder" in native.reason


def _score_http(client: Any, model: str, records: list[dict[str, Any]]) -> np.ndarray:
    resp = client.post(
        f"/v1/models/{model}:predict",
        content=orjson.dumps({"instances": records}),
        headers={"content-type": "application/json"},
    )
    assert resp.status_code == 200, resp.text
    preds = resp.json()["predictions"]
    return np.array([[p["probabilities"]["no"], p["probabilities"]["yes"]] for p in preds])


def _score_batch(root: Path, ws: Any, model: str, frame: pd.DataFrame, tag: int) -> np.ndarray:
    src = root / f"in_{model}_{tag}.csv"
    dst = root / f"out_{model}_{tag}.csv"
    frame.to_csv(src, index=False)
    code = main(["predict", "-m", model, "-i", str(src), "-o", str(dst), "-q", "-w", str(ws.root)])
    assert code == 0
    scored = pd.read_csv(dst)
    return scored[["proba_no", "proba_yes"]].to_numpy(dtype=np.float64)


_calls = iter(range(10**6))


@pytest.mark.slow
@settings(
    max_examples=20,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(records=rows)
def test_random_rows_give_the_same_features_and_predictions_on_every_path(
    served: dict[str, Any], records: list[dict[str, Any]]
) -> None:
    frame = pd.DataFrame(records, columns=["a", "b", "e", "city", "plan", "tier"])
    frame["a"] = frame["a"].astype("float64")
    ws, client = served["ws"], served["client"]
    for model in ("convertible", "hashed"):
        bundle = served["bundles"][model]
        prepared = bundle.signature.check_frame(frame).frame
        want_features = np.asarray(bundle.features.transform(prepared), dtype=np.float64)
        if model == "convertible":
            got = onnx_features(bundle, prepared)
            np.testing.assert_allclose(got, want_features, rtol=0, atol=1e-6)
        native = bundle.predict_frame(frame).probabilities
        api = load_model(ws, model).predict(frame).probabilities
        http = _score_http(client, model, records)
        batch = _score_batch(served["root"], ws, model, frame, next(_calls))
        for other in (api, http, batch):
            np.testing.assert_allclose(other, native, rtol=0, atol=1e-6)
