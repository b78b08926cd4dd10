"""DAVIS scores as the official toolkit computes them: J, F and J&F.

The reference is ``davisvideochallenge/davis2017-evaluation`` (``davis2017/metrics.py``
and ``evaluation.py``), the scorer behind the J&F figures that video-segmentation papers
and SAM2 report. Written here from its definitions, checked against a separate
transcription in ``tests/test_davis.py``:

* J (region similarity): intersection over union of the two binary masks; two empty
  masks score 1.
* F (boundary accuracy): each mask's boundary is the 1-pixel map of pixels that differ
  from their right, lower or lower-right neighbour (so it sits half a pixel towards the
  origin); a boundary pixel of one mask matches when the other's boundary lies within a
  disk of radius ``ceil(0.008 x image diagonal)`` pixels (8 px at 854x480). Precision and
  recall of the matches give F = 2PR / (P + R); an empty boundary scores precision (or
  recall) 1, and both empty score 1.
* Frames: semi-supervised evaluation scores frames ``1 .. T-2`` (the prompted first frame
  and the last frame are left out), one object at a time, object ``k`` being label ``k``
  in both the prediction and the annotation (no association between ids).
* Means: J-mean and F-mean of an object are means over its scored frames; the toolkit's
  J-mean and F-mean are means over objects, and J&F is their average.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import cv2
import numpy as np

BOUNDARY_FRACTION = 0.008  # of the image diagonal: the toolkit's ``bound_th``


def toolkit_frames(n_frames: int) -> range:
    """The frame indices the toolkit scores in semi-supervised mode: 1 .. T-2."""
    return range(1, max(n_frames - 1, 1))


def region_j(truth: np.ndarray, predicted: np.ndarray) -> float:
    """Region similarity J (IoU) of two binary masks; 1.0 when both are empty."""
    truth, predicted = _pair(truth, predicted)
    union = np.count_nonzero(truth | predicted)
    if union == 0:
        return 1.0
    return np.count_nonzero(truth & predicted) / union


def boundary_map(mask: np.ndarray) -> np.ndarray:
    """The toolkit's 1-pixel boundary of a binary mask (``seg2bmap`` at the mask's own size).

    A pixel is on the boundary when it differs from its right, lower or lower-right
    neighbour; on the last row only the right neighbour counts, on the last column only the
    lower one, and the bottom-right pixel never is.
    """
    m = np.asarray(mask, dtype=bool)
    right = np.zeros_like(m)
    right[:, :-1] = m[:, 1:]
    below = np.zeros_like(m)
    below[:-1, :] = m[1:, :]
    diagonal = np.zeros_like(m)
    diagonal[:-1, :-1] = m[1:, 1:]
    edge = (m ^ right) | (m ^ below) | (m ^ diagonal)
    edge[-1, :] = m[-1, :] ^ right[-1, :]
    edge[:, -1] = m[:, -1] ^ below[:, -1]
    edge[-1, -1] = False
    return edge


def boundary_tolerance_px(shape_hw: tuple[int, int], fraction: float = BOUNDARY_FRACTION) -> int:
    """Match radius in pixels: ``ceil(fraction x diagonal)`` (a fraction >= 1 is taken as pixels)."""
    if fraction >= 1:
        return int(fraction)
    return math.ceil(fraction * math.hypot(*shape_hw))


def disk(radius: int) -> np.ndarray:
    """A filled disk (x^2 + y^2 <= r^2) of side 2r+1, as uint8: the dilation element."""
    offsets = np.arange(-radius, radius + 1)
    return ((offsets[:, None] ** 2 + offsets[None, :] ** 2) <= radius**2).astype(np.uint8)


def boundary_f(truth: np.ndarray, predicted: np.ndarray, fraction: float = BOUNDARY_FRACTION) -> float:
    """Boundary F-measure of ``predicted`` against ``truth`` (see the module docstring)."""
    truth, predicted = _pair(truth, predicted)
    kernel = disk(boundary_tolerance_px(truth.shape, fraction))
    pred_edge = boundary_map(predicted)
    true_edge = boundary_map(truth)
    n_pred = np.count_nonzero(pred_edge)
    n_true = np.count_nonzero(true_edge)
    if n_pred == 0 or n_true == 0:
        # Nothing to match on one side: an empty boundary is perfectly precise (or complete).
        precision = 1.0 if n_pred == 0 else 0.0
        recall = 1.0 if n_true == 0 else 0.0
    else:
        pred_near = cv2.dilate(pred_edge.astype(np.uint8), kernel) > 0
        true_near = cv2.dilate(true_edge.astype(np.uint8), kernel) > 0
        precision = np.count_nonzero(pred_edge & true_near) / n_pred
        recall = np.count_nonzero(true_edge & pred_near) / n_true
    if precision + recall == 0:
        return 0.0
    return 2.0 * precision * recall / (precision + recall)


@dataclass(frozen=True)
class ObjectScores:
    """One object's J and F on each scored frame (the toolkit's frames), and their means."""

    object_id: int
    frames: tuple[int, ...]
    j: tuple[float, ...]
    f: tuple[float, ...]

    @property
    def j_mean(self) -> float:
        return float(np.mean(self.j))

    @property
    def f_mean(self) -> float:
        return float(np.mean(self.f))


@dataclass(frozen=True)
class DavisScores:
    """A sequence's toolkit scores: per object, and J, F, J&F as means over objects."""

    objects: tuple[ObjectScores, ...]

    @property
    def j_mean(self) -> float:
        return float(np.mean([o.j_mean for o in self.objects]))

    @property
    def f_mean(self) -> float:
        return float(np.mean([o.f_mean for o in self.objects]))

    @property
    def j_and_f_mean(self) -> float:
        return (self.j_mean + self.f_mean) / 2.0

    def as_dict(self) -> dict[str, object]:
        return {
            "frames_scored": "1..T-2 (davis2017-evaluation, semi-supervised)",
            "j_mean": self.j_mean,
            "f_mean": self.f_mean,
            "j_and_f_mean": self.j_and_f_mean,
            "objects": {str(o.object_id): {"j_mean": o.j_mean, "f_mean": o.f_mean} for o in self.objects},
        }


def score_sequence(
    predictions: Sequence[np.ndarray] | np.ndarray,
    labels: Sequence[np.ndarray] | np.ndarray,
    object_ids: Sequence[int],
) -> DavisScores | None:
    """Toolkit J and F of each object over frames 1..T-2; None when there is no such frame.

    ``predictions`` and ``labels`` are (T, H, W) label maps where object ``k`` is value ``k``.
    """
    if len(predictions) != len(labels):
        raise ValueError(f"{len(predictions)} predicted frames for {len(labels)} annotated frames")
    frames = tuple(toolkit_frames(len(labels)))
    if not frames or not object_ids:
        return None
    objects = []
    for oid in object_ids:
        j, f = [], []
        for t in frames:
            truth = np.asarray(labels[t]) == oid
            predicted = np.asarray(predictions[t]) == oid
            j.append(region_j(truth, predicted))
            f.append(boundary_f(truth, predicted))
        objects.append(ObjectScores(int(oid), frames, tuple(j), tuple(f)))
    return DavisScores(tuple(objects))


def _pair(truth: np.ndarray, predicted: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    truth, predicted = np.asarray(truth, dtype=bool), np.asarray(predicted, dtype=bool)
    if truth.shape != predicted.shape or truth.ndim != 2:
        raise ValueError(
            f"DAVIS scores need two 2D masks of one size (height x width), got {truth.shape}"
            f" and {predicted.shape}"
        )
    return truth, predicted
