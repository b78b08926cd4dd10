"""TrackRAD2025's per-case numbers, computed the way its evaluation code computes them.

The project's own metrics (:mod:`tracker.lab.scoring.metrics`) keep every frame and report
the symmetric mean surface distance in mm. The challenge's ``process()``
(``LMUK-RADONC-PHYS-RES/trackrad2025``, ``evaluation/evaluate.py``) differs, and
this module follows it:

* frames whose ground truth is empty are dropped from every metric;
* the first remaining frame (the prompt) is left out of the means;
* the average surface distance is **one-directional**: the mean distance from
  each predicted surface pixel to the nearest true surface pixel (MONAI's
  ``SurfaceDistanceMetric`` with ``symmetric=False``); the symmetric mean is
  kept as an extra (``msd_symmetric``);
* an empty prediction scores Dice 0 and a distance penalty of ``max(H, W)``
  pixels on HD95, the surface distance and the centre distance;
* distances are in pixels (no spacing is passed; the data are 1x1 mm);
* relative D98 (:mod:`tracker.gating.dose`) for cine-MRI only.

One corner differs knowingly: the official code drops the first element of its
score list after moving empty-prediction frames to the end, so when the first
kept frame has an empty prediction it drops a different frame; here the first
kept frame is always the one dropped (for the prompted frame 0 the two agree).
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import numpy as np

from tracker.gating.dose import relative_d98
from tracker.lab.scoring import metrics


@dataclass(frozen=True)
class ChallengeScores:
    dice: float
    hd95_px: float
    asd_px: float  # one-directional (prediction -> truth): the challenge's number
    msd_symmetric_px: float  # extra: the symmetric mean surface distance
    centroid_px: float
    relative_d98: float | None  # cine-MRI only
    frames_scored: int
    empty_truth_frames: int  # dropped
    empty_predictions: int  # penalised
    dice_per_frame: list[float]  # aligned with frame_indices
    frame_indices: list[int]

    def as_dict(self) -> dict[str, object]:
        return asdict(self)


def _mean(values: list[float]) -> float:
    return float(np.mean(values)) if values else math.nan


def challenge_scores(
    predictions: np.ndarray,
    truths: np.ndarray,
    *,
    dose: bool,
    scanned_region: str | None = None,
) -> ChallengeScores:
    """Score one object over a (T, H, W) sequence as the challenge does (see the module docstring)."""
    predictions = np.asarray(predictions) > 0
    truths = np.asarray(truths) > 0
    if predictions.shape != truths.shape or predictions.ndim != 3:
        raise ValueError(
            f"need (T, H, W) predictions and truths of one shape, got {predictions.shape}, {truths.shape}"
        )
    _, h, w = truths.shape
    penalty = float(max(h, w))
    kept = [i for i in range(len(truths)) if truths[i].any()]
    scored = kept[1:]  # the first frame with a target is the prompt
    dice, hd95, asd, msd, centre = [], [], [], [], []
    empty_predictions = 0
    for i in scored:
        p, g = predictions[i], truths[i]
        if not p.any():
            empty_predictions += 1
            dice.append(0.0)
            hd95.append(penalty)
            asd.append(penalty)
            msd.append(penalty)
            centre.append(penalty)
            continue
        d_pg, d_gp = metrics.surface_distances_mm(p, g, (1.0, 1.0))
        dice.append(metrics.dice(p, g))
        hd95.append(float(max(np.percentile(d_pg, 95), np.percentile(d_gp, 95))))
        asd.append(float(d_pg.mean()))
        msd.append(float(0.5 * (d_pg.mean() + d_gp.mean())))
        centre.append(metrics.centroid_distance_mm(p, g, (1.0, 1.0)))
    return ChallengeScores(
        dice=_mean(dice),
        hd95_px=_mean(hd95),
        asd_px=_mean(asd),
        msd_symmetric_px=_mean(msd),
        centroid_px=_mean(centre),
        relative_d98=relative_d98(predictions, truths, scanned_region) if dose and kept else None,
        frames_scored=len(scored),
        empty_truth_frames=len(truths) - len(kept),
        empty_predictions=empty_predictions,
        dice_per_frame=dice,
        frame_indices=scored,
    )
