"""Online learners (River models and pipelines, scikit-learn estimators with ``partial_fit``):
their predicting half, their state as data, and the flavor that bundles them.

:class:`OnlineModel` is what a registered online checkpoint loads as: the estimator, how an
event's fields become its features, the labels it learned, and what it saw of each field
(for the version's signature). Its state (:meth:`OnlineModel.state_bytes`) is one canonical
JSON document written by :mod:`loopml.registry.flavors.river_state`, never a pickle; the same
state gives the same bytes, so :meth:`OnlineModel.checksum` names it across processes. The
learning half (``from_spec``, ``learn_one``, ``learn_many``) is
:class:`loopml.train.online.OnlineLearner`, a subclass, in the training stage.

:class:`OnlineFlavor` stores that document as the bundle's ``learner.json``; the bundle's
feature pipeline is :class:`EventFields`, which hands the validated frame to the flavor as it
is, and the flavor predicts it row by row through ``predict_one`` / ``predict_proba_one``
(class probabilities in the order of the signature's classes, as every flavor answers), so
``loopml serve`` serves an online checkpoint like any other version.
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Mapping, Sequence
from typing import Any, ClassVar

import numpy as np
import pandas as pd
from sklearn.base import BaseEstimator, TransformerMixin

from loopml.errors import IntegrityError, InvalidInputError
from loopml.kinds import CATEGORICAL, NUMERIC
from loopml.registry.flavors.base import Flavor, class_path
from loopml.registry.flavors.river_state import decode, dumps, encode, loads, type_name

MEMBER = "learner.json"
STATE_FORMAT = "loopml.online"
STATE_VERSION = 1
RIVER = "river"
SKLEARN = "sklearn"
#: text categories remembered per field for the signature; past this the field's categories
#: are left open (None) and unseen values are flagged, never refused
MAX_CATEGORIES = 1000
#: an event's values are recorded for the signature on every OBSERVE_EVERY-th event
OBSERVE_EVERY = 8


def label_key(label: Any) -> tuple[str, Any]:
    """A sort key for labels of any JSON type (booleans, numbers and text apart)."""
    if isinstance(label, bool):
        return ("0bool", label)
    if isinstance(label, int | float):
        return ("1number", label)
    return ("2" + type(label).__name__, str(label))


class OnlineModel:
    """An online learner that predicts: the estimator and how events reach it.

    ``kind`` is ``river`` (a River model or pipeline, fed dicts) or ``sklearn`` (an estimator
    learning by ``partial_fit``, fed rows of ``columns`` in order, missing fields as 0.0).
    ``labels``: the classes learned so far, sorted (classification); ``classes`` the ones
    declared up front (``online.classes``; scikit-learn classifiers need them), which are
    then the labels. A River classifier that only knows two classes (``LogisticRegression``)
    learns ``label == positive``.
    """

    def __init__(
        self,
        estimator: Any,
        *,
        kind: str,
        task: str,
        learner: str,
        target: str,
        features: Sequence[str] | None = None,
        time: str | None = None,
        ignore: Sequence[str] = (),
        strings: str = "keep",
        classes: Sequence[Any] | None = None,
        positive: Any = None,
        columns: Sequence[str] | None = None,
        preprocessing: Any = None,
        labels: Sequence[Any] = (),
        fields: Mapping[str, Mapping[str, Any]] | None = None,
        learned: int = 0,
    ) -> None:
        self.estimator = estimator
        self.kind = kind
        self.task = task
        self.learner = learner
        self.target = target
        self.features = None if features is None else tuple(features)
        self.time = time
        self.ignore = tuple(ignore)
        self.strings = strings
        self.classes = None if classes is None else list(classes)
        self.positive = positive
        #: scikit-learn: the feature order of its input rows (None: set by the first batch)
        self.columns = None if columns is None else list(columns)
        #: scikit-learn: River transformers applied to each event before it is a row
        self.preprocessing = preprocessing
        self.labels: list[Any] = list(self.classes if self.classes is not None else labels)
        #: per feature: kind, missing seen, min/max (numeric), categories (text)
        self.fields: dict[str, dict[str, Any]] = {k: dict(v) for k, v in (fields or {}).items()}
        #: events learned since the learner was created
        self.learned = learned
        self._skip = {target, *self.ignore, *((time,) if time else ())}
        self._binary = task == "classification" and kind == RIVER and not _multiclass(estimator)
        #: a two-class learner's (negative, positive) labels, kept as labels are learned
        self._pair = self._binary_labels()

    # -- events -------------------------------------------------------------------------

    def features_of(self, event: Mapping[str, Any]) -> dict[str, Any]:
        """The learner's input from an event (a dict of JSON values): numbers as floats
        (booleans 1.0/0.0), text kept or dropped as ``strings`` says, missing values (None)
        left out. InvalidInputError naming the field for a value of another type."""
        out: dict[str, Any] = {}
        wanted = self.features
        keep_text = self.strings == "keep"
        for name, value in event.items():
            if (name not in wanted) if wanted is not None else (name in self._skip):
                continue
            t = type(value)
            if t is float:
                if value != value or value in (math.inf, -math.inf):
                    raise _bad_field(name, value, "a finite number")
                out[name] = value
            elif t is int or t is bool:
                out[name] = float(value)
            elif t is str:
                if keep_text:
                    out[name] = value
            elif value is not None:
                raise _bad_field(name, value, "a number, true/false, text or null")
        return out

    def label_of(self, event: Mapping[str, Any]) -> Any:
        """The target of an event, checked for the task (None: the event has none)."""
        y = event.get(self.target)
        if y is None:
            return None
        if self.task == "regression":
            if type(y) is bool or not isinstance(y, int | float) or not math.isfinite(y):
                raise _bad_field(self.target, y, "a finite number (the target)")
            return float(y)
        if not isinstance(y, str | int | float | bool):
            raise _bad_field(self.target, y, "a class label: text, a number or true/false")
        if self.classes is not None and y not in self.classes:
            raise InvalidInputError(
                f"target {self.target!r} is {y!r}, not one of the declared classes {self.classes}"[
                    :300
                ],
                where={"field": self.target},
                hint="Add the class to online.classes (scikit-learn learners need every "
                "class up front), or fix the event",
            )
        return y

    # -- predicting ---------------------------------------------------------------------

    def predict_one(self, x: Mapping[str, Any]) -> Any:
        """The label (classification) or value (regression) for features ``x``
        (:meth:`features_of`); before anything is learned, River's own answer (None, 0.0)."""
        if self.kind == SKLEARN:
            if self.columns is None or not self.learned:
                return None if self.task == "classification" else 0.0
            out = self.estimator.predict(self._rows([x]))[0]
            return _plain(out)
        if self._binary:
            proba = self.predict_proba_one(x)
            if not proba:
                return None
            return max(proba, key=proba.__getitem__)  # a tie: the negative, as River's
        return self.estimator.predict_one(x)

    def predict_proba_one(self, x: Mapping[str, Any]) -> dict[Any, float] | None:
        """Class probabilities for ``x`` by label (None for regression, and for a learner
        without probabilities: then the predicted label has 1.0)."""
        if self.task != "classification":
            return None
        if self.kind == SKLEARN:
            if self.columns is None or not self.learned:
                return {}
            rows = self._rows([x])
            if hasattr(self.estimator, "predict_proba"):
                p = self.estimator.predict_proba(rows)[0]
                return {
                    _plain(c): float(v) for c, v in zip(self.estimator.classes_, p, strict=True)
                }
            return {_plain(self.estimator.predict(rows)[0]): 1.0}
        raw = self.estimator.predict_proba_one(x)
        if not self._binary:
            return dict(raw)
        p = float(raw.get(True, 0.0))
        out = {}
        negative, positive = self._pair
        if negative is not UNKNOWN:
            out[negative] = 1.0 - p
        if positive is not UNKNOWN:
            out[positive] = p
        return out

    def _binary_labels(self) -> tuple[Any, Any]:
        """(negative, positive) labels of a two-class River learner; UNKNOWN where unknown."""
        pos = self.positive_label()
        neg = next((label for label in self.labels if label != pos), UNKNOWN)
        if neg is UNKNOWN and pos in (True, 1) and not self.labels:
            neg = False if pos is True else 0
        return neg, pos

    def positive_label(self) -> Any:
        """The label a two-class learner learns as True: ``positive`` when given, else True
        or 1 when the labels are booleans or 0/1; UNKNOWN when it cannot be told."""
        if self.positive is not None:
            return self.positive
        if all(type(label) in (bool, int) and label in (0, 1) for label in self.labels):
            # booleans or 0/1: the positive label as the stream spells it
            return next((label for label in self.labels if label == 1), True)
        return UNKNOWN

    def _rows(self, xs: Sequence[Mapping[str, Any]]) -> np.ndarray:
        if self.preprocessing is not None:
            xs = [self.preprocessing.transform_one(dict(x)) for x in xs]
        return self._matrix(xs)

    def _matrix(self, xs: Sequence[Mapping[str, Any]]) -> np.ndarray:
        """Rows of ``columns`` (missing fields and text as 0.0)."""
        cols = self.columns or []
        rows = np.zeros((len(xs), len(cols)), dtype=np.float64)
        for i, x in enumerate(xs):
            for j, c in enumerate(cols):
                v = x.get(c)
                if v is not None and not isinstance(v, str):
                    rows[i, j] = v
        return rows

    # -- what it saw (for the signature) ------------------------------------------------

    def observe(self, x: Mapping[str, Any]) -> None:
        """Record what features ``x`` holds (names, kinds, ranges, categories), for the
        signature of a registered checkpoint: every event that brings a new field or lacks
        one, and every :data:`OBSERVE_EVERY`-th event otherwise (a sample that keeps this
        off the per-event cost; the ranges and categories are those of the events seen)."""
        fields = self.fields
        if self.learned % OBSERVE_EVERY and len(x) == len(fields) and fields.keys() >= x.keys():
            return
        for name, value in x.items():
            f = fields.get(name)
            if isinstance(value, str):
                if f is None:
                    f = fields[name] = {"kind": CATEGORICAL, "categories": [], "nullable": False}
                cats = f.get("categories")
                if f["kind"] != CATEGORICAL:
                    f.update(kind=CATEGORICAL, categories=[], min=None, max=None)
                    cats = f["categories"]
                if cats is not None and value not in cats:
                    if len(cats) >= MAX_CATEGORIES:
                        f["categories"] = None
                    else:
                        cats.append(value)
            else:
                if f is None:
                    f = fields[name] = {
                        "kind": NUMERIC,
                        "min": value,
                        "max": value,
                        "nullable": False,
                        "binary": True,
                    }
                elif f["kind"] == NUMERIC:
                    if value < f["min"]:
                        f["min"] = value
                    elif value > f["max"]:
                        f["max"] = value
                if f.get("binary") and value != 0.0 and value != 1.0:
                    f["binary"] = False
        if len(x) != len(fields):
            for name, f in fields.items():
                if name not in x:
                    f["nullable"] = True

    def add_label(self, y: Any) -> None:
        """Record a learned class label (kept sorted)."""
        if y not in self.labels:
            self.labels.append(y)
            self.labels.sort(key=label_key)
            self._pair = self._binary_labels()

    def remove_label(self, y: Any) -> None:
        self.labels.remove(y)
        self._pair = self._binary_labels()

    # -- state --------------------------------------------------------------------------

    def state(self) -> dict[str, Any]:
        """The learner as a JSON tree (see :mod:`~loopml.registry.flavors.river_state`)."""
        return {
            "format": STATE_FORMAT,
            "version": STATE_VERSION,
            "kind": self.kind,
            "task": self.task,
            "learner": self.learner,
            "target": self.target,
            "features": None if self.features is None else list(self.features),
            "time": self.time,
            "ignore": list(self.ignore),
            "strings": self.strings,
            "classes": encode(self.classes, "classes"),
            "positive": encode(self.positive, "positive"),
            "columns": self.columns,
            "labels": encode(self.labels, "labels"),
            "fields": encode(self.fields, "fields"),
            "learned": self.learned,
            "estimator": encode(self.estimator, "learner"),
            "preprocessing": encode(self.preprocessing, "preprocessing"),
        }

    def state_bytes(self) -> bytes:
        """Canonical JSON of :meth:`state`: the same state gives the same bytes."""
        return dumps(self.state())

    def checksum(self) -> str:
        """sha256 (hex) of :meth:`state_bytes`."""
        return hashlib.sha256(self.state_bytes()).hexdigest()

    @classmethod
    def from_state_bytes(cls, data: bytes) -> Any:
        """Rebuild a learner from :meth:`state_bytes` (no pickle; only the classes of
        :data:`loopml.registry.allowlist.ONLINE` are imported). UnsafeFormatError for a
        class outside it, IntegrityError for a damaged document."""
        return cls.from_state(loads(data))

    @classmethod
    def from_state(cls, doc: Any) -> Any:
        if not isinstance(doc, dict) or doc.get("format") != STATE_FORMAT:
            raise IntegrityError(
                "not an online learner's state (no 'format': 'loopml.online')",
                where={"field": "format"},
                hint="Load a checkpoint written by loopml's online learner",
            )
        if doc.get("version") != STATE_VERSION:
            raise IntegrityError(
                f"online learner state version {doc.get('version')!r}, which this loopml "
                f"cannot read (it reads {STATE_VERSION})",
                where={"field": "version"},
                hint="Upgrade loopml, or start the learner again",
            )
        try:
            kind = doc["kind"]
            task = doc["task"]
            if kind not in (RIVER, SKLEARN) or task not in ("classification", "regression"):
                raise ValueError(f"kind {kind!r}, task {task!r}")
            return cls(
                decode(doc["estimator"], "learner"),
                kind=kind,
                task=task,
                learner=str(doc["learner"]),
                target=str(doc["target"]),
                features=doc.get("features"),
                time=doc.get("time"),
                ignore=doc.get("ignore") or (),
                strings=str(doc.get("strings", "keep")),
                classes=decode(doc.get("classes"), "classes"),
                positive=decode(doc.get("positive"), "positive"),
                columns=doc.get("columns"),
                preprocessing=decode(doc.get("preprocessing"), "preprocessing"),
                labels=decode(doc.get("labels"), "labels") or (),
                fields=decode(doc.get("fields"), "fields"),
                learned=int(doc.get("learned", 0)),
            )
        except (KeyError, TypeError, ValueError) as exc:
            raise IntegrityError(
                f"an online learner's state is damaged: {type(exc).__name__}: {exc}"[:400],
                where={"field": "learner"},
                hint="Use another checkpoint, or start the learner again",
            ) from exc

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.learner}, task={self.task}, learned={self.learned})"


