"""Incremental training: continue a registered version on a new dataset version.

``loopml train --from NAME@VERSION`` (``loopml.train(ws, config, from_version=...)``) loads
the parent version and keeps its FITTED feature pipeline and signature unchanged, so the new
version takes exactly the inputs the parent took; only the estimator goes on learning, in
the way its flavor knows (:meth:`loopml.registry.flavors.Flavor.continue_training`:
LightGBM ``init_model``, XGBoost ``xgb_model``, scikit-learn ``partial_fit``, PyTorch and
Keras networks from the parent's weights). Everything that can be wrong (no such version,
another flavor or class, another task or target, columns or classes that do not match, an
estimator that cannot continue, a Keras network of another architecture) is refused by
:func:`begin_continuation` before a run is recorded. The run is a child of the parent's run
(``Run.parent_id``) with both dataset versions in its params and tags.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, replace
from typing import Any

import numpy as np
import pandas as pd
from sklearn.base import clone

from loopml.errors import ConfigError, InvalidInputError
from loopml.project import FeatureSpec, ProjectConfig
from loopml.registry.bundle import ModelBundle
from loopml.registry.flavors import FLAVORS, Flavor, get_flavor
from loopml.registry.models import load_model, resolve_version
from loopml.registry.threshold import POSITIVE, THRESHOLD
from loopml.stores.records import DatasetVersion, ModelVersion, Run
from loopml.train.estimators import flavor_of
from loopml.train.fit import sample_rows
from loopml.workspace import Workspace

FIELD = "--from"  # how messages name the option (from_version= in Python)
RUN_DECISIONS = (POSITIVE, THRESHOLD)  # signature.extra keys each run sets for itself


@dataclass(frozen=True)
class Continuation:
    """A parent version, checked, and how to continue it."""

    ref: str  # "NAME@VERSION" as resolved
    record: ModelVersion
    parent: ModelBundle
    flavor: Flavor
    dataset: str  # the new data, "NAME@VERSION"

    @property
    def parent_dataset(self) -> str | None:
        r = self.record
        return None if r.dataset_name is None else f"{r.dataset_name}@{r.dataset_version}"

    def mark(self, run: Run) -> Run:
        """``run`` recorded as the parent's child, with both dataset versions."""
        lineage = {
            "continued_from": self.ref,
            "parent_dataset": self.parent_dataset,
            "dataset": self.dataset,
        }
        tags = {k: v for k, v in lineage.items() if v is not None}
        return replace(
            run,
            parent_id=self.record.run_id,
            params={**run.params, **lineage},
            tags={**run.tags, **tags},
        )

    def fit_prepared(
        self,
        spec: FeatureSpec,
        kinds: Mapping[str, str],
        estimator: Any,
        x: pd.DataFrame,
        y: pd.Series,
        *,
        task: str,
        target: str,
        flavor: str | None = None,
        trust: Iterable[str] | None = None,
        **_: Any,
    ) -> ModelBundle:
        """What :func:`loopml.train.fit.fit_prepared` does, continuing the parent instead:
        the parent's feature pipeline transforms ``x`` unchanged (``spec`` and ``kinds`` are
        the parent's, checked by :func:`begin_continuation`), and the estimator continues
        from the parent's model with this run's ``model.params``."""
        parent = self.parent
        rows = x[parent.signature.names]
        model = self.flavor.continue_training(
            parent.estimator,
            clone(estimator),
            parent.features.transform(rows),
            y.to_numpy(),
            task=task,
            classes=parent.signature.classes,
        )
        # the parent's inputs and classes; its decisions (positive label, threshold) are
        # this run's to make again
        extra = {k: v for k, v in parent.signature.extra.items() if k not in RUN_DECISIONS}
        return ModelBundle(
            parent.features,
            model,
            replace(parent.signature, extra=extra),
            self.flavor.name,
            sample=sample_rows(rows),
            trusted=trust if trust is not None else parent.trusted,
        )


