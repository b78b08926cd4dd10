"""Tests of family B, the second synthetic cine-MRI set (validation only): its ground truth and its
scanner effects are what it is for, so these check that each is there and is what the docstring says."""

from __future__ import annotations

import dataclasses
import hashlib
import json

import cv2
import numpy as np
import pytest
from scipy.stats import skew

from tracker.io.readers import open_sequence
from tracker.lab.synth.family_b import (
    BreathingB,
    FamilyBParams,
    ScannerB,
    family_b_case_seeds,
    generate_family_b_case,
    random_family_b_params,
    write_family_b_cases,
)
from tracker.lab.synth.hard_cine import case_seeds, generate_hard_case, random_hard_params

# A quiet scanner (no ghosts, no bands) and regular breathing, so that a test about one property
# is not blurred by the others; each test turns on what it checks.
_QUIET = ScannerB(snr=8.0, noise_ratio=4.0, ghost_strength=0.0, ghost_jitter_rad=0.0, band_depth=0.0)


def _small(**changes: object) -> FamilyBParams:
    base = FamilyBParams(
        pixel_mm=2.0,
        fov_mm=360.0,
        n_frames=8,
        frame_rate_hz=6.0,
        region="lung",
        tumour_site="lung",
        tumour_diameter_mm=25.0,
        slice_thickness_mm=5.0,
        through_plane_mm=0.0,
        slice_drift_mm=0.0,
        breathing=BreathingB(period_s=4.0, amplitude_mm=15.0, drift_mm_per_min=0.0, wander_mm=0.0, holds=0),
        scanner=_QUIET,
    )
    return dataclasses.replace(base, **changes)  # type: ignore[arg-type]


def _centroids(labels: np.ndarray) -> np.ndarray:
    out = []
    for lab in labels:
        ys, xs = np.nonzero(lab)
        out.append((xs.mean(), ys.mean()) if len(xs) else (np.nan, np.nan))
    return np.array(out)


def test_deterministic_per_seed_and_shapes() -> None:
    params = _small(scanner=ScannerB())  # bands, ghosts and all
    a, b, c = (
        generate_family_b_case(params, 3),
        generate_family_b_case(params, 3),
        generate_family_b_case(params, 4),
    )
    np.testing.assert_array_equal(a.frames, b.frames)
    np.testing.assert_array_equal(a.labels, b.labels)
    np.testing.assert_array_equal(a.motion_mm, b.motion_mm)
    assert not np.array_equal(a.frames, c.frames)
    n = round(360.0 / 2.0)
    assert a.frames.shape == a.labels.shape == (8, n, n)
    assert a.frames.dtype == np.uint16 and a.labels.dtype == np.uint8
    assert set(np.unique(a.labels)) == {0, 1}
    assert a.labels[0].any()  # the prompt frame shows the target


def test_random_params_ranges() -> None:
    draws = [random_family_b_params(np.random.default_rng(s)) for s in range(300)]
    rates = np.array([p.frame_rate_hz for p in draws])
    assert rates.min() >= 4.0 and rates.max() <= 8.0
    assert len(np.unique(rates)) > 100  # any rate in the range, not family A's list
    pixels = np.array([p.pixel_mm for p in draws])
    assert 1.0 <= pixels.min() < 1.1 and 2.4 < pixels.max() <= 2.5
    snr = np.array([p.scanner.snr for p in draws])
    assert snr.min() < 7.0 and snr.max() > 50.0  # wider than family A's 8-40
    assert {p.scanner.phase_encode for p in draws} == {"ap", "si"}
    assert sum(p.breathing.holds > 0 for p in draws) > 100


def test_noise_is_rician_with_the_sigma_map() -> None:
    case = generate_family_b_case(_small(), 0)
    air = cv2.dilate(case.body_any.astype(np.uint8), np.ones((5, 5), np.uint8)) == 0
    background = case.frames[:, air].astype(np.float64) / case.noise_sigma[air]
    assert background.size > 20_000
    # Magnitude of complex Gaussian noise on zero signal is Rayleigh: mean = sqrt(pi / 2) sigma,
    # mean / std = sqrt(pi / (4 - pi)) ~ 1.91, skewness ~ 0.63. Gaussian noise has none of these.
    assert background.mean() == pytest.approx(np.sqrt(np.pi / 2), rel=0.03)
    assert background.mean() / background.std() == pytest.approx(1.913, rel=0.03)
    assert 0.5 < skew(background.ravel()) < 0.76


