"""The online learner: a River model (or pipeline) or a scikit-learn estimator with
``partial_fit``, built from the project's ``online:`` section, learning one event (or one
mini-batch) at a time, and saved as data.

:class:`OnlineLearner` adds learning to :class:`loopml.registry.flavors.river.OnlineModel`
(what a registered checkpoint loads as). Its inputs are the features of an event, as
:meth:`~OnlineLearner.features_of` gives them (a dict of floats and text); labels as
:meth:`~OnlineLearner.label_of` checks them. ``predict_one`` then ``learn_one`` on each event
is the test-then-train (prequential) loop; :meth:`~OnlineLearner.state_bytes` is the
checkpoint (canonical JSON, no pickle; the same events learned give the same bytes, so
:meth:`~OnlineLearner.checksum` of a resumed learner equals that of an offline replay).

What ``online.learner`` may name is exact (:data:`loopml.registry.allowlist.ONLINE_LEARNERS`,
the learners whose state the format covers), and ``online.preprocessing`` the River
transformers of :data:`~loopml.registry.allowlist.ONLINE_PREPROCESSING`. A parameter that is
an object is written ``{class: river.optim.Adam, params: {lr: 0.01}}`` and must be one of
:data:`~loopml.registry.allowlist.ONLINE`.
"""

from __future__ import annotations

import importlib
import inspect
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from loopml.errors import ConfigError, InvalidInputError
from loopml.project.online import OnlineSpec
from loopml.project.suggest import did_you_mean
from loopml.registry.allowlist import ONLINE, ONLINE_LEARNERS, ONLINE_PREPROCESSING
from loopml.registry.flavors.river import RIVER, SKLEARN, UNKNOWN, OnlineModel
from loopml.registry.flavors.river import bundle_of as _bundle_of
from loopml.registry.flavors.river_state import type_name

#: the public import paths of the learners (for messages), by the name the allowlist keeps
PUBLIC = {
    "river.linear_model.log_reg.LogisticRegression": "river.linear_model.LogisticRegression",
    "river.linear_model.lin_reg.LinearRegression": "river.linear_model.LinearRegression",
    "river.linear_model.pa.PAClassifier": "river.linear_model.PAClassifier",
    "river.linear_model.pa.PARegressor": "river.linear_model.PARegressor",
    "river.linear_model.perceptron.Perceptron": "river.linear_model.Perceptron",
    "river.linear_model.softmax.SoftmaxRegression": "river.linear_model.SoftmaxRegression",
    "river.linear_model.alma.ALMAClassifier": "river.linear_model.ALMAClassifier",
    "river.naive_bayes.gaussian.GaussianNB": "river.naive_bayes.GaussianNB",
    "river.naive_bayes.multinomial.MultinomialNB": "river.naive_bayes.MultinomialNB",
    "river.naive_bayes.bernoulli.BernoulliNB": "river.naive_bayes.BernoulliNB",
    "river.naive_bayes.complement.ComplementNB": "river.naive_bayes.ComplementNB",
    "river.tree.hoeffding_tree_classifier.HoeffdingTreeClassifier": (
        "river.tree.HoeffdingTreeClassifier"
    ),
    "river.tree.hoeffding_tree_regressor.HoeffdingTreeRegressor": (
        "river.tree.HoeffdingTreeRegressor"
    ),
    "sklearn.linear_model._stochastic_gradient.SGDClassifier": (
        "sklearn.linear_model.SGDClassifier"
    ),
    "sklearn.linear_model._stochastic_gradient.SGDRegressor": "sklearn.linear_model.SGDRegressor",
    "sklearn.linear_model._passive_aggressive.PassiveAggressiveClassifier": (
        "sklearn.linear_model.PassiveAggressiveClassifier"
    ),
    "sklearn.linear_model._passive_aggressive.PassiveAggressiveRegressor": (
        "sklearn.linear_model.PassiveAggressiveRegressor"
    ),
    "sklearn.linear_model._perceptron.Perceptron": "sklearn.linear_model.Perceptron",
    "sklearn.naive_bayes.MultinomialNB": "sklearn.naive_bayes.MultinomialNB",
    "sklearn.naive_bayes.BernoulliNB": "sklearn.naive_bayes.BernoulliNB",
    "sklearn.naive_bayes.GaussianNB": "sklearn.naive_bayes.GaussianNB",
}


