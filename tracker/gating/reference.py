"""Where the gating window sits: its reference position, set as a planner sets it.

On an MR-linac the window is not centred on wherever the target happened to be when
tracking began. The planner sets its reference position on a reference image at a chosen
breathing phase, most often end-exhale: the longest and most reproducible rest of the
cycle ("exhale gating"). Two references:

* ``"first_frame"``: the first labelled (prompted) frame, whatever its breathing phase
  (what a replay without a plan does; the gate takes its first confident position).
* ``"end_exhale"``: on labelled cine, among the frames of the first ``window_s`` seconds
  (one breathing cycle at the slowest periods the hard set draws, 3-6 s), the end-exhale
  frame of regular breathing: the frame nearest the 90th percentile of the true target's
  cranial position, so that one outlying frame (a cough, 0.3-0.6 s) is not taken for
  exhale. The reference position is the true centroid there, the boundary of the mask
  rule its true mask expanded by the margin (the planner's contour).

The replay gives one reference to both the gate (``ObjectPrompt.reference_mm``, or
``GatingConfig.window_mask`` for the mask rule) and the oracle, so they are judged
against the same window.

Which way is cranial: when the image plane contains the head-feet axis in patient
coordinates (DICOM, LPS), +z; otherwise the image is taken to be displayed head up, rows
running from head to feet (TrackRAD's ``.mha`` and the synthetic sets carry no orientation).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import ndimage

from tracker.masks import centroid_of
from tracker.types import Geometry

REFERENCES = ("first_frame", "end_exhale")
EXHALE_WINDOW_S = 6.0  # one breathing cycle at the slowest periods (3-6 s) of the hard set
# Exhale is taken at this percentile of the cranial position, not at its maximum: a cough's
# excursion (0.3-0.6 s) covers a few percent of the window's frames and is then not picked.
EXHALE_PERCENTILE = 90.0


@dataclass(frozen=True)
class Reference:
    how: str  # one of REFERENCES
    frame_index: int  # the reference image
    position_mm: tuple[float, float, float]  # the true centroid on it
    mask: np.ndarray  # the true target on it (bool H x W)


def cranial_mm(geometry: Geometry, centroid_px: tuple[float, float]) -> float:
    """How far towards the head a pixel position lies (mm; larger is more cranial)."""
    if abs(geometry.x_direction[2]) + abs(geometry.y_direction[2]) > 0.5:  # plane holds LPS z
        return float(geometry.pixel_to_mm(*centroid_px)[2])
    return -float(centroid_px[1]) * geometry.spacing_mm[1]  # head up: rows run head to feet


def planned_reference(
    labels: np.ndarray,
    object_id: int,
    geometry: Geometry,
    times_s: np.ndarray,
    how: str,
    window_s: float = EXHALE_WINDOW_S,
) -> Reference:
    """The reference image and position for ``object_id`` in label maps ``labels`` (T, H, W)."""
    if how not in REFERENCES:
        raise ValueError(f"gating reference must be one of {', '.join(REFERENCES)}, got {how!r}")
    centroids = [centroid_of(np.asarray(label) == object_id) for label in labels]
    labelled = [i for i, c in enumerate(centroids) if c is not None]
    if not labelled:
        raise ValueError(f"object {object_id} is in no frame's labels: no reference image for gating")
    index = labelled[0]
    if how == "end_exhale":
        times = np.asarray(times_s, dtype=float) - float(times_s[0])
        candidates = [i for i in labelled if times[i] < window_s] or [index]
        cranial = np.array([cranial_mm(geometry, centroids[i]) for i in candidates])  # type: ignore[arg-type]
        exhale = float(np.percentile(cranial, EXHALE_PERCENTILE))
        index = candidates[int(np.argmin(np.abs(cranial - exhale)))]
    centroid = centroids[index]
    assert centroid is not None
    return Reference(how, index, geometry.pixel_to_mm(*centroid), np.asarray(labels[index]) == object_id)


def boundary_region(mask: np.ndarray, margin_mm: float, spacing_mm: tuple[float, float]) -> np.ndarray:
    """The mask rule's boundary: ``mask`` expanded by ``margin_mm`` (bool H x W)."""
    distance = ndimage.distance_transform_edt(~mask, sampling=(spacing_mm[1], spacing_mm[0]))
    return distance <= margin_mm
