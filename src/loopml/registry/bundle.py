"""The model artifact: fitted feature pipeline + estimator + signature, in one file.

A bundle is a zip holding ``manifest.json`` (format, flavor, signature, and what the flavor
keeps under ``model``), the fitted feature pipeline (``features.json``, loopml's declared JSON
of its own steps, :mod:`loopml.registry.statejson`; ``features.skops`` when the pipeline holds
anything that format does not write, and in bundles written before it; the manifest's
``features`` names which), the estimator in
its flavor's files (:mod:`loopml.registry.flavors`: ``model.skops`` for scikit-learn,
``model.lgb.txt`` for LightGBM, ``model.xgb.json`` for XGBoost) and ``sample.parquet``: a few
training rows as they enter the feature pipeline, which a server predicts before it swaps a
version in (bundles written before it have none). Nothing is pickled. On load, the skops
files may name only the types in :mod:`loopml.registry.allowlist`, plus those the user
trusted when registering the version (recorded on the version, never read from the bundle);
see :mod:`loopml.registry.safeload`.
"""

from __future__ import annotations

import io
import zipfile
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, replace
from typing import Any

import numpy as np
import orjson
import pandas as pd

from loopml.errors import IntegrityError, LoopmlError
from loopml.kinds import CATEGORICAL, NUMERIC
from loopml.registry import statejson
from loopml.registry.allowlist import allowed_types, check_trust
from loopml.registry.flavors import Flavor, flavor_names, get_flavor, known_flavor
from loopml.registry.limits import check_float32
from loopml.registry.safeload import (
    check_unpacked,
    load_skops,
    refused_names,
    type_names,
    unsafe,
)
from loopml.registry.signature import Signature, Validated
from loopml.registry.threshold import labels_at, positive_index

FORMAT_VERSION = 1
FEATURES_FILE = "features.skops"
FEATURES_JSON = "features.json"
SAMPLE_ROWS = 5  # training rows kept in a bundle to warm a version up
SAMPLE_FILE = "sample.parquet"


@dataclass(frozen=True)
class Prediction:
    """Model output for a batch of rows."""

    labels: np.ndarray  # predicted class (classification) or value (regression)
    probabilities: np.ndarray | None  # n x k class probabilities, classification only
    classes: list[Any] | None
    # per row, the fields holding a value training never had (unknown policy "flag");
    # None when no row has one
    unknown_fields: list[list[str]] | None = None
    # binary: the column of ``probabilities`` holding P(positive) (data.positive)
    positive_index: int = 1

    @property
    def scores(self) -> np.ndarray:
        """One number per row: P(positive) for binary, max probability, or the value."""
        if self.probabilities is None:
            return self.labels.astype(np.float64)
        if self.probabilities.shape[1] == 2:
            return self.probabilities[:, self.positive_index]
        return self.probabilities.max(axis=1)  # type: ignore[no-any-return]


