"""Importing models from files, and exporting versions: safe formats only.

``import_model`` takes a loopml bundle (checked as every load checks one), a LightGBM text
model, an XGBoost JSON or UBJ model, or a skops file (with loopml's allowlist, plus what the
user trusts). A pickle or joblib file is recognised by its name and its first bytes (a
pickle's PROTO opcode, or a compressed stream that inflates to one) and refused without ever
being unpickled, naming the safe way to save the model; only with ``trust_pickle=True`` is it
unpickled, converted into a loopml bundle, and the opt-in recorded on the version
(``trusted: ["pickle"]``). An ONNX file is kept as it is and run with ONNX Runtime (standard
operators only, no functions or external data; :mod:`loopml.registry.flavors.onnx`); its
signature is numeric, one column per input feature.

A native booster or an estimator without feature names carries no signature: the caller
names the features (``features=[...]``) or gives sample rows (``sample=`` a CSV or Parquet
file), from which the signature's kinds and ranges are taken.
"""

from __future__ import annotations

import bz2
import io
import json
import lzma
import re
import zlib
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from loopml.errors import ConflictError, InvalidInputError, LoopmlError, UnsafeFormatError
from loopml.names import check_name
from loopml.registry.bundle import SAMPLE_ROWS, ModelBundle
from loopml.registry.models import (
    CHAMPION,
    list_models,
    load_model,
    register_model,
    resolve_version,
    set_alias,
)
from loopml.registry.signature import FeatureField, Signature
from loopml.stores.records import ModelVersion
from loopml.utils import atomic_write_bytes
from loopml.workspace import Workspace

PICKLE_SUFFIXES = (".pkl", ".pickle", ".joblib", ".sav", ".dill")
TASKS = ("classification", "regression")
SAFE_FORMATS = (
    "a loopml bundle (loopml models export), a LightGBM text model (booster.save_model), an "
    "XGBoost JSON or UBJ model (booster.save_model('model.json')), a skops file "
    "(skops.io.dump), an ONNX model (.onnx)"
)
_DEFAULT_NAMES = re.compile(r"(Column_|f)\d+")  # LightGBM's and XGBoost's unnamed features


@dataclass(frozen=True)
class Imported:
    """What ``import_model`` registered: the version, its format and the alias it took."""

    version: ModelVersion
    format: str
    alias: str | None


# -- recognising a file -----------------------------------------------------------------------


def _inflated_head(data: bytes) -> bytes:
    """The first bytes of ``data`` inflated, when it is a zlib, gzip, bz2 or xz stream."""
    head = data[:4096]
    for inflate in (
        lambda: zlib.decompressobj().decompress(head, 64),
        lambda: zlib.decompressobj(wbits=31).decompress(head, 64),
        lambda: bz2.BZ2Decompressor().decompress(head, 64),
        lambda: lzma.LZMADecompressor().decompress(head, 64),
    ):
        try:
            out = inflate()
        except Exception:  # not that kind of stream
            continue
        if out:
            return out
    return b""


def is_pickle(path: Path, data: bytes) -> bool:
    """Whether ``data`` is a pickle or a joblib file (plain or compressed), by name or bytes.

    Nothing is unpickled: a pickle of protocol 2 or later starts with its PROTO opcode
    (``\\x80``); joblib's compressed files inflate to one.
    """
    if path.suffix.lower() in PICKLE_SUFFIXES:
        return True
    if data[:1] == b"\x80":
        return True
    return _inflated_head(data)[:1] == b"\x80"


def detect_format(path: Path, data: bytes) -> str:
    """``pickle``, ``bundle``, ``skops``, ``lightgbm``, ``xgboost``, ``onnx`` or ``unknown``."""
    if is_pickle(path, data):
        return "pickle"
    if data[:4] == b"PK\x03\x04":
        import zipfile

        try:
            names = set(zipfile.ZipFile(io.BytesIO(data)).namelist())
        except Exception:
            return "unknown"
        if "manifest.json" in names:
            return "bundle"
        return "skops" if "schema.json" in names else "unknown"
    if path.suffix.lower() == ".onnx":
        return "onnx"
    if data.startswith(b"tree\n") or data.startswith(b"tree\r\n"):
        return "lightgbm"
    if data[:1] == b"{" and b"learner" in data[:256]:
        return "xgboost"
    return "unknown"


