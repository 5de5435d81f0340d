"""Neural networks with PyTorch (``pip install 'loopml[torch]'``), trained from the project file.

``model.class`` names one of these estimators; torch itself is imported only when one is
fitted (see docs/deep-learning.md).

Names load on first use: importing this package (as each DDP worker process does, to reach
:mod:`loopml.train.deep.ddp`) imports neither the estimators (scikit-learn) nor the
recommender (pandas), only what the module asked for.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from loopml.utils import lazy_exports

if TYPE_CHECKING:
    from loopml.train.deep.estimators import (
        CNNClassifier,
        MLPClassifier,
        MLPRegressor,
        ModuleClassifier,
        ModuleRegressor,
    )
    from loopml.train.deep.recommender import MFRecommender

_LAZY = {
    "CNNClassifier": "loopml.train.deep.estimators",
    "MFRecommender": "loopml.train.deep.recommender",
    "MLPClassifier": "loopml.train.deep.estimators",
    "MLPRegressor": "loopml.train.deep.estimators",
    "ModuleClassifier": "loopml.train.deep.estimators",
    "ModuleRegressor": "loopml.train.deep.estimators",
}

__getattr__ = lazy_exports(__name__, _LAZY)


def __dir__() -> list[str]:
    return sorted({*globals(), *_LAZY})


__all__ = [
    "CNNClassifier",
    "MFRecommender",
    "MLPClassifier",
    "MLPRegressor",
    "ModuleClassifier",
    "ModuleRegressor",
]
