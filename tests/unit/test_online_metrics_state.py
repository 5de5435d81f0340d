"""The prequential metrics' windows and ROC-AUC bins written directly (column checks in C
loops) are the trees the generic encoder writes, and anything it must write itself (a NaN,
an integer past 64 bits, a label of another type) is left to it."""

from __future__ import annotations

import random
from collections import deque
from typing import Any

import pytest

from loopml.registry.flavors.river_state import encode
from loopml.train.online.metrics import AUC_BINS, _dense, _plain_window, _sparse

rnd = random.Random(7)
PLAIN: list[list[Any]] = [
    [rnd.random() < 0.5 for _ in range(300)],
    [rnd.random() * 30 for _ in range(300)],
    [(rnd.random() < 0.5, rnd.random()) for _ in range(300)],
    [(rnd.choice(["a", "b"]), None) for _ in range(20)],
    [(1, 0.5), (0, 0.25), (2**63 - 1, 1.0)],
    [True, 1, 2.5, "x", None, -(2**63)],
    [(1, 2, 3), (4, 5, 6)],
    [(1, 0.5), 3, "x"],
    [1e308, 1e308, -1e308],  # finite, though their sum is not
    [(True, 1e308), (False, 1e308), (True, None)],
    [],
]
NEEDS_ENCODER: list[list[Any]] = [
    [0.5, float("nan")],
    [1.0, float("inf")],
    [1, 2**64],
    [(True, float("nan"))],
    [(2**70, 0.5)],
    [(1, 0.5), (b"bytes", 0.5)],
    [[1]],
    [(1, 0.5), [1, 0.5]],
]


@pytest.mark.parametrize("window", PLAIN)
def test_plain_windows_are_the_encoders_tree(window: list[Any]) -> None:
    got = _plain_window(deque(window))
    assert got == encode(list(window), "metrics.w")
    assert [type(v) for v in got or []] == [type(v) for v in encode(list(window), "w")]


@pytest.mark.parametrize("window", NEEDS_ENCODER)
def test_windows_the_encoder_must_write_are_left_to_it(window: list[Any]) -> None:
    assert _plain_window(deque(window)) is None


def test_sparse_bins_round_trip() -> None:
    dense = [0] * AUC_BINS
    for b in rnd.sample(range(AUC_BINS), 40):
        dense[b] = rnd.randint(1, 10**12)
    sparse = _sparse(dense)
    assert sparse[0::2] == sorted(b for b, c in enumerate(dense) if c)
    assert all(type(v) is int for v in sparse)
    assert _dense([sparse, _sparse([0] * AUC_BINS)]) == (dense, [0] * AUC_BINS)


def test_framed_pairs_of_finite_scores_whose_sum_overflows() -> None:
    import orjson

    from loopml.train.online.metrics import _framed_pairs

    window = deque([(1, 1e308), (0, 1e308), (1, None), (0, 0.0)])
    framed = _framed_pairs(window)
    assert framed is not None
    assert orjson.dumps(framed) == orjson.dumps(_plain_window(window))
    assert _framed_pairs(deque([(1, 1e308), (0, float("inf"))])) is None
