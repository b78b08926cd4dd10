"""Tests of the synthetic cine-MRI generator: its ground truth is used to claim accuracy,
so these check that it is deterministic, consistent with the image, and not trivially easy."""

from __future__ import annotations

import dataclasses
import hashlib
import itertools
import json

import cv2
import numpy as np
import pytest
from scipy.signal import find_peaks
from scipy.stats import skew

from tracker.io.trackrad import read_trackrad_case
from tracker.lab.synth.breathing import BreathingParams, breathing_trace
from tracker.lab.synth.cine_mri import (
    REGIONS,
    CineCase,
    CineCaseParams,
    generate_case,
    random_case_params,
    write_cases,
)
from tracker.lab.synth.hard_cine import HardCineParams, generate_hard_case
from tracker.lab.synth.preview import write_case_preview

# Regular breathing, so that a test about one property is not blurred by the others.
_STEADY = BreathingParams(
    period_mean_s=4.0, amplitude_mean_mm=15.0, drift_mm_per_min=0.0, deep_breath_prob=0.0, pause_prob=0.0
)


def _small(**changes: object) -> CineCaseParams:
    base = CineCaseParams(size_px=280, n_frames=16, frame_rate_hz=4.0)
    return dataclasses.replace(base, **changes)  # type: ignore[arg-type]


def _cycles(si: np.ndarray, rate: float) -> tuple[np.ndarray, np.ndarray]:
    """Indices of inhale peaks and of the exhale troughs between them."""
    peaks, _ = find_peaks(si, distance=int(1.5 * rate), prominence=np.ptp(si) / 6)
    troughs = np.array([a + int(np.argmin(si[a:b])) for a, b in itertools.pairwise(peaks)])
    return peaks, troughs


def _centroids(labels: np.ndarray) -> np.ndarray:
    out = []
    for lab in labels:
        ys, xs = np.nonzero(lab)
        out.append((xs.mean(), ys.mean()))
    return np.array(out)


# --------------------------------------------------------------------------- breathing


def test_breathing_trace_period_amplitude_and_irregularity() -> None:
    params = dataclasses.replace(_STEADY, period_mean_s=4.5, period_cv=0.12, amplitude_cv=0.15)
    rate = 10.0
    trace = breathing_trace(600.0, rate, np.random.default_rng(1), params)
    assert trace.shape == (6000, 2)
    peaks, troughs = _cycles(trace[:, 0], rate)
    periods = np.diff(peaks) / rate
    amplitudes = trace[peaks[1:], 0] - trace[troughs, 0]
    assert periods.mean() == pytest.approx(4.5, rel=0.1)
    assert amplitudes.mean() == pytest.approx(15.0, rel=0.1)
    # Irregular: cycles differ in period and amplitude, not a sine.
    assert periods.std() > 0.05 * periods.mean()
    assert amplitudes.std() > 0.05 * amplitudes.mean()
    # AP is the smaller component.
    assert 0.1 < np.ptp(trace[:, 1]) / np.ptp(trace[:, 0]) < 0.6


def test_breathing_trace_drift() -> None:
    rate = 5.0
    slopes = {}
    for drift in (0.0, 2.0):
        params = dataclasses.replace(_STEADY, drift_mm_per_min=drift)
        trace = breathing_trace(480.0, rate, np.random.default_rng(7), params)
        _, troughs = _cycles(trace[:, 0], rate)
        # End-exhale positions against time: the baseline.
        slopes[drift] = np.polyfit(troughs / rate / 60.0, trace[troughs, 0], 1)[0]
    assert abs(slopes[0.0]) < 0.3
    assert 1.0 < abs(slopes[2.0]) < 3.5


