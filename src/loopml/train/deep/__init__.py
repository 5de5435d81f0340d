"""Neural networks with PyTorch (``pip install 'loopml[torch]'``), trained from the project file.

``model.class`` names one of these estimators; torch itself is imported only when one is
fitted (see docs/deep-learning.md).
"""

from __future__ import annotations

from loopml.train.deep.estimators import (
    CNNClassifier,
    MLPClassifier,
    MLPRegressor,
    ModuleClassifier,
    ModuleRegressor,
)
from loopml.train.deep.recommender import MFRecommender

__all__ = [
    "CNNClassifier",
    "MFRecommender",
    "MLPClassifier",
    "MLPRegressor",
    "ModuleClassifier",
    "ModuleRegressor",
]
