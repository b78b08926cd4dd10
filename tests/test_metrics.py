"""Tests for tracker.lab.scoring.metrics: hand-computed cases, conventions, and property checks."""

from __future__ import annotations

import math
import time
from collections.abc import Callable

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays
from scipy.spatial.distance import cdist

from tracker.lab.scoring.metrics import (
    FrameScores,
    SequenceScores,
    centroid_distance_mm,
    dice,
    hd95_mm,
    iou,
    mean_surface_distance_mm,
    score_frame,
    score_sequence,
    surface,
    surface_distances_mm,
)


def square(shape: tuple[int, int], row: int, col: int, size: int = 10) -> np.ndarray:
    """A bool mask with a size x size square whose top-left pixel is (row, col)."""
    m = np.zeros(shape, dtype=bool)
    m[row : row + size, col : col + size] = True
    return m


SHAPE = (64, 80)

# Two 10x10 squares 30 px apart along x (columns 10..19 and 40..49, rows 10..19).
# Hand computation, pred surface -> gt surface (gt's right edge is column 19):
#   pred column 40: 10 px at 21; pred column 49: 10 px at 30;
#   top and bottom rows, columns 41..48: 2 px each at 22..29.
# 36 distances; the top 10 are 30 so the 95th percentile (index 33.25) is 30;
# mean = (10*21 + 2*(22+...+29) + 10*30) / 36 = 918 / 36 = 25.5. Symmetric by mirroring.
GT_A = square(SHAPE, 10, 10)
PRED_A_FAR = square(SHAPE, 10, 40)
# The same square shifted by one column (columns 11..20).
PRED_A_SHIFT1 = square(SHAPE, 10, 11)


# --------------------------------------------------------------------------- surface


def test_surface_of_square_is_its_ring() -> None:
    s = surface(GT_A)
    assert s.sum() == 36  # 10x10 ring: 4*10 - 4
    assert not s[11:19, 11:19].any()
    assert s[10, 10:20].all() and s[19, 10:20].all() and s[10:20, 10].all() and s[10:20, 19].all()


def test_single_pixel_surface_is_the_pixel() -> None:
    m = np.zeros((5, 5), dtype=bool)
    m[2, 3] = True
    np.testing.assert_array_equal(surface(m), m)


def test_surface_uses_4_neighbours() -> None:
    # A plus shape: its centre has all four edge-neighbours inside, so it is interior
    # even though its diagonal neighbours are outside.
    m = np.zeros((5, 5), dtype=bool)
    m[2, 1:4] = True
    m[1:4, 2] = True
    s = surface(m)
    assert not s[2, 2]
    assert s.sum() == 4


def test_mask_touching_image_edge_has_surface_there() -> None:
    s = surface(np.ones((4, 6), dtype=bool))
    assert s.sum() == 2 * 4 + 2 * 6 - 4
    assert not s[1:3, 1:5].any()


# --------------------------------------------------------------------------- hand-computed frames


def test_identical_masks() -> None:
    fs = score_frame(GT_A, GT_A.copy(), (0.7, 1.3))
    assert fs == FrameScores(dice=1.0, iou=1.0, hd95_mm=0.0, msd_mm=0.0, centroid_mm=0.0)


def test_disjoint_squares_known_offset() -> None:
    fs = score_frame(PRED_A_FAR, GT_A)
    assert fs.dice == 0.0
    assert fs.iou == 0.0
    assert fs.centroid_mm == pytest.approx(30.0, abs=1e-12)
    assert fs.hd95_mm == pytest.approx(30.0)
    assert fs.msd_mm == pytest.approx(25.5)
    d_pg, d_gp = surface_distances_mm(PRED_A_FAR, GT_A)
    assert d_pg.size == d_gp.size == 36
    expected = sorted([21.0] * 10 + [30.0] * 10 + [float(v) for v in range(22, 30)] * 2)
    np.testing.assert_allclose(np.sort(d_pg), expected)
    np.testing.assert_allclose(np.sort(d_gp), expected)


