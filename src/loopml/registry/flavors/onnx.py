"""ONNX models a user brings (``loopml models import model.onnx``), run with ONNX Runtime.

The file is kept as it came (``model.onnx`` in the bundle). Loading it runs no user code: it
must use only the standard ``ai.onnx`` / ``ai.onnx.ml`` operators, define no functions and
hold no external data (:func:`loopml.registry.compiled.check_onnx`), take one numeric input
``[N, features]`` (float or double) and answer, for a classifier, class probabilities: a
``[N, classes]`` tensor (the output named ``probabilities``, else the second) or the
sequence of maps of a ZipMap. The bundle's feature pipeline hands the numeric columns of
the signature to it in order, so the signature of an imported ONNX model is numeric only.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from loopml.errors import IntegrityError, InvalidInputError
from loopml.registry.flavors.base import Flavor

MEMBER = "model.onnx"
IMPORT_HINT = (
    "Export the model again with skl2onnx, onnxmltools or torch.onnx using the standard "
    "operators only, or import the model it was converted from"
)
_FLOAT, _DOUBLE = 1, 11  # onnx.TensorProto.FLOAT, DOUBLE


class OnnxModel:
    """A checked ONNX graph, its ONNX Runtime session and the input and output it uses."""

    def __init__(self, data: bytes, what: str, output: str | None = None) -> None:
        from loopml.registry.compiled import _session, check_onnx

        proto = check_onnx(data, what, subject="the ONNX model", hint=IMPORT_HINT)
        graph = proto.graph
        if not len(graph.node) or not len(graph.output):
            raise IntegrityError(
                f"{what} is not an ONNX model with a graph (it has no operators or no outputs)",
                where={"artifact": what},
                hint=IMPORT_HINT,
            )
        initialized = {i.name for i in graph.initializer}
        inputs = [i for i in graph.input if i.name not in initialized]
        if len(inputs) != 1:
            raise InvalidInputError(
                f"{what} takes {len(inputs)} inputs; loopml feeds an ONNX model one "
                "[N, features] tensor",
                where={"artifact": what},
                hint="Export the model with a single input holding every feature",
            )
        tensor = inputs[0].type.tensor_type
        dims = [d.dim_value if d.HasField("dim_value") else None for d in tensor.shape.dim]
        if not inputs[0].type.HasField("tensor_type") or tensor.elem_type not in (
            _FLOAT,
            _DOUBLE,
        ):
            raise InvalidInputError(
                f"{what} takes input {inputs[0].name!r} of a type other than a float or "
                "double tensor",
                where={"artifact": what},
                hint="Export the model with a float (or double) [N, features] input",
            )
        if len(dims) != 2:
            raise InvalidInputError(
                f"{what} takes a {len(dims)}-dimensional input; loopml feeds [N, features]",
                where={"artifact": what},
                hint="Export the model with a 2-dimensional [N, features] input",
            )
        self.data = bytes(data)
        self.input = inputs[0].name
        self.dtype = np.float32 if tensor.elem_type == _FLOAT else np.float64
        self.n_features: int | None = dims[1] or None
        self.outputs = [o.name for o in graph.output]
        self.output = output or _probabilities(graph)
        if self.output not in self.outputs:
            raise IntegrityError(
                f"{what} has no output {self.output!r} (it has {', '.join(self.outputs)})",
                where={"artifact": what},
                hint="The file is damaged or was not written by loopml; import it again",
            )
        self.classes = _class_labels(graph)
        self.zipmap = _producer(graph, self.output) == "ZipMap"
        self.width = _width(graph, self.output)
        self.session = _session(self.data, what, hint=IMPORT_HINT)

    def run(self, x: Any) -> Any:
        arr = np.ascontiguousarray(np.asarray(x, dtype=self.dtype))
        return self.session.run([self.output], {self.input: arr})[0]


def _probabilities(graph: Any) -> str:
    """The output holding class probabilities (``probabilities``, else the second), or the
    only output (a regressor)."""
    names = [o.name for o in graph.output]
    if "probabilities" in names:
        return "probabilities"
    return str(names[1] if len(names) > 1 else names[0]) if names else ""


def _producer(graph: Any, value: str) -> str | None:
    for node in graph.node:
        if value in node.output:
            return str(node.op_type)
    return None


def _width(graph: Any, value: str) -> int | None:
    for o in graph.output:
        if o.name == value and o.type.HasField("tensor_type"):
            dims = o.type.tensor_type.shape.dim
            if len(dims) == 2 and dims[1].HasField("dim_value"):
                return int(dims[1].dim_value)
    return None


def _class_labels(graph: Any) -> list[Any] | None:
    """The class labels an ``ai.onnx.ml`` classifier or ZipMap node declares, in the order
    of its probability columns; None when no node declares them."""
    for node in graph.node:
        for attr in node.attribute:
            if attr.name == "classlabels_int64s" and len(attr.ints):
                return [int(v) for v in attr.ints]
            if attr.name == "classlabels_strings" and len(attr.strings):
                return [v.decode() for v in attr.strings]
    return None


class OnnxFlavor(Flavor):
    name = "onnx"
    members = (MEMBER,)
    extra = "onnx"

    def handles(self, estimator_or_class_path: object) -> bool:
        return isinstance(estimator_or_class_path, OnnxModel)

    def save(self, model: Any) -> dict[str, bytes]:
        return {MEMBER: model.data}

    def manifest(self, model: Any) -> dict[str, Any]:
        return {"input": model.input, "output": model.output}

    def load(
        self,
        members: Mapping[str, bytes],
        *,
        trusted: Sequence[str],
        what: str,
        meta: Mapping[str, Any],
        checked: Mapping[str, set[str]] | None = None,
    ) -> Any:
        output = meta.get("output")
        return OnnxModel(members[MEMBER], what, output if isinstance(output, str) else None)

    def params(self, estimator: Any) -> dict[str, Any]:
        return {"input": estimator.input, "output": estimator.output}

    def to_onnx(self, model: Any, n_features: int, task: str) -> tuple[Any, str]:
        """The model's own graph; a ZipMap's input (the probability tensor) stands for its
        output."""
        import onnx

        proto = onnx.ModelProto.FromString(model.data)
        output = model.output
        if model.zipmap:
            output = next(n.input[0] for n in proto.graph.node if output in n.output)
        return proto, output

    def predict(self, model: Any, x: Any, task: str) -> np.ndarray:
        raw = model.run(x)
        if task == "regression":
            return np.asarray(raw, dtype=np.float64).reshape(len(x), -1)[:, 0]
        if isinstance(raw, list):  # a ZipMap: one {class: probability} per row
            classes = model.classes if model.classes is not None else sorted(raw[0])
            return np.array([[row[c] for c in classes] for row in raw], dtype=np.float64)
        proba = np.asarray(raw, dtype=np.float64)
        if proba.ndim == 1 or proba.shape[1] == 1:  # P(positive) only
            p = proba.reshape(-1)
            return np.column_stack([1.0 - p, p])
        return proba


__all__ = ["MEMBER", "OnnxFlavor", "OnnxModel"]
