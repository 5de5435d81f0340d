"""Checks of loaded models whose native code trusts the indices and sizes they hold.

scikit-learn's decision trees and histogram-boosting predictors walk their nodes in compiled
code without bounds checks, and libsvm sizes its loops by the arrays it is handed: a crafted
file whose indices or shapes disagree would read (or write) memory out of bounds on the
first prediction. skops can only check the *types* in a file, so loopml checks the *contents*
here, right after loading and before anything predicts: tree children come after their
parent (so walks end) and inside the node array, features inside the columns the owning
estimator is given, ensembles hand every member the columns they were validated for, and a
support vector machine's arrays agree with each other.
"""

from __future__ import annotations

import sys
from collections.abc import Iterator
from typing import Any

import numpy as np

from loopml.errors import IntegrityError


def check_structure(obj: Any, what: str) -> None:
    """Raise IntegrityError when a tree inside ``obj`` has indices that point outside it."""
    # Only the classes whose module is already imported: an object of a class (or of a
    # subclass of one) exists only once its module has been, so a model without trees or
    # support vectors (LightGBM's, a linear one) costs no import of scikit-learn's ensembles.
    hgb = "sklearn.ensemble._hist_gradient_boosting"
    forest = _loaded("sklearn.ensemble._forest", "BaseForest")
    boosting = _loaded("sklearn.ensemble._gb", "BaseGradientBoosting")
    hist_boosting = _loaded(f"{hgb}.gradient_boosting", "BaseHistGradientBoosting")
    predictor = _loaded(f"{hgb}.predictor", "TreePredictor")
    libsvm = _loaded("sklearn.svm._base", "BaseLibSVM")
    decision_tree = _loaded("sklearn.tree._classes", "BaseDecisionTree")
    tree = _loaded("sklearn.tree._tree", "Tree")
    kinds = (forest, boosting, hist_boosting, predictor, libsvm, decision_tree, tree)
    if all(k is _Absent for k in kinds):
        return
    for item in _objects(obj):
        if isinstance(item, decision_tree) and hasattr(item, "tree_"):
            _check_tree(item.tree_, _n_features(item, what), what)
        elif isinstance(item, tree):
            _check_tree(item, None, what)
        elif isinstance(item, forest | boosting) and hasattr(item, "estimators_"):
            _check_ensemble(item, what)
        elif isinstance(item, hist_boosting) and hasattr(item, "_predictors"):
            _check_hist_boosting(item, what)
        elif isinstance(item, predictor):
            _check_predictor(item, None, None, what)
        elif isinstance(item, libsvm) and hasattr(item, "support_vectors_"):
            _check_libsvm(item, what)


class _Absent:
    """Stands for a class whose module is not imported: nothing is an instance of it."""


def _loaded(module: str, name: str) -> type:
    """``module.name`` when ``module`` is imported, else a class nothing is an instance of."""
    found = getattr(sys.modules.get(module), name, None)
    return found if isinstance(found, type) else _Absent


def _objects(root: Any) -> Iterator[Any]:
    """Every object reachable from ``root`` through attributes, containers and object arrays."""
    stack, seen = [root], set()
    while stack:
        item = stack.pop()
        if id(item) in seen or isinstance(item, str | bytes | int | float | type):
            continue
        seen.add(id(item))
        yield item
        if isinstance(item, dict):
            stack.extend(item.values())
        elif isinstance(item, list | tuple | set | frozenset):
            stack.extend(item)
        elif isinstance(item, np.ndarray):
            if item.dtype == object:
                stack.extend(item.ravel().tolist())
        elif hasattr(item, "__dict__"):
            stack.extend(vars(item).values())


def _bad(what: str, detail: str, kind: str = "tree") -> IntegrityError:
    return IntegrityError(
        f"{what} holds a malformed {kind}: {detail}",
        where={"artifact": what},
        hint="The file was not written by scikit-learn as loaded, or was tampered with; "
        "retrain the model",
    )


def _n_features(estimator: Any, what: str) -> int | None:
    n = getattr(estimator, "n_features_in_", None)
    if n is None:
        return None
    if not isinstance(n, int | np.integer) or n < 1:
        raise _bad(what, f"{type(estimator).__name__}.n_features_in_ is {n!r}")
    return int(n)


def _check_children(left: np.ndarray, right: np.ndarray, leaf: np.ndarray, what: str) -> None:
    n = len(left)
    ids = np.arange(n)
    inner = ~leaf
    for side, child in (("left", left), ("right", right)):
        c = child[inner].astype(np.int64)
        if ((c <= ids[inner]) | (c >= n)).any():
            raise _bad(what, f"a {side} child outside the {n} nodes or not after its parent")


def _check_tree(tree: Any, n_features: int | None, what: str) -> None:
    count, capacity = int(tree.node_count), int(tree.capacity)
    if not 0 < count <= capacity:
        raise _bad(what, f"node_count {count} with room for {capacity} nodes")
    width = int(tree.n_features)
    if n_features is not None and width != n_features:
        raise _bad(what, f"a tree of {width} features in an estimator of {n_features}")
    left, right = np.asarray(tree.children_left), np.asarray(tree.children_right)
    leaf = left == -1
    if not np.array_equal(leaf, right == -1):
        raise _bad(what, "a node has one child")
    _check_children(left, right, leaf, what)
    feature = np.asarray(tree.feature)[~leaf]
    if ((feature < 0) | (feature >= width)).any():
        raise _bad(what, f"a split on a feature outside the {width} columns")


