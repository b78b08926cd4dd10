"""Masks on the wire and the measurements every response carries.

RLE is the default encoding: row-major run lengths starting with a background
run. It costs O(H*W) with NumPy and is typically 50-200 bytes for a tumour in a
270x270 cine frame, against ~1-2 kB for PNG; PNG is offered for clients that
want to hand the mask straight to an image library.
"""

from __future__ import annotations

import cv2
import numpy as np

from tracker.types import Geometry, ObjectResult, ObjectTrack


def rle_encode(mask: np.ndarray) -> list[int]:
    """Row-major run lengths of ``mask``, starting with a (possibly zero) background run."""
    flat = np.ascontiguousarray(mask, dtype=bool).ravel()
    if flat.size == 0:
        return []
    # Indices where the value changes, plus both ends; the first run is background.
    changes = np.flatnonzero(flat[1:] != flat[:-1]) + 1
    bounds = np.concatenate(([0], changes, [flat.size]))
    runs = np.diff(bounds)
    if flat[0]:
        runs = np.concatenate(([0], runs))
    return runs.tolist()


def rle_decode(counts: list[int] | np.ndarray, height: int, width: int) -> np.ndarray:
    """Inverse of :func:`rle_encode`; raises ValueError when the runs do not fill the image."""
    runs = np.asarray(counts, dtype=np.int64)
    if runs.size and (runs < 0).any():
        raise ValueError("RLE counts must be non-negative")
    total = int(runs.sum()) if runs.size else 0
    if total != height * width:
        raise ValueError(
            f"RLE counts sum to {total} but the mask is {height}x{width} = {height * width} pixels"
        )
    values = np.zeros(runs.size, dtype=bool)
    values[1::2] = True
    return np.repeat(values, runs).reshape(height, width)


def png_encode(mask: np.ndarray) -> bytes:
    ok, buf = cv2.imencode(".png", np.where(mask, 255, 0).astype(np.uint8))
    if not ok:  # pragma: no cover - OpenCV only fails on invalid input
        raise ValueError("PNG encoding failed")
    return buf.tobytes()


def png_decode(data: bytes, height: int, width: int) -> np.ndarray:
    image = cv2.imdecode(np.frombuffer(data, dtype=np.uint8), cv2.IMREAD_GRAYSCALE)
    if image is None:
        raise ValueError("mask data is not a readable PNG")
    if image.shape != (height, width):
        raise ValueError(f"PNG mask is {image.shape[0]}x{image.shape[1]} but {height}x{width} was declared")
    return image > 0


def box_of(mask: np.ndarray) -> tuple[float, float, float, float] | None:
    """Tight (x0, y0, x1, y1) box with exclusive x1/y1, or None for an empty mask."""
    rows = np.flatnonzero(mask.any(axis=1))
    if rows.size == 0:
        return None
    cols = np.flatnonzero(mask.any(axis=0))
    return float(cols[0]), float(rows[0]), float(cols[-1] + 1), float(rows[-1] + 1)


def centroid_of(mask: np.ndarray) -> tuple[float, float] | None:
    """Centre of mass (x, y) in pixels, or None for an empty mask."""
    moments = cv2.moments(mask.astype(np.uint8), binaryImage=True)
    if moments["m00"] == 0:
        return None
    return moments["m10"] / moments["m00"], moments["m01"] / moments["m00"]


def describe(track: ObjectTrack, label: str, geometry: Geometry) -> ObjectResult:
    """Post-process one engine output into the measurements a response reports."""
    mask = np.asarray(track.mask, dtype=bool)
    centroid = centroid_of(mask)
    box = box_of(mask)
    box_mm = None
    if box is not None:  # the box's outer edges (pixel centres are at integer coordinates)
        box_mm = geometry.pixel_to_mm(box[0] - 0.5, box[1] - 0.5) + geometry.pixel_to_mm(
            box[2] - 0.5, box[3] - 0.5
        )
    return ObjectResult(
        object_id=track.object_id,
        label=label,
        mask=mask,
        score=float(track.score),
        present=track.present,
        area_px=int(np.count_nonzero(mask)),
        box=box,
        centroid_px=centroid,
        centroid_mm=geometry.pixel_to_mm(*centroid) if centroid is not None else None,
        box_mm=box_mm,
        confidence=_clip01(track.score if track.confidence is None else track.confidence),
    )


def _clip01(value: float) -> float:
    """A confidence in [0, 1]; a non-finite one (a numerical failure) counts as no confidence."""
    value = float(value)
    return min(1.0, max(0.0, value)) if np.isfinite(value) else 0.0
