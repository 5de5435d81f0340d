import numpy as np
import pytest
from sklearn.datasets import load_breast_cancer, load_diabetes
from sklearn.ensemble import RandomForestClassifier
from sklearn.linear_model import Ridge

from loopml.errors import IntegrityError, UnsafeFormatError
from loopml.features import FeatureSpec, build_transformer, prepare_frame, resolve_kinds
from loopml.registry import ModelBundle, Signature


def _fit(frame, target, estimator, task, flavor="sklearn"):  # type: ignore[no-untyped-def]
    spec = FeatureSpec.from_config({})
    kinds = resolve_kinds(spec, frame, target)
    x = prepare_frame(frame, kinds)
    ct = build_transformer(spec, kinds).fit(x)
    est = estimator.fit(ct.transform(x), frame[target])
    classes = list(est.classes_) if task == "classification" else None
    sig = Signature.from_frame(x, kinds, target=target, task=task, classes=classes)
    return ModelBundle(ct, est, sig, flavor), x


def test_round_trip_gives_identical_predictions() -> None:
    frame = load_breast_cancer(as_frame=True).frame
    bundle, x = _fit(
        frame, "target", RandomForestClassifier(n_estimators=10, random_state=0), "classification"
    )
    again = ModelBundle.from_bytes(bundle.to_bytes())
    a, b = bundle.predict_frame(x), again.predict_frame(x)
    np.testing.assert_array_equal(a.probabilities, b.probabilities)
    assert list(a.labels) == list(b.labels)
    assert a.classes == [0, 1]
    assert a.scores.shape == (len(x),)
    np.testing.assert_allclose(a.scores, a.probabilities[:, 1])


def test_regression_bundle() -> None:
    frame = load_diabetes(as_frame=True).frame
    bundle, x = _fit(frame, "target", Ridge(), "regression")
    p = ModelBundle.from_bytes(bundle.to_bytes()).predict_frame(x)
    assert p.probabilities is None
    assert p.labels.dtype == np.float64
    np.testing.assert_allclose(p.scores, p.labels)


def test_lightgbm_bundle_matches_native_predict_proba() -> None:
    lightgbm = pytest.importorskip("lightgbm")
    frame = load_breast_cancer(as_frame=True).frame
    est = lightgbm.LGBMClassifier(n_estimators=20, verbose=-1)
    bundle, x = _fit(frame, "target", est, "classification", flavor="lightgbm")
    again = ModelBundle.from_bytes(bundle.to_bytes())
    np.testing.assert_allclose(
        again.predict_frame(x).probabilities, est.predict_proba(bundle.features.transform(x))
    )


def test_damaged_or_untrusted_artifacts_are_refused() -> None:
    with pytest.raises(IntegrityError, match="not a loopml model bundle"):
        ModelBundle.from_bytes(b"not a zip")
    frame = load_breast_cancer(as_frame=True).frame
    bundle, _ = _fit(frame, "target", RandomForestClassifier(n_estimators=2), "classification")
    import io
    import zipfile

    import skops.io as sio

    data = bundle.to_bytes()
    src = zipfile.ZipFile(io.BytesIO(data))
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as dst:
        for item in src.namelist():
            payload = src.read(item)
            if item == "model.skops":
                payload = sio.dumps(IntegrityError("x"))  # a type skops must not be told to trust
            dst.writestr(item, payload)
    with pytest.raises(UnsafeFormatError, match="does not load without an opt-in"):
        ModelBundle.from_bytes(buf.getvalue())