def _check_ensemble(model: Any, what: str) -> None:
    """Members predict without re-checking columns: each must take the ensemble's columns."""
    n = _n_features(model, what)
    members = model.estimators_
    if isinstance(members, np.ndarray):
        k = getattr(model, "n_trees_per_iteration_", None)
        if members.ndim != 2 or (k is not None and members.shape[1] != k):
            raise _bad(what, f"boosting stages of shape {members.shape} for {k} trees a stage")
        init = getattr(model, "init_", "zero")
        prior = getattr(init, "class_prior_", None)
        if k is not None and k > 1 and prior is not None and len(prior) != k:
            raise _bad(what, f"an initial estimator of {len(prior)} classes for {k}")
        members = members.ravel().tolist()
    for member in members:
        if n is not None and _n_features(member, what) != n:
            raise _bad(what, f"a member of {type(model).__name__} with other columns")


def _check_hist_boosting(model: Any, what: str) -> None:
    n = _n_features(model, what)
    categorical = getattr(model._bin_mapper, "is_categorical_", None)
    if categorical is not None:
        categorical = np.asarray(categorical, dtype=bool)
        if n is not None and categorical.shape != (n,):
            raise _bad(what, f"categorical flags for {categorical.shape} of {n} features")
    for stage in model._predictors:
        if not isinstance(stage, list | tuple) or len(stage) != model.n_trees_per_iteration_:
            raise _bad(what, "a boosting stage with the wrong number of trees")
        for predictor in stage:
            _check_predictor(predictor, n, categorical, what)


def _check_predictor(
    predictor: Any, n_features: int | None, categorical: np.ndarray | None, what: str
) -> None:
    from sklearn.ensemble._hist_gradient_boosting.common import PREDICTOR_RECORD_DTYPE

    nodes = predictor.nodes
    if not isinstance(nodes, np.ndarray) or nodes.dtype != PREDICTOR_RECORD_DTYPE:
        raise _bad(what, "predictor nodes of an unexpected layout")
    if nodes.ndim != 1 or len(nodes) == 0:
        raise _bad(what, f"predictor nodes of shape {nodes.shape}")
    leaf = nodes["is_leaf"] != 0
    _check_children(nodes["left"], nodes["right"], leaf, what)
    inner = nodes[~leaf]
    feature = inner["feature_idx"]
    if (feature < 0).any() or (n_features is not None and (feature >= n_features).any()):
        raise _bad(what, "a split on a feature outside the model's columns")
    cat = inner[inner["is_categorical"] != 0]
    if len(cat) == 0:
        return
    bitsets = predictor.raw_left_cat_bitsets
    if not isinstance(bitsets, np.ndarray) or bitsets.ndim != 2 or bitsets.shape[1] != 8:
        raise _bad(what, "category bitsets of an unexpected shape")
    if (cat["bitset_idx"] >= bitsets.shape[0]).any():
        raise _bad(what, "a categorical split without its bitset")
    if categorical is None or not categorical[cat["feature_idx"]].all():
        raise _bad(what, "a categorical split on a feature that is not categorical")


_KERNELS = ("linear", "poly", "rbf", "sigmoid")
_CLASSIFICATION = ("c_svc", "nu_svc")


def _check_libsvm(model: Any, what: str) -> None:
    """libsvm takes the number of classes and vectors from these arrays: they must agree."""
    name = type(model).__name__
    if model.kernel not in _KERNELS:
        raise _bad(what, f"{name} with kernel {model.kernel!r}", "support vector machine")
    sv = np.asarray(model.support_vectors_)
    n_sv = sv.shape[0] if sv.ndim == 2 else -1
    n = _n_features(model, what)
    counts = np.asarray(model._n_support).ravel()
    dual, intercept = np.asarray(model._dual_coef_), np.asarray(model._intercept_).ravel()
    prob_a, prob_b = np.asarray(model._probA).ravel(), np.asarray(model._probB).ravel()
    if model._impl in _CLASSIFICATION:
        k = len(counts)
        pairs = k * (k - 1) // 2
        checks = [
            k >= 2 and bool((counts >= 0).all()) and int(counts.sum()) == n_sv,
            dual.shape == (k - 1, n_sv) and len(intercept) == pairs,
            len(prob_a) == len(prob_b) and len(prob_a) in (0, pairs),
        ]
    else:
        checks = [
            dual.shape == (1, n_sv) and len(intercept) == 1,
            len(prob_a) == len(prob_b) and len(prob_a) <= 1,
        ]
    ok = all(checks) and len(np.asarray(model.support_).ravel()) == n_sv
    if not ok or (n is not None and sv.shape[1] != n):
        raise _bad(what, f"{name} arrays of shapes that disagree", "support vector machine")


__all__ = ["check_structure"]