#: a label that cannot be told yet (a two-class learner's positive label before it is known)
UNKNOWN: Any = type("_Unknown", (), {"__repr__": lambda self: "<unknown>"})()


def _multiclass(estimator: Any) -> bool:
    flag = getattr(estimator, "_multiclass", None)
    return True if flag is None else bool(flag)


def _plain(value: Any) -> Any:
    return value.item() if isinstance(value, np.generic) else value


def _bad_field(name: str, value: Any, expected: str) -> InvalidInputError:
    shown = repr(value)
    return InvalidInputError(
        f"field {name!r} is {type(value).__name__} {shown[:80]}, expected {expected}",
        where={"field": name},
        hint="Fix the event, or name the features the learner takes in online.features",
    )


# -- in a bundle --------------------------------------------------------------------------------


class EventFields(TransformerMixin, BaseEstimator):  # type: ignore[misc]
    """The feature pipeline of an online model's bundle: the validated frame, as it is.

    An online learner takes events as dicts of their fields, so a bundle hands the frame
    (columns in the signature's order) on unchanged and the flavor builds the dicts. A plain
    class with no stored function, listed in :mod:`loopml.registry.allowlist`."""

    def __init__(self, names: Sequence[str] = ()) -> None:
        self.names = names

    def fit(self, x: Any, y: Any = None) -> EventFields:
        return self

    def transform(self, x: Any) -> Any:
        return x

    def get_feature_names_out(self, input_features: Any = None) -> np.ndarray:
        return np.asarray(list(self.names), dtype=object)