def test_square_shifted_by_one_pixel() -> None:
    # Overlap 10 rows x 9 columns = 90 px; |P| = |G| = 100; union 110.
    fs = score_frame(PRED_A_SHIFT1, GT_A)
    assert fs.dice == pytest.approx(2 * 90 / 200)
    assert fs.iou == pytest.approx(90 / 110)
    assert fs.centroid_mm == pytest.approx(1.0)
    # pred surface: 18 px lie on gt's surface (distance 0), 18 px are 1 px away.
    d_pg, d_gp = surface_distances_mm(PRED_A_SHIFT1, GT_A)
    assert sorted(d_pg.tolist()) == [0.0] * 18 + [1.0] * 18
    assert sorted(d_gp.tolist()) == [0.0] * 18 + [1.0] * 18
    assert fs.hd95_mm == pytest.approx(1.0)
    assert fs.msd_mm == pytest.approx(0.5)


def test_single_pixels() -> None:
    p = np.zeros((9, 12), dtype=bool)
    g = np.zeros((9, 12), dtype=bool)
    p[5, 5] = True
    g[1, 8] = True  # 3 px right, 4 px up: 5 px away
    fs = score_frame(p, g)
    assert fs.dice == 0.0
    assert fs.hd95_mm == pytest.approx(5.0)
    assert fs.msd_mm == pytest.approx(5.0)
    assert fs.centroid_mm == pytest.approx(5.0)


def test_hd95_is_max_of_directed_percentiles_not_pooled() -> None:
    # gt: 3x3 square (rows/cols 4..6) just inside the corner of pred, a 30x30 square
    # from (2, 2). By hand, gt surface -> pred surface (pred's top row 2, left column 2):
    # five pixels at 2, (5, 6) and (6, 5) at 3, (6, 6) at 4; percentile 95 of the
    # 8 sorted values sits at index 6.65 -> 3 + 0.65 = 3.65; mean 20 / 8 = 2.5.
    g = square((40, 40), 4, 4, size=3)
    p = square((40, 40), 2, 2, size=30)
    d_pg, d_gp = surface_distances_mm(p, g)
    assert sorted(d_gp.tolist()) == [2.0] * 5 + [3.0, 3.0, 4.0]
    assert float(np.percentile(d_gp, 95)) == pytest.approx(3.65)
    assert d_pg.size == 116
    expected = max(float(np.percentile(d_pg, 95)), 3.65)
    pooled = float(np.percentile(np.concatenate([d_pg, d_gp]), 95))
    assert abs(expected - pooled) > 0.05  # the case really tells the two conventions apart
    assert hd95_mm(p, g) == pytest.approx(expected)
    assert hd95_mm(g, p) == pytest.approx(expected)
    assert mean_surface_distance_mm(p, g) == pytest.approx(0.5 * (d_pg.mean() + 2.5))
    # Not the pooled mean either (8 vs 116 distances would swamp gt's side).
    assert abs(mean_surface_distance_mm(p, g) - np.concatenate([d_pg, d_gp]).mean()) > 1.0


# --------------------------------------------------------------------------- spacing


def test_anisotropic_spacing_scales_x_offsets_by_x_spacing() -> None:
    spacing = (2.0, 0.5)  # (x, y): columns are 2 mm apart, rows 0.5 mm
    fs = score_frame(PRED_A_FAR, GT_A, spacing)
    assert fs.centroid_mm == pytest.approx(60.0)
    assert fs.hd95_mm == pytest.approx(60.0)
    assert fs.msd_mm == pytest.approx(51.0)


def test_anisotropic_spacing_scales_y_offsets_by_y_spacing() -> None:
    spacing = (2.0, 0.5)
    gt = square(SHAPE, 5, 10)
    pred = square(SHAPE, 35, 10)  # 30 rows below
    fs = score_frame(pred, gt, spacing)
    assert fs.centroid_mm == pytest.approx(15.0)
    assert fs.hd95_mm == pytest.approx(15.0)
    assert fs.msd_mm == pytest.approx(12.75)
    assert centroid_distance_mm(pred, gt, spacing) == pytest.approx(15.0)


def test_diagonal_centroid_uses_both_spacings() -> None:
    p = np.zeros((20, 20), dtype=bool)
    g = np.zeros((20, 20), dtype=bool)
    p[2, 2] = True
    g[6, 5] = True  # dx = 3 px, dy = 4 px
    assert centroid_distance_mm(p, g, (2.0, 0.5)) == pytest.approx(math.hypot(6.0, 2.0))
    assert hd95_mm(p, g, (2.0, 0.5)) == pytest.approx(math.hypot(6.0, 2.0))