def test_breathing_trace_deep_breaths_and_pauses() -> None:
    rate = 10.0
    deep = breathing_trace(
        300.0,
        rate,
        np.random.default_rng(3),
        dataclasses.replace(_STEADY, amplitude_cv=0.05, deep_breath_prob=0.3),
    )
    peaks, troughs = _cycles(deep[:, 0], rate)
    amplitudes = deep[peaks[1:], 0] - deep[troughs, 0]
    assert amplitudes.max() > 1.35 * np.median(amplitudes)

    gaps = {}
    for prob in (0.0, 0.4):
        params = dataclasses.replace(_STEADY, period_cv=0.08, pause_prob=prob)
        trace = breathing_trace(300.0, rate, np.random.default_rng(4), params)
        peaks, _ = _cycles(trace[:, 0], rate)
        gaps[prob] = np.diff(peaks).max() / rate
    assert gaps[0.0] < 1.6 * 4.0
    assert gaps[0.4] > 1.6 * 4.0 + 1.0  # a cycle followed by an apnoea of > 1.5 s


def test_breathing_trace_low_rate_is_a_sampling_of_the_same_motion() -> None:
    params = _STEADY
    fast = breathing_trace(60.0, 8.0, np.random.default_rng(5), params)
    slow = breathing_trace(60.0, 1.0, np.random.default_rng(5), params)
    assert slow.shape == (60, 2)
    np.testing.assert_allclose(slow, fast[::8], atol=1e-9)
    # At 1 Hz, consecutive frames can be far apart: that is the point of low-rate cases.
    assert np.abs(np.diff(slow[:, 0])).max() > 5.0


# --------------------------------------------------------------------------- cases


def test_random_case_params_ranges() -> None:
    rng = np.random.default_rng(0)
    drawn = [random_case_params(rng) for _ in range(300)]
    assert all(270 <= p.size_px <= 450 for p in drawn)
    assert all(1.0 <= p.frame_rate_hz <= 8.0 for p in drawn)
    assert all(5.0 <= p.tumour_diameter_mm <= 30.0 for p in drawn)
    assert {p.region for p in drawn} == set(REGIONS)
    assert {p.field_strength_t for p in drawn} == {0.35, 1.5}
    assert 0.15 < np.mean([p.low_contrast for p in drawn]) < 0.45
    periods = [p.breathing.period_mean_s for p in drawn]
    amplitudes = [p.breathing.amplitude_mean_mm for p in drawn]
    assert min(periods) >= 3.0 and max(periods) <= 6.0
    assert min(amplitudes) >= 5.0 and max(amplitudes) <= 25.0


# SHA-256 of the frames, labels and true motion of small easy and hard cases, recorded from the
# generators as they were before they were split into modules: refactoring must not change a
# generated case (tuned defaults and recorded results depend on them). A change that means to
# change cases records new digests in the same commit, and so may an OpenCV or NumPy upgrade
# (constraints.txt pins both), whose floating point can differ.
_CASE_DIGESTS = {
    "easy": "62f4b2e290ab518dcc418f93be55f681b5e33917d4058b4e4c30b7c0dd320f22",
    "easy, low contrast": "2aaeb6c29f7323679533e0f65bcec657a5f943db500995d6e5a53021640a92c6",
    "hard": "7de314f863b2e51a01c34213201c421a1af6ec957a02aeec23798b99656fba71",
}


def _digest(case: CineCase) -> str:
    digest = hashlib.sha256()
    for array in (case.frames, case.labels, case.motion_mm):
        digest.update(np.ascontiguousarray(array).tobytes())
    return digest.hexdigest()


def test_generated_cases_are_bit_identical_to_the_recorded_ones() -> None:
    low = _small(n_frames=6, region="abdomen", low_contrast=True, tumour_diameter_mm=25.0)
    digests = {
        "easy": _digest(generate_case(_small(n_frames=6), 5)),
        "easy, low contrast": _digest(generate_case(low, 6)),
        "hard": _digest(generate_hard_case(HardCineParams(base=_small(n_frames=6)), 5)),
    }
    assert digests == _CASE_DIGESTS


