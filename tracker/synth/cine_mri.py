"""Synthetic 2D sagittal cine-MRI with exact ground truth, for validating trackers.

Real TrackRAD2025 data (0.35 T bSSFP / 1.5 T bFFE, 1 mm pixels, 270-450 px,
1-8 Hz) cannot be shipped with the project, yet accuracy claims need ground
truth. This module draws a sagittal thorax/abdomen slice once per case and then
deforms it frame by frame, so that trackers see what they would on a linac:

* anatomy with texture everywhere (lung vessels, liver vessels, bowel, spine,
  fat, muscle) so that optical flow and learned trackers have features to lock
  onto, and a bright liver dome against dark lung as the main moving interface;
* a smooth, spatially varying displacement field (full SI motion at the
  diaphragm, decaying up the lung, none at the spine; a smaller AP component
  growing towards the anterior wall; a small cardiac component around the
  heart), not a rigid shift;
* an irregular tumour (random polar harmonics) in lung, liver or abdomen that
  moves with its local tissue and deforms slightly with breathing phase;
* acquisition effects: a coil-sensitivity shading that stays fixed to the
  scanner while the anatomy moves under it, slow signal drift, partial-volume
  blur, and Rician noise (the magnitude of complex Gaussian noise), stored as
  uint16 like MR magnitude images.

Ground truth is consistent with the image by construction: the tumour is part
of the static anatomy and its label is the same warp applied to the tumour's
soft mask, thresholded at 0.5, which is also the 50 % edge of the drawn
intensity. Around the tumour the warp is the tumour's own similarity transform
(translation = the field at its centroid), blended smoothly into the field, so
the label centroid follows ``motion_mm`` to sub-pixel accuracy.

Image axes: rows run head to feet (superior to inferior), columns run anterior
(left) to posterior (right), the usual sagittal display. Motion is reported as
(SI, AP) in mm with SI positive inferior (+row) and AP positive anterior
(-column); :attr:`CineCase.motion_px` gives the same as (dx, dy) in pixels.
"""

from __future__ import annotations

import json
import logging
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import cv2
import numpy as np

from tracker.synth.breathing import BreathingParams, breathing_trace, random_breathing_params

logger = logging.getLogger(__name__)

REGIONS = ("thorax", "abdomen", "liver")
FIELD_STRENGTHS_T = (0.35, 1.5)

# Pixels are 1 mm, as in TrackRAD2025.
_SPACING_MM = 1.0
# Rows of anatomy drawn above and below the field of view, so that the warp pulls
# real anatomy (not a smeared border) into the image at the top and bottom.
_PAD = 64
# Scanner intensity of liver tissue before per-case scaling (uint16 units).
_LIVER_LEVEL = 400.0

# bSSFP contrast, relative to liver (T2/T1-weighted: fluid, fat and blood bright;
# lung and bone cortex dark). Jittered per case.
_TISSUE_LEVELS: dict[str, float] = {
    "air": 0.0,
    "fat": 2.0,
    "muscle": 0.55,
    "lung": 0.07,
    "liver": 1.0,
    "diaphragm": 0.5,
    "blood": 2.1,
    "myocardium": 0.65,
    "csf": 2.4,
    "cord": 0.9,
    "marrow": 1.35,
    "cortex": 0.12,
    "disc": 1.15,
    "kidney": 1.25,
    "medulla": 0.85,
    "abdomen": 1.25,
    "bowel_fluid": 2.2,
    "bowel_wall": 0.75,
    "gas": 0.03,
    "bile": 2.3,
}
# Texture amplitude (low-frequency, fine) per tissue, relative to its level.
_TEXTURE: dict[str, tuple[float, float]] = {
    "lung": (0.35, 0.25),
    "liver": (0.07, 0.05),
    "fat": (0.05, 0.04),
    "muscle": (0.08, 0.07),
    "abdomen": (0.12, 0.08),
    "kidney": (0.06, 0.05),
    "marrow": (0.08, 0.06),
}
_DEFAULT_TEXTURE = (0.05, 0.04)


@dataclass(frozen=True)
class CineCaseParams:
    """What one synthetic case looks like; :func:`random_case_params` draws these."""

    size_px: int = 320  # square field of view, 1 mm pixels
    frame_rate_hz: float = 4.0
    n_frames: int = 100
    tumour_diameter_mm: float = 15.0  # equivalent-area diameter at the reference shape
    low_contrast: bool = False  # tumour only ~10-20 % brighter than its surroundings
    noise_sigma: float = 0.06  # Rician sigma as a fraction of the liver signal (1 / SNR)
    field_strength_t: float = 0.35
    region: str = "thorax"  # "thorax", "abdomen" or "liver": where the field of view sits
    breathing: BreathingParams = field(default_factory=BreathingParams)
    cardiac_amplitude_mm: float = 1.5  # heart-wall contraction; reaches nearby lung
    tumour_deformation: float = 0.05  # relative scale change of the tumour at full inhale
    tumour_rotation_deg: float = 4.0  # rotation of the tumour at full inhale
    intensity_drift: float = 0.04  # slow signal drift over the sequence (fraction)
    blur_sigma_px: float = 0.8  # partial-volume blur of the acquisition

    def __post_init__(self) -> None:
        if not 270 <= self.size_px <= 450:
            raise ValueError(f"size_px must lie in [270, 450] like TrackRAD, got {self.size_px}")
        if not 0.5 <= self.frame_rate_hz <= 16:
            raise ValueError(f"frame_rate_hz must lie in [0.5, 16], got {self.frame_rate_hz}")
        if self.n_frames < 1:
            raise ValueError(f"n_frames must be >= 1, got {self.n_frames}")
        if not 3.0 <= self.tumour_diameter_mm <= 40.0:
            raise ValueError(f"tumour_diameter_mm must lie in [3, 40], got {self.tumour_diameter_mm}")
        if self.noise_sigma < 0:
            raise ValueError(f"noise_sigma must be >= 0, got {self.noise_sigma}")
        if self.region not in REGIONS:
            raise ValueError(f"region must be one of {REGIONS}, got {self.region!r}")
        if self.field_strength_t <= 0:
            raise ValueError(f"field_strength_t must be positive, got {self.field_strength_t}")

    @classmethod
    def from_dict(cls, data: dict[str, object]) -> CineCaseParams:
        """Inverse of ``dataclasses.asdict`` (e.g. from ``synthetic.json``), to regenerate a case."""
        values = dict(data)
        breathing = dict(values.pop("breathing", {}) or {})  # type: ignore[call-overload]
        for key in ("deep_breath_factor", "pause_s"):
            if key in breathing:
                breathing[key] = tuple(breathing[key])
        return cls(breathing=BreathingParams(**breathing), **values)  # type: ignore[arg-type]


