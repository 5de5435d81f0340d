"""What an imported SavedModel is taken for, from its output's width and --task."""

from __future__ import annotations

import pytest

from loopml.errors import InvalidInputError
from loopml.registry.flavors.keras_savedmodel import _is_io, _task_of


def test_the_task_follows_the_output_width_or_the_flag() -> None:
    assert _task_of(3, None, "m") == ("classification", [0, 1, 2])
    assert _task_of(1, None, "m") == ("regression", None)
    assert _task_of(None, "regression", "m") == ("regression", None)


@pytest.mark.parametrize(
    ("width", "task", "message"),
    [
        (3, "regression", "answers 3 values per row; a regressor answers one"),
        (1, "classification", "a classifier answers one probability per class"),
    ],
)
def test_an_output_that_does_not_fit_the_task_names_the_field(
    width: int, task: str, message: str
) -> None:
    with pytest.raises(InvalidInputError, match=message) as err:
        _task_of(width, task, "m")
    assert err.value.where["field"] == "task"


def test_operators_that_touch_files_or_run_python_are_recognised() -> None:
    for op in ("ReadFile", "WriteFile", "PyFunc", "EagerPyFunc", "TFRecordDataset", "SaveV2"):
        assert _is_io(op), op
    for op in ("MatMul", "AddV2", "Softmax", "ReadVariableOp", "StatefulPartitionedCall"):
        assert not _is_io(op), op