def _refuse_pickle(path: Path) -> UnsafeFormatError:
    return UnsafeFormatError(
        f"{path.name} is a pickle (or joblib) file; loopml does not unpickle it, because "
        "loading a pickle runs whatever code its author put in it",
        types=["pickle"],
        where={"file": str(path)},
        hint="Save the model in a safe format and import that: skops.io.dump(model, "
        "'model.skops') for scikit-learn, booster.save_model('model.txt') for LightGBM, "
        "booster.save_model('model.json') for XGBoost. If you made this file yourself and "
        "trust it, pass --trust-pickle (trust_pickle=True); the opt-in is recorded on the "
        "version",
    )


# -- building a bundle ------------------------------------------------------------------------


def _read_sample(path: Path) -> pd.DataFrame:
    try:
        if path.suffix.lower() in (".parquet", ".pq"):
            return pd.read_parquet(path)
        return pd.read_csv(path)
    except FileNotFoundError as exc:
        raise InvalidInputError(
            f"sample file {path} does not exist",
            where={"file": str(path)},
            hint="Give a CSV or Parquet file of rows the model takes",
        ) from exc
    except Exception as exc:
        raise InvalidInputError(
            f"sample file {path} could not be read: {type(exc).__name__}: {exc}"[:300],
            where={"file": str(path)},
            hint="Give a CSV or Parquet file of rows the model takes",
        ) from exc


@dataclass
class _Inputs:
    """What the caller said about the model's inputs."""

    target: str
    task: str | None
    features: list[str] | None
    sample: pd.DataFrame | None
    source: str


def _feature_names(model_names: Sequence[str] | None, n: int | None, inputs: _Inputs) -> list[str]:
    """The model's input columns, in its order, from what it knows and what the caller said."""
    real = (
        list(model_names)
        if model_names and not all(_DEFAULT_NAMES.fullmatch(str(c)) for c in model_names)
        else None
    )
    if inputs.features is not None:
        names = inputs.features
    elif inputs.sample is not None:
        columns = [str(c) for c in inputs.sample.columns if str(c) != inputs.target]
        # LightGBM writes "mean radius" as "mean_radius": the sample's spelling is the input's
        spelled = {_booster_name(c): c for c in columns}
        names = [c if c in columns else spelled.get(c, c) for c in real] if real else columns
    elif real is not None:
        names = real
    else:
        raise InvalidInputError(
            f"{inputs.source} does not name its features, so loopml cannot build its signature",
            where={"file": inputs.source},
            hint="Pass --features a,b,c (features=[...]) in the model's order, or --sample "
            "FILE (a CSV or Parquet file of rows it takes) to record kinds and ranges too",
        )
    if n is not None and len(names) != n:
        raise InvalidInputError(
            f"{len(names)} features given, but the model in {inputs.source} takes {n}",
            where={"file": inputs.source},
            hint="Name every input of the model, in its order"
            + (f": {', '.join(real)}" if real else ""),
        )
    if (
        real is not None
        and inputs.features is not None
        and [_booster_name(c) for c in names] != [_booster_name(c) for c in real]
    ):
        raise InvalidInputError(
            f"the features given ({', '.join(names)}) are not the model's ({', '.join(real)})",
            where={"file": inputs.source},
            hint="Leave out --features: the model names its own",
        )
    if inputs.sample is not None:
        present = {str(c) for c in inputs.sample.columns}
        missing = [c for c in names if c not in present]
        if missing:
            raise InvalidInputError(
                f"the sample rows have no column {missing[0]!r}, which the model takes",
                where={"file": inputs.source, "column": missing[0]},
                hint=f"The model's features: {', '.join(names)}",
            )
    if len(set(names)) != len(names):
        raise InvalidInputError(
            "a feature is named twice",
            where={"file": inputs.source},
            hint="Give each feature once",
        )
    return names


