"""relative_d98 against a transcription of the TrackRAD2025 evaluation's ``DoseMetric``.

``_official_relative_d98`` below is our own step-by-step transcription of the
official definition (``LMUK-RADONC-PHYS-RES/trackrad2025``, ``evaluation/evaluate.py``:
``DoseMetric._compute_tensor``, ``shift_by_centroid_diff``, ``calculate_dvh``,
``calculate_dvh_for_labels``, ``calculate_d_x``), written loop by loop the way
that code runs (batch of (B, 1, H, W), per-label DVH dictionary keyed by bin
centre, D-x read by interpolation), without pandas. The implementation under
test (tracker.gating.dose) is vectorised and written independently; the two
must agree within 1e-6.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy import ndimage

from tracker.gating.dose import d98, planned_dose, relative_d98


def _official_dvh(dose: np.ndarray, label: np.ndarray, bin_width: float = 0.1) -> dict[float, float]:
    max_dose = dose.max()
    edges_in = np.arange(-bin_width / 2, max_dose + bin_width, bin_width)
    counts, edges = np.histogram(dose[np.where(label)], bins=edges_in)
    centres = (edges[1:] + edges[:-1]) / 2.0
    cumulative = np.cumsum(counts[::-1])[::-1]
    if not np.all(cumulative == 0):
        cumulative = cumulative / cumulative.max()
    centres = np.round(centres.astype(float), decimals=10)
    return dict(zip(centres.tolist(), cumulative.tolist(), strict=True))


def _official_d_x(dvh: dict[float, float], x: float) -> float:
    bins = np.array(list(dvh.keys()))
    values = np.array(list(dvh.values()))
    value = np.interp(x / 100, values[::-1], bins[::-1])
    if values[0] == np.sum(values):
        value = 0
    return float(value)


def _official_relative_d98(y_pred: np.ndarray, y_true: np.ndarray, sigma: float) -> float:
    y_pred = y_pred[:, None].astype(np.uint8)  # (B, 1, H, W) as the challenge feeds MONAI-style metrics
    y_true = y_true[:, None].astype(np.uint8)
    empty = np.sum(y_true, axis=(1, 2, 3)) == 0
    y_pred, y_true = y_pred[~empty], y_true[~empty]
    b, _, h, w = y_pred.shape
    gtv = y_true[0, 0]
    cross = ndimage.generate_binary_structure(2, 1)
    expanded = ndimage.binary_dilation(gtv, structure=cross, iterations=3).astype(gtv.dtype)
    expanded = (ndimage.gaussian_filter(expanded.astype(np.float32), sigma=sigma) > 0.25).astype(gtv.dtype)
    d98_original = _official_d_x(_official_dvh(expanded, gtv), 98)
    with np.errstate(invalid="ignore", divide="ignore"):
        true_com = np.array([ndimage.center_of_mass(y_true[i, 0]) for i in range(b)])
        pred_com = np.array([ndimage.center_of_mass(y_pred[i, 0]) for i in range(b)])
    total = np.zeros((h, w), dtype=np.float32)
    for i in range(b):
        d_si = pred_com[i][0] - true_com[i][0]
        d_ap = pred_com[i][1] - true_com[i][1]
        total += ndimage.shift(expanded, shift=[d_si, d_ap], order=3, mode="nearest")
    total /= b
    return _official_d_x(_official_dvh(total, gtv), 98) / d98_original


def _disc_sequence(n: int = 24, size: int = 96, radius: float = 9.0) -> np.ndarray:
    yy, xx = np.mgrid[:size, :size]
    centres = [(48 + 4 * math.sin(k / 3), 46 + 6 * math.sin(k / 4)) for k in range(n)]
    return np.stack([(xx - cx) ** 2 + (yy - cy) ** 2 < radius**2 for cx, cy in centres])


def _shift(masks: np.ndarray, dy: float, dx: float) -> np.ndarray:
    return np.stack([ndimage.shift(m.astype(np.float32), (dy, dx), order=1) > 0.5 for m in masks])


def _cases() -> dict[str, tuple[np.ndarray, np.ndarray]]:
    truths = _disc_sequence()
    rng = np.random.default_rng(3)
    jitter = np.stack(
        [ndimage.shift(m.astype(np.float32), rng.normal(0, 2.5, 2), order=1) > 0.5 for m in truths]
    )
    eroded = np.stack([ndimage.binary_erosion(m, iterations=2) for m in truths])
    half_empty = truths.copy()
    half_empty[::2] = False
    empty_truth = truths.copy()
    empty_truth[5:8] = False
    return {
        "perfect": (truths, truths),
        "shift 3.6 px": (_shift(truths, 3.6, 0.0), truths),
        "shift 7 px diagonal": (_shift(truths, 5.0, -5.0), truths),
        "random jitter": (jitter, truths),
        "eroded": (eroded, truths),
        "every other prediction empty": (half_empty, truths),
        "all predictions empty": (np.zeros_like(truths), truths),
        "frames with empty truth": (truths, empty_truth),
    }


@pytest.mark.parametrize("region", ["lung", "thorax", None])
@pytest.mark.parametrize("name", list(_cases()))
def test_relative_d98_matches_the_official_definition(name: str, region: str | None) -> None:
    pred, truth = _cases()[name]
    sigma = 6.0 if region == "lung" else 4.0
    expected = _official_relative_d98(pred, truth, sigma)
    assert relative_d98(pred, truth, region) == pytest.approx(expected, abs=1e-6)


def test_the_issue_example_a_constant_3_6_px_shift_keeps_full_coverage() -> None:
    truths = _disc_sequence()
    assert relative_d98(_shift(truths, 3.6, 0.0), truths) == pytest.approx(1.0, abs=1e-6)


def test_relative_d98_falls_with_large_errors_and_empty_predictions() -> None:
    truths = _disc_sequence()
    assert relative_d98(_shift(truths, 0.0, 12.0), truths) < 0.5
    assert relative_d98(np.zeros_like(truths), truths) == 0.0


def test_planned_dose_is_binary_and_covers_the_target_with_a_margin() -> None:
    target = _disc_sequence(1)[0]
    dose = planned_dose(target, 4.0)
    assert dose.dtype == np.uint8 and set(np.unique(dose)) == {0, 1}
    assert dose[target].all() and dose.sum() > target.sum()
    assert d98(dose, target) == pytest.approx(1.0)


def test_relative_d98_rejects_mismatched_shapes() -> None:
    with pytest.raises(ValueError, match="one shape"):
        relative_d98(np.zeros((3, 10, 10)), np.zeros((3, 10, 11)))