class ModelBundle:
    """A trained model ready to predict: what was trained is exactly what is served."""

    def __init__(
        self,
        features: Any,
        estimator: Any,
        signature: Signature,
        flavor: str,
        *,
        sample: pd.DataFrame | None = None,
        trusted: Iterable[str] = (),
        name: str = "model",
    ) -> None:
        if flavor not in flavor_names():
            raise ValueError(f"unknown flavor {flavor!r}")
        self.features = features
        # predict with what a reload gives (a LightGBM or XGBoost Booster), exactly
        self._flavor = get_flavor(flavor)  # looked up once, not on every predict
        self.estimator = self._flavor.prepare(estimator)
        self.signature = signature
        self.flavor = flavor
        #: a few training rows in the validated layout (None: a bundle written before)
        self.sample = None if sample is None else sample.reset_index(drop=True)
        #: names beyond loopml's allowlist that the user trusted for this model
        self.trusted = check_trust(trusted)
        self.name = name  # how messages name it, e.g. "cancer@3"

    def warm_up(self) -> None:
        """Predict the sample rows; IntegrityError when the model cannot (nothing to do
        for a bundle without a sample)."""
        if self.sample is None or len(self.sample) == 0:
            return
        n = len(self.sample)
        try:
            p = self.predict_frame(self.sample)
            problem = None
            if len(p.labels) != n:
                problem = f"{len(p.labels)} predictions for {n} rows"
            elif p.probabilities is not None and (
                p.probabilities.shape != (n, len(p.classes or []))
                or not np.isfinite(p.probabilities).all()
            ):
                problem = f"probabilities of shape {p.probabilities.shape} or not finite"
            elif p.probabilities is None and not np.isfinite(p.scores).all():
                problem = "a prediction that is not a finite number"
        except Exception as exc:
            problem = f"{type(exc).__name__}: {exc}"[:300]
        if problem is not None:
            raise IntegrityError(
                f"model {self.name} cannot predict its own sample rows: {problem}",
                where={"artifact": self.name},
                hint="The version loads but does not work; retrain it, and keep serving the "
                "version that does",
            )

    @property
    def flavor_impl(self) -> Flavor:
        """The :class:`~loopml.registry.flavors.Flavor` that saves and predicts this model."""
        return self._flavor

    # -- predicting -------------------------------------------------------------------------

    def predict_frame(self, frame: pd.DataFrame) -> Prediction:
        """Predict rows already validated against the signature (columns in order)."""
        x = self.features.transform(frame)
        classes = self.signature.classes
        task = self.signature.task
        # regression: the values; classification: class probabilities (registry.flavors)
        proba = self.flavor_impl.predict(self.estimator, x, task)
        if task == "regression":
            return Prediction(proba, None, None)
        # the label at the version's decision threshold, if it has one (registry.threshold)
        extra = self.signature.extra
        labels = labels_at(proba, classes or [], extra)
        return Prediction(labels, proba, classes, positive_index=positive_index(classes, extra))

    def predict_columns(self, columns: Mapping[str, np.ndarray]) -> Prediction:
        """Predict checked :data:`~loopml.registry.signature.Columns` (one array per input,
        as the validator gives them) natively: one DataFrame per call, built as the
        validator builds one, so the answer is that of :meth:`predict_frame`."""
        data: dict[str, Any] = {}
        for f in self.signature.inputs:
            col = columns[f.name]
            if f.kind == CATEGORICAL:
                arr = np.asarray(col, dtype=object)
                missing = pd.isna(arr)
                if missing.any():  # None or NaN: the imputer and the encoder want NaN
                    arr = arr.copy()
                    arr[missing] = np.nan
                data[f.name] = arr
            elif f.kind == NUMERIC:
                data[f.name] = np.asarray(col, dtype=np.float64)
            else:
                data[f.name] = np.asarray(col)
        return self.predict_frame(pd.DataFrame(data, columns=self.signature.names, copy=False))

    def predict_records(
        self, records: object, *, unknown: str | None = None, extra: str = "ignore"
    ) -> Prediction:
        """Validate JSON-like records as the server does, then predict (see
        :meth:`Signature.check_records` for the policies)."""
        checked = self.signature.check_records(records, unknown=unknown, extra=extra)
        return self._predict_checked(checked, None)

    def predict(
        self,
        frame: pd.DataFrame,
        *,
        source: str = "input",
        unknown: str | None = None,
        extra: str = "ignore",
    ) -> Prediction:
        """Validate a table against the signature (extra columns ignored), then predict; rows
        with values training never had are scored and listed in ``unknown_fields``, or
        refused, as the unknown policy says (:meth:`Signature.check_frame`)."""
        checked = self.signature.check_frame(frame, source=source, unknown=unknown, extra=extra)
        return self._predict_checked(checked, source)

    def _predict_checked(self, checked: Validated, source: str | None) -> Prediction:
        # finite numbers beyond float32 pass validation, then crash the model: name them
        check_float32(checked.frame, source=source)
        p = self.predict_frame(checked.frame)
        if checked.any_flagged:
            p = replace(p, unknown_fields=checked.unknown_fields())
        return p

    # -- bytes ------------------------------------------------------------------------------

    def to_bytes(self) -> bytes:
        flavor = self.flavor_impl
        features_member, features_blob = _features_bytes(self.features)
        manifest: dict[str, Any] = {
            "format": FORMAT_VERSION,
            "flavor": self.flavor,
            "signature": self.signature.to_dict(),
            "features": features_member,
        }
        meta = flavor.manifest(self.estimator)
        if meta:
            manifest["model"] = meta
        if self.sample is not None:
            manifest["sample"] = SAMPLE_FILE
        buf = io.BytesIO()
        # Fixed timestamps inside the zip; the sha256 is taken of these bytes as stored.
        with zipfile.ZipFile(buf, "w", compression=zipfile.ZIP_DEFLATED) as zf:
            _add(zf, "manifest.json", orjson.dumps(manifest, option=orjson.OPT_SORT_KEYS))
            _add(zf, features_member, features_blob)
            for member, blob in flavor.save(self.estimator).items():
                _add(zf, member, blob)
            if self.sample is not None:
                _add(zf, SAMPLE_FILE, _parquet(self.sample))
        return buf.getvalue()

    @classmethod
    def from_bytes(
        cls, data: bytes, *, what: str = "model artifact", trusted: Iterable[str] = ()
    ) -> ModelBundle:
        """Read a bundle written by :meth:`to_bytes`, refusing what loopml does not load.

        ``trusted`` names types or functions beyond :mod:`loopml.registry.allowlist` that the
        user opted in to for this model (``load_model`` passes the version's record, never
        anything from the bundle). The returned bundle's ``trusted`` lists the opt-ins the
        file needed. Raises UnsafeFormatError naming what was refused, IntegrityError for
        anything damaged.
        """
        trust = check_trust(trusted)
        try:
            return cls._read(data, what, trust)
        except LoopmlError:
            raise
        except Exception as exc:  # a malformed manifest, a LightGBM parse error...
            raise IntegrityError(
                f"{what} could not be read: {type(exc).__name__}: {exc}"[:400],
                where={"artifact": what},
                hint="The file is damaged or was not written by this loopml; retrain the model",
            ) from exc

    @classmethod
    def _read(cls, data: bytes, what: str, trust: tuple[str, ...]) -> ModelBundle:
        try:
            zf = zipfile.ZipFile(io.BytesIO(data))
            check_unpacked(zf, what)
            manifest = orjson.loads(zf.read("manifest.json"))
        except LoopmlError:
            raise
        except Exception as exc:  # BadZipFile, KeyError, JSON and zlib errors...
            raise IntegrityError(
                f"{what} is not a loopml model bundle",
                where={"artifact": what},
                hint="The file is damaged or was not written by loopml",
            ) from exc
        if not isinstance(manifest, dict):
            manifest = {}
        if manifest.get("format") != FORMAT_VERSION:
            raise IntegrityError(
                f"{what} has format {manifest.get('format')!r} and flavor "
                f"{manifest.get('flavor')!r}, which this loopml cannot read",
                where={"artifact": what},
                hint="Upgrade loopml or retrain the model",
            )
        flavor = known_flavor(manifest.get("flavor"), what)
        signature = Signature.from_dict(manifest["signature"])
        meta = manifest.get("model") or {}
        if not isinstance(meta, dict):
            raise IntegrityError(
                f"{what} has a manifest whose model field is not an object",
                where={"artifact": what, "file": "manifest.json"},
                hint="The file is damaged or was not written by loopml; retrain the model",
            )
        features_member = manifest.get("features", FEATURES_FILE)
        if features_member not in (FEATURES_FILE, FEATURES_JSON):
            raise IntegrityError(
                f"{what} names its feature pipeline {features_member!r}, which is not "
                f"{FEATURES_JSON} or {FEATURES_FILE}",
                where={"artifact": what, "file": "manifest.json"},
                hint="The file is damaged or was not written by loopml; retrain the model",
            )
        blobs = {m: _member(zf, m, what) for m in (features_member, *flavor.members)}
        # every file is checked before any is loaded, so that a refusal names every type
        declared = None
        if features_member == FEATURES_JSON:
            declared = statejson.parse(blobs[FEATURES_JSON], FEATURES_JSON, what)
        skops_files = (*(() if declared is not None else (FEATURES_FILE,)), *flavor.skops_members)
        names = {m: type_names(blobs[m], m, what) for m in skops_files}
        if declared is not None:
            names[FEATURES_JSON] = declared.names
        needed = set().union(*names.values())
        # classes a flavor imports from its manifest (a torch architecture), checked alike
        flavor_types = getattr(flavor, "types", None)
        if callable(flavor_types):
            needed |= flavor_types(meta)
        refused = refused_names(needed, trust)
        if refused:
            raise unsafe(refused, what)
        if declared is not None:
            features = statejson.build(declared, trust, allowed_types())
        else:
            features = load_skops(
                blobs[FEATURES_FILE], FEATURES_FILE, what, trust, names=names[FEATURES_FILE]
            )
        model_files = {m: blobs[m] for m in flavor.members}
        try:
            estimator = flavor.load(model_files, trusted=trust, what=what, meta=meta, checked=names)
        except ImportError as exc:  # the flavor's library is an extra this machine lacks
            package = f"'loopml[{flavor.extra}]'" if flavor.extra else flavor.name
            raise LoopmlError(
                f"{what} is a {flavor.name} model, and {flavor.name} is not installed here",
                where={"artifact": what},
                hint=f"pip install {package} where the model is loaded",
                code="missing_dependency",
            ) from exc
        return cls(
            features,
            estimator,
            signature,
            flavor.name,
            sample=_read_sample(zf, manifest, signature, what),
            trusted=sorted(needed - allowed_types()),
            name=what,
        )