def _booster_name(name: str) -> str:
    return re.sub(r"\s", "_", name)


def _bundle(
    estimator: Any,
    flavor: str,
    names: list[str],
    inputs: _Inputs,
    task: str,
    classes: list[Any] | None,
    *,
    pandas_output: bool = False,
) -> ModelBundle:
    """A bundle around ``estimator`` whose feature pipeline hands ``names`` on unchanged.

    The identity is a StandardScaler that neither centres nor scales: ``"passthrough"``
    becomes a FunctionTransformer when fitted, which loopml's allowlist refuses.
    """
    from sklearn.compose import ColumnTransformer
    from sklearn.preprocessing import StandardScaler

    from loopml.features.spec import infer_kind, prepare_frame

    if inputs.sample is not None:
        kinds = {c: infer_kind(inputs.sample[c]) for c in names}
        other = [c for c, k in kinds.items() if k != "numeric"]
        if other:
            raise InvalidInputError(
                f"column {other[0]!r} of the sample rows is {kinds[other[0]]}; an imported "
                "model takes numeric features only (for now)",
                where={"file": inputs.source, "column": other[0]},
                hint="Encode the column as numbers before fitting, or train the model with "
                "loopml train, whose feature pipeline encodes it",
            )
        x = prepare_frame(inputs.sample, kinds, source=f"sample {inputs.source}")
        sig = Signature.from_frame(x, kinds, target=inputs.target, task=task, classes=classes)
        picked = np.unique(np.linspace(0, len(x) - 1, min(len(x), SAMPLE_ROWS)).round())
        sample: pd.DataFrame | None = x.iloc[picked.astype(int)]
    else:
        kinds = dict.fromkeys(names, "numeric")
        x = pd.DataFrame({c: [0.0] for c in names})
        sig = Signature(
            inputs=[FeatureField(c, "numeric", "float64", nullable=True) for c in names],
            target=inputs.target,
            task=task,
            classes=classes,
        )
        sample = None
    features = ColumnTransformer(
        [("inputs", StandardScaler(with_mean=False, with_std=False), names)],
        remainder="drop",
        sparse_threshold=0.0,
        verbose_feature_names_out=False,
    )
    if pandas_output:
        features.set_output(transform="pandas")
    features.fit(x)
    return ModelBundle(features, estimator, sig, flavor, sample=sample)


def _task(inputs: _Inputs, found: str) -> str:
    if inputs.task is not None and inputs.task != found:
        raise InvalidInputError(
            f"--task {inputs.task} was given, but {inputs.source} holds a {found} model",
            where={"file": inputs.source, "field": "task"},
            hint=f"Leave out --task, or pass --task {found}",
        )
    return found


def _header(text: str, key: str, default: str) -> str:
    """A ``key=value`` line of a LightGBM model's header."""
    found = re.search(rf"^{key}=(\S+)", text, re.M)
    return default if found is None else found.group(1)


def _lightgbm(text: str, inputs: _Inputs, labels: list[Any] | None = None) -> ModelBundle:
    import lightgbm

    booster = lightgbm.Booster(model_str=text)
    objective = _header(text, "objective", "regression")
    if objective.startswith(("lambdarank", "rank_xendcg")):
        raise InvalidInputError(
            f"{inputs.source} is a ranking model (objective {objective}), which loopml does "
            "not serve",
            where={"file": inputs.source},
            hint="Import a classification or regression model",
        )
    classes: list[Any] | None = None
    if objective.startswith(("binary", "cross_entropy")):
        classes = [0, 1]
    elif objective.startswith(("multiclass", "multiclassova")):
        k = int(_header(text, "num_class", "2"))
        classes = list(range(k))
    if classes is not None and labels is not None:
        classes = labels  # a scikit-learn wrapper's own labels, in the booster's order
    task = _task(inputs, "regression" if classes is None else "classification")
    names = _feature_names(booster.feature_name(), booster.num_feature(), inputs)
    return _bundle(booster, "lightgbm", names, inputs, task, classes)


