"""What the scanner adds to the moving anatomy: point-spread blur, coil gain, Rician noise, 16 bits."""

from __future__ import annotations

import cv2
import numpy as np

# Scanner intensity of liver tissue before per-case scaling (uint16 units).
_LIVER_LEVEL = 400.0


def acquire(
    img: np.ndarray, blur_sigma_px: float, gain: np.ndarray, sigma: float, rng: np.random.Generator
) -> np.ndarray:
    """One frame as the scanner records it: point-spread blur, coil gain, Rician noise, 16 bits."""
    if blur_sigma_px > 0:
        img = cv2.GaussianBlur(img, (0, 0), blur_sigma_px)
    img = (img * gain).astype(img.dtype, copy=False)  # as in-place scaling would keep it
    if sigma > 0:
        n_y, n_x = img.shape
        re = img + sigma * rng.standard_normal((n_y, n_x), dtype=np.float32)
        im = sigma * rng.standard_normal((n_y, n_x), dtype=np.float32)
        img = np.sqrt(re * re + im * im)
    return np.clip(img + 0.5, 0, 65535).astype(np.uint16)


def signal_scale(noise_sigma: float, rng: np.random.Generator) -> tuple[float, float]:
    """A case's signal scale (uint16 units per unit of liver signal) and its Rician sigma in those units.

    ``noise_sigma`` is the noise as a fraction of the liver signal (1 / SNR).
    """
    scale = _LIVER_LEVEL * float(rng.uniform(0.7, 1.6))
    return scale, noise_sigma * scale