#: the preprocessing steps that take text fields (the others take numbers)
TEXT_STEPS = frozenset({"river.preprocessing.one_hot.OneHotEncoder"})
HOEFFDING_REGRESSOR = "river.tree.hoeffding_tree_regressor.HoeffdingTreeRegressor"
#: the learners that split on text fields themselves (nominal attributes)
TEXT_LEARNERS = frozenset(
    {
        "river.tree.hoeffding_tree_classifier.HoeffdingTreeClassifier",
        "river.tree.hoeffding_tree_regressor.HoeffdingTreeRegressor",
    }
)


class OnlineLearner(OnlineModel):
    """An :class:`~loopml.registry.flavors.river.OnlineModel` that learns.

    Build one with :meth:`from_spec` (or :meth:`from_state_bytes` for a checkpoint). For a
    River learner, :meth:`learn_many` is :meth:`learn_one` on each event in order (the same
    model as event by event); for a scikit-learn learner it is one ``partial_fit``.
    """

    @classmethod
    def from_spec(cls, spec: OnlineSpec) -> OnlineLearner:
        """A fresh learner for the ``online:`` section. ConfigError naming the field for a
        learner not on loopml's allowlist of online learners, one that cannot learn online,
        parameters it refuses, or settings it cannot work with."""
        learner_cls = _import(spec.learner, "online.learner", spec)
        name = type_name(learner_cls)
        if name not in ONLINE_LEARNERS:
            online = callable(getattr(learner_cls, "learn_one", None)) or callable(
                getattr(learner_cls, "partial_fit", None)
            )
            covered = ", ".join(sorted(PUBLIC.values()))
            problem = (
                "is not one whose state loopml saves as data"
                if online
                else "cannot learn online (it has neither learn_one nor partial_fit)"
            )
            raise ConfigError(
                f"online.learner {spec.learner} {problem}",
                where=spec.where("learner"),
                hint=f"{did_you_mean(spec.learner, PUBLIC.values())}Online learners loopml "
                f"covers: {covered}",
            )
        kind = RIVER if name.startswith("river.") else SKLEARN
        params = {k: _objects(v, f"online.params.{k}", spec) for k, v in spec.params.items()}
        if kind == SKLEARN and "random_state" in _params(learner_cls):
            params.setdefault("random_state", 0)  # shuffling the same batch the same way
        if name == HOEFFDING_REGRESSOR and "splitter" not in params:
            # River's default (EBSTSplitter) keeps a chain of nodes as long as the values
            # arrive in order, deeper than the state format holds; quantization is flat
            from river.tree.splitter import QOSplitter

            params["splitter"] = QOSplitter()
        estimator = _build(learner_cls, params, "online.params", spec)
        _check_task(estimator, kind, spec)
        steps = [
            _build(
                _import(
                    step["step"], f"online.preprocessing[{i}].step", spec, ONLINE_PREPROCESSING
                ),
                {
                    k: _objects(v, f"online.preprocessing[{i}].params.{k}", spec)
                    for k, v in step.get("params", {}).items()
                },
                f"online.preprocessing[{i}].params",
                spec,
            )
            for i, step in enumerate(spec.preprocessing)
        ]
        text_steps = [st for st in steps if type_name(st) in TEXT_STEPS]
        number_steps = [st for st in steps if type_name(st) not in TEXT_STEPS]
        takes_text = name in TEXT_LEARNERS
        strings = spec.strings or (
            "keep" if kind == RIVER and (text_steps or takes_text) else "drop"
        )
        preprocessing = None
        if kind == RIVER:
            if strings == "keep" and not (text_steps or takes_text):
                raise ConfigError(
                    f"online.strings is keep, but {spec.learner} takes numbers only",
                    where=spec.where("strings"),
                    hint="Add river.preprocessing.OneHotEncoder to online.preprocessing (text "
                    "fields become one-hot numbers), or write strings: drop",
                )
            model = _river_model(estimator, number_steps, text_steps, strings == "keep")
        else:
            model = estimator
            if strings == "keep":
                raise ConfigError(
                    f"online.strings is keep, but {spec.learner} takes numbers only",
                    where=spec.where("strings"),
                    hint="Write strings: drop (text fields are left out), or use a River learner "
                    "with river.preprocessing.OneHotEncoder",
                )
            if spec.batch < 2:
                raise ConfigError(
                    f"{spec.learner} learns by partial_fit on mini-batches, and online.batch "
                    f"is {spec.batch}",
                    where=spec.where("batch"),
                    hint="Write batch: 32 (or more); one partial_fit per event is slow",
                )
            if spec.task == "classification" and spec.classes is None:
                raise ConfigError(
                    f"{spec.learner} needs every class up front, and online.classes is not given",
                    where=spec.where("classes"),
                    hint="Write classes: [no, yes] with every label the target can take",
                )
            if steps:
                from river import compose

                preprocessing = compose.Pipeline(*steps)
        learner = cls(
            model,
            kind=kind,
            task=spec.task,
            learner=spec.learner,
            target=spec.target,
            features=spec.features,
            time=spec.time,
            ignore=spec.ignore,
            strings=strings,
            classes=spec.classes,
            positive=spec.positive,
            preprocessing=preprocessing,
        )
        if learner._binary and spec.classes is not None:
            if len(spec.classes) > 2:
                raise ConfigError(
                    f"{spec.learner} learns two classes, and online.classes names "
                    f"{len(spec.classes)}",
                    where=spec.where("classes"),
                    hint="Use a multiclass learner (river.linear_model.SoftmaxRegression, "
                    "river.naive_bayes.GaussianNB, river.tree.HoeffdingTreeClassifier)",
                )
            if learner.positive_label() is UNKNOWN:
                raise ConfigError(
                    f"{spec.learner} learns two classes, and online.positive does not say "
                    "which of them is positive",
                    where=spec.where("positive"),
                    hint=f"Write positive: {spec.classes[-1]!r}",
                )
        return learner

    # -- learning -----------------------------------------------------------------------

    def learn_one(self, x: Mapping[str, Any], y: Any) -> None:
        """Learn one event: features ``x`` (:meth:`features_of`), label ``y``
        (:meth:`label_of`). InvalidInputError for a label the learner cannot take (a third
        class for a two-class learner); ConfigError when a two-class learner meets text
        labels and ``online.positive`` does not say which is positive."""
        if self.target in x:
            x = self.features_of(x)  # an event, not its features: never learn the target
        if self.kind == SKLEARN:
            self.learn_many([x], [y])
            return
        target = y
        if self.task == "classification":
            target = self._learned_label(y)
        self.observe(x)
        self.estimator.learn_one(x, target)
        self.learned += 1

    def learn_many(self, xs: Sequence[Mapping[str, Any]], ys: Sequence[Any]) -> None:
        """Learn a mini-batch: one ``partial_fit`` for a scikit-learn learner, each event in
        order for a River one."""
        if len(xs) != len(ys):
            raise InvalidInputError(
                f"learn_many got {len(xs)} events and {len(ys)} labels",
                where={"field": "ys"},
                hint="Pass one label per event",
            )
        if not xs:
            return
        if self.kind == RIVER:
            for x, y in zip(xs, ys, strict=True):
                self.learn_one(x, y)
            return
        xs = [self.features_of(x) if self.target in x else x for x in xs]
        if self.task == "classification":
            for y in ys:
                if self.classes is not None and y not in self.classes:
                    raise InvalidInputError(
                        f"label {y!r} is not one of online.classes {self.classes}"[:300],
                        where={"field": self.target},
                        hint="Add it to online.classes, or fix the event",
                    )
        for x in xs:
            self.observe(x)
        if self.preprocessing is not None:
            rows = []
            for x in xs:
                x = dict(x)
                self.preprocessing.learn_one(x)
                rows.append(self.preprocessing.transform_one(x))
            xs = rows
        if self.columns is None:
            names = {k for x in xs for k, v in x.items() if not isinstance(v, str)}
            self.columns = sorted(names)
        matrix = self._matrix(xs)
        if self.task == "classification":
            self.estimator.partial_fit(
                matrix, np.asarray(list(ys)), classes=np.asarray(list(self.classes or []))
            )
        else:
            self.estimator.partial_fit(matrix, np.asarray(ys, dtype=np.float64))
        self.learned += len(xs)

    def _learned_label(self, y: Any) -> Any:
        """What the River estimator learns for label ``y`` (a bool for a two-class one),
        after recording ``y`` among the labels."""
        if not self._binary:
            if y not in self.labels:
                self.add_label(y)
            return y
        if y in self.labels:
            return y == self._pair[1]
        known = [label for label in self.labels if label != y]
        if len(known) >= 2:
            raise InvalidInputError(
                f"{self.learner} learns two classes and already knows {known}; label {y!r} "
                "would be a third"[:300],
                where={"field": self.target},
                hint="Use a multiclass learner (river.linear_model.SoftmaxRegression, "
                "river.naive_bayes.GaussianNB, river.tree.HoeffdingTreeClassifier)",
            )
        self.add_label(y)
        positive = self._pair[1]
        if positive is UNKNOWN:
            self.remove_label(y)
            raise ConfigError(
                f"{self.learner} learns two classes, and the label {y!r} does not say which "
                "is positive",
                where={"field": "online.positive"},
                hint=f"Write positive: <the positive label> under online: (e.g. {y!r})",
            )
        return y == positive


