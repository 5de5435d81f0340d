"""XGBoost, in its own JSON model format; predicts with the Booster.

The JSON form (not UBJSON) is kept so that loopml can read and check a model file in Python
before XGBoost's C++ loader sees it: that loader aborts the whole process on some damaged
input (an empty buffer does it), and follows tree indices without bounds checks. So every
tree's arrays must have its declared length, children must point forward inside the tree
(no cycle, nothing out of range) and splits must name a feature the model has, or the file
is an IntegrityError.

XGBoost's classifiers want labels 0..k-1, so the flavor fits on the index of each label in
the sorted classes, which the signature keeps; the objective is recorded in the manifest and
checked on load. Only objectives that answer probabilities (``binary:logistic``,
``multi:softprob``) are served for classification.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from loopml.errors import ConfigError, IntegrityError
from loopml.registry.flavors.base import (
    Flavor,
    binary_columns,
    booster_to_onnx,
    weight_kwargs,
)

MEMBER = "model.xgb.json"
_NODE_ARRAYS = (
    "left_children",
    "right_children",
    "parents",
    "split_indices",
    "split_conditions",
    "default_left",
)
PROBABILISTIC = ("binary:logistic", "multi:softprob")


class XGBoostFlavor(Flavor):
    name = "xgboost"
    roots = ("xgboost",)
    members = (MEMBER,)
    extra = "xgboost"
    continues = "any XGBoost estimator (xgb_model)"

    def defaults(self) -> dict[str, Any]:
        return {"verbosity": 0}

    def prepare(self, estimator: Any) -> Any:
        get = getattr(estimator, "get_booster", None)
        return get() if callable(get) else estimator

    def fit(
        self,
        estimator: Any,
        x: Any,
        y: np.ndarray,
        task: str,
        *,
        sample_weight: np.ndarray | None = None,
    ) -> tuple[Any, list[Any] | None]:
        weights = weight_kwargs(estimator, sample_weight)
        if task == "regression":
            return self.prepare(estimator.fit(x, y, **weights)), None
        classes, codes = np.unique(y, return_inverse=True)
        booster = self.prepare(estimator.fit(x, codes, **weights))
        _check_objective(booster)
        return booster, classes.tolist()

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
        target = y if task == "regression" else _codes(y, classes or [])
        # model.params' n_estimators more rounds on top of the parent's (left unchanged)
        return self.prepare(estimator.fit(x, target, xgb_model=model))

    def save(self, model: Any) -> dict[str, bytes]:
        return {MEMBER: bytes(model.save_raw(raw_format="json"))}

    def manifest(self, model: Any) -> dict[str, Any]:
        return {"objective": _objective(model), "format": "json"}

    def load(
        self,
        members: Mapping[str, bytes],
        *,
        trusted: Sequence[str],
        what: str,
        meta: Mapping[str, Any],
        checked: Mapping[str, set[str]] | None = None,
    ) -> Any:
        import xgboost

        raw = members[MEMBER]
        check_model_json(raw, what)
        booster = xgboost.Booster()
        booster.load_model(bytearray(raw))
        expected = meta.get("objective")
        if expected is not None and _objective(booster) != expected:
            raise IntegrityError(
                f"{what}: {MEMBER} has objective {_objective(booster)!r}, the manifest "
                f"{expected!r}",
                where={"artifact": what, "file": MEMBER},
                hint="The file is damaged or was not written by loopml; retrain the model",
            )
        return booster

    def to_onnx(self, model: Any, n_features: int, task: str) -> tuple[Any, str]:
        """onnxmltools' XGBoost converter (float input: it has no double one)."""
        return booster_to_onnx("convert_xgboost", model, n_features, task)

    def predict(self, model: Any, x: Any, task: str) -> np.ndarray:
        raw = np.asarray(model.inplace_predict(x), dtype=np.float64)
        return raw if task == "regression" else binary_columns(raw)


def _objective(booster: Any) -> str:
    return str(json.loads(booster.save_config())["learner"]["objective"]["name"])


def _check_objective(booster: Any) -> None:
    objective = _objective(booster)
    if objective not in PROBABILISTIC:
        raise ConfigError(
            f"XGBoost objective {objective!r} does not answer class probabilities",
            where={"field": "model.params.objective"},
            hint=f"loopml serves class probabilities; use one of {', '.join(PROBABILISTIC)}",
        )


def _codes(y: np.ndarray, classes: Sequence[Any]) -> np.ndarray:
    index = {c: i for i, c in enumerate(classes)}
    return np.asarray([index[v] for v in np.asarray(y).tolist()], dtype=np.int64)


def check_model_json(raw: bytes, what: str) -> None:
    """IntegrityError unless ``raw`` is an XGBoost JSON model whose trees are well formed."""
    try:
        problem = _problem(json.loads(raw))
    except (ValueError, TypeError, KeyError, AttributeError, OverflowError) as exc:
        problem = f"{type(exc).__name__}: {exc}"[:200]
    if problem is not None:
        raise IntegrityError(
            f"{what}: {MEMBER} is not an XGBoost model loopml reads ({problem})",
            where={"artifact": what, "file": MEMBER},
            hint="The file is damaged or was not written by loopml; retrain the model",
        )


def _problem(doc: Any) -> str | None:
    learner = doc["learner"]
    n_features = int(learner["learner_model_param"]["num_feature"])
    booster = learner["gradient_booster"]
    kind = booster["name"]
    if kind == "gblinear":
        weights = np.asarray(booster["model"]["weights"], dtype=np.float64)
        return None if weights.ndim == 1 else "linear weights that are not a list of numbers"
    if kind not in ("gbtree", "dart"):
        return f"booster {kind!r}"
    model = (booster["gbtree"] if kind == "dart" else booster)["model"]
    trees = model["trees"]
    if not isinstance(trees, list) or len(trees) != int(model["gbtree_model_param"]["num_trees"]):
        return "a tree count that does not match its trees"
    if len(model["tree_info"]) != len(trees):
        return "a tree_info that does not match its trees"
    for i, tree in enumerate(trees):
        problem = _tree_problem(tree, n_features)
        if problem is not None:
            return f"tree {i}: {problem}"
    return None


def _tree_problem(tree: Any, n_features: int) -> str | None:
    n = int(tree["tree_param"]["num_nodes"])
    if n < 1:
        return "no nodes"
    arrays = {k: np.asarray(tree[k]) for k in _NODE_ARRAYS}
    for key, values in arrays.items():
        if values.shape != (n,):
            return f"{key} of shape {values.shape}, not ({n},)"
    left = arrays["left_children"].astype(np.int64)
    right = arrays["right_children"].astype(np.int64)
    ids = np.arange(n)
    leaf = left == -1
    if not np.array_equal(leaf, right == -1):
        return "a node with one child"
    # children after their parent: every walk from the root ends inside the tree
    inner = ~leaf
    if ((left[inner] <= ids[inner]) | (left[inner] >= n)).any() or (
        (right[inner] <= ids[inner]) | (right[inner] >= n)
    ).any():
        return "a child index out of order or out of range"
    split = arrays["split_indices"].astype(np.int64)
    if ((split[inner] < 0) | (split[inner] >= n_features)).any():
        return "a split on a feature the model does not have"
    return None
