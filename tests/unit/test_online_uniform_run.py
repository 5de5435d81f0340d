"""``fast.uniform_run``: the bulk check that a run of events all have one known shape (field
names in order, value types) says so exactly when checking each event would."""

from __future__ import annotations

from typing import Any

import pytest

from loopml.train.online.fast import uniform_run

NAMES = ("a", "b", "y")


def _shape_of(record: dict[str, Any]) -> tuple[tuple[str, ...], tuple[type, ...]]:
    return tuple(record), tuple(map(type, record.values()))


def _each(records: list[Any], start: int, limit: int, shapes: dict[Any, Any]) -> Any:
    """What checking each record gives: the shape of all, or None."""
    if start >= limit or records[start] is None:
        return None
    found = shapes.get(_shape_of(records[start]))
    for r in records[start:limit]:
        if r is None or shapes.get(_shape_of(r)) is not found:
            return None
        if _shape_of(r) != _shape_of(records[start]):
            return None
    return found


def _row(i: int) -> dict[str, Any]:
    return {"a": i * 0.5, "b": i * 0.25, "y": i % 2}


CASES: list[list[Any]] = [
    [_row(i) for i in range(10)],
    [_row(0), None, _row(2)],
    [_row(0), {"b": 0.25, "a": 0.5, "y": 1}, _row(2)],  # another order
    [_row(0), {"a": 1, "b": 0.25, "y": 1}],  # an integer for a float
    [_row(0), {"a": 0.5, "y": 1}, {"b": 0.5, "a": 0.5, "y": 1, "c": 1.0}],  # one less, one more
    [_row(0), {"a": 0.5, "b": 0.5}, {"y": 0, "a": 0.5, "b": 0.5}],  # names shifted across
    [{"a": 0.5, "y": 1}, {"a": 0.5, "y": 1}],  # a shape not known
    [None, _row(1)],
    [_row(0)],
]


@pytest.mark.parametrize("records", CASES)
def test_uniform_run_is_the_check_of_each_event(records: list[Any]) -> None:
    known = _shape_of(_row(0))
    shape = object()
    shapes = {known: shape}
    for start in range(len(records) + 1):
        for limit in range(start, len(records) + 1):
            assert uniform_run(records, start, limit, shapes) is _each(
                records, start, limit, shapes
            ), (start, limit)