def _river_model(estimator: Any, numbers_: list[Any], texts: list[Any], keep_text: bool) -> Any:
    """The River pipeline: the numeric steps on numbers and the text steps on text (River's
    ``SelectType`` branches of a ``TransformerUnion``) when text is kept, else the steps in
    order; then the learner."""
    from river import compose

    if not numbers_ and not texts:
        return estimator
    if not keep_text:
        return compose.Pipeline(*numbers_, *texts, estimator)
    import numbers

    num = compose.Pipeline(compose.SelectType(numbers.Number), *numbers_)
    txt = compose.Pipeline(compose.SelectType(str), *texts)
    return compose.Pipeline(compose.TransformerUnion(num, txt), estimator)


def bundle_of(
    learner: OnlineModel, spec: OnlineSpec | None = None, sample: Sequence[Mapping[str, Any]] = ()
) -> Any:
    """The :class:`~loopml.registry.bundle.ModelBundle` of a learner, ready for
    :func:`loopml.registry.register_model` (signature from what it learned; ``sample``:
    recent events, up to five of which a server predicts before swapping it in)."""
    name = spec.model if spec is not None else "online"
    return _bundle_of(learner, sample, name=name)


# -- building -----------------------------------------------------------------------------------


def _import(
    path: str, fieldname: str, spec: OnlineSpec, allowed: Sequence[str] | None = None
) -> type:
    module_name, _, attr = path.rpartition(".")
    try:
        found = getattr(importlib.import_module(module_name), attr)
    except ImportError as exc:
        root = module_name.split(".")[0]
        hint = (
            "pip install 'loopml[online]'"
            if root == "river"
            else f"Check the module name, or install the package that provides {module_name}"
        )
        raise ConfigError(
            f"{fieldname} {path}: module {module_name!r} cannot be imported ({exc})"[:400],
            where={"file": spec.source, "field": fieldname},
            hint=hint,
        ) from exc
    except AttributeError as exc:
        raise ConfigError(
            f"{fieldname} {path}: {module_name} has no {attr!r}",
            where={"file": spec.source, "field": fieldname},
            hint="Check the class name and its case",
        ) from exc
    if not isinstance(found, type):
        raise ConfigError(
            f"{fieldname} {path} is not a class",
            where={"file": spec.source, "field": fieldname},
            hint="Name a class, e.g. river.linear_model.LogisticRegression",
        )
    if allowed is not None and type_name(found) not in allowed:
        raise ConfigError(
            f"{fieldname} {path} is not one of the classes loopml saves as data here",
            where={"file": spec.source, "field": fieldname},
            hint="Use one of: " + ", ".join(sorted(_public(n) for n in allowed)),
        )
    return found