# --------------------------------------------------------------------------- empty masks


def test_empty_prediction_gets_dice_zero_and_image_extent_penalty() -> None:
    gt = square((40, 64), 10, 10)
    pred = np.zeros_like(gt)
    spacing = (0.5, 2.0)  # extent: H * y = 80 mm, W * x = 32 mm
    fs = score_frame(pred, gt, spacing)
    assert fs == FrameScores(dice=0.0, iou=0.0, hd95_mm=80.0, msd_mm=80.0, centroid_mm=80.0)
    assert hd95_mm(pred, gt, spacing) == 80.0
    assert mean_surface_distance_mm(pred, gt, spacing) == 80.0
    assert centroid_distance_mm(pred, gt, spacing) == 80.0
    # Isotropic 1 mm: max(H, W) pixels.
    assert score_frame(pred, gt).hd95_mm == 64.0


def test_empty_ground_truth_and_empty_prediction() -> None:
    z = np.zeros((16, 16), dtype=bool)
    fs = score_frame(z, z.copy())
    assert fs.dice == 1.0 and fs.iou == 1.0
    assert math.isnan(fs.hd95_mm) and math.isnan(fs.msd_mm) and math.isnan(fs.centroid_mm)


def test_empty_ground_truth_with_a_prediction() -> None:
    z = np.zeros((16, 16), dtype=bool)
    fs = score_frame(square((16, 16), 2, 2, size=3), z)
    assert fs.dice == 0.0 and fs.iou == 0.0
    assert math.isnan(fs.hd95_mm) and math.isnan(fs.msd_mm) and math.isnan(fs.centroid_mm)


def test_surface_distances_empty_when_either_mask_is_empty() -> None:
    z = np.zeros((8, 8), dtype=bool)
    a, b = surface_distances_mm(z, square((8, 8), 1, 1, size=3))
    assert a.size == 0 and b.size == 0


def test_non_bool_masks_are_accepted_and_shape_mismatch_rejected() -> None:
    assert dice(GT_A.astype(np.uint8) * 255, GT_A) == 1.0
    with pytest.raises(ValueError, match="same shape"):
        dice(GT_A, GT_A[:-1])
    with pytest.raises(ValueError, match="2-D"):
        iou(GT_A[None], GT_A[None])
    with pytest.raises(ValueError, match="spacing"):
        score_frame(GT_A, GT_A, (0.0, 1.0))


# --------------------------------------------------------------------------- sequences


def _sequence() -> tuple[list[np.ndarray], list[np.ndarray]]:
    empty = np.zeros(SHAPE, dtype=bool)
    gts = [GT_A, GT_A, GT_A, empty]
    preds = [
        empty,  # frame 0: the prompt frame; an empty pred here would cost the penalty
        GT_A.copy(),  # frame 1: perfect
        PRED_A_SHIFT1,  # frame 2: dice 0.9, hd95 1, msd 0.5, centroid 1
        empty,  # frame 3: empty gt, empty pred: dice 1, distances nan
    ]
    return preds, gts


def test_score_sequence_excludes_frame_0_and_averages() -> None:
    preds, gts = _sequence()
    s = score_sequence(preds, gts)
    assert isinstance(s, SequenceScores)
    assert len(s.frames) == 3
    assert s.frame_indices == [1, 2, 3]
    assert s.dice_mean == pytest.approx((1.0 + 0.9 + 1.0) / 3)
    assert s.iou_mean == pytest.approx((1.0 + 90 / 110 + 1.0) / 3)
    # Distances: frame 3 (empty gt) is skipped, not counted as 0.
    assert s.hd95_mm_mean == pytest.approx(0.5)
    assert s.msd_mm_mean == pytest.approx(0.25)
    assert s.centroid_mm_mean == pytest.approx(0.5)
    d = s.as_dict()
    assert set(d) == {
        "dice_mean",
        "j_mean",
        "hd95_mm_mean",
        "msd_mm_mean",
        "centroid_mm_mean",
        "frames_scored",
    }
    assert d["frames_scored"] == 3
    assert d["j_mean"] == s.iou_mean


