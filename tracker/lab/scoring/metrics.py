"""Per-frame segmentation metrics, scored the way the TrackRAD2025 challenge scores them.

Why this module exists: the service is judged on the same numbers the challenge
reports, so replay and benchmarks must compute them identically (same surface
definition, same percentile rule, same penalty for a lost target). Everything
here is plain NumPy/SciPy on the project's mask convention: ``bool`` arrays of
shape ``(H, W)`` indexed ``[row, col]``; ``spacing_mm`` is ``(x spacing,
y spacing)`` as in :class:`tracker.types.Geometry`, i.e. (column spacing, row
spacing).

Per-frame metrics (TrackRAD2025): Dice, HD95, mean surface distance, and the
centre-of-mass (centroid) distance, all distances in millimetres. DAVIS-style
sequences also get the region similarity J (IoU).

Conventions, chosen deliberately and tested:

* **Surface.** A mask pixel is on the surface when one of its 4-neighbours is
  outside the mask, i.e. ``mask & ~binary_erosion(mask, 3x3 cross)``, with
  pixels outside the image counted as background (so a mask touching the image
  edge has a surface there). A single-pixel mask is its own one-pixel surface.
  This is the challenge's own definition (``binary_erosion(seg) ^ seg``) and
  medpy's.
* **Surface distances** are surface-to-surface: for every surface pixel of one
  mask, the Euclidean distance (in mm, via ``distance_transform_edt`` with
  ``sampling=(spacing_y, spacing_x)``) to the nearest surface pixel of the other.
* **HD95** follows medpy/MONAI (and the challenge code):
  ``max(percentile(d_pred_to_gt, 95), percentile(d_gt_to_pred, 95))`` with
  NumPy's default linear interpolation — *not* the 95th percentile of the
  pooled distances.
* **MSD** is the symmetric mean surface distance as in medpy's ``assd`` and
  Metrics Reloaded's MASD: ``(mean(d_pred_to_gt) + mean(d_gt_to_pred)) / 2``.
  (The challenge's code reports only the directed pred->gt mean; the two agree
  whenever the error is symmetric, e.g. a pure shift. :mod:`tracker.lab.scoring.challenge`
  reports the challenge's one-directional number.)
* **Centroid distance** is the Euclidean distance between the two centres of
  mass in mm, taking pixel (x, y) to lie at ``(x * spacing_x, y * spacing_y)``.
* **Empty prediction** (ground truth non-empty): Dice 0, J 0, and every
  distance metric gets the penalty ``max(H * spacing_y, W * spacing_x)`` mm, the
  largest image extent, so that losing the target is never better than a bad
  guess. (The challenge code uses ``max(H, W)`` in pixels; at its 1 mm
  spacing the two coincide.)
* **Empty ground truth** (our choice; the challenge drops such frames
  entirely, as :mod:`tracker.lab.scoring.challenge` and ``tracker replay --challenge`` do):
  distances are undefined, so they are ``nan`` and the nan-aware sequence means
  skip the frame. Dice and J still score the frame: 1 when the prediction is
  also empty (correctly reporting "no target"), 0 otherwise.
* **Frame 0** is the prompt (the ground truth is given to the tracker), so
  :func:`score_sequence` excludes it by default.
"""

from __future__ import annotations

import logging
import math
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import numpy as np
from scipy import ndimage

__all__ = [
    "FrameScores",
    "SequenceScores",
    "centroid_distance_mm",
    "dice",
    "empty_prediction_penalty_mm",
    "hd95_mm",
    "iou",
    "mean_surface_distance_mm",
    "score_frame",
    "score_sequence",
    "surface",
    "surface_distances_mm",
]

logger = logging.getLogger(__name__)

# 4-connectivity: a pixel is interior only if all four edge-neighbours are in the mask.
_CROSS = ndimage.generate_binary_structure(2, 1)


# --------------------------------------------------------------------------- helpers


def _as_mask(a: np.ndarray, name: str) -> np.ndarray:
    """A 2-D bool view of ``a`` (non-zero is foreground); rejects anything else loudly."""
    arr = np.asarray(a)
    if arr.ndim != 2:
        raise ValueError(f"{name} must be a 2-D (H, W) mask, got shape {arr.shape}")
    return arr if arr.dtype == bool else arr != 0