def _public(name: str) -> str:
    """``river.preprocessing.scale.StandardScaler`` -> ``river.preprocessing.StandardScaler``."""
    parts = name.split(".")
    return ".".join([*parts[:2], parts[-1]]) if len(parts) > 3 else name


def _objects(value: Any, fieldname: str, spec: OnlineSpec) -> Any:
    """A parameter's value, with ``{class: PATH, params: {...}}`` built (allowlisted)."""
    if isinstance(value, Mapping) and "class" in value:
        unknown = set(value) - {"class", "params"}
        if unknown or not isinstance(value["class"], str):
            raise ConfigError(
                f"{fieldname} must be {{class: PATH, params: {{...}}}}, got {dict(value)!r}"[:300],
                where={"file": spec.source, "field": fieldname},
                hint="Write e.g. optimizer: {class: river.optim.Adam, params: {lr: 0.01}}",
            )
        cls = _import(value["class"], f"{fieldname}.class", spec, ONLINE)
        inner = value.get("params") or {}
        if not isinstance(inner, Mapping):
            raise ConfigError(
                f"{fieldname}.params must be a mapping",
                where={"file": spec.source, "field": f"{fieldname}.params"},
                hint="Write params: {lr: 0.01}",
            )
        return _build(
            cls,
            {k: _objects(v, f"{fieldname}.params.{k}", spec) for k, v in inner.items()},
            f"{fieldname}.params",
            spec,
        )
    if isinstance(value, list):
        return [_objects(v, f"{fieldname}[{i}]", spec) for i, v in enumerate(value)]
    return value


