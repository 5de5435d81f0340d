"""Training: trainers, runs and their lineage."""

from loopml.train.estimators import make_estimator
from loopml.train.fit import fit_bundle, fit_prepared, infer_task
from loopml.train.trainer import TrainResult, train

__all__ = ["TrainResult", "fit_bundle", "fit_prepared", "infer_task", "make_estimator", "train"]