def _features_bytes(features: Any) -> tuple[str, bytes]:
    """The feature pipeline's member and bytes: declared JSON when it holds only what that
    format writes (loopml's own pipelines do), else skops."""
    try:
        return FEATURES_JSON, statejson.dumps(features, allowed_types())
    except statejson.NotEncodable:
        from loopml.registry.skopsio import skops_io

        return FEATURES_FILE, skops_io().dumps(features)


def _add(zf: zipfile.ZipFile, name: str, data: bytes) -> None:
    info = zipfile.ZipInfo(name, date_time=(1980, 1, 1, 0, 0, 0))
    info.compress_type = zipfile.ZIP_DEFLATED
    zf.writestr(info, data)


def bundle_member(data: bytes, name: str, what: str) -> bytes:
    """The member ``name`` of the bundle ``data`` (a version's artifact, read again from the
    store, e.g. for a fine-tune); IntegrityError when it is not there or not readable."""
    try:
        with zipfile.ZipFile(io.BytesIO(data)) as zf:
            check_unpacked(zf, what, name)
            return zf.read(name)
    except LoopmlError:
        raise
    except Exception as exc:  # KeyError (absent), BadZipFile, zlib.error...
        raise IntegrityError(
            f"{what} has no readable {name}: {type(exc).__name__}",
            where={"artifact": what, "file": name},
            hint="The file is damaged or was not written by loopml",
        ) from exc


