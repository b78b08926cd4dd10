"""What makes synthetic surgical video hard for a detector: the ``hard`` mode of the generator.

The base generator (:mod:`tracker.lab.synth.surgical`) draws crisp instruments on clean tissue
from the left and right. A real laparoscope's view is rarely that kind, so ``hard=True`` adds,
each from its own random stream (the base scene of a seed is unchanged):

* **instruments from any edge**: about a third of them are inserted from the top or bottom;
* **shading**: each instrument's brightness follows the light, 0.55-1.15 of its colour, slowly;
* **tissue occlusion**: a tissue flap (the scene's own texture) lies over part of the view in
  some stretches of frames, in front of the instruments, whose ground truth loses what it hides;
* **smoke**: diathermy haze, a drifting low-frequency veil of 0-60 % opacity that comes and goes;
* **blur**: defocus (Gaussian, sigma up to 2 px) and motion blur along the camera's movement.

What it cannot stand in for: real instrument shapes, materials and articulation, blood,
tissue deformation by the instruments, lens distortion, compression artefacts of a real video
chain. A detector validated on it has learned this generator's instruments, not surgery's.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace

import cv2
import numpy as np

# Stream ids: the hard mode draws from rng([seed, HARD_STREAM]), never from the base scene's.
HARD_STREAM = 1


@dataclass
class HardScene:
    """One sequence's hard-mode state, drawn once from its own stream."""

    rng: np.random.Generator
    shading_phase: dict[int, float]
    smoke_field: np.ndarray  # (h + 2 pad, w + 2 pad) low-frequency noise, drifted per frame
    flap_mask: np.ndarray  # (h, w) float32 in [0, 1]: where the flap lies when it is shown
    flap_frames: set[int]
    focus_phase: float


def hard_scene(seed: int, hw: tuple[int, int], n: int, instance_ids: list[int]) -> HardScene:
    rng = np.random.default_rng([seed, HARD_STREAM])
    h, w = hw
    pad = 32
    smoke = cv2.GaussianBlur(rng.standard_normal((h + 2 * pad, w + 2 * pad)).astype(np.float32), (0, 0), 18)
    smoke = (smoke - smoke.min()) / (float(np.ptp(smoke)) + 1e-6)
    # A flap: an ellipse from one edge, covering up to a quarter of the view, shown in 1-2 stretches.
    flap = np.zeros((h, w), np.uint8)
    centre = (int(rng.uniform(0.1, 0.9) * w), int(rng.choice([0.0, 1.0]) * h))
    axes = (int(rng.uniform(0.2, 0.35) * w), int(rng.uniform(0.25, 0.45) * h))
    cv2.ellipse(flap, centre, axes, float(rng.uniform(-30, 30)), 0, 360, 1, -1)
    frames: set[int] = set()
    for _ in range(int(rng.integers(1, 3))):
        start = int(rng.integers(0, max(1, n - 10)))
        frames.update(range(start, min(n, start + int(rng.integers(8, max(9, n // 4))))))
    return HardScene(
        rng=rng,
        shading_phase={i: float(rng.uniform(0, 2 * math.pi)) for i in instance_ids},
        smoke_field=smoke,
        flap_mask=cv2.GaussianBlur(flap.astype(np.float32), (0, 0), 2.0),
        flap_frames=frames,
        focus_phase=float(rng.uniform(0, 2 * math.pi)),
    )


def from_any_edge(plans: list, hw: tuple[int, int], seed: int) -> list:
    """The plans with about a third of the instruments inserted from the top or bottom edge."""
    rng = np.random.default_rng([seed, HARD_STREAM, 2])
    h, w = hw
    out = []
    for plan in plans:
        if rng.random() < 0.35:
            y = -rng.uniform(0.65, 0.85) * h if rng.random() < 0.5 else h + rng.uniform(0.65, 0.85) * h
            plan = replace(plan, insertion_xy=(float(rng.uniform(0.1, 0.9) * w), float(y)))
        out.append(plan)
    return out


def shade(canvas: np.ndarray, label: np.ndarray, scene: HardScene, t: int) -> None:
    """Each instrument's pixels dimmed or brightened by the light, slowly over time (in place)."""
    for instance_id, phase in scene.shading_phase.items():
        sel = label == instance_id
        if sel.any():
            canvas[sel] *= np.float32(0.85 + 0.3 * math.sin(0.09 * t + phase))


def occlude(canvas: np.ndarray, label: np.ndarray, tissue_view: np.ndarray, scene: HardScene, t: int) -> None:
    """In the flap's frames: tissue in front of everything; the labels lose what it hides (in place)."""
    if t not in scene.flap_frames:
        return
    alpha = scene.flap_mask[..., None]
    canvas[:] = canvas * (1 - alpha) + np.clip(tissue_view * 1.1, 0, 1) * alpha
    label[scene.flap_mask >= 0.5] = 0


def smoke_and_blur(
    image: np.ndarray, scene: HardScene, t: int, camera_step: tuple[float, float]
) -> np.ndarray:
    """Haze drifting over the view, then defocus and motion blur (the image, float32 RGB in [0, 1])."""
    h, w = image.shape[:2]
    dx, dy = int(16 + 12 * math.sin(0.05 * t)), int(16 + 12 * math.cos(0.04 * t))
    veil = scene.smoke_field[dy : dy + h, dx : dx + w]
    opacity = max(0.0, 0.6 * math.sin(0.06 * t + scene.focus_phase)) * veil[..., None]
    image = image * (1 - opacity) + np.float32(0.85) * opacity
    sigma = max(0.0, 2.0 * math.sin(0.08 * t + 2 * scene.focus_phase))
    if sigma > 0.3:
        image = cv2.GaussianBlur(image, (0, 0), sigma)
    length = round(math.hypot(*camera_step) * 3)
    if length >= 2:
        kernel = np.zeros((length, length), np.float32)
        angle = math.atan2(camera_step[1], camera_step[0])
        c = (length - 1) / 2
        cv2.line(kernel, (round(c - c * math.cos(angle)), round(c - c * math.sin(angle))),
                 (round(c + c * math.cos(angle)), round(c + c * math.sin(angle))), 1.0, 1)  # fmt: skip
        image = cv2.filter2D(image, -1, kernel / max(float(kernel.sum()), 1.0))
    return image.astype(np.float32)
