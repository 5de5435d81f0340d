"""scikit-learn estimators and pipelines, stored with skops (allowlisted types only)."""

from __future__ import annotations

import copy
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from loopml.registry.flavors.base import (
    ONNX_ML_OPSET,
    ONNX_OPSET,
    Flavor,
    NotConvertible,
    class_path,
    onnx_output,
)
from loopml.registry.safeload import load_skops

MEMBER = "model.skops"


class SklearnFlavor(Flavor):
    name = "sklearn"
    roots = ("sklearn",)
    members = (MEMBER,)
    skops_members = (MEMBER,)
    continues = "estimators with partial_fit (e.g. sklearn.linear_model.SGDClassifier)"
    needs_every_class = False  # partial_fit is told the classes

    def can_continue(self, cls: type) -> bool:
        return callable(getattr(cls, "partial_fit", None))

    def continue_training(
        self,
        model: Any,
        estimator: Any,
        x: Any,
        y: np.ndarray,
        *,
        task: str,
        classes: Sequence[Any] | None,
    ) -> Any:
        # the parent's fitted state goes on; this run's params do not replace it
        model = copy.deepcopy(model)
        if task == "classification":
            model.partial_fit(x, y, classes=np.asarray(classes))
        else:
            model.partial_fit(x, y)
        return model

    def save(self, model: Any) -> dict[str, bytes]:
        from loopml.registry.skopsio import skops_io

        sio = skops_io()

        return {MEMBER: sio.dumps(model)}

    def load(
        self,
        members: Mapping[str, bytes],
        *,
        trusted: Sequence[str],
        what: str,
        meta: Mapping[str, Any],
        checked: Mapping[str, set[str]] | None = None,
    ) -> Any:
        names = None if checked is None else checked.get(MEMBER)
        return load_skops(members[MEMBER], MEMBER, what, trusted, names=names)

    def to_onnx(self, model: Any, n_features: int, task: str) -> tuple[Any, str]:
        """skl2onnx: double input (exact for linear models; for trees, which scikit-learn
        runs on float32 input, the input is rounded to float32 first and the leaves summed
        in double, as scikit-learn does), float where the converter only has that."""
        from skl2onnx import convert_sklearn
        from skl2onnx.common.data_types import DoubleTensorType, FloatTensorType

        final = getattr(model, "steps", [[None, model]])[-1][1]
        options = {id(final): {"zipmap": False}} if task == "classification" else None
        problem = ""
        for tensor in (DoubleTensorType, FloatTensorType):
            try:
                onx = convert_sklearn(
                    model,
                    initial_types=[("x", tensor([None, n_features]))],
                    options=options,
                    target_opset={"": ONNX_OPSET, "ai.onnx.ml": ONNX_ML_OPSET},
                )
            except Exception as exc:  # skl2onnx raises many types for what it lacks
                problem = problem or f"{type(exc).__name__}: {exc}"
                continue
            if tensor is DoubleTensorType and _float_trees(final):
                _round_input_to_float32(onx)
            return onx, onnx_output(onx, task)
        public = ".".join(p for p in class_path(model).split(".") if not p.startswith("_"))
        raise NotConvertible(f"{public} has no ONNX converter ({' '.join(problem.split())[:200]})")

    def predict(self, model: Any, x: Any, task: str) -> np.ndarray:
        if task == "regression":
            return np.asarray(model.predict(x))
        return np.asarray(model.predict_proba(x), dtype=np.float64)


def _float_trees(model: Any) -> bool:
    """Trees and ensembles of trees: scikit-learn casts their input to float32."""
    module = type(model).__module__
    if module.startswith("sklearn.tree"):
        return True
    if not module.startswith("sklearn.ensemble"):
        return False
    inner = getattr(model, "estimator", None)
    return inner is None or type(inner).__module__.startswith("sklearn.tree")


def _round_input_to_float32(model: Any) -> None:
    """Make the graph read its double input rounded to float32 (still double), in place."""
    from onnx import TensorProto, helper

    graph = model.graph
    name = graph.input[0].name
    rounded = f"{name}__float32"
    for node in graph.node:
        node.input[:] = [rounded if n == name else n for n in node.input]
    casts = [
        helper.make_node("Cast", [name], [f"{name}__f"], to=TensorProto.FLOAT),
        helper.make_node("Cast", [f"{name}__f"], [rounded], to=TensorProto.DOUBLE),
    ]
    nodes = [*casts, *graph.node]
    del graph.node[:]
    graph.node.extend(nodes)
