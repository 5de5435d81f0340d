"""The Router: sticky, stable assignment; canary steps move only the keys between."""

from __future__ import annotations

import time
from collections import Counter

import pytest

from loopml.errors import InvalidInputError
from loopml.serve.rollout import Router
from loopml.stores.records import Deployment

KEYS = [f"user-{i}" for i in range(10_000)]


def _canary(pct: float, name: str = "m") -> Router:
    return Router(Deployment(name, "canary", ((3, 100 - pct), (4, pct))))


def test_a_key_always_gets_the_same_version_across_routers() -> None:
    first, second = _canary(30), _canary(30)
    assert [first.pick(k) for k in KEYS[:2000]] == [second.pick(k) for k in KEYS[:2000]]
    assert all(first.pick("user-7") == first.pick("user-7") for _ in range(100))


def test_the_hash_is_stable_not_pythons_salted_hash() -> None:
    # a known value: the same in every process and every Python (hash() is salted per run)
    point = _canary(10).point("user-1")
    assert point == Router.single("m", 1).point("user-1") == 0.17572233427452735
    assert 0.0 <= point < 1.0
    assert Router.single("other", 1).point("user-1") != point  # salted by the served name


def test_raising_a_canary_from_10_to_20_moves_about_10_percent_and_never_back() -> None:
    before, after = _canary(10), _canary(20)
    old = {k: before.pick(k) for k in KEYS}
    new = {k: after.pick(k) for k in KEYS}
    moved = [k for k in KEYS if old[k] != new[k]]
    assert 0.08 <= len(moved) / len(KEYS) <= 0.12
    assert all(old[k] == 3 and new[k] == 4 for k in moved)  # primary -> canary only
    assert not [k for k in KEYS if old[k] == 4 and new[k] == 3]
    share = Counter(new.values())[4] / len(KEYS)
    assert 0.18 <= share <= 0.22


def test_lowering_a_canary_only_takes_keys_back_from_it() -> None:
    old = {k: _canary(20).pick(k) for k in KEYS}
    new = {k: _canary(5).pick(k) for k in KEYS}
    moved = [k for k in KEYS if old[k] != new[k]]
    assert all(old[k] == 4 and new[k] == 3 for k in moved)
    assert 0.13 <= len(moved) / len(KEYS) <= 0.17


def test_ab_weights_are_honoured_over_10000_keys() -> None:
    router = Router(Deployment("m", "ab", ((3, 60), (4, 30), (5, 10))))
    counts = Counter(router.pick(k) for k in KEYS)
    assert abs(counts[3] / len(KEYS) - 0.60) < 0.03
    assert abs(counts[4] / len(KEYS) - 0.30) < 0.03
    assert abs(counts[5] / len(KEYS) - 0.10) < 0.02
    assert router.shares() == pytest.approx({3: 0.6, 4: 0.3, 5: 0.1})


def test_changing_ab_weights_moves_only_the_difference() -> None:
    before = Router(Deployment("m", "ab", ((3, 90), (4, 10))))
    after = Router(Deployment("m", "ab", ((3, 80), (4, 20))))
    moved = [k for k in KEYS if before.pick(k) != after.pick(k)]
    assert 0.08 <= len(moved) / len(KEYS) <= 0.12
    assert all(before.pick(k) == 3 for k in moved)


def test_the_ab_layout_does_not_depend_on_the_order_written() -> None:
    one = Router(Deployment("m", "ab", ((3, 70), (4, 30))))
    other = Router(Deployment("m", "ab", ((4, 30), (3, 70))))
    assert [one.pick(k) for k in KEYS[:3000]] == [other.pick(k) for k in KEYS[:3000]]


def test_without_a_key_the_pick_is_random_and_follows_the_weights() -> None:
    router = _canary(25)
    picks = Counter(router.pick(None) for _ in range(10_000))
    assert abs(picks[4] / 10_000 - 0.25) < 0.03
    assert len({router.point(None) for _ in range(100)}) == 100
    assert len({router.point("") for _ in range(100)}) == 100  # an empty key is no key


def test_versions_hold_the_answering_ones_and_the_shadow() -> None:
    router = Router(Deployment("m", "canary", ((3, 95), (4, 5)), shadow=5))
    assert router.versions == {3, 4, 5}
    assert router.shadow == 5
    assert 5 not in {router.pick(k) for k in KEYS[:3000]}  # the shadow never answers


def test_a_canary_at_0_or_100_percent() -> None:
    assert {_canary(0).pick(k) for k in KEYS[:1000]} == {3}
    assert _canary(0).versions == {3}
    assert {_canary(100).pick(k) for k in KEYS[:1000]} == {4}


def test_single_sends_everything_to_one_version() -> None:
    router = Router.single("m", 7)
    assert {router.pick(k) for k in KEYS[:1000]} | {router.pick(None)} == {7}
    assert router.versions == {7} and router.shadow is None


def test_a_deployment_without_traffic_is_refused() -> None:
    with pytest.raises(InvalidInputError, match="no traffic"):
        Router(Deployment("m", "ab", ((3, 0), (4, 0))))


def test_unicode_and_odd_keys() -> None:
    router = _canary(50)
    for key in ["ü", "😀", "\udcff", "a" * 10_000, " "]:
        assert router.pick(key) in {3, 4}
        assert router.pick(key) == router.pick(key)


def test_a_pick_takes_microseconds() -> None:
    router = Router(Deployment("m", "ab", ((3, 50), (4, 30), (5, 20))))
    n = 20_000
    start = time.perf_counter()
    for key in KEYS * 2:
        router.pick(key)
    per_pick = (time.perf_counter() - start) / n
    # about 1 µs on a laptop; a loose bound so a busy CI machine does not fail it
    assert per_pick < 50e-6, f"{per_pick * 1e6:.1f} µs per pick"