@dataclass
class CineCase:
    """One generated sequence with its ground truth."""

    frames: np.ndarray  # (T, H, W) uint16 magnitude images
    labels: np.ndarray  # (T, H, W) uint8, tumour = 1
    params: CineCaseParams
    motion_mm: np.ndarray  # (T, 2) tumour displacement (SI +inferior, AP +anterior) from the reference
    seed: int = 0
    tumour_site: str = ""  # "lung", "liver" or "abdomen"
    tumour_centre_px: tuple[float, float] = (0.0, 0.0)  # (x, y) centroid in the reference anatomy
    breathing_mm: np.ndarray | None = None  # (T, 2) the breathing trace that drove the field
    body_mask: np.ndarray | None = None  # (H, W) bool, the body in the reference anatomy
    metadata: dict[str, object] = field(default_factory=dict)

    @property
    def frame_times_s(self) -> np.ndarray:
        return np.arange(len(self.frames)) / self.params.frame_rate_hz

    @property
    def motion_px(self) -> np.ndarray:
        """Tumour displacement as (dx, dy) pixels: anterior is -x, inferior is +y."""
        return np.stack([-self.motion_mm[:, 1], self.motion_mm[:, 0]], axis=1) / _SPACING_MM


# --------------------------------------------------------------------------- helpers


def _smoothstep(x: np.ndarray) -> np.ndarray:
    x = np.clip(x, 0.0, 1.0)
    return x * x * (3.0 - 2.0 * x)


def _noise_field(shape: tuple[int, int], sigma: float, rng: np.random.Generator) -> np.ndarray:
    """Zero-mean, unit-std Gaussian-filtered noise: the base of every texture."""
    f = rng.standard_normal(shape, dtype=np.float32)
    f = cv2.GaussianBlur(f, (0, 0), sigma, borderType=cv2.BORDER_REFLECT)
    f -= f.mean()
    return f / (f.std() + 1e-8)


def _draw_tree(
    canvas: np.ndarray,
    start: tuple[float, float],
    angle: float,
    length: float,
    thickness: float,
    depth: int,
    rng: np.random.Generator,
) -> None:
    """A branching vessel tree (bronchovascular or hepatic) drawn into ``canvas`` (uint8)."""
    if depth <= 0 or length < 3 or thickness < 0.6:
        return
    x0, y0 = start
    x1 = x0 + length * np.cos(angle)
    y1 = y0 + length * np.sin(angle)
    value = int(np.clip(60 + 45 * thickness, 0, 255))  # thin vessels are partial-volumed
    cv2.line(
        canvas,
        (round(x0 * 4), round(y0 * 4)),
        (round(x1 * 4), round(y1 * 4)),
        value,
        max(1, round(thickness)),
        cv2.LINE_AA,
        2,
    )
    n_children = 2 if rng.random() < 0.85 else 3
    for _ in range(n_children):
        _draw_tree(
            canvas,
            (x1, y1),
            angle + rng.uniform(-0.7, 0.7),
            length * rng.uniform(0.6, 0.85),
            thickness * rng.uniform(0.6, 0.8),
            depth - 1,
            rng,
        )


def _ellipse_mask(
    shape: tuple[int, int], centre: tuple[float, float], axes: tuple[float, float], angle_deg: float
) -> np.ndarray:
    m = np.zeros(shape, np.uint8)
    cv2.ellipse(
        m,
        (round(centre[0] * 4), round(centre[1] * 4)),
        (max(1, round(axes[0] * 4)), max(1, round(axes[1] * 4))),
        angle_deg,
        0,
        360,
        1,
        -1,
        cv2.LINE_8,
        2,
    )
    return m.astype(bool)


def _bilinear(image: np.ndarray, xy: tuple[float, float]) -> np.ndarray:
    """Bilinear sample of a (H, W, C) array at (x, y), matching cv2.remap's INTER_LINEAR."""
    x, y = xy
    x0, y0 = int(np.floor(x)), int(np.floor(y))
    fx, fy = x - x0, y - y0
    a = image[y0, x0] * (1 - fx) + image[y0, x0 + 1] * fx
    b = image[y0 + 1, x0] * (1 - fx) + image[y0 + 1, x0 + 1] * fx
    return (a * (1 - fy) + b * fy).astype(np.float64)


# --------------------------------------------------------------------------- anatomy


@dataclass
class _Anatomy:
    """The static reference slice on the padded canvas (rows offset by ``_PAD``)."""

    image: np.ndarray  # float32 (H + 2 pad, W), relative to liver = 1
    masks: dict[str, np.ndarray]  # bool masks of the regions a tumour can sit in, and "body"
    patterns: np.ndarray  # float32 (H + 2 pad, W, 4): SI, AP, cardiac x, cardiac y (unit amplitudes)
    bias: np.ndarray  # float32 (H, W) coil sensitivity, fixed to the scanner
    levels: dict[str, float]
    heart_hz: float


