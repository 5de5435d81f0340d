"""Tensor inputs (a CNN's images) are also checked as whole images: per-image mean and std,
and a fixed-bin intensity histogram, on real digits images."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pandas as pd
import pytest
from scipy.spatial.distance import jensenshannon
from sklearn.datasets import load_digits

from loopml.monitor.drift import DriftReport, compute_drift
from loopml.monitor.report import render_html
from loopml.monitor.tensors import TensorInput, tensor_drift, tensor_inputs
from loopml.registry.signature import TENSOR_KEY, Signature, TensorSpec


@pytest.fixture(scope="module")
def digits() -> pd.DataFrame:
    return load_digits(as_frame=True).frame.drop(columns="target")


@pytest.fixture(scope="module")
def image(digits: pd.DataFrame) -> TensorInput:
    return TensorInput("image", (1, 8, 8), tuple(digits.columns))


def _split(digits: pd.DataFrame, seed: int) -> tuple[pd.DataFrame, pd.DataFrame]:
    order = np.random.default_rng(seed).permutation(len(digits))
    return digits.iloc[order[:1000]], digits.iloc[order[1000:1300]]


def test_unshifted_images_are_not_flagged(digits: pd.DataFrame, image: TensorInput) -> None:
    for seed in range(5):
        ref, cur = _split(digits, seed)
        got = tensor_drift(ref, cur, image)
        assert not got.drifted, got.line
        assert got.n_reference == 1000 and got.n_current == 300
        assert got.histogram["psi"] < 0.05


@pytest.mark.parametrize(
    ("shift", "moved"),
    [
        ("brighter", "mean"),
        ("darker", "mean"),
        ("noise", "std"),
    ],
)
def test_shifted_images_are_flagged(
    digits: pd.DataFrame, image: TensorInput, shift: str, moved: str
) -> None:
    ref, cur = _split(digits, 0)
    rng = np.random.default_rng(1)
    shifted = {
        "brighter": lambda f: np.clip(f + 3.0, 0, 16),
        "darker": lambda f: f * 0.8,
        "noise": lambda f: np.clip(f + rng.normal(0, 2.0, f.shape), 0, 16),
    }[shift](cur)
    got = tensor_drift(ref, shifted, image)
    assert got.drifted, got.line
    assert any(r.startswith(f"per-image {moved}") for r in got.reasons), got.reasons
    assert got.mean["current"] != pytest.approx(got.mean["reference"], abs=1e-3)


def test_histogram_matches_numpy_and_scipy(digits: pd.DataFrame, image: TensorInput) -> None:
    ref, cur = _split(digits, 2)
    cur = cur * 0.9
    got = tensor_drift(ref, cur, image, bins=8)
    h = got.histogram
    edges = np.linspace(0.0, 16.0, 9)
    want_ref, _ = np.histogram(ref.to_numpy().ravel(), bins=edges)
    want_cur, _ = np.histogram(cur.to_numpy().ravel(), bins=edges)
    np.testing.assert_allclose(h["edges"], edges)
    np.testing.assert_allclose(h["reference"], want_ref / want_ref.sum(), atol=1e-12)
    np.testing.assert_allclose(h["current"], want_cur / want_cur.sum(), atol=1e-12)
    assert h["js_distance"] == pytest.approx(jensenshannon(want_ref, want_cur, base=2), abs=1e-9)
    p = np.maximum(want_ref / want_ref.sum(), 1e-4)
    q = np.maximum(want_cur / want_cur.sum(), 1e-4)
    assert h["psi"] == pytest.approx(float(np.sum((q - p) * np.log(q / p))), rel=1e-6)
    means = cur.to_numpy().mean(axis=1).mean()
    assert got.mean["current"] == pytest.approx(means)


def test_compute_drift_reports_tensors_in_json_and_html(
    digits: pd.DataFrame, image: TensorInput
) -> None:
    ref, cur = _split(digits, 3)
    kinds = dict.fromkeys(digits.columns, "numeric")
    plain = compute_drift(ref, cur, kinds)
    assert plain.tensors == [] and "tensors" not in plain.to_dict()
    bright = np.clip(cur + 3.0, 0, 16)
    report = compute_drift(ref, bright, kinds, tensors=[image])
    assert report.drifted and report.tensors[0].drifted
    body = report.to_dict()
    assert body["tensors"][0]["name"] == "image" and body["tensors"][0]["drifted"]
    html = render_html(report, title="Drift", context={})
    assert "Tensor image [1, 8, 8]" in html and "histogram PSI" in html
    assert isinstance(DriftReport.from_dict(body), DriftReport)  # older readers still read it


def test_a_tensor_alone_can_make_the_dataset_drift(
    digits: pd.DataFrame, image: TensorInput
) -> None:
    # dimmer images: about half of the 64 pixel columns drift, under a 90 % drift share;
    # the images as a whole do
    ref, cur = _split(digits, 4)
    kinds = dict.fromkeys(digits.columns, "numeric")
    columns_only = compute_drift(ref, cur * 0.8, kinds, drift_share=0.9)
    assert columns_only.share_drifted < 0.9 and not columns_only.drifted
    report = compute_drift(ref, cur * 0.8, kinds, tensors=[image], drift_share=0.9)
    assert report.share_drifted == columns_only.share_drifted
    assert report.tensors[0].drifted and report.drifted


def test_tensor_inputs_from_a_signature(digits: pd.DataFrame) -> None:
    sig = Signature.from_frame(
        digits, dict.fromkeys(digits.columns, "numeric"), target="target", task="classification"
    )
    assert tensor_inputs(sig) == []
    spec = TensorSpec("image", (1, 8, 8))
    with_image = replace(sig, extra={**sig.extra, TENSOR_KEY: spec.to_dict()})
    (found,) = tensor_inputs(with_image)
    assert found.shape == (1, 8, 8) and found.columns == tuple(digits.columns)
    wrong = replace(sig, extra={TENSOR_KEY: TensorSpec("image", (1, 4, 4)).to_dict()})
    assert tensor_inputs(wrong) == []  # 64 columns are not a 1x4x4 image
