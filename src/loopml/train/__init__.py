"""Training: trainers, runs and their lineage."""

from loopml.train.estimators import make_estimator
from loopml.train.trainer import TrainResult, infer_task, train

__all__ = ["TrainResult", "infer_task", "make_estimator", "train"]
