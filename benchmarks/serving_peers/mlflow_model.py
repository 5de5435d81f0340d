"""Save the benchmark's joblib model as an MLflow model, for ``mlflow models serve``.

Run with the peers' Python (mlflow is not a dependency of loopml)::

    /tmp/peers-venv/bin/python benchmarks/serving_peers/mlflow_model.py MODEL.joblib OUT_DIR

The model answers ``predict_proba`` (``pyfunc_predict_fn``), so ``POST /invocations`` with
``{"dataframe_split": {"columns": [...], "data": [[...]]}}`` answers
``{"predictions": [[p0, p1]]}``.
"""

from __future__ import annotations

import sys

import joblib
import mlflow.sklearn


def main() -> int:
    model_path, out_dir = sys.argv[1], sys.argv[2]
    # cloudpickle: mlflow's default (skops) refuses LightGBM's types; this is the peer's
    # own model file, written and read by the benchmark only
    mlflow.sklearn.save_model(
        joblib.load(model_path),
        out_dir,
        serialization_format="cloudpickle",
        pyfunc_predict_fn="predict_proba",
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