def _as_pair(pred: np.ndarray, gt: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    p = _as_mask(pred, "pred")
    g = _as_mask(gt, "gt")
    if p.shape != g.shape:
        raise ValueError(f"pred and gt must have the same shape, got {p.shape} and {g.shape}")
    return p, g


def _check_spacing(spacing_mm: tuple[float, float]) -> tuple[float, float]:
    if len(spacing_mm) != 2:
        raise ValueError(f"spacing_mm must be (x spacing, y spacing), got {spacing_mm}")
    sx, sy = float(spacing_mm[0]), float(spacing_mm[1])
    if not (math.isfinite(sx) and math.isfinite(sy) and sx > 0 and sy > 0):
        raise ValueError(f"spacing_mm must be two positive finite numbers, got {spacing_mm}")
    return sx, sy


def surface(mask: np.ndarray) -> np.ndarray:
    """The mask's surface: mask pixels with a 4-neighbour outside the mask (or the image).

    ``border_value=0`` makes the image edge count as background, so a mask that
    fills the frame still has a (frame-border) surface instead of none.
    """
    m = _as_mask(mask, "mask")
    return m & ~ndimage.binary_erosion(m, structure=_CROSS, border_value=0)


def empty_prediction_penalty_mm(shape_hw: tuple[int, int], spacing_mm: tuple[float, float]) -> float:
    """Distance penalty for a lost target: the largest image extent in mm."""
    sx, sy = _check_spacing(spacing_mm)
    h, w = int(shape_hw[0]), int(shape_hw[1])
    return float(max(h * sy, w * sx))


# --------------------------------------------------------------------------- overlap


def dice(pred: np.ndarray, gt: np.ndarray) -> float:
    """Dice similarity 2|P∩G| / (|P|+|G|); 1.0 when both are empty (nothing to find, nothing found)."""
    p, g = _as_pair(pred, gt)
    total = int(np.count_nonzero(p)) + int(np.count_nonzero(g))
    if total == 0:
        return 1.0
    return 2.0 * int(np.count_nonzero(p & g)) / total


def iou(pred: np.ndarray, gt: np.ndarray) -> float:
    """Region similarity J = |P∩G| / |P∪G| (DAVIS); 1.0 when both are empty, as DAVIS scores it."""
    p, g = _as_pair(pred, gt)
    union = int(np.count_nonzero(p | g))
    if union == 0:
        return 1.0
    return int(np.count_nonzero(p & g)) / union


# --------------------------------------------------------------------------- distances


def surface_distances_mm(
    pred: np.ndarray, gt: np.ndarray, spacing_mm: tuple[float, float] = (1.0, 1.0)
) -> tuple[np.ndarray, np.ndarray]:
    """Directed surface-to-surface distances in mm: ``(pred -> gt, gt -> pred)``.

    Element ``i`` of the first array is the distance from the ``i``-th surface
    pixel of ``pred`` (row-major order) to the nearest surface pixel of ``gt``;
    the second array is the reverse. If either mask is empty the distances are
    undefined and both arrays are empty (the callers apply the challenge's
    rules for that case).

    For speed the work is cropped to the union's bounding box plus a one-pixel
    margin: exact, because every surface pixel lies inside it and Euclidean
    distances do not depend on the crop, and the margin keeps the erosion's
    "outside is background" rule identical to the full frame's.
    """
    p, g = _as_pair(pred, gt)
    sx, sy = _check_spacing(spacing_mm)
    empty = np.empty(0, dtype=np.float64)
    if not p.any() or not g.any():
        return empty, empty.copy()

    rows = np.flatnonzero((p | g).any(axis=1))
    cols = np.flatnonzero((p | g).any(axis=0))
    h, w = p.shape
    r0, r1 = max(int(rows[0]) - 1, 0), min(int(rows[-1]) + 2, h)
    c0, c1 = max(int(cols[0]) - 1, 0), min(int(cols[-1]) + 2, w)
    p, g = p[r0:r1, c0:c1], g[r0:r1, c0:c1]

    surf_p = surface(p)
    surf_g = surface(g)
    sampling = (sy, sx)  # EDT axes are (row, col) = (y, x)
    dist_to_g = ndimage.distance_transform_edt(~surf_g, sampling=sampling)
    dist_to_p = ndimage.distance_transform_edt(~surf_p, sampling=sampling)
    return (
        np.asarray(dist_to_g[surf_p], dtype=np.float64),
        np.asarray(dist_to_p[surf_g], dtype=np.float64),
    )


def _surface_metric_mm(
    pred: np.ndarray,
    gt: np.ndarray,
    spacing_mm: tuple[float, float],
    combine: Callable[[np.ndarray, np.ndarray], float],
) -> float:
    """``combine`` of the two directed surface distances (pred to gt, gt to pred), in mm.

    The empty cases are decided here, once for every surface metric: ``nan`` when ``gt`` is
    empty, the image-extent penalty when only ``pred`` is.
    """
    p, g = _as_pair(pred, gt)
    if not g.any():
        return math.nan
    if not p.any():
        return empty_prediction_penalty_mm(p.shape, spacing_mm)
    d_pg, d_gp = surface_distances_mm(p, g, spacing_mm)
    return float(combine(d_pg, d_gp))


def hd95_mm(pred: np.ndarray, gt: np.ndarray, spacing_mm: tuple[float, float] = (1.0, 1.0)) -> float:
    """95th-percentile Hausdorff distance in mm (medpy/MONAI convention).

    ``max(percentile(d_pred_to_gt, 95), percentile(d_gt_to_pred, 95))``, linear
    interpolation. ``nan`` when ``gt`` is empty; the image-extent penalty when
    only ``pred`` is empty.
    """
    return _surface_metric_mm(
        pred, gt, spacing_mm, lambda d_pg, d_gp: max(np.percentile(d_pg, 95), np.percentile(d_gp, 95))
    )


def mean_surface_distance_mm(
    pred: np.ndarray, gt: np.ndarray, spacing_mm: tuple[float, float] = (1.0, 1.0)
) -> float:
    """Symmetric mean surface distance in mm: the average of the two directed means (medpy ``assd``).

    Averaging the two directed means (rather than pooling all distances) keeps
    a long contour from outweighing a short one. ``nan`` when ``gt`` is empty;
    the image-extent penalty when only ``pred`` is empty.
    """
    return _surface_metric_mm(pred, gt, spacing_mm, lambda d_pg, d_gp: 0.5 * (d_pg.mean() + d_gp.mean()))


def _centroid_mm(mask: np.ndarray, sx: float, sy: float) -> tuple[float, float]:
    cy, cx = ndimage.center_of_mass(mask)
    return float(cx) * sx, float(cy) * sy


def centroid_distance_mm(
    pred: np.ndarray, gt: np.ndarray, spacing_mm: tuple[float, float] = (1.0, 1.0)
) -> float:
    """Euclidean distance between the centres of mass, in mm (the challenge's centre distance).

    Pixel (x, y) lies at ``(x * spacing_x, y * spacing_y)``. ``nan`` when ``gt``
    is empty; the image-extent penalty when only ``pred`` is empty.
    """
    p, g = _as_pair(pred, gt)
    sx, sy = _check_spacing(spacing_mm)
    if not g.any():
        return math.nan
    if not p.any():
        return empty_prediction_penalty_mm(p.shape, spacing_mm)
    px, py = _centroid_mm(p, sx, sy)
    gx, gy = _centroid_mm(g, sx, sy)
    return float(math.hypot(px - gx, py - gy))


# --------------------------------------------------------------------------- frames


@dataclass(frozen=True)
class FrameScores:
    """All metrics of one frame; distances are ``nan`` when the ground truth is empty."""

    dice: float
    iou: float  # J
    hd95_mm: float
    msd_mm: float
    centroid_mm: float


def score_frame(
    pred: np.ndarray, gt: np.ndarray, spacing_mm: tuple[float, float] = (1.0, 1.0)
) -> FrameScores:
    """Score one frame under the module's conventions (see the module docstring).

    Computes the surface distances once and derives HD95 and MSD from them,
    since the distance transforms dominate the cost.
    """
    p, g = _as_pair(pred, gt)
    sx, sy = _check_spacing(spacing_mm)
    d = dice(p, g)
    j = iou(p, g)
    if not g.any():
        return FrameScores(dice=d, iou=j, hd95_mm=math.nan, msd_mm=math.nan, centroid_mm=math.nan)
    if not p.any():
        penalty = empty_prediction_penalty_mm(p.shape, (sx, sy))
        return FrameScores(dice=d, iou=j, hd95_mm=penalty, msd_mm=penalty, centroid_mm=penalty)
    d_pg, d_gp = surface_distances_mm(p, g, (sx, sy))
    return FrameScores(
        dice=d,
        iou=j,
        hd95_mm=float(max(np.percentile(d_pg, 95), np.percentile(d_gp, 95))),
        msd_mm=float(0.5 * (d_pg.mean() + d_gp.mean())),
        centroid_mm=centroid_distance_mm(p, g, (sx, sy)),
    )


# --------------------------------------------------------------------------- sequences


def _nanmean(values: Sequence[float]) -> float:
    """Mean ignoring nan; nan (without NumPy's RuntimeWarning) when nothing is left."""
    arr = np.asarray(values, dtype=np.float64)
    if arr.size == 0 or np.isnan(arr).all():
        return math.nan
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        return float(np.nanmean(arr))


@dataclass
class SequenceScores:
    """Per-frame scores of one sequence and their nan-aware means."""

    frames: list[FrameScores]  # one per scored frame (frame 0 excluded by default)
    dice_mean: float
    iou_mean: float
    hd95_mm_mean: float
    msd_mm_mean: float
    centroid_mm_mean: float
    frame_indices: list[int] = field(default_factory=list)  # sequence index of each entry in ``frames``

    @classmethod
    def from_frames(cls, frames: list[FrameScores], frame_indices: list[int] | None = None) -> SequenceScores:
        """Aggregate per-frame scores; nan entries (empty ground truth) are left out of each mean."""
        return cls(
            frames=list(frames),
            dice_mean=_nanmean([f.dice for f in frames]),
            iou_mean=_nanmean([f.iou for f in frames]),
            hd95_mm_mean=_nanmean([f.hd95_mm for f in frames]),
            msd_mm_mean=_nanmean([f.msd_mm for f in frames]),
            centroid_mm_mean=_nanmean([f.centroid_mm for f in frames]),
            frame_indices=list(frame_indices) if frame_indices is not None else [],
        )

    def as_dict(self) -> dict[str, float]:
        """Flat summary for reports/JSON; J is named ``j_mean`` as DAVIS names it."""
        return {
            "dice_mean": self.dice_mean,
            "j_mean": self.iou_mean,
            "hd95_mm_mean": self.hd95_mm_mean,
            "msd_mm_mean": self.msd_mm_mean,
            "centroid_mm_mean": self.centroid_mm_mean,
            "frames_scored": len(self.frames),
        }


def score_sequence(
    preds: Sequence[np.ndarray] | np.ndarray,
    gts: Sequence[np.ndarray] | np.ndarray,
    spacing_mm: tuple[float, float] = (1.0, 1.0),
    skip_first: bool = True,
) -> SequenceScores:
    """Score a sequence frame by frame and average, excluding frame 0 (the prompt) by default.

    ``preds`` and ``gts`` are sequences of (H, W) masks or (T, H, W) arrays of
    the same length. Means are nan-aware: frames whose ground truth is empty
    count for Dice/J but not for the distance metrics.
    """
    if len(preds) != len(gts):
        raise ValueError(f"preds and gts must have the same length, got {len(preds)} and {len(gts)}")
    spacing = _check_spacing(spacing_mm)
    start = 1 if skip_first else 0
    indices = list(range(start, len(gts)))
    frames = [score_frame(preds[i], gts[i], spacing) for i in indices]
    scores = SequenceScores.from_frames(frames, indices)
    logger.debug("scored %d of %d frames: %s", len(frames), len(gts), scores.as_dict())
    return scores
