"""TrackRAD2025's dose-oriented metric: relative D98 under centroid-error-shifted dose.

The first frame's target is expanded by 3 mm (the CTV margin) and smoothed with a
Gaussian (6 mm for lung, 4 mm otherwise; thresholded at half, so the "dose" is a
smooth-edged binary field, as the challenge computes it). Each frame, the dose
follows the *prediction*: it is shifted by that frame's centroid error
(predicted minus true centroid), and the shifted doses are averaged. The metric is
D98 of the first-frame target under the averaged dose, relative to D98 under the
unshifted dose: 1.0 means no loss of target coverage. An empty prediction
delivers nothing on its frame.

D98 here is the 2nd percentile of dose over the target's pixels, which the
challenge reads off a 0.1-binned cumulative DVH; the two agree to the bin width.
"""

from __future__ import annotations

import numpy as np
from scipy import ndimage

LUNG_SIGMA_MM = 6.0
DEFAULT_SIGMA_MM = 4.0
CTV_MARGIN_MM = 3.0


def _d98(dose: np.ndarray, target: np.ndarray) -> float:
    values = dose[target]
    return float(np.percentile(values, 2)) if values.size else float("nan")


def planned_dose(first_target: np.ndarray, spacing_mm: tuple[float, float], sigma_mm: float) -> np.ndarray:
    """The approximate dose of the first-frame target: 3 mm margin, smoothed, binary."""
    sx, sy = spacing_mm
    iterations = max(1, round(CTV_MARGIN_MM / min(sx, sy)))
    cross = ndimage.generate_binary_structure(2, 1)
    ctv = ndimage.binary_dilation(first_target, structure=cross, iterations=iterations)
    smoothed = ndimage.gaussian_filter(ctv.astype(np.float32), sigma=(sigma_mm / sy, sigma_mm / sx))
    return (smoothed >= 0.5).astype(np.float32)


def relative_d98(
    predictions: np.ndarray,
    truths: np.ndarray,
    spacing_mm: tuple[float, float] = (1.0, 1.0),
    lung: bool = False,
) -> float:
    """Relative D98 over a sequence of (T, H, W) binary predictions and ground truths."""
    predictions = np.asarray(predictions) > 0
    truths = np.asarray(truths) > 0
    keep = truths.reshape(len(truths), -1).any(axis=1)  # frames without a target carry no information
    predictions, truths = predictions[keep], truths[keep]
    if len(truths) == 0:
        return float("nan")
    first = truths[0]
    dose = planned_dose(first, spacing_mm, LUNG_SIGMA_MM if lung else DEFAULT_SIGMA_MM)
    reference = _d98(dose, first)
    delivered = np.zeros_like(dose)
    for pred, truth in zip(predictions, truths, strict=True):
        if not pred.any():
            continue  # nothing tracked: no dose delivered on this frame
        error_px = np.array(ndimage.center_of_mass(pred)) - np.array(
            ndimage.center_of_mass(truth)
        )  # (dy, dx)
        delivered += ndimage.shift(dose, error_px, order=3, mode="nearest")
    delivered /= len(truths)
    return _d98(delivered, first) / reference if reference > 0 else float("nan")
