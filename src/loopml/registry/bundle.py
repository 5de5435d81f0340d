"""The model artifact: fitted feature pipeline + estimator + signature, in one file.

A bundle is a zip holding ``manifest.json`` (format, flavor, signature), ``features.skops``
(the fitted ColumnTransformer) and the estimator: ``model.skops`` for scikit-learn,
``model.lgb.txt`` (LightGBM's own text format) for LightGBM. Nothing is pickled; on load,
skops accepts only types from scikit-learn, NumPy and SciPy.
"""

from __future__ import annotations

import io
import zipfile
from dataclasses import dataclass
from typing import Any

import numpy as np
import orjson
import pandas as pd

from loopml.errors import IntegrityError
from loopml.registry.signature import Signature

FORMAT_VERSION = 1
TRUSTED_PREFIXES = ("sklearn.", "numpy.", "scipy.", "builtins.", "collections.")
FLAVORS = ("sklearn", "lightgbm")


@dataclass(frozen=True)
class Prediction:
    """Model output for a batch of rows."""

    labels: np.ndarray  # predicted class (classification) or value (regression)
    probabilities: np.ndarray | None  # n x k class probabilities, classification only
    classes: list[Any] | None

    @property
    def scores(self) -> np.ndarray:
        """One number per row: P(positive) for binary, max probability, or the value."""
        if self.probabilities is None:
            return self.labels.astype(np.float64)
        if self.probabilities.shape[1] == 2:
            return self.probabilities[:, 1]
        return self.probabilities.max(axis=1)  # type: ignore[no-any-return]


class ModelBundle:
    """A trained model ready to predict: what was trained is exactly what is served."""

    def __init__(self, features: Any, estimator: Any, signature: Signature, flavor: str) -> None:
        if flavor not in FLAVORS:
            raise ValueError(f"unknown flavor {flavor!r}")
        self.features = features
        if flavor == "lightgbm" and hasattr(estimator, "booster_"):
            # predict with the Booster in memory too, exactly as after a reload
            estimator = estimator.booster_
        self.estimator = estimator
        self.signature = signature
        self.flavor = flavor

    # -- predicting -------------------------------------------------------------------------

    def predict_frame(self, frame: pd.DataFrame) -> Prediction:
        """Predict rows already validated against the signature (columns in order)."""
        x = self.features.transform(frame)
        classes = self.signature.classes
        if self.flavor == "lightgbm":
            raw = np.asarray(self.estimator.predict(x), dtype=np.float64)
            if self.signature.task == "regression":
                return Prediction(raw, None, None)
            proba = np.column_stack([1.0 - raw, raw]) if raw.ndim == 1 else raw
        else:
            if self.signature.task == "regression":
                return Prediction(np.asarray(self.estimator.predict(x)), None, None)
            proba = np.asarray(self.estimator.predict_proba(x), dtype=np.float64)
        labels = np.asarray(classes)[proba.argmax(axis=1)]
        return Prediction(labels, proba, classes)

    def predict_records(self, records: object) -> Prediction:
        return self.predict_frame(self.signature.validate_records(records))

    def predict(self, frame: pd.DataFrame, *, source: str = "input") -> Prediction:
        """Validate a table against the signature (extra columns ignored), then predict."""
        return self.predict_frame(self.signature.validate_frame(frame, source=source))

    # -- bytes ------------------------------------------------------------------------------

    def to_bytes(self) -> bytes:
        import skops.io as sio

        manifest = {
            "format": FORMAT_VERSION,
            "flavor": self.flavor,
            "signature": self.signature.to_dict(),
        }
        buf = io.BytesIO()
        # Fixed timestamps inside the zip; the sha256 is taken of these bytes as stored.
        with zipfile.ZipFile(buf, "w", compression=zipfile.ZIP_DEFLATED) as zf:
            _add(zf, "manifest.json", orjson.dumps(manifest, option=orjson.OPT_SORT_KEYS))
            _add(zf, "features.skops", sio.dumps(self.features))
            if self.flavor == "lightgbm":
                _add(zf, "model.lgb.txt", self.estimator.model_to_string().encode())
            else:
                _add(zf, "model.skops", sio.dumps(self.estimator))
        return buf.getvalue()

    @classmethod
    def from_bytes(cls, data: bytes, *, what: str = "model artifact") -> ModelBundle:
        try:
            zf = zipfile.ZipFile(io.BytesIO(data))
            manifest = orjson.loads(zf.read("manifest.json"))
        except (zipfile.BadZipFile, KeyError, orjson.JSONDecodeError) as exc:
            raise IntegrityError(
                f"{what} is not a loopml model bundle",
                where={"artifact": what},
                hint="The file is damaged or was not written by loopml",
            ) from exc
        if manifest.get("format") != FORMAT_VERSION or manifest.get("flavor") not in FLAVORS:
            raise IntegrityError(
                f"{what} has format {manifest.get('format')!r} and flavor "
                f"{manifest.get('flavor')!r}, which this loopml cannot read",
                where={"artifact": what},
                hint="Upgrade loopml or retrain the model",
            )
        flavor = manifest["flavor"]
        features = _skops_load(zf.read("features.skops"), what)
        if flavor == "lightgbm":
            import lightgbm

            estimator: Any = lightgbm.Booster(model_str=zf.read("model.lgb.txt").decode())
        else:
            estimator = _skops_load(zf.read("model.skops"), what)
        return cls(features, estimator, Signature.from_dict(manifest["signature"]), flavor)


def _add(zf: zipfile.ZipFile, name: str, data: bytes) -> None:
    info = zipfile.ZipInfo(name, date_time=(1980, 1, 1, 0, 0, 0))
    info.compress_type = zipfile.ZIP_DEFLATED
    zf.writestr(info, data)


def _skops_load(data: bytes, what: str) -> Any:
    import skops.io as sio

    untrusted = sio.get_untrusted_types(data=data)
    refused = [t for t in untrusted if not t.startswith(TRUSTED_PREFIXES)]
    if refused:
        raise IntegrityError(
            f"{what} contains types loopml does not trust: {', '.join(refused[:5])}",
            where={"artifact": what},
            hint="Only scikit-learn, NumPy and SciPy objects are loaded from artifacts",
        )
    return sio.loads(data, trusted=untrusted)
