"""TrackRAD2025's dose-oriented metric, relative D98, as the challenge's evaluation computes it.

Follows the official ``DoseMetric`` (``LMUK-RADONC-PHYS-RES/trackrad2025``,
``evaluation/evaluate.py``); this is an independent implementation of the same
definition, checked against a transcription of it in ``tests/test_dose.py``:

1. Frames whose ground truth is empty are dropped. The first remaining ground
   truth is the target (the "GTV").
2. The "planned dose" is that target dilated by 3 iterations of a 3x3 cross
   (3 *pixels*, whatever the spacing), Gaussian-smoothed with sigma 6 px when
   the scanned region is exactly ``"lung"`` and 4 px otherwise, and kept where
   the smoothed value is > 0.25: a binary (0/1) field in the ground truth's
   integer type.
3. Each frame, that binary dose is shifted by the centroid error (predicted
   minus true centre of mass, in pixels, (row, column)) with a cubic spline,
   ``mode="nearest"``, and the result stays in the integer type (SciPy rounds,
   so each shifted dose is again 0/1). An empty prediction has no centroid and
   delivers nothing on its frame. The shifted doses are averaged over the frames.
4. D98 is read from a cumulative dose-volume histogram of the target's pixels:
   bins 0.1 wide centred on 0, 0.1, ... up to the dose's maximum over the whole
   image; D98 is where the normalised cumulative histogram falls to 0.98,
   linearly interpolated between bin centres (0 when every target pixel lies in
   the first bin).
5. The metric is D98 under the averaged shifted dose over D98 under the planned
   dose: 1.0 means the target kept its coverage.

Everything is in pixels, as in the challenge (its data are 1x1 mm).
"""

from __future__ import annotations

import numpy as np
from scipy import ndimage

LUNG_SIGMA_PX = 6.0
DEFAULT_SIGMA_PX = 4.0
CTV_MARGIN_PX = 3  # dilation iterations of a 3x3 cross
DOSE_THRESHOLD = 0.25  # the smoothed margin is kept where strictly above this
DVH_BIN_WIDTH = 0.1


def sigma_for_region(scanned_region: str | None) -> float:
    """The smoothing sigma the challenge uses: 6 px only for the region spelled exactly ``"lung"``."""
    return LUNG_SIGMA_PX if scanned_region == "lung" else DEFAULT_SIGMA_PX


def planned_dose(first_target: np.ndarray, sigma_px: float = DEFAULT_SIGMA_PX) -> np.ndarray:
    """The binary uint8 "dose" of the first-frame target: 3 px margin, smoothed, > 0.25."""
    target = np.asarray(first_target).astype(np.uint8)
    cross = ndimage.generate_binary_structure(2, 1)
    ctv = ndimage.binary_dilation(target, structure=cross, iterations=CTV_MARGIN_PX).astype(np.uint8)
    smoothed = ndimage.gaussian_filter(ctv.astype(np.float32), sigma=sigma_px)
    return (smoothed > DOSE_THRESHOLD).astype(np.uint8)


def d98(dose: np.ndarray, target: np.ndarray) -> float:
    """D98 of ``target`` under ``dose`` from a 0.1-binned cumulative DVH (see the module docstring)."""
    dose = np.asarray(dose, dtype=np.float64)
    values = dose[np.asarray(target) > 0]
    # Bin centres 0, 0.1, ... ; the edges are the same float sequence the challenge builds.
    edges = np.arange(-DVH_BIN_WIDTH / 2, float(dose.max()) + DVH_BIN_WIDTH, DVH_BIN_WIDTH)
    counts, edges = np.histogram(values, bins=edges)
    centres = np.round((edges[1:] + edges[:-1]) / 2.0, 10)
    at_least = np.cumsum(counts[::-1])[::-1]  # pixels in this bin or above
    if at_least.size == 0 or at_least[0] == 0:
        return 0.0
    if at_least[0] == at_least.sum():  # everything in the first bin
        return 0.0
    fraction = at_least / at_least[0]
    # ``fraction`` falls with dose; np.interp needs rising x, so read it backwards.
    return float(np.interp(0.98, fraction[::-1], centres[::-1]))


def _shifted(dose: np.ndarray, pred: np.ndarray, truth: np.ndarray) -> np.ndarray:
    if not pred.any():
        return np.zeros(dose.shape, dtype=np.float32)  # nothing tracked: nothing delivered
    error = np.subtract(ndimage.center_of_mass(pred), ndimage.center_of_mass(truth))  # (row, col) px
    return ndimage.shift(dose, error, order=3, mode="nearest").astype(np.float32)


def relative_d98(
    predictions: np.ndarray,
    truths: np.ndarray,
    scanned_region: str | None = None,
) -> float:
    """Relative D98 over a sequence of (T, H, W) predictions and ground truths (nan without a target).

    ``scanned_region`` picks the smoothing sigma exactly as the challenge does
    (6 px for ``"lung"``, 4 px for anything else, including ``"thorax"``).
    """
    predictions = np.asarray(predictions)
    truths = np.asarray(truths)
    if predictions.shape != truths.shape or predictions.ndim != 3:
        raise ValueError(
            f"relative_d98 needs (T, H, W) predictions and truths of one shape, got {predictions.shape}"
            f" and {truths.shape}"
        )
    keep = truths.reshape(len(truths), -1).any(axis=1)  # frames without a target are dropped
    predictions, truths = predictions[keep] > 0, truths[keep] > 0
    if len(truths) == 0:
        return float("nan")
    first = truths[0]
    dose = planned_dose(first, sigma_for_region(scanned_region))
    reference = d98(dose, first)
    delivered = np.zeros(dose.shape, dtype=np.float32)
    for pred, truth in zip(predictions, truths, strict=True):
        delivered += _shifted(dose, pred, truth)
    delivered /= np.float32(len(truths))
    return d98(delivered, first) / reference if reference > 0 else float("nan")
