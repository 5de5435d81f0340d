"""The windowed ROC-AUC of the online metrics (ranks, ties counted one half) equals
scikit-learn's, with many ties, none, and the degenerate windows."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.metrics import roc_auc_score

from loopml.train.online.metrics import roc_auc


@pytest.mark.parametrize("decimals", [None, 3, 1, 0])
def test_roc_auc_equals_scikit_learn_with_ties(decimals: int | None) -> None:
    rng = np.random.default_rng(7)
    for n in (2, 3, 10, 1000):
        y = rng.random(n) < 0.4
        y[0], y[-1] = True, False  # both classes
        scores = rng.random(n)
        if decimals is not None:
            scores = np.round(scores, decimals)  # 0 decimals: two distinct values at most
        got = roc_auc(y, scores)
        assert got == pytest.approx(roc_auc_score(y, scores), abs=1e-12)


def test_roc_auc_of_one_class_or_equal_scores() -> None:
    assert roc_auc(np.array([True, True]), np.array([0.1, 0.9])) is None
    assert roc_auc(np.array([False, False]), np.array([0.1, 0.9])) is None
    assert roc_auc(np.array([True, False, True]), np.array([0.5, 0.5, 0.5])) == 0.5
    assert roc_auc(np.array([True, False]), np.array([-0.0, 0.0])) == 0.5  # one value