def _xgboost(data: bytes, inputs: _Inputs, labels: list[Any] | None = None) -> ModelBundle:
    try:
        import xgboost
    except ImportError as exc:
        raise InvalidInputError(
            f"{inputs.source} is an XGBoost model, and XGBoost is not installed",
            where={"file": inputs.source},
            hint="pip install 'loopml[xgboost]'",
        ) from exc
    booster = xgboost.Booster()
    booster.load_model(bytearray(data))
    config = json.loads(booster.save_config())["learner"]
    objective = str(config["objective"]["name"])
    classes: list[Any] | None = None
    if objective == "binary:logistic":
        classes = [0, 1]
    elif objective == "multi:softprob":
        classes = list(range(int(config["learner_model_param"]["num_class"])))
    elif objective.startswith(("binary:", "multi:", "rank:")):
        raise InvalidInputError(
            f"{inputs.source} has XGBoost objective {objective!r}, which does not answer "
            "class probabilities",
            where={"file": inputs.source},
            hint="loopml serves binary:logistic and multi:softprob classifiers, and regression",
        )
    if classes is not None and labels is not None:
        classes = labels
    task = _task(inputs, "regression" if classes is None else "classification")
    names = _feature_names(booster.feature_names, booster.num_features(), inputs)
    booster.feature_names = None  # the bundle's pipeline hands it plain arrays
    return _bundle(booster, "xgboost", names, inputs, task, classes)


def _onnx(data: bytes, inputs: _Inputs, what: str) -> ModelBundle:
    """An ONNX model (checked as :mod:`loopml.registry.flavors.onnx` says) behind a numeric
    signature: a classifier when it answers probabilities, its classes from the graph."""
    from loopml.registry.flavors.onnx import OnnxModel

    model = OnnxModel(data, what)
    found = "classification" if len(model.outputs) > 1 or model.classes else "regression"
    task = _task(inputs, found)
    classes: list[Any] | None = None
    if task == "classification":
        classes = model.classes
        if classes is None and model.width is not None and model.width >= 2:
            classes = list(range(model.width))
        if classes is None:
            raise InvalidInputError(
                f"{inputs.source} does not say how many classes its output {model.output!r} holds",
                where={"file": inputs.source},
                hint="Export the classifier with its class labels (skl2onnx and onnxmltools "
                "write them) or with a fixed [N, classes] probability output",
            )
    names = _feature_names(None, model.n_features, inputs)
    return _bundle(model, "onnx", names, inputs, task, classes)


def _estimator_bundle(model: Any, inputs: _Inputs) -> ModelBundle:
    """A bundle around a scikit-learn estimator, a LightGBM or XGBoost model or booster."""
    from loopml.registry.flavors import flavor_for

    flavor = flavor_for(model)
    labels = getattr(model, "classes_", None)
    labels = None if labels is None else [_plain(c) for c in labels]
    if flavor.name == "lightgbm":
        booster = getattr(model, "booster_", model)
        return _lightgbm(booster.model_to_string(), inputs, labels)
    if flavor.name == "xgboost":
        booster = model.get_booster() if hasattr(model, "get_booster") else model
        return _xgboost(bytes(booster.save_raw(raw_format="ubj")), inputs, labels)
    if not hasattr(model, "predict"):
        raise InvalidInputError(
            f"{inputs.source} holds a {type(model).__name__}, not a model (it has no predict)",
            where={"file": inputs.source},
            hint="Import a fitted estimator",
        )
    classes = getattr(model, "classes_", None)
    task = _task(inputs, "regression" if classes is None else "classification")
    if classes is not None and not hasattr(model, "predict_proba"):
        raise InvalidInputError(
            f"{inputs.source} holds a {type(model).__name__} without predict_proba; loopml "
            "serves class probabilities",
            where={"file": inputs.source},
            hint="Fit a classifier that answers probabilities (e.g. SVC(probability=True), "
            "or wrap it in CalibratedClassifierCV)",
        )
    named = getattr(model, "feature_names_in_", None)
    names = _feature_names(
        None if named is None else [str(c) for c in named],
        getattr(model, "n_features_in_", None),
        inputs,
    )
    plain = None if classes is None else [_plain(c) for c in classes]
    return _bundle(model, flavor.name, names, inputs, task, plain, pandas_output=named is not None)