def signature_of(model: OnlineModel) -> Any:
    """The :class:`~loopml.registry.signature.Signature` of what ``model`` learned: one
    input per feature it saw (in the order first seen), its classes, and the unknown policy
    ``flag`` (an online learner takes categories it never saw; a server scores them and
    lists them, never refuses them)."""
    from loopml.registry.signature import FeatureField, Signature

    if not model.fields:
        raise InvalidInputError(
            f"{model.learner} has learned no event with a feature yet",
            where={"field": "learner"},
            hint="Register a checkpoint after the learner has learned events",
        )
    inputs = []
    for name, f in model.fields.items():
        if f["kind"] == CATEGORICAL:
            cats = f.get("categories")
            inputs.append(
                FeatureField(
                    name,
                    CATEGORICAL,
                    "object",
                    bool(f.get("nullable")),
                    categories=None if cats is None else sorted(cats),
                )
            )
        else:
            inputs.append(
                FeatureField(
                    name,
                    NUMERIC,
                    "float64",
                    bool(f.get("nullable")),
                    min=f.get("min"),
                    max=f.get("max"),
                    binary=bool(f.get("binary")),
                )
            )
    classes = list(model.labels) if model.task == "classification" else None
    return Signature(inputs, model.target, model.task, classes=classes, extra={"unknown": "flag"})