def _member(zf: zipfile.ZipFile, name: str, what: str) -> bytes:
    try:
        return zf.read(name)
    except Exception as exc:  # KeyError (absent), BadZipFile, zlib.error, EOFError...
        raise IntegrityError(
            f"{what} has no readable {name}",
            where={"artifact": what, "file": name},
            hint="The file is damaged or was not written by loopml",
        ) from exc


def _parquet(frame: pd.DataFrame) -> bytes:
    import pyarrow as pa
    import pyarrow.parquet as pq

    buf = io.BytesIO()
    pq.write_table(pa.Table.from_pandas(frame, preserve_index=False), buf)
    return buf.getvalue()


def _read_sample(
    zf: zipfile.ZipFile, manifest: dict[str, Any], signature: Signature, what: str
) -> pd.DataFrame | None:
    """The sample rows in the validated layout; None for a bundle written without them."""
    if manifest.get("sample") is None:
        return None
    import pyarrow.parquet as pq

    blob = _member(zf, SAMPLE_FILE, what)
    try:
        frame = pq.read_table(io.BytesIO(blob)).to_pandas(ignore_metadata=True)
        return signature.validate_frame(frame, source=f"{what} sample rows")
    except Exception as exc:
        raise IntegrityError(
            f"{what} has unreadable sample rows: {type(exc).__name__}: {exc}"[:400],
            where={"artifact": what, "file": SAMPLE_FILE},
            hint="The file is damaged or was not written by loopml; retrain the model",
        ) from exc