def test_generate_case_is_deterministic() -> None:
    params = _small(n_frames=8)
    a, b, c = generate_case(params, 11), generate_case(params, 11), generate_case(params, 12)
    np.testing.assert_array_equal(a.frames, b.frames)
    np.testing.assert_array_equal(a.labels, b.labels)
    np.testing.assert_array_equal(a.motion_mm, b.motion_mm)
    assert not np.array_equal(a.frames, c.frames)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_random_cases_shapes_dtypes_and_labels(seed: int) -> None:
    params = dataclasses.replace(random_case_params(np.random.default_rng(seed)), n_frames=12)
    case = generate_case(params, seed)
    n = params.size_px
    assert case.frames.shape == (12, n, n) and case.frames.dtype == np.uint16
    assert case.labels.shape == (12, n, n) and case.labels.dtype == np.uint8
    assert case.motion_mm.shape == (12, 2)
    assert set(np.unique(case.labels)) <= {0, 1}
    assert (case.labels.reshape(12, -1).sum(1) > 0).all(), "the tumour must be labelled on every frame"
    assert case.frames.max() > 200  # uses the MR-magnitude range, not 0..1
    # Labels stay inside the image with a margin (the tumour never leaves the field of view).
    assert not case.labels[:, :3].any() and not case.labels[:, -3:].any()
    assert not case.labels[:, :, :3].any() and not case.labels[:, :, -3:].any()


@pytest.mark.parametrize("diameter", [5.0, 12.0, 30.0])
def test_tumour_diameter_matches_request(diameter: float) -> None:
    case = generate_case(_small(tumour_diameter_mm=diameter, n_frames=4, region="liver"), 5)
    areas = case.labels.reshape(len(case.labels), -1).sum(1)
    equivalent = 2.0 * np.sqrt(areas / np.pi)
    assert np.all(np.abs(equivalent - diameter) < 0.12 * diameter + 0.6)


@pytest.mark.parametrize(
    ("region", "rate", "seed"),
    [("thorax", 4.0, 21), ("liver", 1.0, 22), ("abdomen", 2.0, 23)],
)
def test_label_centroid_follows_motion(region: str, rate: float, seed: int) -> None:
    params = _small(
        region=region,
        frame_rate_hz=rate,
        n_frames=24,
        tumour_diameter_mm=14.0,
        breathing=dataclasses.replace(_STEADY, amplitude_mean_mm=20.0, deep_breath_prob=0.2),
        tumour_deformation=0.08,
        tumour_rotation_deg=6.0,
    )
    case = generate_case(params, seed)
    centroids = _centroids(case.labels)
    expected = np.asarray(case.tumour_centre_px) + case.motion_px
    assert np.abs(centroids - expected).max() < 1.0  # mm (1 mm pixels)
    assert np.ptp(case.motion_mm[:, 0]) > 8.0  # the check is not vacuous: the tumour moves
    # SI dominates AP, as in real tumour motion.
    assert np.ptp(case.motion_mm[:, 1]) < np.ptp(case.motion_mm[:, 0])


def test_motion_is_deformable_not_rigid() -> None:
    """The spine and back stay put while the tumour moves: a rigid shift would move everything."""
    params = _small(
        region="liver",
        n_frames=24,
        noise_sigma=0.0,
        breathing=dataclasses.replace(_STEADY, amplitude_mean_mm=20.0),
    )
    case = generate_case(params, 31)
    k_in, k_ex = int(np.argmax(case.motion_mm[:, 0])), int(np.argmin(case.motion_mm[:, 0]))
    a, b = case.frames[k_ex].astype(np.float32), case.frames[k_in].astype(np.float32)
    n = params.size_px
    body_cols = np.nonzero(case.body_mask.any(0))[0]
    back = slice(int(body_cols.max()) - 40, int(body_cols.max()) - 5)  # posterior body wall, spine side

    def si_shift(x: np.ndarray, y: np.ndarray) -> float:
        (_dx, dy), _ = cv2.phaseCorrelate(x, y, cv2.createHanningWindow(x.shape[::-1], cv2.CV_32F))
        return float(dy)

    assert abs(si_shift(a[:, back], b[:, back])) < 1.5
    assert np.ptp(case.motion_mm[:, 0]) > 10.0
    # ... while the tissue around the tumour moves with it.
    cx, cy = (np.asarray(case.tumour_centre_px) + case.motion_px[k_ex]).round().astype(int)
    win = (slice(max(cy - 40, 0), min(cy + 40, n)), slice(max(cx - 40, 0), min(cx + 40, n)))
    expected = case.motion_px[k_in, 1] - case.motion_px[k_ex, 1]
    assert si_shift(a[win], b[win]) == pytest.approx(expected, abs=0.35 * abs(expected) + 1.0)


