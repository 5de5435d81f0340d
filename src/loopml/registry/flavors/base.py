"""The contract every flavor of model implements: fit, save, load, predict, continue.

A flavor is how one family of estimators (scikit-learn, LightGBM, XGBoost, later PyTorch or
online learners) enters a bundle: which files it writes, how it reads them back without
running code, how it turns features into predictions, and whether and how it continues
training on new data. The bundle (:mod:`loopml.registry.bundle`), the trainer and the server
call only this contract; which flavor is which lives in one table,
:data:`loopml.registry.flavors.FLAVORS`.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, ClassVar

import numpy as np


class NotConvertible(Exception):
    """A model (or a step of its feature pipeline) that has no ONNX form; the message is
    the reason shown to the user (``loopml models compile``, the server's startup line)."""


#: the operator sets the converters are asked for (the main domain, and ai.onnx.ml)
ONNX_OPSET = 17
ONNX_ML_OPSET = 3


def class_path(estimator_or_path: object) -> str:
    """``module.Class`` of an estimator, class, or an import path given as text."""
    if isinstance(estimator_or_path, str):
        return estimator_or_path
    cls = estimator_or_path if isinstance(estimator_or_path, type) else type(estimator_or_path)
    return f"{cls.__module__}.{cls.__qualname__}"


class Flavor:
    """One family of estimators. Subclasses set the class attributes and override methods.

    Members are the files of the estimator inside a bundle (the feature pipeline is the
    bundle's own ``features.json`` or ``features.skops``). ``skops_members`` are those of
    them that are skops
    files: the bundle checks the types they name, with the feature pipeline's, before any is
    loaded, so that one refusal names every type.
    """

    #: the name recorded in the manifest and on the model version
    name: ClassVar[str]
    #: top-level packages of the classes it handles, by import path (``model.class``)
    roots: ClassVar[tuple[str, ...]] = ()
    #: the files it writes into a bundle
    members: ClassVar[tuple[str, ...]] = ()
    skops_members: ClassVar[tuple[str, ...]] = ()
    #: ``pip install 'loopml[EXTRA]'`` installs the library (None: always installed)
    extra: ClassVar[str | None] = None
    #: for messages: which of its estimators can continue training (None: none)
    continues: ClassVar[str | None] = None
    #: whether continuing a classifier needs every class of the parent in the new data
    needs_every_class: ClassVar[bool] = True

    def handles(self, estimator_or_class_path: object) -> bool:
        """Whether an estimator, class, or import path such as ``lightgbm.LGBMClassifier``
        is of this flavor."""
        root = class_path(estimator_or_class_path).split(".")[0]
        return root in self.roots

    # -- training -------------------------------------------------------------------------

    def defaults(self) -> dict[str, Any]:
        """Parameters set unless ``model.params`` says otherwise."""
        return {}

    def fit(
        self,
        estimator: Any,
        x: Any,
        y: np.ndarray,
        task: str,
        *,
        sample_weight: np.ndarray | None = None,
    ) -> tuple[Any, list[Any] | None]:
        """Fit ``estimator`` (a fresh copy, the caller's stays unfitted) on the transformed
        features ``x``, with one weight per row when ``sample_weight`` is given; returns the
        in-memory model (what :meth:`predict` takes) and, for classification, the classes in
        the order of the probability columns."""
        model = estimator.fit(x, y, **weight_kwargs(estimator, sample_weight))
        classes = list(model.classes_) if task == "classification" else None
        return self.prepare(model), classes

    def prepare(self, estimator: Any) -> Any:
        """The in-memory form a fitted estimator predicts with, exactly as after a reload."""
        return estimator

    def can_continue(self, cls: type) -> bool:
        """Whether estimators of ``cls`` can continue training from a fitted model."""
        return False

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
        """Continue ``model`` (a loaded, fitted model of this flavor, left unchanged) on
        ``x, y``; ``estimator`` is the unfitted estimator of ``model.class`` with this run's
        ``model.params``; ``classes`` the parent's. Returns the new in-memory model."""
        raise NotImplementedError(f"flavor {self.name} cannot continue training")

    def check_continue(self, model: Any, estimator: Any) -> None:
        """Raise ConfigError when ``estimator`` (this run's, unfitted) cannot continue
        ``model`` (the parent's): called before the run is recorded. Nothing to check here."""

    def steps(self, model: Any) -> list[tuple[str, int, float]]:
        """Per-step metrics of the fit that made ``model`` (``(key, step, value)``), recorded
        as steps of the run: none here."""
        return []

    def params(self, estimator: Any) -> dict[str, Any]:
        """The estimator's parameters as JSON values, for the run's record."""
        get = getattr(estimator, "get_params", None)
        raw = get(deep=False) if callable(get) else {}
        return {
            k: v if isinstance(v, str | int | float | bool | type(None)) else repr(v)
            for k, v in raw.items()
        }

    # -- bytes ----------------------------------------------------------------------------

    def save(self, model: Any) -> dict[str, bytes]:
        """The files of ``model`` inside a bundle, by member name."""
        raise NotImplementedError

    def manifest(self, model: Any) -> dict[str, Any]:
        """Extra JSON fields this flavor keeps in the bundle's manifest (under ``model``)."""
        return {}

    def load(
        self,
        members: Mapping[str, bytes],
        *,
        trusted: Sequence[str],
        what: str,
        meta: Mapping[str, Any],
        checked: Mapping[str, set[str]] | None = None,
    ) -> Any:
        """The in-memory model from its files (``meta``: what :meth:`manifest` wrote, ``{}``
        for a bundle written before; ``checked``: the type names of each skops member, as
        the bundle already read and allowed them). Raises IntegrityError or
        UnsafeFormatError; any other exception is reported as a damaged file by the bundle."""
        raise NotImplementedError

    # -- compiling ------------------------------------------------------------------------

    def to_onnx(self, model: Any, n_features: int, task: str) -> tuple[Any, str]:
        """The estimator as an ``onnx.ModelProto`` taking one input ``[N, n_features]``
        (double where the converter allows, else float), and the name of the output that
        holds what :meth:`predict` answers: ``[N, k]`` class probabilities in the order of
        the signature's classes, or ``[N, 1]`` (or ``[N]``) regression values. Raises
        :class:`NotConvertible` with the reason when there is no converter (the bundle is
        then served natively, see :mod:`loopml.registry.compiled`)."""
        raise NotConvertible(f"flavor {self.name} has no ONNX converter")

    # -- predicting -----------------------------------------------------------------------

    def predict(self, model: Any, x: Any, task: str) -> np.ndarray:
        """Regression: one value per row. Classification: an n x k array of class
        probabilities, columns in the order of the signature's classes."""
        raise NotImplementedError


def weight_kwargs(estimator: Any, sample_weight: np.ndarray | None) -> dict[str, Any]:
    """The keyword that passes ``sample_weight`` to ``estimator.fit`` (a Pipeline routes it
    to its last step); ``{}`` without weights."""
    if sample_weight is None:
        return {}
    steps = getattr(estimator, "steps", None)
    if isinstance(steps, list) and steps:
        return {f"{steps[-1][0]}__sample_weight": sample_weight}
    return {"sample_weight": sample_weight}


def onnx_output(model: Any, task: str) -> str:
    """The output of a converted estimator that holds probabilities (classification: the one
    named ``probabilities``, else the second) or values (regression: the first)."""
    names = [o.name for o in model.graph.output]
    if task == "regression":
        return str(names[0])
    if "probabilities" in names:
        return "probabilities"
    if len(names) < 2:
        raise NotConvertible(f"the converted model has outputs {names}, not label, probabilities")
    return str(names[1])


#: the main opset onnxmltools' tree converters support
MLTOOLS_OPSET = 15


def booster_to_onnx(
    converter: str, model: Any, n_features: int, task: str, **options: Any
) -> tuple[Any, str]:
    """A LightGBM or XGBoost Booster through onnxmltools (float input)."""
    import onnxmltools
    from onnxmltools.convert.common.data_types import FloatTensorType

    try:
        onx = getattr(onnxmltools, converter)(
            model,
            initial_types=[("x", FloatTensorType([None, n_features]))],
            target_opset=MLTOOLS_OPSET,
            **options,
        )
    except Exception as exc:  # the converter's own errors, for objectives it lacks
        text = " ".join(f"{type(exc).__name__}: {exc}".split())[:200]
        raise NotConvertible(f"onnxmltools cannot convert this {type(model).__name__} ({text})")
    return onx, onnx_output(onx, task)


def binary_columns(raw: np.ndarray) -> np.ndarray:
    """n x 2 probabilities from a library that answers P(positive) for binary tasks."""
    raw = np.asarray(raw, dtype=np.float64)
    return np.column_stack([1.0 - raw, raw]) if raw.ndim == 1 else raw


class NetworkFlavor(Flavor):
    """A flavor of neural networks trained by loopml's estimators (PyTorch, Keras): they
    continue from the parent's weights and record each epoch's metrics."""

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
        """``model.params``' epochs more, from the parent's weights (the parent is left
        unchanged); its classes and target scale are kept."""
        fitted = estimator.fit(
            x, y, init=model, classes=classes if task == "classification" else None
        )
        return fitted.model_

    def check_continue(self, model: Any, estimator: Any) -> None:
        """ConfigError naming ``model.params`` when ``estimator`` (this run's, unfitted)
        builds another network than ``model`` (the parent's): before a run is recorded."""
        check = getattr(estimator, "check_start", None)
        if callable(check):
            check(model)

    def steps(self, model: Any) -> list[tuple[str, int, float]]:
        """The per-epoch metrics of the fit that made ``model``: ``(key, epoch, value)``."""
        out = []
        for epoch, row in enumerate(getattr(model, "history", None) or []):
            out += [(f"epoch.{k}", epoch, float(v)) for k, v in row.items()]
        return out
