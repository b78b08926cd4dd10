"""Motion of the reference anatomy: per-frame field amplitudes and the inverse warp that renders a frame.

The anatomy's four unit displacement patterns (SI and AP breathing, cardiac x and y; see
:class:`~tracker.lab.synth.phantom.Anatomy`) are scaled per frame so that the field at the tumour's
centroid follows the breathing trace (:func:`field_motion`). The field is forward (reference
point to displaced point); a frame samples the reference through its inverse, which
:meth:`Warp.source` finds by fixed-point iteration. Both cine generators move their anatomy so.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

from tracker.lab.synth.phantom import PAD, SPACING_MM


def bilinear(image: np.ndarray, xy: tuple[float, float]) -> np.ndarray:
    """Bilinear sample of a (H, W, C) array at (x, y), matching cv2.remap's INTER_LINEAR."""
    x, y = xy
    x0, y0 = int(np.floor(x)), int(np.floor(y))
    fx, fy = x - x0, y - y0
    a = image[y0, x0] * (1 - fx) + image[y0, x0 + 1] * fx
    b = image[y0 + 1, x0] * (1 - fx) + image[y0 + 1, x0 + 1] * fx
    return (a * (1 - fy) + b * fy).astype(np.float64)


@dataclass(frozen=True)
class FieldMotion:
    """Per-frame amplitudes of the displacement patterns and the tumour displacement they give."""

    si: np.ndarray  # (T,) amplitude of the SI breathing pattern
    ap: np.ndarray  # (T,) amplitude of the AP breathing pattern
    cardiac: np.ndarray  # (T,) heart-wall contraction, mm
    disp_x: np.ndarray  # (T,) tumour centroid displacement on the canvas, pixels (+x posterior)
    disp_y: np.ndarray  # (T,) the same, rows (+y inferior)

    @property
    def motion_mm(self) -> np.ndarray:
        """(T, 2) tumour displacement as (SI +inferior, AP +anterior) mm, as CineCase reports it."""
        return np.stack([self.disp_y, -self.disp_x], axis=1) * SPACING_MM

    def amplitudes(self, k: int) -> np.ndarray:
        """Frame ``k``'s (SI, AP, cardiac) amplitudes, as :meth:`Warp.source` takes them."""
        return np.array([self.si[k], self.ap[k], self.cardiac[k]], np.float32)


def field_motion(
    patterns: np.ndarray,
    centre: tuple[float, float],
    trace: np.ndarray,
    t: np.ndarray,
    heart_hz: float,
    cardiac_mm: float,
    heart_phase: float,
    min_pattern: float,
) -> FieldMotion:
    """Amplitudes that make the field at the tumour's ``centre`` follow ``trace`` ((T, 2) SI, AP mm).

    ``min_pattern`` floors the breathing patterns' value at the centre, so that a tumour where
    the field is weak (near the spine) is not driven by a huge amplitude.
    """
    pc = bilinear(patterns, centre)  # the field's patterns at the (sub-pixel) centroid
    s_si = 1.0 / max(float(pc[0]), min_pattern)
    s_ap = 1.0 / max(float(pc[1]), min_pattern)
    cardiac = cardiac_mm * 0.5 * (1 - np.cos(2 * np.pi * heart_hz * t + heart_phase))
    a_si = trace[:, 0] * s_si
    a_ap = trace[:, 1] * s_ap
    # Tumour displacement (dx, dy) in pixels on the canvas = the field at its centroid.
    disp_x = -a_ap * pc[1] + cardiac * pc[2]
    disp_y = a_si * pc[0] + cardiac * pc[3]
    return FieldMotion(si=a_si, ap=a_ap, cardiac=cardiac, disp_x=disp_x, disp_y=disp_y)


def inhale_phase(trace: np.ndarray, amplitude_mean_mm: float) -> np.ndarray:
    """SI position as a fraction of the mean breath, clipped to [-0.5, 2]: what deforms the tumour."""
    amp_ref = max(amplitude_mean_mm, 1e-3)
    return np.clip(trace[:, 0] / amp_ref, -0.5, 2.0)


def _field(p: np.ndarray, ak: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The forward displacement (dx, dy) where the patterns are ``p``, for amplitudes ``ak``."""
    return (-ak[1] * p[..., 1] + ak[2] * p[..., 2], ak[0] * p[..., 0] + ak[2] * p[..., 3])


@dataclass(frozen=True)
class Warp:
    """The output pixel grid of an n x n field of view over the padded canvas of ``patterns``."""

    patterns: np.ndarray  # (n + 2 PAD, n, 4) the anatomy's displacement patterns
    gx: np.ndarray  # (n, n) output column of each pixel
    gy: np.ndarray  # (n, n) output row of each pixel
    gy_canvas: np.ndarray  # (n, n) the same row on the padded canvas
    fov_patterns: np.ndarray  # the patterns over the field of view

    @classmethod
    def over(cls, patterns: np.ndarray, n: int) -> Warp:
        gy, gx = np.mgrid[0:n, 0:n].astype(np.float32)
        return cls(patterns, gx, gy, gy + PAD, patterns[PAD : PAD + n])

    def source(self, ak: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Canvas (x, y) that each output pixel samples: the inverse of the forward field."""
        dx, dy = _field(self.fov_patterns, ak)
        src_x, src_y = self.gx - dx, self.gy_canvas - dy
        for _ in range(2):  # fixed-point refinement of the inverse of the forward field
            p = cv2.remap(self.patterns, src_x, src_y, cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
            dx, dy = _field(p, ak)
            src_x, src_y = self.gx - dx, self.gy_canvas - dy
        return src_x, src_y