def bundle_of(
    model: OnlineModel, sample: Sequence[Mapping[str, Any]] = (), *, name: str = "online"
) -> Any:
    """A :class:`~loopml.registry.bundle.ModelBundle` of ``model`` (what
    :func:`loopml.registry.register_model` takes), with up to five of the events
    ``sample`` (recent events, as they arrive) as the rows a server predicts before it
    swaps the version in."""
    from loopml.registry.bundle import SAMPLE_ROWS, ModelBundle

    sig = signature_of(model)
    rows = None
    events = list(sample)[-SAMPLE_ROWS:]
    if events:
        data: dict[str, list[Any]] = {f.name: [] for f in sig.inputs}
        for event in events:
            x = model.features_of(event)
            for f in sig.inputs:
                v = x.get(f.name)
                if f.kind == NUMERIC:
                    data[f.name].append(np.nan if v is None or isinstance(v, str) else v)
                else:
                    data[f.name].append(v if isinstance(v, str) else None)
        frame = pd.DataFrame(
            {
                f.name: pd.Series(data[f.name], dtype="float64" if f.kind == NUMERIC else "object")
                for f in sig.inputs
            }
        )
        rows = sig.validate_frame(frame, source=f"{name} sample events")
    return ModelBundle(
        EventFields(tuple(sig.names)), model, sig, OnlineFlavor.name, sample=rows, name=name
    )