def test_noise_sigma_varies_across_the_image() -> None:
    case = generate_family_b_case(_small(), 0)
    assert case.noise_sigma.max() / case.noise_sigma.min() == pytest.approx(4.0, rel=1e-3)
    air = cv2.dilate(case.body_any.astype(np.uint8), np.ones((5, 5), np.uint8)) == 0
    n = case.frames.shape[1]
    estimated, mapped = [], []
    for r0 in range(0, n, n // 6):  # bands of rows, anterior and posterior air apart
        for cols in (slice(0, n // 2), slice(n // 2, n)):
            block = np.zeros_like(air)
            block[r0 : r0 + n // 6, cols] = True
            block &= air
            if block.sum() >= 100:
                estimated.append(case.frames[:, block].mean() / np.sqrt(np.pi / 2))  # Rayleigh sigma
                mapped.append(case.noise_sigma[block].mean())
    estimated_a, mapped_a = np.array(estimated), np.array(mapped)
    assert estimated_a.max() / estimated_a.min() > 1.6  # the measured noise varies ...
    np.testing.assert_allclose(estimated_a, mapped_a, rtol=0.06)  # ... as the map says


@pytest.mark.parametrize("pixel_mm", [1.0, 2.5])
def test_resolution_sets_the_tumour_size_in_pixels(pixel_mm: float) -> None:
    params = _small(pixel_mm=pixel_mm, fov_mm=300.0, n_frames=4)
    case = generate_family_b_case(params, 1)
    assert case.frames.shape[1] == round(300.0 / pixel_mm)
    area_px = case.labels.sum(axis=(1, 2))
    # The label is the drawn tumour box-averaged to the pixel and thresholded at half: its area in
    # pixels is the model's area over the pixel's, to within the outline's pixelation.
    np.testing.assert_allclose(area_px * pixel_mm**2, case.label_area_mm2, rtol=0.06)
    assert case.label_area_mm2[0] == pytest.approx(
        np.pi * 12.5**2 * (1 - (5.0 / 4 / case.metadata["tumour_depth_mm"]) ** 2)
    )
    # The motion and the tumour do not depend on the resolution.
    other = generate_family_b_case(dataclasses.replace(params, pixel_mm=1.5), 1)
    np.testing.assert_allclose(case.motion_mm, other.motion_mm, atol=0.05)
    np.testing.assert_allclose(case.label_area_mm2, other.label_area_mm2)


def test_breath_holds_are_runs_of_still_ground_truth() -> None:
    breathing = BreathingB(
        period_s=3.5, amplitude_mm=15.0, drift_mm_per_min=1.0, wander_mm=0.3, holds=2, hold_s=(5.0, 6.0)
    )
    case = generate_family_b_case(_small(n_frames=120, frame_rate_hz=4.0, breathing=breathing), 2)
    hold = case.breath_hold
    assert 30 <= hold.sum() <= 50  # two holds of 5-6 s at 4 Hz
    steps = np.linalg.norm(np.diff(_centroids(case.labels), axis=0), axis=1) * case.spacing_mm
    still = hold[1:] & hold[:-1]
    assert np.all(np.isfinite(steps))
    assert np.median(steps[still]) < 0.05 and steps[still].max() < 0.5  # mm per frame, held
    assert np.median(steps[~hold[1:] & ~hold[:-1]]) > 1.0  # and breathing in between
    assert np.abs(np.diff(case.motion_mm, axis=0))[still].max() < 0.05


def test_target_leaves_the_slice() -> None:
    # Found among the first family-B cases: B005 has frames whose label is empty (the slice moves
    # off the tumour). Coarser pixels keep it fast and change neither the motion nor the tumour.
    _case_id, seed, param_seed = family_b_case_seeds(5)[4]
    params = random_family_b_params(np.random.default_rng(param_seed))
    case = generate_family_b_case(dataclasses.replace(params, pixel_mm=2.5), seed)
    empty = ~case.labels.any(axis=(1, 2))
    assert not empty[0] and 20 <= empty.sum() < len(empty)
    assert empty[case.label_area_mm2 == 0].all()  # no voxel half inside: no label, exactly
    assert np.abs(case.slice_offset_mm[empty]).min() > case.metadata["tumour_depth_mm"] * 0.5


def test_flow_ghosts_lie_along_the_phase_encode_axis() -> None:
    for encode, reaches_air in (("ap", True), ("si", False)):
        ghosts = dataclasses.replace(_QUIET, ghost_strength=0.4, phase_encode=encode)
        on = generate_family_b_case(_small(scanner=ghosts), 5)
        off = generate_family_b_case(_small(scanner=dataclasses.replace(ghosts, ghost_strength=0.0)), 5)
        changed = (on.frames != off.frames).any(axis=0)
        assert changed.sum() > 200  # the same noise draws: only the ghosts differ
        air_columns = ~on.body_any.any(axis=0)  # columns with no body in any frame
        assert changed[:, air_columns].any() == reaches_air  # AP encoding ghosts into the air beside


def test_banding_darkens_bands() -> None:
    quiet = dataclasses.replace(_QUIET, snr=1000.0, susceptibility=0.0, band_cycles=2.0, band_width=0.04)
    flat = generate_family_b_case(_small(scanner=quiet), 6)
    banded = generate_family_b_case(_small(scanner=dataclasses.replace(quiet, band_depth=0.9)), 6)
    body = flat.frames[0] > 0.3 * quiet.signal_counts
    ratio = banded.frames[0][body] / flat.frames[0][body].astype(np.float64)
    assert ratio.min() < 0.2  # the middle of a band
    assert np.median(ratio) > 0.9  # most of the image is untouched
    assert 0.02 < np.mean(ratio < 0.5) < 0.4


def test_written_case_is_readable_by_the_trackrad_reader(tmp_path) -> None:
    paths = write_family_b_cases(tmp_path, 1, progress=False, preview=True)
    assert [p.name for p in paths] == ["B001"]
    truth = json.loads((paths[0] / "synthetic.json").read_text())
    params = FamilyBParams.from_dict(truth["params"])
    assert params == random_family_b_params(np.random.default_rng(family_b_case_seeds(1)[0][2]))
    seq = open_sequence(paths[0])
    assert len(seq) == params.n_frames
    assert seq.shape_hw == (params.size_px, params.size_px)
    assert seq.geometry.spacing_mm == (params.pixel_mm, params.pixel_mm)
    assert seq.frame_rate_hz == params.frame_rate_hz
    assert seq.metadata["scanned_region"] == params.region
    assert seq.labels is not None and seq.labels.shape == seq.frames.shape
    np.testing.assert_array_equal(seq.first_label, seq.labels[0])
    assert truth["empty_label_frames"] == int((~seq.labels.any(axis=(1, 2))).sum())
    preview = cv2.imread(str(paths[0] / "preview.png"))
    assert preview is not None and preview.std() > 20


def test_family_a_is_unchanged() -> None:
    # Family A's first tuning case (T001), as hard_cine wrote it before family B existed; family B is
    # imported (and run) in this module, so this also shows it leaves A's generator alone.
    generate_family_b_case(_small(n_frames=2), 0)
    _case_id, seed, param_seed = case_seeds("tuning", 1)[0]
    case = generate_hard_case(random_hard_params(np.random.default_rng(param_seed)), seed)
    digest = hashlib.sha256()
    for array in (case.frames, case.labels, case.motion_mm):
        digest.update(np.ascontiguousarray(array).tobytes())
    assert digest.hexdigest() == "cf645a79f0636b6ba56b9197597b5d1e7117cd15b242347b77da04dbe0070268"