def _params(cls: type) -> tuple[str, ...]:
    return tuple(inspect.signature(cls).parameters)


def _build(cls: type, params: Mapping[str, Any], fieldname: str, spec: OnlineSpec) -> Any:
    known = _params(cls)
    for key in params:
        if key not in known:
            raise ConfigError(
                f"{fieldname}.{key}: {cls.__name__} has no parameter {key!r}",
                where={"file": spec.source, "field": f"{fieldname}.{key}"},
                hint=f"{did_you_mean(key, known)}Parameters of {cls.__name__}: {', '.join(known)}",
            )
    try:
        return cls(**params)
    except (TypeError, ValueError, NotImplementedError) as exc:
        raise ConfigError(
            f"{fieldname}: {cls.__name__} refused its parameters: {exc}"[:400],
            where={"file": spec.source, "field": fieldname},
            hint=f"Check the parameters against {cls.__name__}'s documentation",
        ) from exc


def _check_task(estimator: Any, kind: str, spec: OnlineSpec) -> None:
    if kind == RIVER:
        from river import base

        is_classifier = isinstance(estimator, base.Classifier)
        is_regressor = isinstance(estimator, base.Regressor)
    else:
        from sklearn.base import is_classifier as sk_classifier
        from sklearn.base import is_regressor as sk_regressor

        is_classifier = sk_classifier(estimator)
        is_regressor = sk_regressor(estimator)
    if spec.task == "classification" and not is_classifier:
        problem = "a regressor" if is_regressor else "not a classifier"
    elif spec.task == "regression" and not is_regressor:
        problem = "a classifier" if is_classifier else "not a regressor"
    else:
        return
    raise ConfigError(
        f"online.task is {spec.task}, and {spec.learner} is {problem}",
        where=spec.where("task"),
        hint="Set task to what the learner does, or choose a learner for the task",
    )


__all__ = ["PUBLIC", "OnlineLearner", "bundle_of"]