def _build_anatomy(n: int, region: str, rng: np.random.Generator, params: CineCaseParams) -> _Anatomy:
    """Draw a sagittal slice: body, fat, muscle, spine, lung, heart, diaphragm, liver, abdomen."""
    hp = n + 2 * _PAD
    shape = (hp, n)
    rows = np.arange(hp, dtype=np.float32)
    xx = np.broadcast_to(np.arange(n, dtype=np.float32)[None, :], shape)
    yy = np.broadcast_to(rows[:, None], shape)
    levels = {
        k: v * float(rng.uniform(0.9, 1.1)) if k not in ("air", "liver") else v
        for k, v in _TISSUE_LEVELS.items()
    }

    # Where the diaphragm dome sits in the field of view decides what the slice shows.
    dome_frac = {"thorax": (0.52, 0.66), "liver": (0.22, 0.38), "abdomen": (0.12, 0.28)}[region]
    y_dome = _PAD + rng.uniform(*dome_frac) * n

    def wobble(amp: float, sigma: float) -> np.ndarray:
        w = rng.standard_normal(hp + 200)
        k = np.exp(-0.5 * (np.arange(-3 * sigma, 3 * sigma + 1) / sigma) ** 2)
        w = np.convolve(w, k / k.sum(), mode="same")[100:-100]
        return (amp * w / (w.std() + 1e-8)).astype(np.float32)

    # Body outline: anterior skin (left), posterior skin (right).
    depth_ap = min(float(rng.uniform(200, 260)), n - 46.0)
    x_mid = n / 2 + rng.uniform(-0.03, 0.03) * n
    belly = rng.uniform(0, 25) / (1 + np.exp(-(rows - (y_dome + 80)) / 25))
    xa = np.clip(x_mid - depth_ap / 2 - belly + wobble(2.0, 25), 20, None)
    kyphosis = 10 / (1 + np.exp((rows - y_dome) / 60))
    xp = np.clip(x_mid + depth_ap / 2 + kyphosis + wobble(2.0, 25), None, n - 12)
    body = (xx > xa[:, None]) & (xx < xp[:, None])

    fat_a = rng.uniform(7, 18) + 0.4 * belly
    fat_p = rng.uniform(6, 14)
    muscle_a = rng.uniform(6, 12)
    paraspinal = rng.uniform(28, 42)
    x_wall = xa + fat_a + muscle_a  # inner anterior wall (pleura / peritoneum)
    x_canal_back = xp - fat_p - paraspinal + wobble(1.5, 40)
    # A midline slice cuts the spinal canal and full vertebral bodies; a paramedian one
    # (through the lung or liver, the usual tracking plane) only their lateral edge.
    midline = bool(rng.random() < 0.35)
    canal = rng.uniform(12, 16) if midline else 0.0
    x_canal_front = x_canal_back - canal
    x_vb_front = x_canal_front - (rng.uniform(28, 36) if midline else rng.uniform(14, 22))

    img = np.zeros(shape, np.float32)
    tex_lf = np.zeros(shape, np.float32)
    tex_hf = np.zeros(shape, np.float32)

    def paint(mask: np.ndarray, name: str) -> None:
        img[mask] = levels[name]
        lf, hf = _TEXTURE.get(name, _DEFAULT_TEXTURE)
        tex_lf[mask] = lf
        tex_hf[mask] = hf

    ant_dist = xx - xa[:, None]
    post_dist = xp[:, None] - xx
    paint(body, "muscle")
    paint(body & ((ant_dist < fat_a[:, None]) | (post_dist < fat_p)), "fat")

    # Spine: vertebral bodies with discs, canal with CSF and cord, spinous processes.
    spine_rows = rows[:, None]
    vert_h = rng.uniform(24, 29)
    disc_h = rng.uniform(5, 8)
    phase = (spine_rows - rng.uniform(0, vert_h + disc_h)) % (vert_h + disc_h)
    in_vb = (xx > x_vb_front[:, None]) & (xx < x_canal_front[:, None])
    paint(in_vb, "cortex")
    inner_vb = (
        (xx > x_vb_front[:, None] + 2)
        & (xx < x_canal_front[:, None] - 2)
        & (phase > 2)
        & (phase < vert_h - 2)
    )
    paint(inner_vb, "marrow")
    paint(in_vb & (phase >= vert_h), "disc")
    if midline:
        in_canal = (xx >= x_canal_front[:, None]) & (xx < x_canal_back[:, None])
        paint(in_canal, "csf")
        cord_c = (x_canal_front + x_canal_back) / 2
        paint(in_canal & (np.abs(xx - cord_c[:, None]) < 4.5), "cord")
    # Spinous processes (midline) or laminae / rib heads (paramedian), one per vertebra.
    n_vert = int(hp / (vert_h + disc_h)) + 2
    offset = rng.uniform(0, vert_h + disc_h)
    for k in range(-1, n_vert):
        yc = offset + k * (vert_h + disc_h) + vert_h * 0.6
        if not 0 <= yc < hp:
            continue
        xb = float(x_canal_back[int(yc)]) + (14 if midline else 7)
        ax = (13, 7) if midline else (rng.uniform(6, 9), rng.uniform(6, 9))
        m = _ellipse_mask(shape, (xb, yc), ax, rng.uniform(15, 35))
        paint(m & body, "cortex")
        m2 = _ellipse_mask(shape, (xb, yc), (ax[0] - 2.5, ax[1] - 2.5), 25)
        paint(m2 & body, "marrow")

    # Diaphragm dome: highest near the middle, a deep posterior recess.
    inner_w = float(np.median(x_vb_front - x_wall))
    x_apex = float(np.median(x_wall)) + rng.uniform(0.4, 0.6) * inner_w
    ka = rng.uniform(25, 45) / (x_apex - np.median(x_wall)) ** 2
    kp = rng.uniform(45, 75) / (np.median(x_vb_front) - x_apex) ** 2
    xs = np.arange(n, dtype=np.float32)
    y_dia = y_dome + np.where(xs < x_apex, ka, kp) * (xs - x_apex) ** 2  # per column
    inner = (xx > x_wall[:, None]) & (xx < x_vb_front[:, None] - 3) & body
    above = yy < y_dia[None, :]

    # Liver below the dome, thin anteriorly and deep posteriorly.
    frac = np.clip((xs - np.median(x_wall)) / inner_w, 0, 1)
    liver_h = rng.uniform(55, 90) + (rng.uniform(120, 170) - 70) * frac
    y_liver_bot = y_dia + liver_h
    liver = inner & ~above & (yy < y_liver_bot[None, :])
    abdomen = inner & ~above & ~liver
    lung = inner & above

    # Aorta along the front of the spine (some slices catch it).
    if rng.random() < 0.6:
        aorta = body & (xx > x_vb_front[:, None] - 24) & (xx < x_vb_front[:, None] - 3)
        lung &= ~aorta
        abdomen &= ~aorta
        liver &= ~aorta
        paint(aorta, "blood")

    # Lung with a bronchovascular tree (bright blood in bSSFP, thin so partial-volumed).
    paint(lung, "lung")
    hilum = (float(np.median(x_vb_front)) - rng.uniform(15, 35), y_dome - rng.uniform(70, 110))
    vessels = np.zeros(shape, np.uint8)
    for _ in range(int(rng.integers(8, 13))):
        start = (hilum[0] + rng.uniform(-15, 15), hilum[1] + rng.uniform(-20, 20))
        _draw_tree(
            vessels, start, rng.uniform(-np.pi, np.pi), rng.uniform(20, 40), rng.uniform(2.0, 4.0), 7, rng
        )
    for _ in range(int(rng.integers(100, 200))):  # vessels cut across by the slice
        cx, cy = rng.uniform(0, n), rng.uniform(0, hp)
        value = int(rng.uniform(90, 220))
        cv2.circle(
            vessels,
            (round(cx * 4), round(cy * 4)),
            round(rng.uniform(0.7, 2.2) * 4),
            value,
            -1,
            cv2.LINE_AA,
            2,
        )
    vess = cv2.GaussianBlur(vessels.astype(np.float32) / 255.0, (0, 0), 0.6)

    # Heart: anterior, sitting on the dome; bright blood pool in a darker myocardium.
    heart_centre: tuple[float, float] | None = None
    heart_r = 0.0
    if rng.random() < (0.75 if region == "thorax" else 0.5):
        ha, hb = rng.uniform(38, 55), rng.uniform(32, 48)
        hx = float(np.median(x_wall)) + rng.uniform(0.2, 0.4) * inner_w
        hy = float(y_dia[int(np.clip(hx, 0, n - 1))]) - hb * rng.uniform(0.6, 0.9)
        ang = rng.uniform(-40, -10)
        heart = _ellipse_mask(shape, (hx, hy), (ha + 2, hb + 2), ang) & inner & (yy < y_dia[None, :] + 4)
        paint(heart & (yy > hy - 0.3 * hb), "fat")  # epicardial fat, mostly at the base and apex
        myo = _ellipse_mask(shape, (hx + rng.uniform(-3, 3), hy + rng.uniform(0, 3)), (ha, hb), ang) & heart
        paint(myo, "myocardium")
        t_wall = rng.uniform(7, 12)
        paint(_ellipse_mask(shape, (hx, hy), (ha - t_wall, hb - t_wall), ang) & myo, "blood")
        lung &= ~heart
        liver &= ~heart
        heart_centre, heart_r = (hx, hy), 0.5 * (ha + hb)

    # Ribs cut in cross-section in the chest wall.
    for side_x, lim in ((x_wall - 4, y_dome + 50), (x_vb_front + 4, y_dome + 10)):
        y = rng.uniform(0, 30)
        while y < min(lim, hp):
            cx = float(side_x[int(y)])
            rib = _ellipse_mask(shape, (cx, y), (5.5, 7.5), rng.uniform(-30, 30)) & body & ~lung
            paint(rib, "cortex")
            paint(_ellipse_mask(shape, (cx, y), (3.5, 5.5), 0) & rib, "marrow")
            y += rng.uniform(22, 32)

    # Liver with a thin dark diaphragm muscle on top and bright hepatic vessels.
    paint(liver, "liver")
    paint(liver & (yy < y_dia[None, :] + rng.uniform(2.5, 4.0)), "diaphragm")
    porta = (
        float(np.median(x_vb_front)) - rng.uniform(40, 70),
        float(np.median(y_dia)) + rng.uniform(50, 80),
    )
    hep = np.zeros(shape, np.uint8)
    for _ in range(int(rng.integers(3, 6))):
        _draw_tree(hep, porta, rng.uniform(-np.pi, 0.2), rng.uniform(20, 35), rng.uniform(3, 6), 5, rng)
    hep_f = cv2.GaussianBlur(hep.astype(np.float32) / 255.0, (0, 0), 0.7) * liver
    if rng.random() < 0.5:  # gallbladder, anterior-inferior
        gx = float(np.median(x_wall)) + rng.uniform(15, 35)
        gy = float(y_liver_bot[int(np.clip(gx, 0, n - 1))]) - rng.uniform(10, 25)
        gb = (
            _ellipse_mask(shape, (gx, gy), (rng.uniform(10, 16), rng.uniform(18, 30)), rng.uniform(-30, 30))
            & liver
        )
        paint(gb, "bile")
        liver &= ~gb

    # Abdomen: mesenteric fat and bowel loops (fluid-filled, collapsed, gas), a kidney.
    paint(abdomen, "abdomen")
    area = int(abdomen.sum())
    for _ in range(int(area / 900) + 3):
        cx = rng.uniform(np.median(x_wall), np.median(x_vb_front))
        cy = rng.uniform(float(np.min(y_liver_bot)) - 10, hp)
        ax = (rng.uniform(6, 18), rng.uniform(6, 22))
        ang = rng.uniform(0, 180)
        loop = _ellipse_mask(shape, (cx, cy), ax, ang) & abdomen
        kind = rng.random()
        paint(loop, "bowel_wall")
        core = _ellipse_mask(shape, (cx, cy), (ax[0] - 2.5, ax[1] - 2.5), ang) & loop
        if kind < 0.55:
            paint(core, "bowel_fluid")
        elif kind < 0.75:
            paint(core, "gas")
        else:
            paint(core, "fat")
    kx = float(np.median(x_vb_front)) - rng.uniform(25, 40)
    ky = float(y_liver_bot[int(np.clip(kx, 0, n - 1))]) + rng.uniform(5, 30)
    kid = (
        _ellipse_mask(shape, (kx, ky), (rng.uniform(20, 28), rng.uniform(40, 55)), rng.uniform(-15, 15))
        & inner
        & ~above
    )
    paint(kid, "kidney")
    paint(_ellipse_mask(shape, (kx - 4, ky), (11, 30), 0) & kid, "medulla")
    paint(_ellipse_mask(shape, (kx - 12, ky), (6, 16), 0) & kid, "fat")
    abdomen &= ~kid

    # Texture: two scales of smooth variation and a fine grain, per-tissue amplitude.
    lf = 0.6 * _noise_field(shape, 6.0, rng) + 0.4 * _noise_field(shape, 18.0, rng)
    hf = _noise_field(shape, 0.9, rng)
    img *= 1.0 + tex_lf * lf + tex_hf * hf
    # Lung density increases posteriorly (gravity-dependent lung).
    img += lung * (levels["lung"] * 0.8 * np.clip((xx - x_wall[:, None]) / inner_w, 0, 1))
    img += vess * lung * (levels["blood"] * 0.35)
    img += hep_f * (levels["blood"] - levels["liver"]) * 0.8
    img = np.clip(img, 0.0, None)
    img = cv2.GaussianBlur(img, (0, 0), 0.5)  # anti-alias the drawn edges

    # A random smooth elastic warp turns the drawn ellipses and straight bands into
    # organic shapes (bent spine, lumpy heart, irregular bowel) without changing topology.
    ex = 5.0 * _noise_field(shape, 22.0, rng) + 1.2 * _noise_field(shape, 8.0, rng)
    ey = 5.0 * _noise_field(shape, 22.0, rng) + 1.2 * _noise_field(shape, 8.0, rng)
    map_x = (xx + ex).astype(np.float32)
    map_y = (yy + ey).astype(np.float32)
    img = cv2.remap(img, map_x, map_y, cv2.INTER_LINEAR, borderMode=cv2.BORDER_REFLECT)

    def warp_mask(m: np.ndarray) -> np.ndarray:
        return (
            cv2.remap(m.astype(np.uint8), map_x, map_y, cv2.INTER_NEAREST, borderMode=cv2.BORDER_REFLECT) > 0
        )

    lung, liver, abdomen, body = warp_mask(lung), warp_mask(liver), warp_mask(abdomen), warp_mask(body)

    # Displacement patterns (unit breathing amplitudes), forward: reference point -> displaced.
    d_spine = np.clip((x_vb_front[:, None] - 5 - xx) / 25.0, 0, 1)  # 0 at the spine, 1 well in front
    wall_fall = 0.35 + 0.65 * _smoothstep((xx - xa[:, None]) / 30.0)  # chest wall slides less
    above_prof = np.exp(-np.clip(y_dia[None, :] - yy, 0, None) / rng.uniform(70, 110))
    below_prof = np.exp(-np.clip(yy - y_dia[None, :], 0, None) / rng.uniform(150, 300))
    p_si = np.where(above, above_prof, below_prof) * _smoothstep(d_spine) * wall_fall
    ap_lin = np.clip((x_vb_front[:, None] - xx) / np.maximum(x_vb_front[:, None] - xa[:, None], 1), 0, None)
    p_ap = np.minimum(ap_lin, 1.2) * (0.6 + 0.4 * np.exp(-np.abs(yy - y_dome) / 150))
    p_cx = np.zeros(shape, np.float32)
    p_cy = np.zeros(shape, np.float32)
    if heart_centre is not None:
        dx, dy = xx - heart_centre[0], yy - heart_centre[1]
        r = np.sqrt(dx * dx + dy * dy) + 1e-3
        prof = np.where(r < heart_r, r / heart_r, np.exp(-0.5 * ((r - heart_r) / 25.0) ** 2))
        p_cx, p_cy = -prof * dx / r, -prof * dy / r  # contraction towards the centre
    patterns = np.stack([p_si, p_ap, p_cx, p_cy], axis=-1).astype(np.float32)
    patterns = cv2.GaussianBlur(patterns, (0, 0), 6.0, borderType=cv2.BORDER_REPLICATE)

    # Coil sensitivity: anterior and posterior surface coils, fixed to the scanner.
    xo = np.arange(n, dtype=np.float32)[None, :]
    ya = float(np.median(xa))
    yp = float(np.median(xp))
    bias = (
        0.7
        + 0.45 * np.exp(-np.clip(xo - ya, 0, None) / 90.0)
        + 0.45 * np.exp(-np.clip(yp - xo, 0, None) / 90.0)
    )
    bias = bias * (1.0 + 0.08 * _noise_field((n, n), 60.0, rng))
    bias = (bias / np.mean(bias)).astype(np.float32)

    masks = {"lung": lung, "liver": liver, "abdomen": abdomen, "body": body}
    return _Anatomy(
        image=img.astype(np.float32),
        masks=masks,
        patterns=patterns,
        bias=np.broadcast_to(bias, (n, n)).astype(np.float32),
        levels=levels,
        heart_hz=float(rng.uniform(0.9, 1.4)),
    )