def begin_continuation(
    ws: Workspace,
    config: ProjectConfig,
    ref: str,
    *,
    dataset: DatasetVersion,
    estimator: Any,
    kinds: Mapping[str, str],
    y: pd.Series,
    task: str,
) -> Continuation:
    """Load and check the parent ``ref`` against this project and its new data.

    ``estimator`` is the unfitted estimator of ``model.class``, ``kinds`` the feature kinds
    of the new data and ``y`` its target. ConfigError or InvalidInputError, naming the field
    or the column, for anything that does not fit; nothing is recorded.
    """
    source = config.source
    flavor = get_flavor(flavor_of(config.model.cls))
    cls = type(estimator)
    if not flavor.can_continue(cls):
        raise ConfigError(
            f"model.class {config.model.cls} cannot continue training from a version",
            where={"file": source, "field": "model.class", "option": FIELD},
            hint=f"Flavors that can: {_who_can()}; or train from scratch without {FIELD}",
        )
    record = resolve_version(ws, ref)
    name = f"{record.name}@{record.version}"
    parent = load_model(ws, name).bundle
    sig = parent.signature
    if parent.flavor != flavor.name or (flavor.skops_members and type(parent.estimator) is not cls):
        shown = _shown_class(parent)
        raise ConfigError(
            f"{name} is a {parent.flavor} model ({shown}); model.class {config.model.cls} "
            "cannot continue it",
            where={"file": source, "field": "model.class", "option": FIELD},
            hint=f"Set model.class to the parent's class ({shown}), or train from scratch",
        )
    if sig.task != task:
        raise ConfigError(
            f"{name} is a {sig.task} model; this project trains {task}",
            where={"file": source, "field": "data.task", "option": FIELD},
            hint=f"Continue a {task} version, or set data.task: {sig.task}",
        )
    if sig.target != config.target:
        raise ConfigError(
            f"{name} predicts {sig.target!r}; this project's target is {config.target!r}",
            where={"file": source, "field": "data.target", "option": FIELD},
            hint=f"Set data.target: {sig.target}, or train from scratch",
        )
    new = f"{dataset.name}@{dataset.version}"
    _check_columns(sig.kinds(), kinds, name, new)
    if task == "classification":
        _check_classes(sig.classes or [], y, flavor, name, new, config.target)
    # a flavor that can tell whether this run's parameters build the parent's network
    # (NetworkFlavor) refuses another one here, before the run is recorded
    flavor.check_continue(parent.estimator, estimator)
    return Continuation(name, record, parent, flavor, new)


def _who_can() -> str:
    parts = []
    for name in FLAVORS:
        flavor = get_flavor(name)
        if flavor.continues:
            parts.append(f"{name} ({flavor.continues})")
    return ", ".join(parts)


def _shown_class(bundle: ModelBundle) -> str:
    est = bundle.estimator
    return f"{type(est).__module__.split('.')[0]}.{type(est).__name__}"


def _check_columns(
    parent: Mapping[str, str], new: Mapping[str, str], name: str, dataset: str
) -> None:
    """The new data's features are the parent's, of the same kinds."""
    for column, kind in parent.items():
        if column not in new:
            raise InvalidInputError(
                f"{dataset} has no feature column {column!r}, which {name} takes",
                where={"dataset": dataset, "column": column, "option": FIELD},
                hint=f"Continuing {name} reuses its fitted features; the new data needs "
                f"every column it was trained on ({', '.join(list(parent)[:20])})",
            )
        if new[column] != kind:
            raise InvalidInputError(
                f"column {column!r} of {dataset} is {new[column]}, but {kind} in {name}",
                where={"dataset": dataset, "column": column, "option": FIELD},
                hint="Declare the column's kind under features: as it was for the parent",
            )
    for column in new:
        if column not in parent:
            raise InvalidInputError(
                f"{dataset} has the feature column {column!r}, which {name} does not take",
                where={"dataset": dataset, "column": column, "option": FIELD},
                hint=f"Continuing {name} reuses its fitted features; drop the column "
                "(features: exclude:) or train from scratch to use it",
            )


def _check_classes(
    classes: list[Any], y: pd.Series, flavor: Flavor, name: str, dataset: str, target: str
) -> None:
    seen = [_plain(v) for v in pd.unique(y)]
    known = {_plain(c) for c in classes}
    new = sorted((v for v in seen if v not in known), key=str)
    where = {"dataset": dataset, "column": target, "option": FIELD}
    if new:
        raise InvalidInputError(
            f"{dataset} has classes {name} never had: {', '.join(map(str, new[:10]))}",
            where=where,
            hint=f"A continued model keeps its classes ({', '.join(map(str, classes))}); "
            "train from scratch to learn new ones",
        )
    missing = sorted((c for c in known if c not in set(seen)), key=str)
    if missing and flavor.needs_every_class:
        raise InvalidInputError(
            f"{dataset} lacks classes of {name}: {', '.join(map(str, missing[:10]))}",
            where=where,
            hint=f"Continuing a {flavor.name} model needs rows of every class",
        )


def _plain(value: Any) -> Any:
    return value.item() if isinstance(value, np.generic) else value


__all__ = ["Continuation", "begin_continuation"]
