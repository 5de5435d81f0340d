"""Training: trainers, runs and their lineage.

Names load on first use: importing this package is cheap (see ``loopml/__init__.py``, which
imports it early so that ``loopml.train`` stays the function users call).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from loopml.utils import lazy_exports

if TYPE_CHECKING:
    from loopml.train.estimators import make_estimator
    from loopml.train.fit import fit_bundle, fit_prepared, infer_task
    from loopml.train.trainer import TrainResult, train

_LAZY = {
    "TrainResult": "loopml.train.trainer",
    "fit_bundle": "loopml.train.fit",
    "fit_prepared": "loopml.train.fit",
    "infer_task": "loopml.train.fit",
    "make_estimator": "loopml.train.estimators",
    "train": "loopml.train.trainer",
}


__getattr__ = lazy_exports(__name__, _LAZY)


__all__ = ["TrainResult", "fit_bundle", "fit_prepared", "infer_task", "make_estimator", "train"]
