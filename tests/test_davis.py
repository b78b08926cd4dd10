"""tracker.lab.scoring.davis against a separate transcription of davis2017-evaluation's definitions.

The transcription below follows ``davis2017/metrics.py`` (``db_eval_iou``, ``f_measure``,
``_seg2bmap``) step by step, in its own form: element-wise boundary rules, scipy's
binary dilation (the toolkit's commented alternative to cv2) and a disk built as
skimage's ``disk`` builds it. Masks: shifted, eroded, dilated, empty, touching the
image border; sizes give match radii of 2 px and 8 px (854x480, DAVIS 480p).
"""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest
from PIL import Image
from scipy import ndimage

from tracker.io.writers import write_mask_pngs
from tracker.lab.scoring import davis

# -- transcription of the toolkit -------------------------------------------------------------


def ref_iou(annotation: np.ndarray, segmentation: np.ndarray) -> float:
    a, s = annotation.astype(bool), segmentation.astype(bool)
    inter = np.sum(a & s)
    union = np.sum(a | s)
    return 1.0 if np.isclose(union, 0) else float(inter / union)


def ref_seg2bmap(seg: np.ndarray) -> np.ndarray:
    seg = seg.astype(bool)
    h, w = seg.shape
    east = np.pad(seg[:, 1:], ((0, 0), (0, 1)))
    south = np.pad(seg[1:, :], ((0, 1), (0, 0)))
    southeast = np.pad(seg[1:, 1:], ((0, 1), (0, 1)))
    b = np.logical_or.reduce([seg != east, seg != south, seg != southeast])
    b[h - 1, :] = seg[h - 1, :] != east[h - 1, :]
    b[:, w - 1] = seg[:, w - 1] != south[:, w - 1]
    b[h - 1, w - 1] = False
    return b


def ref_disk(radius: float) -> np.ndarray:
    grid = np.arange(-radius, radius + 1)
    xx, yy = np.meshgrid(grid, grid)
    return xx**2 + yy**2 <= radius**2


def ref_f_measure(foreground: np.ndarray, gt: np.ndarray, bound_th: float = 0.008) -> float:
    bound_pix = bound_th if bound_th >= 1 else np.ceil(bound_th * np.linalg.norm(foreground.shape))
    fg_b = ref_seg2bmap(foreground)
    gt_b = ref_seg2bmap(gt)
    fg_dil = ndimage.binary_dilation(fg_b, structure=ref_disk(bound_pix))
    gt_dil = ndimage.binary_dilation(gt_b, structure=ref_disk(bound_pix))
    n_fg, n_gt = fg_b.sum(), gt_b.sum()
    if n_fg == 0 and n_gt > 0:
        precision, recall = 1.0, 0.0
    elif n_fg > 0 and n_gt == 0:
        precision, recall = 0.0, 1.0
    elif n_fg == 0 and n_gt == 0:
        precision, recall = 1.0, 1.0
    else:
        precision = np.sum(fg_b & gt_dil) / float(n_fg)
        recall = np.sum(gt_b & fg_dil) / float(n_gt)
    return 0.0 if precision + recall == 0 else float(2 * precision * recall / (precision + recall))


# -- masks ------------------------------------------------------------------------------------