def test_score_sequence_with_frame_0_and_stacked_arrays() -> None:
    preds, gts = _sequence()
    s = score_sequence(np.stack(preds), np.stack(gts), skip_first=False)
    assert len(s.frames) == 4
    assert s.dice_mean == pytest.approx((0.0 + 1.0 + 0.9 + 1.0) / 4)
    assert s.hd95_mm_mean == pytest.approx((80.0 + 0.0 + 1.0) / 3)  # penalty max(64, 80)


def test_score_sequence_all_nan_and_empty() -> None:
    z = np.zeros((8, 8), dtype=bool)
    s = score_sequence([z, z], [z, z])
    assert s.dice_mean == 1.0
    assert math.isnan(s.hd95_mm_mean)
    s = score_sequence([z], [z])
    assert s.frames == [] and math.isnan(s.dice_mean) and s.as_dict()["frames_scored"] == 0
    with pytest.raises(ValueError, match="same length"):
        score_sequence([z, z], [z])


# --------------------------------------------------------------------------- speed


def test_450x450_frame_is_fast() -> None:
    yy, xx = np.mgrid[:450, :450]
    gt = (xx - 220) ** 2 + (yy - 230) ** 2 < 60**2
    pred = (xx - 228) ** 2 + (yy - 225) ** 2 < 55**2
    score_frame(pred, gt, (1.2, 1.2))  # warm-up
    best = min(_timed(lambda: score_frame(pred, gt, (1.2, 1.2))) for _ in range(5))
    # A sanity bound, not the speed target (timings on shared 2-core machines flake): 1 s
    # is 20x the 50 ms a 450x450 frame takes, and catches an accidental O(N^2) distance.
    assert best < 1.0, f"score_frame took {best * 1e3:.1f} ms"


def _timed(fn: Callable[[], object]) -> float:
    t0 = time.perf_counter()
    fn()
    return time.perf_counter() - t0


# --------------------------------------------------------------------------- properties

masks = arrays(dtype=bool, shape=(9, 11))
spacings = st.tuples(st.sampled_from([0.5, 1.0, 1.7]), st.sampled_from([0.5, 1.0, 2.5]))


@settings(max_examples=150, deadline=None)
@given(masks, masks)
def test_overlap_properties(a: np.ndarray, b: np.ndarray) -> None:
    d, j = dice(a, b), iou(a, b)
    assert 0.0 <= d <= 1.0 and 0.0 <= j <= 1.0
    assert d == dice(b, a) and j == iou(b, a)
    assert d == pytest.approx(2 * j / (1 + j))
    assert j <= d + 1e-12


@settings(max_examples=100, deadline=None)
@given(masks, masks, spacings)
def test_distances_match_brute_force_and_are_symmetric(
    a: np.ndarray, b: np.ndarray, spacing: tuple[float, float]
) -> None:
    sx, sy = spacing
    d_ab, d_ba = surface_distances_mm(a, b, spacing)
    if not a.any() or not b.any():
        assert d_ab.size == 0 and d_ba.size == 0
        return
    # Brute force: all pairs of surface points in mm, (x, y) = (col * sx, row * sy).
    pa = np.argwhere(surface(a))[:, ::-1] * (sx, sy)
    pb = np.argwhere(surface(b))[:, ::-1] * (sx, sy)
    pair = cdist(pa, pb)
    np.testing.assert_allclose(d_ab, pair.min(axis=1), atol=1e-9)
    np.testing.assert_allclose(d_ba, pair.min(axis=0), atol=1e-9)
    fab, fba = score_frame(a, b, spacing), score_frame(b, a, spacing)
    assert fab.hd95_mm == pytest.approx(fba.hd95_mm)
    assert fab.msd_mm == pytest.approx(fba.msd_mm)
    assert fab.centroid_mm == pytest.approx(fba.centroid_mm)
    assert fab.msd_mm >= 0.0 and fab.hd95_mm >= 0.0
    # HD95 never exceeds the full (100th percentile) Hausdorff distance.
    assert fab.hd95_mm <= max(pair.min(axis=1).max(), pair.min(axis=0).max()) + 1e-9
