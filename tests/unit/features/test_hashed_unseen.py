"""A hashed categorical column has no vocabulary: a category training never had is scored on
every path (HTTP included) as the Python API scores it, neither refused nor flagged."""

from __future__ import annotations

import warnings
from collections.abc import Iterator
from typing import Any

import numpy as np
import orjson
import pandas as pd
import pytest
from sklearn.linear_model import LogisticRegression

from loopml.errors import InvalidInputError
from loopml.registry import load_model, register_model, set_alias
from loopml.registry.signature import Signature
from loopml.serve import create_app
from loopml.train import fit_bundle
from loopml.workspace import init

with warnings.catch_warnings():
    warnings.simplefilter("ignore")  # starlette's notice about httpx in its TestClient
    from starlette.testclient import TestClient

CONFIG = {"columns": {"city": {"encode": "hash", "n_features": 16}}}


def frame(n: int = 300) -> pd.DataFrame:
    rng = np.random.default_rng(3)
    city = rng.choice(["oslo", "lima", "pune", "kyiv"], n)
    plan = rng.choice(["free", "pro"], n)
    a = rng.normal(size=n)
    y = np.where(a + (city == "oslo") + rng.normal(scale=0.5, size=n) > 0.5, "yes", "no")
    return pd.DataFrame({"a": a, "city": city, "plan": plan, "y": y})


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    ws = init(tmp_path_factory.mktemp("hashed") / "ws")
    bundle, _ = fit_bundle(frame(), "y", LogisticRegression(max_iter=1000), features=CONFIG)
    mv = register_model(ws, "hashed", bundle)
    set_alias(ws, "hashed", "champion", mv.version)
    app = create_app(ws, reload_interval=0, log_predictions=False)
    with TestClient(app, base_url="http://127.0.0.1") as client:
        yield {"ws": ws, "client": client, "bundle": bundle}
    ws.close()


def test_the_signature_marks_only_the_hashed_column(served: dict[str, Any]) -> None:
    sig = served["bundle"].signature
    fields = {f.name: f for f in sig.inputs}
    assert fields["city"].any_category and not fields["plan"].any_category
    again = Signature.from_dict(orjson.loads(orjson.dumps(sig.to_dict())))
    assert again == sig
    assert "any_category" not in sig.to_dict()["inputs"][2]  # other fields read as before


def test_an_unseen_category_of_a_hashed_column_is_scored_over_http(
    served: dict[str, Any],
) -> None:
    records = [
        {"a": 0.3, "city": "reykjavik", "plan": "pro"},  # never seen in training
        {"a": -1.0, "city": "oslo", "plan": "free"},
    ]
    resp = served["client"].post(
        "/v1/models/hashed:predict",
        content=orjson.dumps({"instances": records}),
        headers={"content-type": "application/json"},
    )
    assert resp.status_code == 200, resp.text
    body = resp.json()["predictions"]
    got = np.array([[p["probabilities"]["no"], p["probabilities"]["yes"]] for p in body])
    api = load_model(served["ws"], "hashed").predict(pd.DataFrame(records))
    np.testing.assert_allclose(got, api.probabilities, rtol=0, atol=1e-12)
    checked = served["bundle"].signature.check_frame(pd.DataFrame(records))
    assert not checked.any_flagged  # hashing has no vocabulary: nothing is unknown to it


def test_an_unseen_category_of_a_one_hot_column_is_still_refused(
    served: dict[str, Any],
) -> None:
    records = [{"a": 0.3, "city": "oslo", "plan": "enterprise"}]
    resp = served["client"].post(
        "/v1/models/hashed:predict",
        content=orjson.dumps({"instances": records}),
        headers={"content-type": "application/json"},
    )
    assert resp.status_code == 422, resp.text
    assert "plan" in resp.text
    with pytest.raises(InvalidInputError, match="never seen"):
        served["bundle"].signature.check_records(records)