def _plain(value: Any) -> Any:
    return value.item() if hasattr(value, "item") else value


def _unpickle(path: Path, data: bytes) -> Any:
    """Only called with the user's explicit trust_pickle=True (joblib reads plain pickles
    and its own compressed files alike)."""
    import joblib

    try:
        return joblib.load(io.BytesIO(data))
    except Exception as exc:
        raise InvalidInputError(
            f"{path.name} could not be unpickled: {type(exc).__name__}: {exc}"[:300],
            where={"file": str(path)},
            hint="Unpickle it where it was made (same library versions) and save it with "
            "skops.io.dump or booster.save_model",
        ) from exc


# -- the API ----------------------------------------------------------------------------------


def import_model(
    ws: Workspace,
    path: str | Path,
    name: str,
    *,
    target: str | None = None,
    task: str | None = None,
    features: Iterable[str] | None = None,
    sample: str | Path | None = None,
    trust: Iterable[str] | None = None,
    trust_pickle: bool = False,
) -> Imported:
    """Register the model in the file ``path`` as a new version of ``name``.

    See the module's documentation for the formats. ``target`` names the target column (for
    the signature; default ``target``), ``task`` checks what the file holds, ``features`` or
    ``sample`` give the inputs of a model that does not name them, ``trust`` names types
    beyond loopml's allowlist in a skops file or bundle. A run is recorded with params
    ``{"imported_from": path}``; the first active version of a name takes ``champion``.
    """
    check_name(name, "model")
    path = Path(path)
    if task is not None and task not in TASKS:
        raise InvalidInputError(
            f"task {task!r} is not one of {', '.join(TASKS)}",
            where={"field": "task"},
            hint="Pass --task classification or --task regression",
        )
    savedmodel = path.is_dir()  # a TensorFlow SavedModel (registry/flavors/keras_savedmodel)
    try:
        data = b"" if savedmodel else path.read_bytes()
    except OSError as exc:
        raise InvalidInputError(
            f"cannot read {path}: {exc.strerror or exc}",
            where={"file": str(path)},
            hint="Give the path of a model file",
        ) from exc
    inputs = _Inputs(
        target=target or "target",
        task=task,
        features=None if features is None else [str(f).strip() for f in features if str(f)],
        sample=None if sample is None else _read_sample(Path(sample)),
        source=path.name,
    )
    fmt = "savedmodel" if savedmodel else detect_format(path, data)
    trusted = list(trust or ())
    what = f"{path.name} (being imported)"
    if savedmodel:
        bundle, fmt = _savedmodel(path, inputs, trusted, what)
    elif fmt == "pickle":
        if not trust_pickle:
            raise _refuse_pickle(path)
        bundle = _estimator_bundle(_unpickle(path, data), inputs)
        trusted.append("pickle")
    elif fmt == "bundle":
        bundle = ModelBundle.from_bytes(data, what=what, trusted=trusted)
    elif fmt == "skops":
        from loopml.registry.allowlist import check_trust
        from loopml.registry.safeload import load_skops

        model = load_skops(data, path.name, what, check_trust(trusted, "--trust"))
        bundle = _estimator_bundle(model, inputs)
    elif fmt == "lightgbm":
        bundle = _lightgbm(data.decode(errors="replace"), inputs)
    elif fmt == "xgboost":
        bundle = _xgboost(data, inputs)
    elif fmt == "onnx":
        bundle = _onnx(data, inputs, what)
    else:
        raise InvalidInputError(
            f"{path.name} is not a model file loopml imports",
            where={"file": str(path)},
            hint=f"loopml imports {SAFE_FORMATS}",
        )
    had_active = any(r["status"] == "active" for r in _versions(ws, name))
    mv = register_model(
        ws,
        name,
        bundle,
        trust=trusted,
        run_params={"imported_from": str(path), "format": fmt},
    )
    alias = None
    if not had_active:
        try:
            set_alias(
                ws,
                name,
                CHAMPION,
                mv.version,
                expected=None,
                reason=f"first version of {name}, imported from {path.name}",
            )
            alias = CHAMPION
        except ConflictError:
            pass  # a concurrent registration took it first
    return Imported(mv, fmt, alias)