def blob(h: int, w: int, seed: int) -> np.ndarray:
    """An irregular object: a few overlapping ellipses (with a hole), some touching the border."""
    rng = np.random.default_rng(seed)
    m = np.zeros((h, w), np.uint8)
    for _ in range(4):
        centre = (int(rng.integers(0, w)), int(rng.integers(0, h)))
        axes = (int(rng.integers(w // 12, w // 4)), int(rng.integers(h // 12, h // 4)))
        cv2.ellipse(m, centre, axes, float(rng.uniform(0, 180)), 0, 360, 1, -1)
    cv2.circle(m, (w // 2, h // 2), max(2, min(h, w) // 20), 0, -1)
    m[:, -3:] |= m[:, -4:-3]  # reach the right edge where the object is near it
    return m.astype(bool)


def variants(truth: np.ndarray) -> dict[str, np.ndarray]:
    k = np.ones((5, 5), np.uint8)
    u8 = truth.astype(np.uint8)
    h, w = truth.shape
    return {
        "same": truth.copy(),
        "shifted": np.roll(truth, (3, -7), axis=(0, 1)),
        "shifted far": np.roll(truth, (40, 90), axis=(0, 1)),
        "eroded": cv2.erode(u8, k, iterations=2) > 0,
        "dilated": cv2.dilate(u8, k, iterations=3) > 0,
        "empty": np.zeros_like(truth),
        "full": np.ones_like(truth),
        "one pixel": np.pad(np.ones((1, 1), bool), ((5, h - 6), (9, w - 10))),
        "bottom-right corner": np.pad(np.ones((4, 4), bool), ((h - 4, 0), (w - 4, 0))),
    }


SIZES = [(90, 160), (480, 854)]  # radius 2 px and 8 px


@pytest.mark.parametrize("shape", SIZES, ids=lambda s: f"{s[1]}x{s[0]}")
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_j_and_f_agree_with_the_toolkit_transcription(shape: tuple[int, int], seed: int) -> None:
    truth = blob(*shape, seed)
    assert truth.any() and not truth.all()
    cases = variants(truth)
    for name, predicted in cases.items():
        for a, b in ((truth, predicted), (predicted, truth), (np.zeros_like(truth), predicted)):
            assert davis.region_j(a, b) == pytest.approx(ref_iou(a, b), abs=1e-6), name
            assert davis.boundary_f(a, b) == pytest.approx(ref_f_measure(b, a), abs=1e-6), name
    # The variants span the range: perfect, partial, and zero scores all occur.
    fs = [davis.boundary_f(truth, p) for p in cases.values()]
    assert max(fs) == 1.0 and min(fs) == 0.0 and any(0.05 < f < 0.95 for f in fs)


def test_boundary_map_matches_transcription_and_tolerance() -> None:
    m = blob(90, 160, 5)
    np.testing.assert_array_equal(davis.boundary_map(m), ref_seg2bmap(m))
    assert davis.boundary_tolerance_px((480, 854)) == 8
    assert davis.boundary_tolerance_px((90, 160)) == 2
    np.testing.assert_array_equal(davis.disk(8) > 0, ref_disk(8.0))


def test_empty_masks_score_as_the_toolkit_does() -> None:
    empty = np.zeros((20, 30), bool)
    some = empty.copy()
    some[5:9, 5:12] = True
    assert davis.region_j(empty, empty) == 1.0
    assert davis.boundary_f(empty, empty) == 1.0
    assert davis.region_j(some, empty) == 0.0
    assert davis.boundary_f(some, empty) == 0.0
    assert davis.boundary_f(empty, some) == 0.0


def test_sequence_scores_over_the_toolkit_frames_only() -> None:
    truth = blob(90, 160, 3)
    labels = np.stack([truth.astype(np.uint8)] * 6)
    predictions = labels.copy()
    predictions[0] = 0  # frame 0 (the prompt) and the last frame are not scored
    predictions[-1] = 0
    predictions[2] = np.roll(truth, 5, axis=1)
    scores = davis.score_sequence(predictions, labels, [1])
    assert scores is not None
    assert scores.objects[0].frames == (1, 2, 3, 4)
    j2 = ref_iou(truth, predictions[2])
    f2 = ref_f_measure(predictions[2] > 0, truth)
    assert scores.j_mean == pytest.approx((3 + j2) / 4, abs=1e-9)
    assert scores.f_mean == pytest.approx((3 + f2) / 4, abs=1e-9)
    assert scores.j_and_f_mean == pytest.approx((scores.j_mean + scores.f_mean) / 2)
    assert davis.score_sequence(predictions[:2], labels[:2], [1]) is None  # no frame 1..T-2
    with pytest.raises(ValueError, match="height x width"):
        davis.region_j(truth, truth[:-1])


def toolkit_read_masks(folder: Path, names: list[str]) -> np.ndarray:
    """davis2017-evaluation's Results.read_masks: values 1..max become one mask each."""
    masks = np.stack([np.array(Image.open(folder / f"{n}.png")) for n in names]).astype(float)
    n_objects = int(masks.max())
    return np.stack([masks == k for k in range(1, n_objects + 1)])


def test_predicted_pngs_are_indexed_as_the_toolkit_reads_them(tmp_path: Path) -> None:
    truth = blob(90, 160, 4)
    single = [truth, np.roll(truth, 2, axis=0)]
    write_mask_pngs(tmp_path / "one", single, names=["00000", "00001"])
    with Image.open(tmp_path / "one" / "00000.png") as im:
        assert im.mode == "P"
    read = toolkit_read_masks(tmp_path / "one", ["00000", "00001"])
    assert read.shape[0] == 1  # one object, not 255
    np.testing.assert_array_equal(read[0], np.stack(single))

    two = [np.where(truth, 1, 0) + np.where(np.roll(truth, 50, axis=1) & ~truth, 2, 0)] * 2
    write_mask_pngs(tmp_path / "two", two, names=["00000", "00001"])
    read = toolkit_read_masks(tmp_path / "two", ["00000", "00001"])
    assert read.shape[0] == 2
    np.testing.assert_array_equal(read[1][0], two[0] == 2)