def test_tumour_is_visible_and_low_contrast_is_subtle() -> None:
    ratios = {}
    for low in (False, True):
        params = _small(
            region="liver", low_contrast=low, noise_sigma=0.0, n_frames=4, tumour_diameter_mm=16.0
        )
        case = generate_case(params, 41)
        assert case.tumour_site == "liver"
        lab = case.labels[0].astype(np.uint8)
        inside = cv2.erode(lab, np.ones((5, 5), np.uint8)) > 0
        ring = (cv2.dilate(lab, np.ones((13, 13), np.uint8)) > 0) & ~(
            cv2.dilate(lab, np.ones((5, 5), np.uint8)) > 0
        )
        frame = case.frames[0].astype(np.float64)
        ratios[low] = np.median(frame[inside]) / np.median(frame[ring])
    assert abs(ratios[False] - 1.0) > 0.25
    assert 1.03 < ratios[True] < 1.3


def test_noise_is_rician() -> None:
    params = _small(size_px=400, noise_sigma=0.1, n_frames=6)
    case = generate_case(params, 51)
    far = cv2.dilate(case.body_mask.astype(np.uint8), np.ones((41, 41), np.uint8)) == 0
    background = case.frames[:, far].astype(np.float64).ravel()
    assert background.size > 5000
    # Magnitude of complex Gaussian noise on zero signal is Rayleigh: positive mean,
    # mean / std = sqrt(pi / (4 - pi)) ~ 1.91, skewness ~ 0.63. Gaussian noise has neither.
    assert background.mean() > 3.0
    assert background.mean() / background.std() == pytest.approx(1.913, rel=0.08)
    assert 0.45 < skew(background) < 0.85
    silent = generate_case(dataclasses.replace(params, noise_sigma=0.0), 51)
    assert silent.frames[:, far].max() == 0


# --------------------------------------------------------------------------- files


def test_write_cases_are_readable_trackrad(tmp_path) -> None:
    paths = write_cases(tmp_path, 2, seed=3, progress=False)
    assert [p.name for p in paths] == ["S001", "S002"]
    for path in paths:
        seq = read_trackrad_case(path)
        truth = json.loads((path / "synthetic.json").read_text())
        params = CineCaseParams.from_dict(truth["params"])
        assert len(seq) == params.n_frames
        assert seq.shape_hw == (params.size_px, params.size_px)
        assert seq.frame_rate_hz == params.frame_rate_hz
        assert seq.metadata["scanned_region"] == params.region
        assert seq.metadata["b_field_strength_t"] == params.field_strength_t
        assert seq.geometry.spacing_mm == (1.0, 1.0)
        # The files hold exactly what the generator makes from the recorded parameters.
        case = generate_case(params, truth["seed"])
        np.testing.assert_array_equal(seq.frames, case.frames)
        np.testing.assert_array_equal(seq.labels, case.labels)
        np.testing.assert_array_equal(seq.first_label, case.labels[0])


def test_write_case_preview(tmp_path) -> None:
    case = generate_case(_small(n_frames=10), 61)
    path = write_case_preview(case, tmp_path / "preview.png")
    image = cv2.imread(str(path))
    assert image is not None and image.shape[0] > 300 and image.shape[1] > 900
    assert image.std() > 30  # an image, not a blank canvas