def _savedmodel(
    path: Path, inputs: _Inputs, trusted: list[str], what: str
) -> tuple[ModelBundle, str]:
    """A SavedModel folder: converted to ONNX, or kept with the trust (see the flavor)."""
    from loopml.registry.flavors.keras_savedmodel import is_savedmodel, savedmodel_bundle
    from loopml.registry.flavors.onnx import OnnxModel

    if not is_savedmodel(path):
        raise InvalidInputError(
            f"{path} is a folder without saved_model.pb, not a TensorFlow SavedModel",
            where={"file": str(path)},
            hint=f"loopml imports a SavedModel folder, or {SAFE_FORMATS}",
        )

    def wrap(model: Any, flavor: str, task: str, classes: list[Any] | None) -> ModelBundle:
        names = _feature_names(None, model.n_features, inputs)
        return _bundle(model, flavor, names, inputs, task, classes)

    return savedmodel_bundle(
        path,
        task=inputs.task,
        trusted=trusted,
        onnx_bundle=lambda data, task, classes: wrap(OnnxModel(data, what), "onnx", task, classes),
        kept_bundle=lambda model, task, classes: wrap(model, "savedmodel", task, classes),
    )


def _versions(ws: Workspace, name: str) -> list[dict[str, Any]]:
    try:
        return list_models(ws, name, all=True)
    except LoopmlError:
        return []


def export_model(ws: Workspace, ref: str, path: str | Path, *, format: str = "bundle") -> Path:
    """Write ``NAME@VERSION`` (or an alias) to ``path``: the bundle as stored (checked by its
    sha256 and loaded once, so a damaged artifact is never written out), or with
    ``format="onnx"`` its compiled ONNX graph (checked against the native model, see
    :mod:`loopml.registry.compiled`; ConfigError naming the reason for a model that does
    not compile). The graph takes one input per signature column (numeric: double
    ``[N, 1]``, categorical: string ``[N, 1]``) and answers ``__loopml_output``: class
    probabilities in the order of the signature's classes, or regression values."""
    path = Path(path)
    if format not in ("bundle", "onnx"):
        raise InvalidInputError(
            f"format {format!r} is not bundle or onnx",
            where={"field": "format"},
            hint="Pass --format bundle or --format onnx",
        )
    record = resolve_version(ws, ref)
    exact = f"{record.name}@{record.version}"
    if format == "onnx":
        from loopml.registry.compiled import CompiledModel

        predictor = load_model(ws, exact, compile="onnx").predictor
        assert isinstance(predictor, CompiledModel)  # compile="onnx" raised otherwise
        data = predictor.onnx_bytes
    else:
        load_model(ws, exact)  # refuses a damaged or unsafe one
        data = ws.artifacts.get(record.artifact_sha256)
    try:
        atomic_write_bytes(path, data)
    except OSError as exc:
        raise InvalidInputError(
            f"cannot write {path}: {exc.strerror or exc}",
            where={"file": str(path)},
            hint="Choose a path in a folder you can write",
        ) from exc
    return path


__all__ = ["Imported", "detect_format", "export_model", "import_model", "is_pickle"]