def frame_records(frame: pd.DataFrame) -> list[dict[str, Any]]:
    """Rows of a validated frame as the dicts a learner takes (missing values left out)."""
    out = []
    for row in frame.to_dict("records"):
        rec = {}
        for k, v in row.items():
            if v is None or (isinstance(v, float) and v != v):
                continue
            rec[str(k)] = _plain(v)
        out.append(rec)
    return out


class OnlineFlavor(Flavor):
    """Online learners: ``learner.json``, their state as data (no pickle)."""

    name = "online"
    roots: ClassVar[tuple[str, ...]] = ()  # never a batch estimator (``loopml train``)
    members = (MEMBER,)
    extra = "online"

    def handles(self, estimator_or_class_path: object) -> bool:
        if isinstance(estimator_or_class_path, OnlineModel):
            return True
        if isinstance(estimator_or_class_path, type):
            return issubclass(estimator_or_class_path, OnlineModel)
        return class_path(estimator_or_class_path) in (
            type_name(OnlineModel),
            "loopml.train.online.learner.OnlineLearner",
        )

    def params(self, estimator: Any) -> dict[str, Any]:
        return {"learner": getattr(estimator, "learner", None)}

    def save(self, model: Any) -> dict[str, bytes]:
        return {MEMBER: model.state_bytes()}

    def manifest(self, model: Any) -> dict[str, Any]:
        return {"learner": model.learner, "checksum": model.checksum(), "learned": model.learned}

    def load(
        self,
        members: Mapping[str, bytes],
        *,
        trusted: Sequence[str],
        what: str,
        meta: Mapping[str, Any],
        checked: Mapping[str, set[str]] | None = None,
    ) -> Any:
        data = members[MEMBER]
        expected = meta.get("checksum")
        if expected is not None and hashlib.sha256(data).hexdigest() != expected:
            raise IntegrityError(
                f"{what}: {MEMBER} does not match the checksum in its manifest",
                where={"artifact": what, "file": MEMBER},
                hint="The file was changed after it was written; use another version",
            )
        return OnlineModel.from_state_bytes(data)

    def predict(self, model: Any, x: Any, task: str) -> np.ndarray:
        records = frame_records(x) if isinstance(x, pd.DataFrame) else list(x)
        if task == "regression":
            return np.asarray(
                [float(model.predict_one(r) or 0.0) for r in records], dtype=np.float64
            )
        labels = list(model.labels)
        index = {label: i for i, label in enumerate(labels)}
        out = np.zeros((len(records), len(labels)), dtype=np.float64)
        for i, r in enumerate(records):
            for label, p in (model.predict_proba_one(r) or {}).items():
                j = index.get(label)
                if j is not None:
                    out[i, j] = p
        return out


__all__ = [
    "MEMBER",
    "UNKNOWN",
    "EventFields",
    "OnlineFlavor",
    "OnlineModel",
    "bundle_of",
    "frame_records",
    "label_key",
    "signature_of",
]