# --------------------------------------------------------------------------- tumour


@dataclass
class _Tumour:
    centre: tuple[float, float]  # (x, y) centroid on the padded canvas
    radius_fn: tuple[np.ndarray, np.ndarray, np.ndarray]  # harmonic orders, amplitudes, phases
    r0: float
    r_max: float
    site: str


def _tumour_shape(
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


def _radius(tumour: _Tumour, theta: np.ndarray) -> np.ndarray:
    orders, amps, phases = tumour.radius_fn
    s = 1.0 + (amps[:, None, None] * np.cos(orders[:, None, None] * theta[None] + phases[:, None, None])).sum(
        0
    )
    return tumour.r0 * s


def _tumour_soft_mask(
    tumour: _Tumour, shape: tuple[int, int], origin: np.ndarray, edge_px: float
) -> np.ndarray:
    """Soft mask (1 inside, 0.5 at the outline) on the padded canvas."""
    yy, xx = np.mgrid[0 : shape[0], 0 : shape[1]].astype(np.float32)
    dx, dy = xx - origin[0], yy - origin[1]
    rho = np.sqrt(dx * dx + dy * dy)
    r = _radius(tumour, np.arctan2(dy, dx))
    return np.clip(0.5 + (r - rho) / edge_px, 0.0, 1.0).astype(np.float32)


def _place_tumour(
    anat: _Anatomy,
    params: CineCaseParams,
    trace: np.ndarray,
    rng: np.random.Generator,
) -> tuple[str, tuple[float, float]]:
    """Pick a site and a centre that keeps the moving tumour inside the field of view."""
    n = params.size_px
    r = params.tumour_diameter_mm / 2 * 1.35  # the outline's harmonics can exceed r0
    if params.region == "thorax":
        sites = ["lung", "liver"] if rng.random() < 0.85 else ["liver", "lung"]
    elif params.region == "liver":
        sites = ["liver", "abdomen", "lung"]
    else:
        sites = ["abdomen", "liver", "lung"] if rng.random() < 0.6 else ["liver", "abdomen", "lung"]
    si_lo, si_hi = float(trace[:, 0].min()), float(trace[:, 0].max())
    ap_abs = float(np.abs(trace[:, 1]).max()) * 1.3
    hp = n + 2 * _PAD
    yy, xx = np.mgrid[0:hp, 0:n]
    in_fov = (
        (yy - _PAD + si_lo - r > 6)
        & (yy - _PAD + si_hi + r < n - 6)
        & (xx - ap_abs - r > 6)
        & (xx + ap_abs + r < n - 6)
    )
    p_si = anat.patterns[..., 0]
    for site in sites:
        mask = anat.masks[site].astype(np.uint8)
        dist = cv2.distanceTransform(mask, cv2.DIST_L2, 5)
        for margin, p_min in ((r * 0.75 + 2, 0.55), (r * 0.5, 0.45), (r * 0.3, 0.0)):
            ok = (dist >= margin) & in_fov & (p_si >= p_min)
            if params.low_contrast and site == "lung" and margin > r * 0.5:
                # A low-contrast lung tumour abuts a soft-tissue neighbour (dome, heart, wall).
                ok &= dist <= r * 0.8 + 2
            ys, xs = np.nonzero(ok)
            if len(ys):
                i = int(rng.integers(len(ys)))
                return site, (float(xs[i]) + rng.uniform(-0.5, 0.5), float(ys[i]) + rng.uniform(-0.5, 0.5))
    raise RuntimeError(
        "no room for the tumour in this anatomy"
    )  # pragma: no cover - geometry guarantees room


def _insert_tumour(
    anat: _Anatomy, tumour: _Tumour, params: CineCaseParams, origin: np.ndarray, rng: np.random.Generator
) -> np.ndarray:
    """Draw the tumour into the static image; return its soft mask."""
    hp, n = anat.image.shape
    edge = 1.0 if not params.low_contrast else 1.8
    soft = _tumour_soft_mask(tumour, (hp, n), origin, edge)
    inside = soft > 0.5
    ring = (cv2.dilate(inside.astype(np.uint8), np.ones((13, 13), np.uint8)) > 0) & ~inside
    smooth = cv2.GaussianBlur(anat.image, (0, 0), 2.0)
    lv = anat.levels
    if tumour.site == "lung":
        if params.low_contrast:
            neighbours = smooth[ring & ~anat.masks["lung"]]
            ref = float(np.median(neighbours)) if neighbours.size > 10 else lv["liver"]
            level = ref * rng.uniform(1.1, 1.2)
        else:
            level = lv["liver"] * rng.uniform(0.9, 1.4)
    else:
        bg = float(np.median(smooth[ring]))
        if params.low_contrast:
            level = bg * rng.uniform(1.1, 1.2)
        elif rng.random() < 0.3:
            level = bg * rng.uniform(0.5, 0.7)  # hypo-intense lesion
        else:
            level = bg * rng.uniform(1.35, 1.8)
    texture = 1.0 + 0.05 * _noise_field((hp, n), 1.2, rng) + 0.04 * _noise_field((hp, n), 4.0, rng)
    tum = level * texture
    if params.tumour_diameter_mm > 15 and not params.low_contrast and rng.random() < 0.3:
        core = _tumour_soft_mask(
            _Tumour(tumour.centre, tumour.radius_fn, tumour.r0 * 0.45, tumour.r_max * 0.45, tumour.site),
            (hp, n),
            origin,
            3.0,
        )
        tum = tum * (1.0 + core * rng.choice([-0.3, 0.35]))
    anat.image = (anat.image * (1.0 - soft) + tum * soft).astype(np.float32)
    return soft


# --------------------------------------------------------------------------- generation


def random_case_params(rng: np.random.Generator) -> CineCaseParams:
    """Draw a case spanning TrackRAD2025's ranges (size, rate, field, region) and harder variants."""
    field_t = float(rng.choice(FIELD_STRENGTHS_T, p=[0.6, 0.4]))
    low_field = field_t < 1.0  # 0.35 T: lower SNR and a coarser acquired resolution
    noise = rng.uniform(0.05, 0.12) if low_field else rng.uniform(0.025, 0.06)
    blur = rng.uniform(0.9, 1.3) if low_field else rng.uniform(0.5, 0.8)
    return CineCaseParams(
        size_px=int(rng.integers(270, 451)),
        frame_rate_hz=float(rng.choice([1.0, 2.0, 3.0, 4.0, 5.0, 6.0, 8.0])),
        n_frames=int(rng.integers(60, 141)),
        tumour_diameter_mm=float(np.exp(rng.uniform(np.log(5.0), np.log(30.0)))),
        low_contrast=bool(rng.random() < 0.3),
        noise_sigma=float(noise),
        field_strength_t=field_t,
        region=str(rng.choice(REGIONS, p=[0.5, 0.2, 0.3])),
        breathing=random_breathing_params(rng),
        cardiac_amplitude_mm=float(rng.uniform(0.5, 2.5)),
        tumour_deformation=float(rng.uniform(0.0, 0.08)),
        tumour_rotation_deg=float(rng.uniform(-6.0, 6.0)),
        intensity_drift=float(rng.uniform(0.0, 0.06)),
        blur_sigma_px=float(blur),
    )


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


def generate_case(params: CineCaseParams, seed: int) -> CineCase:
    """Render one case; the same ``(params, seed)`` always gives the same arrays."""
    t_start = time.perf_counter()
    rng = np.random.default_rng(seed)
    n, t_count = params.size_px, params.n_frames
    rate = params.frame_rate_hz
    trace = breathing_trace(t_count / rate, rate, rng, params.breathing)[:t_count]
    anat = _build_anatomy(n, params.region, rng, params)
    hp = n + 2 * _PAD

    diameter = params.tumour_diameter_mm / _SPACING_MM
    radius_fn, r0, offset = _tumour_shape(diameter, rng)
    site, centre = _place_tumour(anat, params, trace, rng)
    # Farthest outline point from the centroid (the polar origin is offset from it).
    r_max = float(r0 * (1 + np.abs(radius_fn[1]).sum()) + np.hypot(*offset))
    tumour = _Tumour(centre=centre, radius_fn=radius_fn, r0=r0, r_max=r_max, site=site)
    origin = np.array(centre) - offset  # polar origin such that the centroid lands on ``centre``
    soft = _insert_tumour(anat, tumour, params, origin, rng)

    # Field amplitudes per frame, normalised so the tumour follows the breathing trace.
    pc = _bilinear(anat.patterns, centre)  # the field's patterns at the (sub-pixel) centroid
    s_si = 1.0 / max(float(pc[0]), 0.5)
    s_ap = 1.0 / max(float(pc[1]), 0.5)
    t = np.arange(t_count) / rate
    cardiac = (
        params.cardiac_amplitude_mm
        * 0.5
        * (1 - np.cos(2 * np.pi * anat.heart_hz * t + rng.uniform(0, 2 * np.pi)))
    )
    a_si = trace[:, 0] * s_si
    a_ap = trace[:, 1] * s_ap
    # Tumour displacement (dx, dy) in pixels on the canvas = the field at its centroid.
    disp_x = -a_ap * pc[1] + cardiac * pc[2]
    disp_y = a_si * pc[0] + cardiac * pc[3]
    motion_mm = np.stack([disp_y, -disp_x], axis=1) * _SPACING_MM

    # Breathing-phase deformation of the tumour: scale and rotation grow with inhalation.
    amp_ref = max(params.breathing.amplitude_mean_mm, 1e-3)
    phase = np.clip(trace[:, 0] / amp_ref, -0.5, 2.0)
    scales = 1.0 + params.tumour_deformation * phase
    angles = np.deg2rad(params.tumour_rotation_deg) * phase

    drift_sign = 1.0 if rng.random() < 0.5 else -1.0
    gain = 1.0 + params.intensity_drift * (
        drift_sign * t / max(t[-1], 1e-6) + 0.3 * np.sin(2 * np.pi * t / 47.0)
    )
    scale = _LIVER_LEVEL * float(rng.uniform(0.7, 1.6))
    sigma = params.noise_sigma * scale

    gy, gx = np.mgrid[0:n, 0:n].astype(np.float32)
    gy_c = gy + _PAD
    pats_fov = anat.patterns[_PAD : _PAD + n]
    frames = np.empty((t_count, n, n), np.uint16)
    labels = np.zeros((t_count, n, n), np.uint8)
    # Patch (on output coordinates) in which the tumour's own transform replaces the field.
    blend_in, blend_out = r_max * 1.15 + 3.0, r_max * 1.15 + 12.0
    half = int(np.ceil(blend_out + 2))

    for k in range(t_count):
        ak = np.array([a_si[k], a_ap[k], cardiac[k]], np.float32)

        def field_at(p: np.ndarray, ak: np.ndarray = ak) -> tuple[np.ndarray, np.ndarray]:
            return (-ak[1] * p[..., 1] + ak[2] * p[..., 2], ak[0] * p[..., 0] + ak[2] * p[..., 3])

        dx, dy = field_at(pats_fov)
        src_x, src_y = gx - dx, gy_c - dy
        for _ in range(2):  # fixed-point refinement of the inverse of the forward field
            p = cv2.remap(anat.patterns, src_x, src_y, cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
            dx, dy = field_at(p)
            src_x, src_y = gx - dx, gy_c - dy

        # The tumour's similarity transform about its centroid, blended into the field.
        cx_out, cy_out = centre[0] + disp_x[k], centre[1] + disp_y[k] - _PAD
        x0, x1 = max(0, int(cx_out) - half), min(n, int(cx_out) + half + 1)
        y0, y1 = max(0, int(cy_out) - half), min(n, int(cy_out) + half + 1)
        px, py = gx[y0:y1, x0:x1] - cx_out, gy[y0:y1, x0:x1] - cy_out
        cos_a, sin_a = np.cos(-angles[k]) / scales[k], np.sin(-angles[k]) / scales[k]
        tx = centre[0] + cos_a * px - sin_a * py
        ty = centre[1] + sin_a * px + cos_a * py
        w = 1.0 - _smoothstep((np.sqrt(px * px + py * py) - blend_in) / (blend_out - blend_in))
        src_x[y0:y1, x0:x1] = w * tx + (1 - w) * src_x[y0:y1, x0:x1]
        src_y[y0:y1, x0:x1] = w * ty + (1 - w) * src_y[y0:y1, x0:x1]

        img = cv2.remap(anat.image, src_x, src_y, cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
        lab = cv2.remap(
            soft, src_x[y0:y1, x0:x1], src_y[y0:y1, x0:x1], cv2.INTER_LINEAR, borderMode=cv2.BORDER_CONSTANT
        )
        labels[k, y0:y1, x0:x1] = lab >= 0.5
        frames[k] = acquire(img, params.blur_sigma_px, anat.bias * (gain[k] * scale), sigma, rng)

    elapsed = time.perf_counter() - t_start
    logger.debug(
        "generated %d frames of %dx%d (%s, %s) in %.2f s", t_count, n, n, params.region, site, elapsed
    )
    return CineCase(
        frames=frames,
        labels=labels,
        params=params,
        motion_mm=motion_mm.astype(np.float64),
        seed=seed,
        tumour_site=site,
        tumour_centre_px=(float(centre[0]), float(centre[1] - _PAD)),
        breathing_mm=trace,
        body_mask=anat.masks["body"][_PAD : _PAD + n].copy(),
        metadata={"generation_s": elapsed, "hp": hp},
    )


# --------------------------------------------------------------------------- output


def _case_id(index: int) -> str:
    return f"S{index + 1:03d}"


def write_cases(out_dir: Path, n_cases: int, seed: int, progress: bool = True) -> list[Path]:
    """Generate ``n_cases`` random cases and write them as TrackRAD case folders S001, S002, ...

    Each case also gets ``synthetic.json`` (the parameters, seed and true motion)
    next to the TrackRAD files; TrackRAD readers ignore it.
    """
    from tqdm import tqdm  # imported here: only needed when writing

    from tracker.io.trackrad import write_trackrad_case

    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    seeds = np.random.SeedSequence(seed).spawn(n_cases)
    paths: list[Path] = []
    for i in tqdm(range(n_cases), desc="synthetic cases", unit="case", disable=not progress):
        case_seed = int(seeds[i].generate_state(1)[0])
        params = random_case_params(np.random.default_rng(seeds[i].spawn(1)[0]))
        case = generate_case(params, case_seed)
        path = write_trackrad_case(
            out_dir,
            _case_id(i),
            case.frames,
            case.labels[0],
            params.frame_rate_hz,
            labels=case.labels,
            b_field_strength_t=params.field_strength_t,
            scanned_region=params.region,
        )
        truth = {
            "seed": case_seed,
            "tumour_site": case.tumour_site,
            "tumour_centre_px": list(case.tumour_centre_px),
            "params": asdict(params),
            "motion_mm": case.motion_mm.round(4).tolist(),
            "motion_convention": "(SI, AP) mm; SI + inferior (+row), AP + anterior (-column)",
        }
        (path / "synthetic.json").write_text(json.dumps(truth))
        logger.info("wrote %s (%s, %s, %d frames)", path, params.region, case.tumour_site, params.n_frames)
        paths.append(path)
    return paths


def _to_bgr(frame: np.ndarray) -> np.ndarray:
    lo, hi = np.percentile(frame, [0.5, 99.5])
    u8 = np.clip((frame.astype(np.float32) - lo) / max(hi - lo, 1.0) * 255, 0, 255).astype(np.uint8)
    return cv2.cvtColor(u8, cv2.COLOR_GRAY2BGR)


def _with_contour(
    frame: np.ndarray, label: np.ndarray, colour: tuple[int, int, int], title: str
) -> np.ndarray:
    img = _to_bgr(frame)
    contours, _ = cv2.findContours(label.astype(np.uint8), cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_NONE)
    cv2.drawContours(img, contours, -1, colour, 1)
    cv2.putText(img, title, (6, 18), cv2.FONT_HERSHEY_SIMPLEX, 0.5, (0, 255, 255), 1, cv2.LINE_AA)
    return img


def _trace_plot(case: CineCase, height: int, width: int) -> np.ndarray:
    """SI (and AP) motion against time, drawn with OpenCV so no plotting library is needed."""
    img = np.full((height, width, 3), 255, np.uint8)
    t = case.frame_times_s
    left, right, top, bottom = 44, 10, 28, 30
    values = case.motion_mm
    lo, hi = float(values.min()) - 1, float(values.max()) + 1
    t_max = max(float(t[-1]), 1e-6)

    def to_px(tt: np.ndarray, v: np.ndarray) -> np.ndarray:
        xs = left + tt / t_max * (width - left - right)
        ys = top + (hi - v) / (hi - lo) * (height - top - bottom)
        return np.stack([xs, ys], axis=1).round().astype(np.int32)

    cv2.rectangle(img, (left, top), (width - right, height - bottom), (0, 0, 0), 1)
    for v in np.linspace(lo, hi, 5):
        y = int(to_px(np.array([0.0]), np.array([v]))[0, 1])
        cv2.line(img, (left - 3, y), (left, y), (0, 0, 0), 1)
        cv2.putText(img, f"{v:.0f}", (4, y + 4), cv2.FONT_HERSHEY_SIMPLEX, 0.35, (0, 0, 0), 1, cv2.LINE_AA)
    cv2.polylines(img, [to_px(t, values[:, 0])], False, (200, 60, 0), 1, cv2.LINE_AA)
    cv2.polylines(img, [to_px(t, values[:, 1])], False, (0, 140, 0), 1, cv2.LINE_AA)
    for p in to_px(t, values[:, 0]):
        cv2.circle(img, (int(p[0]), int(p[1])), 2, (200, 60, 0), -1)
    p = case.params
    title = f"SI (blue) / AP (green) mm, {p.frame_rate_hz:g} Hz, {len(t)} frames"
    cv2.putText(img, title, (left, 18), cv2.FONT_HERSHEY_SIMPLEX, 0.42, (0, 0, 0), 1, cv2.LINE_AA)
    cv2.putText(
        img, f"time 0..{t_max:.0f} s", (left, height - 10), cv2.FONT_HERSHEY_SIMPLEX, 0.4, (0, 0, 0), 1
    )
    return img


def write_case_preview(case: CineCase, path_png: Path, panel_px: int = 360) -> Path:
    """Montage for a person to check a case: frame 0 with contour, max inhale, the SI trace."""
    k_inhale = int(np.argmax(case.motion_mm[:, 0]))
    p = case.params
    first = _with_contour(case.frames[0], case.labels[0], (0, 255, 0), f"frame 0 ({case.tumour_site})")
    inhale = _with_contour(
        case.frames[k_inhale], case.labels[k_inhale], (0, 0, 255), f"frame {k_inhale}: max inhale"
    )
    cv2.drawContours(
        inhale,
        cv2.findContours(case.labels[0], cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_NONE)[0],
        -1,
        (0, 255, 0),
        1,
    )
    panels = [cv2.resize(im, (panel_px, panel_px), interpolation=cv2.INTER_AREA) for im in (first, inhale)]
    panels.append(_trace_plot(case, panel_px, int(panel_px * 1.4)))
    montage = np.concatenate(panels, axis=1)
    caption = (
        f"{p.region}, {p.field_strength_t:g} T, {p.size_px} px, tumour {p.tumour_diameter_mm:.1f} mm"
        f"{' low-contrast' if p.low_contrast else ''}, noise {p.noise_sigma:.3f}, seed {case.seed}"
    )
    bar = np.full((24, montage.shape[1], 3), 255, np.uint8)
    cv2.putText(bar, caption, (6, 17), cv2.FONT_HERSHEY_SIMPLEX, 0.5, (0, 0, 0), 1, cv2.LINE_AA)
    montage = np.concatenate([bar, montage], axis=0)
    path_png = Path(path_png)
    path_png.parent.mkdir(parents=True, exist_ok=True)
    if not cv2.imwrite(str(path_png), montage):
        raise OSError(f"could not write {path_png}")
    return path_png
