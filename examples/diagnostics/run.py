"""The loop from Python on scikit-learn's breast-cancer data.

python examples/diagnostics/run.py [WORKSPACE]
"""

from __future__ import annotations

import sys
import tempfile
from pathlib import Path

from sklearn.datasets import load_breast_cancer

import loopml

HERE = Path(__file__).parent


def main(workspace: str) -> dict[str, object]:
    frame = load_breast_cancer(as_frame=True).frame
    with loopml.init(workspace) as ws:
        loopml.ingest(ws, frame, "breast_cancer")
        result = loopml.train(ws, loopml.ProjectConfig.from_file(HERE / "loopml.yaml"))
        model = loopml.load_model(ws, "diagnosis")  # the champion
        sample = frame.drop(columns=["target"]).sample(100, random_state=0)
        prediction = model.predict(sample)
        same = loopml.check_drift(ws, "diagnosis", data=sample)
        shifted = loopml.check_drift(ws, "diagnosis", data=sample * 1.4)
        return {
            "version": model.version,
            "holdout_roc_auc": result.run.metrics["holdout"]["roc_auc"],
            "predicted_benign": int((prediction.labels == 1).sum()),
            "drift_on_same_distribution": same.drifted,
            "drift_on_shifted_sample": shifted.drifted,
            "report": shifted.report_url,
        }


if __name__ == "__main__":
    ws = sys.argv[1] if len(sys.argv) > 1 else tempfile.mkdtemp(prefix="loopml-diagnostics-")
    for key, value in main(ws).items():
        print(f"{key}: {value}")
