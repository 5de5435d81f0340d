"""LightGBM, in its own text model format; predicts with the Booster, as after a reload."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from loopml.registry.flavors.base import Flavor, binary_columns, booster_to_onnx

MEMBER = "model.lgb.txt"


class LightGBMFlavor(Flavor):
    name = "lightgbm"
    roots = ("lightgbm",)
    members = (MEMBER,)
    extra = "lightgbm"
    continues = "any LightGBM estimator (init_model)"

    def defaults(self) -> dict[str, Any]:
        return {"verbose": -1}

    def prepare(self, estimator: Any) -> Any:
        return getattr(estimator, "booster_", estimator)

    def can_continue(self, cls: type) -> bool:
        return True

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
        # model.params' n_estimators more trees on top of the parent's (which is unchanged)
        return estimator.fit(x, y, init_model=model).booster_

    def save(self, model: Any) -> dict[str, bytes]:
        return {MEMBER: model.model_to_string().encode()}

    def load(
        self,
        members: Mapping[str, bytes],
        *,
        trusted: Sequence[str],
        what: str,
        meta: Mapping[str, Any],
        checked: Mapping[str, set[str]] | None = None,
    ) -> Any:
        import lightgbm

        return lightgbm.Booster(model_str=members[MEMBER].decode())

    def to_onnx(self, model: Any, n_features: int, task: str) -> tuple[Any, str]:
        """onnxmltools' LightGBM converter (float input: it has no double one)."""
        onx, output = booster_to_onnx("convert_lightgbm", model, n_features, task, zipmap=False)
        _in_double(onx, model)
        return onx, output

    def predict(self, model: Any, x: Any, task: str) -> np.ndarray:
        raw = np.asarray(model.predict(x), dtype=np.float64)
        return raw if task == "regression" else binary_columns(raw)


#: the tree-ensemble attributes that hold float numbers, and their double (tensor) forms
_AS_TENSOR = {
    "nodes_values": "nodes_values_as_tensor",
    "target_weights": "target_weights_as_tensor",
    "class_weights": "class_weights_as_tensor",
    "base_values": "base_values_as_tensor",
}


def _in_double(onx: Any, booster: Any) -> None:
    """Make the converted trees compare and sum in double, as LightGBM does, in place.

    onnxmltools writes thresholds and leaf values as float32, so an input between a
    threshold and its float32 neighbour goes the other way, and regression sums lose
    digits. Each float is mapped back to the one double of its tree (from the booster's own
    dump) that rounds to it; the trees then take double input (ai.onnx.ml opset 3). Left as
    it is when any number does not map back to exactly one double."""
    from onnx import TensorProto, helper

    trees = booster.dump_model().get("tree_info", [])
    splits: list[dict[float, set[float]]] = []
    leaves: list[dict[float, set[float]]] = []
    for tree in trees:
        s: dict[float, set[float]] = {}
        leaf: dict[float, set[float]] = {}
        todo = [tree.get("tree_structure", {})]
        while todo:
            node = todo.pop()
            if "leaf_value" in node:
                v = float(node["leaf_value"])
                leaf.setdefault(float(np.float32(v)), set()).add(v)
                continue
            t = node.get("threshold")
            if isinstance(t, int | float):
                s.setdefault(float(np.float32(t)), set()).add(float(t))
            todo.extend(node[k] for k in ("left_child", "right_child") if k in node)
        splits.append(s)
        leaves.append(leaf)
    graph = onx.graph
    ensembles = [n for n in graph.node if n.op_type.startswith("TreeEnsemble")]
    if len(ensembles) != 1 or len(graph.input) != 1:
        return
    node = ensembles[0]
    attrs = {a.name: a for a in node.attribute}
    modes = [m.decode() for m in attrs["nodes_modes"].strings]
    changes: dict[str, list[float]] = {}
    for name, table, ids in (
        ("nodes_values", splits, "nodes_treeids"),
        ("target_weights", leaves, "target_treeids"),
        ("class_weights", leaves, "class_treeids"),
    ):
        if name not in attrs:
            continue
        values: list[float] = []
        for i, (f, tree) in enumerate(zip(attrs[name].floats, attrs[ids].ints, strict=True)):
            if name == "nodes_values" and modes[i] == "LEAF":
                values.append(float(f))
                continue
            if tree >= len(table):
                return
            found = table[tree].get(float(np.float32(f)), set())
            if len(found) != 1:
                return  # no double, or two that round alike: keep the float trees
            values.append(next(iter(found)))
        changes[name] = values
    if "base_values" in attrs:
        changes["base_values"] = [float(v) for v in attrs["base_values"].floats]
    kept = [a for a in node.attribute if a.name not in changes]
    del node.attribute[:]
    node.attribute.extend(kept)
    for name, values in changes.items():
        tensor = helper.make_tensor(_AS_TENSOR[name], TensorProto.DOUBLE, [len(values)], values)
        node.attribute.append(helper.make_attribute(_AS_TENSOR[name], tensor))
    graph.input[0].type.tensor_type.elem_type = TensorProto.DOUBLE
    for op in onx.opset_import:
        if op.domain == "ai.onnx.ml":
            op.version = max(op.version, 3)
