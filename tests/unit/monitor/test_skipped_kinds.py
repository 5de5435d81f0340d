"""Features drift is not tested for are named with the reason for their own kind."""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

from loopml.monitor.check import _tested_kinds
from loopml.registry.signature import FeatureField, Signature


def _model(*fields: FeatureField) -> Any:
    sig = Signature(inputs=list(fields), target="y", task="classification", classes=[0, 1])
    return SimpleNamespace(signature=sig)


def test_a_text_feature_is_not_said_to_move_on_like_time() -> None:
    warnings: list[str] = []
    tested = _tested_kinds(
        _model(
            FeatureField("amount", "numeric", "float64"),
            FeatureField("review", "text", "object"),
            FeatureField("at", "datetime", "datetime64[ns]"),
        ),
        warnings,
    )
    assert tested == {"amount": "numeric"}
    assert len(warnings) == 2
    text = next(w for w in warnings if "review" in w)
    assert "times move on" not in text and "free text" in text
    when = next(w for w in warnings if "'at'" in w or " at " in w)
    assert "times move on by nature" in when


def test_only_tested_kinds_give_no_warning() -> None:
    warnings: list[str] = []
    _tested_kinds(_model(FeatureField("city", "categorical", "object", categories=["a"])), warnings)
    assert warnings == []
