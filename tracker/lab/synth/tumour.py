"""The tumour of a synthetic cine-MRI case: an irregular outline, a place for it, and its drawing.

The outline is r(θ) = r0 (1 + Σ a_k cos(kθ + φ_k)) with random harmonics, scaled to the requested
area; :func:`place_tumour` picks a site (lung, liver or abdomen) and a centre that keeps the moving
tumour inside the field of view; :func:`insert_tumour` paints it into the reference anatomy and
returns its soft mask, from which the labels are warped.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

from tracker.lab.synth.phantom import PAD, Anatomy, noise_field


@dataclass
class Tumour:
    """One tumour in the reference anatomy: where it is and its outline (see :func:`tumour_shape`)."""

    centre: tuple[float, float]  # (x, y) centroid on the padded canvas
    radius_fn: tuple[np.ndarray, np.ndarray, np.ndarray]  # harmonic orders, amplitudes, phases
    r0: float
    r_max: float
    site: str


def tumour_shape(
    diameter: float, rng: np.random.Generator
) -> tuple[tuple[np.ndarray, np.ndarray, np.ndarray], float, np.ndarray]:
    """Irregular outline r(θ) = r0 (1 + Σ a_k cos(kθ + φ_k)), scaled to the requested area."""
    orders = np.arange(2, 6)
    amps = rng.uniform(0.0, 0.16, len(orders)) / orders**0.7
    phases = rng.uniform(0, 2 * np.pi, len(orders))
    theta = np.linspace(0, 2 * np.pi, 720, endpoint=False)
    shape = 1.0 + (amps[:, None] * np.cos(orders[:, None] * theta[None, :] + phases[:, None])).sum(0)
    area_unit = 0.5 * np.mean(shape**2) * 2 * np.pi
    r0 = (diameter / 2) * np.sqrt(np.pi / area_unit)
    # Centroid of the polar shape relative to its origin, so the origin can be shifted onto it.
    cx = np.mean((r0 * shape) ** 3 * np.cos(theta)) * 2 * np.pi / 3
    cy = np.mean((r0 * shape) ** 3 * np.sin(theta)) * 2 * np.pi / 3
    offset = np.array([cx, cy]) / (area_unit * r0**2)
    return (orders, amps, phases), float(r0), offset


def _radius(tumour: Tumour, theta: np.ndarray) -> np.ndarray:
    orders, amps, phases = tumour.radius_fn
    s = 1.0 + (amps[:, None, None] * np.cos(orders[:, None, None] * theta[None] + phases[:, None, None])).sum(
        0
    )
    return tumour.r0 * s


def _tumour_soft_mask(
    tumour: Tumour, shape: tuple[int, int], origin: np.ndarray, edge_px: float
) -> np.ndarray:
    """Soft mask (1 inside, 0.5 at the outline) on the padded canvas."""
    yy, xx = np.mgrid[0 : shape[0], 0 : shape[1]].astype(np.float32)
    dx, dy = xx - origin[0], yy - origin[1]
    rho = np.sqrt(dx * dx + dy * dy)
    r = _radius(tumour, np.arctan2(dy, dx))
    return np.clip(0.5 + (r - rho) / edge_px, 0.0, 1.0).astype(np.float32)


def place_tumour(
    anat: Anatomy,
    region: str,
    diameter_mm: float,
    low_contrast: bool,
    trace: np.ndarray,
    rng: np.random.Generator,
) -> tuple[str, tuple[float, float]]:
    """Pick a site and a centre that keeps the moving tumour inside the field of view."""
    n = anat.image.shape[1]
    r = diameter_mm / 2 * 1.35  # the outline's harmonics can exceed r0
    if region == "thorax":
        sites = ["lung", "liver"] if rng.random() < 0.85 else ["liver", "lung"]
    elif region == "liver":
        sites = ["liver", "abdomen", "lung"]
    else:
        sites = ["abdomen", "liver", "lung"] if rng.random() < 0.6 else ["liver", "abdomen", "lung"]
    si_lo, si_hi = float(trace[:, 0].min()), float(trace[:, 0].max())
    ap_abs = float(np.abs(trace[:, 1]).max()) * 1.3
    hp = n + 2 * PAD
    yy, xx = np.mgrid[0:hp, 0:n]
    in_fov = (
        (yy - PAD + si_lo - r > 6)
        & (yy - PAD + si_hi + r < n - 6)
        & (xx - ap_abs - r > 6)
        & (xx + ap_abs + r < n - 6)
    )
    p_si = anat.patterns[..., 0]
    for site in sites:
        mask = anat.masks[site].astype(np.uint8)
        dist = cv2.distanceTransform(mask, cv2.DIST_L2, 5)
        for margin, p_min in ((r * 0.75 + 2, 0.55), (r * 0.5, 0.45), (r * 0.3, 0.0)):
            ok = (dist >= margin) & in_fov & (p_si >= p_min)
            if low_contrast and site == "lung" and margin > r * 0.5:
                # A low-contrast lung tumour abuts a soft-tissue neighbour (dome, heart, wall).
                ok &= dist <= r * 0.8 + 2
            ys, xs = np.nonzero(ok)
            if len(ys):
                i = int(rng.integers(len(ys)))
                return site, (float(xs[i]) + rng.uniform(-0.5, 0.5), float(ys[i]) + rng.uniform(-0.5, 0.5))
    raise RuntimeError(
        "no room for the tumour in this anatomy"
    )  # pragma: no cover - geometry guarantees room


def insert_tumour(
    anat: Anatomy,
    tumour: Tumour,
    diameter_mm: float,
    low_contrast: bool,
    origin: np.ndarray,
    rng: np.random.Generator,
) -> np.ndarray:
    """Draw the tumour into the static image; return its soft mask."""
    hp, n = anat.image.shape
    edge = 1.0 if not low_contrast else 1.8
    soft = _tumour_soft_mask(tumour, (hp, n), origin, edge)
    inside = soft > 0.5
    ring = (cv2.dilate(inside.astype(np.uint8), np.ones((13, 13), np.uint8)) > 0) & ~inside
    smooth = cv2.GaussianBlur(anat.image, (0, 0), 2.0)
    lv = anat.levels
    if tumour.site == "lung":
        if low_contrast:
            neighbours = smooth[ring & ~anat.masks["lung"]]
            ref = float(np.median(neighbours)) if neighbours.size > 10 else lv["liver"]
            level = ref * rng.uniform(1.1, 1.2)
        else:
            level = lv["liver"] * rng.uniform(0.9, 1.4)
    else:
        bg = float(np.median(smooth[ring]))
        if low_contrast:
            level = bg * rng.uniform(1.1, 1.2)
        elif rng.random() < 0.3:
            level = bg * rng.uniform(0.5, 0.7)  # hypo-intense lesion
        else:
            level = bg * rng.uniform(1.35, 1.8)
    texture = 1.0 + 0.05 * noise_field((hp, n), 1.2, rng) + 0.04 * noise_field((hp, n), 4.0, rng)
    tum = level * texture
    if diameter_mm > 15 and not low_contrast and rng.random() < 0.3:
        core = _tumour_soft_mask(
            Tumour(tumour.centre, tumour.radius_fn, tumour.r0 * 0.45, tumour.r_max * 0.45, tumour.site),
            (hp, n),
            origin,
            3.0,
        )
        tum = tum * (1.0 + core * rng.choice([-0.3, 0.35]))
    anat.image = (anat.image * (1.0 - soft) + tum * soft).astype(np.float32)
    return soft
