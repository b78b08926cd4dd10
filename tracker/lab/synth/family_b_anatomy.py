"""The patient of a family-B synthetic cine-MRI case (see :mod:`tracker.lab.synth.family_b`): the static
reference slice, the breathing that moves it, and the tumour.

Written apart from family A's phantom (:mod:`tracker.lab.synth.phantom`) and built differently:

* **Geometry in millimetres, drawn once.** Every outline (skin, fat, spine, diaphragm dome,
  liver edge, heart, aorta, IVC, bowel, vessel tubes) is a function of position in mm with its
  random draws taken from the geometry generator only, then evaluated on a fine grid of at most
  :data:`FINE_MM` per pixel; so the same seed draws the same outlines at any output resolution,
  and box-averaging the fine grid down gives partial volume at every edge.
* **Tissue classes, then levels.** A label map of tissue classes is painted first and turned into
  intensities through per-case levels of a bSSFP-like contrast (:data:`LEVEL_RANGES`: blood and
  fluid brightest, fat bright, liver 1, muscle darker, lung and cortical bone near black), each
  drawn from a range per case, so that the order of fat and blood can swap between cases.
* **Texture with a power-law spectrum.** Two fields of noise whose power falls as ``f^-beta``
  (``f`` in cycles/mm; one coarse, ``beta`` in [2.4, 3.4], one grain, ``beta`` in [0.6, 1.4]),
  with a per-tissue amplitude, instead of family A's Gaussian-filtered white noise; lung density
  grows posteriorly (gravity).
* **Vessels as tubes.** Pulmonary and hepatic vessels are random-walk centre lines drawn as
  tubes whose radius tapers along them, with side branches, plus vessel cross-sections as discs;
  the aorta and IVC are straight-ish tubes along the body axis.
* **Bowel from a thresholded smooth field** (fluid loops, gas, walls) rather than ellipses.

Besides the image the slice carries what moves and what the scanner sees differently: the
flowing-blood signal (heart, aorta, IVC) that ghosts, a unit susceptibility map (the lung's air
blurred) that shifts bSSFP bands with the anatomy, and two motion-weight maps (SI and AP) that
the breathing trace scales, with a sliding boundary (a jump in SI weight) between the lung and
the chest wall and none of it at the spine.

**Breathing** (:func:`breathing_b`) is a stochastic phase oscillator, not family A's cycle-by-cycle
trace: the period and the amplitude are slow log-normal Ornstein-Uhlenbeck processes (15 s and
25 s memory), the waveform is asymmetric (a raised-cosine inhale over ``inhale_fraction`` of the
cycle, then an exhale raised to ``exhale_power``, which lengthens the end-exhale rest), AP lags
SI by ``ap_lag_cycles``, the baseline drifts linearly and wanders (8 s smoothing), and
breath-holds stop the phase at end-inhale or end-exhale for a drawn time.

**The tumour** (:class:`TumourB`) is a 3-D body: an outline ``r0 (1 + sum a_k cos(k theta +
phi_k))`` in the slice plane (harmonics 2-8, amplitudes falling as ``k^-1.5``) and an ellipsoidal
profile across it (semi-axis ``depth``). A slice of thickness ``h`` centred ``z`` mm from its
middle covers, at each in-plane point, the share of ``[z - h/2, z + h/2]`` inside the body: the
voxel's tumour fraction, from which the image is mixed and the label thresholded.

Axes as in family A: rows run head to feet, columns anterior (left) to posterior (right).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import cv2
import numpy as np
import scipy.fft
from scipy.ndimage import gaussian_filter, gaussian_filter1d

FINE_MM = 0.5  # the coarsest fine-grid spacing: each output pixel is split into s x s pixels of <= this
_CURVE_RANGE_MM = (-200.0, 650.0)  # 1-D outline wobbles are drawn over this fixed span, whatever the FOV
_DT = 1.0 / 40.0  # breathing is integrated on this time step (s), then sampled at the frame times

TISSUES = (
    "air",
    "lung",
    "liver",
    "muscle",
    "fat",
    "blood",
    "myocardium",
    "fluid",
    "marrow",
    "cortex",
    "disc",
    "abdomen",
    "gas",
    "cord",
)
_T = {name: i for i, name in enumerate(TISSUES)}

# bSSFP-like signal relative to liver (T2/T1 weighting): each case draws its level in the range.
LEVEL_RANGES: dict[str, tuple[float, float]] = {
    "air": (0.0, 0.0),
    "lung": (0.03, 0.14),
    "liver": (1.0, 1.0),
    "muscle": (0.45, 0.8),
    "fat": (1.4, 2.6),
    "blood": (1.7, 3.0),
    "myocardium": (0.55, 0.9),
    "fluid": (2.0, 3.2),  # CSF, bile, bowel fluid
    "marrow": (1.0, 1.9),
    "cortex": (0.05, 0.2),
    "disc": (0.9, 1.5),
    "abdomen": (0.9, 1.5),  # mesentery and collapsed bowel
    "gas": (0.0, 0.05),
    "cord": (0.7, 1.1),
}
# Texture amplitude per tissue (coarse power-law field, grain), relative to the level.
_TEXTURE: dict[str, tuple[float, float]] = {
    "lung": (0.45, 0.3),
    "liver": (0.09, 0.06),
    "muscle": (0.1, 0.08),
    "fat": (0.06, 0.05),
    "abdomen": (0.15, 0.1),
    "marrow": (0.12, 0.08),
}
_DEFAULT_TEXTURE = (0.04, 0.04)


@dataclass
class AnatomyB:
    """The reference slice on a fine canvas ``pad_px`` rows taller than the field of view at both ends."""

    static: np.ndarray  # (Hc, Wc, 4) float32: image (liver = 1), flowing-blood signal, susceptibility, body
    w_motion: np.ndarray  # (Hc, Wc, 2) float32: SI and AP motion weights (displacement per mm of breathing)
    masks: dict[str, np.ndarray]  # bool (Hc, Wc): "lung", "liver", "abdomen", "body"
    levels: dict[str, float]
    fine_mm: float
    pad_px: int
    body_ap_mm: tuple[float, float]  # median anterior and posterior skin position (mm from the left edge)


def _curve(rng: np.random.Generator, corr_mm: float) -> Callable[[np.ndarray], np.ndarray]:
    """A smooth 1-D wobble of unit std, correlated over ``corr_mm``, as a function of position in mm."""
    grid = np.arange(*_CURVE_RANGE_MM, 1.0)
    w = gaussian_filter1d(rng.standard_normal(len(grid)), corr_mm, mode="reflect")
    w /= w.std() + 1e-12
    return lambda v: np.interp(v, grid, w).astype(np.float32)


def power_law_noise(
    shape: tuple[int, int], spacing_mm: float, beta: float, rng: np.random.Generator
) -> np.ndarray:
    """Zero-mean, unit-std noise with power ``(f^2 + f0^2)^(-beta/2)``; ``f`` cycles/mm, ``f0`` 1/80 mm."""
    spec = scipy.fft.rfft2(rng.standard_normal(shape, dtype=np.float32))
    fy = np.fft.fftfreq(shape[0], d=spacing_mm).astype(np.float32)[:, None]
    fx = np.fft.rfftfreq(shape[1], d=spacing_mm).astype(np.float32)[None, :]
    spec *= (fx * fx + fy * fy + (1.0 / 80.0) ** 2) ** (-beta / 4.0)
    out = scipy.fft.irfft2(spec, s=shape).astype(np.float32)
    out -= out.mean()
    return out / (out.std() + 1e-12)


def _draw_tube(
    canvas: np.ndarray,
    start: tuple[float, float],
    angle: float,
    radius: float,
    fine_mm: float,
    rng: np.random.Generator,
    depth: int = 1,
) -> None:
    """A tapering tube along a random-walk centre line (mm), with side branches, into uint8 ``canvas``."""
    x, y = start
    scale = 4.0 / fine_mm  # cv2 drawing with 2 bits of sub-pixel precision
    while radius > 0.35 and -50 < x < 700 and -250 < y < 700:
        angle += rng.normal(0.0, 0.12)
        nx, ny = x + 2.0 * np.cos(angle), y + 2.0 * np.sin(angle)
        thickness = max(1, round(2 * radius / fine_mm))
        cv2.line(
            canvas,
            (round(x * scale), round(y * scale)),
            (round(nx * scale), round(ny * scale)),
            255,
            thickness,
            cv2.LINE_AA,
            2,
        )
        if depth > 0 and rng.random() < 0.03:
            _draw_tube(
                canvas,
                (nx, ny),
                angle + rng.choice([-1, 1]) * rng.uniform(0.4, 1.0),
                radius * rng.uniform(0.5, 0.75),
                fine_mm,
                rng,
                depth - 1,
            )
        x, y, radius = nx, ny, radius * 0.98


def build_anatomy_b(
    fov_mm: float,
    fine_mm: float,
    pad_px: int,
    region: str,
    geo: np.random.Generator,
    tex: np.random.Generator,
) -> AnatomyB:
    """Draw the slice. ``geo`` draws every outline (mm), ``tex`` the levels and texture (per fine pixel)."""
    nf = round(fov_mm / fine_mm)
    hc = nf + 2 * pad_px
    ys = ((np.arange(hc) + 0.5 - pad_px) * fine_mm).astype(np.float32)  # row centres, mm from the FOV top
    xs = ((np.arange(nf) + 0.5) * fine_mm).astype(np.float32)
    yy, xx = ys[:, None], xs[None, :]
    lab = np.zeros((hc, nf), np.uint8)

    def paint(mask: np.ndarray, tissue: str) -> None:
        lab[mask] = _T[tissue]

    # Body: anterior and posterior skin, a belly below the dome; fat and muscle layers.
    depth = min(geo.uniform(190, 270), fov_mm - 50)
    x_mid = fov_mm / 2 + geo.uniform(-0.04, 0.04) * fov_mm
    dome_frac = {"lung": (0.5, 0.68), "liver": (0.2, 0.38), "abdomen": (0.05, 0.2)}[region]
    y_dome = geo.uniform(*dome_frac) * fov_mm
    belly = geo.uniform(0, 30) / (1 + np.exp(-(ys - (y_dome + 70)) / 30))
    x_a = np.clip(x_mid - depth / 2 - belly + 4 * _curve(geo, 30)(ys), 8, None)[:, None]
    x_p = np.clip(x_mid + depth / 2 + 3 * _curve(geo, 40)(ys), None, fov_mm - 8)[:, None]
    fat_a = np.clip(geo.uniform(6, 28) * (1 + 0.25 * _curve(geo, 50)(ys)) + 0.5 * belly, 3, None)[:, None]
    fat_p, musc_a, paraspinal = geo.uniform(5, 16), geo.uniform(5, 13), geo.uniform(32, 50)
    body = (xx > x_a) & (xx < x_p)
    paint(body, "muscle")
    paint(body & ((xx < x_a + fat_a) | (xx > x_p - fat_p)), "fat")
    x_wall = x_a + fat_a + musc_a

    # Spine: rounded vertebral bodies (superellipses) with a cortical shell, discs, a canal if midline.
    midline = geo.random() < 0.4
    x_cb = x_p - fat_p - paraspinal + 2 * _curve(geo, 60)(ys)[:, None]
    x_cf = x_cb - (geo.uniform(12, 16) if midline else 0.0)
    x_vbf = x_cf - (geo.uniform(28, 36) if midline else geo.uniform(12, 20))
    period, disc = geo.uniform(27, 34), geo.uniform(5, 8)
    ph = (yy - geo.uniform(0, period)) % period
    half_h, half_w, xc = (period - disc) / 2, (x_cf - x_vbf) / 2, (x_cf + x_vbf) / 2
    u4 = ((xx - xc) / half_w) ** 4 + ((ph - half_h) / half_h) ** 4
    u4_in = ((xx - xc) / np.maximum(half_w - 2, 1)) ** 4 + ((ph - half_h) / (half_h - 2)) ** 4
    column = body & (xx > x_vbf) & (xx < x_cf)
    paint(column & (ph >= period - disc), "disc")
    paint(column & (u4 <= 1), "cortex")
    paint(column & (u4_in <= 1), "marrow")
    if midline:
        canal = body & (xx >= x_cf) & (xx < x_cb)
        paint(canal, "fluid")
        paint(canal & (np.abs(xx - (x_cf + x_cb) / 2) < geo.uniform(4, 5)), "cord")

    # Diaphragm dome (a power-law profile, steeper posteriorly), lung above, liver and abdomen below.
    wall_m, vbf_m = float(np.median(x_wall)), float(np.median(x_vbf))
    inner_w = vbf_m - wall_m
    x_apex = wall_m + geo.uniform(0.35, 0.6) * inner_w
    q, h_a, h_p = geo.uniform(1.6, 2.6), geo.uniform(20, 45), geo.uniform(45, 90)
    t_dome = np.where(xs < x_apex, (x_apex - xs) / (x_apex - wall_m), (xs - x_apex) / (vbf_m - x_apex))
    y_d = y_dome + np.where(xs < x_apex, h_a, h_p) * np.clip(t_dome, 0, 1.6) ** q + 3 * _curve(geo, 25)(xs)
    frac = np.clip((xs - wall_m) / inner_w, 0, 1)
    y_lb = y_d + geo.uniform(40, 80) + (geo.uniform(110, 170) - 60) * frac + 6 * _curve(geo, 30)(xs)
    inner = body & (xx > x_wall) & (xx < x_vbf - 2)
    above = yy < y_d[None, :]
    lung = inner & above
    liver = inner & ~above & (yy < y_lb[None, :])
    abdomen = inner & ~above & ~liver
    paint(lung, "lung")
    paint(liver, "liver")
    paint(liver & (yy < y_d[None, :] + geo.uniform(3, 5)), "muscle")  # the diaphragm itself
    paint(abdomen, "abdomen")

    # Bowel: a smooth random field on a fixed 2 mm grid, thresholded into fluid, wall and gas.
    g_step = 2.0
    bowel = gaussian_filter(geo.standard_normal((int(850 / g_step), int(650 / g_step))), 3.0)
    bowel /= bowel.std() + 1e-12
    bx = (xx / g_step).repeat(hc, axis=0)
    by = ((yy - _CURVE_RANGE_MM[0]) / g_step).repeat(nf, axis=1)
    field = cv2.remap(bowel.astype(np.float32), bx, by, cv2.INTER_LINEAR, borderMode=cv2.BORDER_REFLECT)
    paint(abdomen & (field > 0.45), "muscle")
    paint(abdomen & (field > 0.7), "fluid")
    paint(abdomen & (field < -1.3), "gas")
    abdomen &= lab == _T["abdomen"]

    flow_w = np.zeros((hc, nf), np.float32)  # flowing-blood weight: ghosts along the phase-encode axis
    heart = np.zeros((hc, nf), bool)
    # Heart: a lumpy superellipse sitting on the dome, myocardium around a blood pool.
    if geo.random() < {"lung": 0.8, "liver": 0.45, "abdomen": 0.15}[region]:
        ha, hb, ang = geo.uniform(38, 55), geo.uniform(30, 46), np.deg2rad(geo.uniform(-40, -10))
        hx = wall_m + geo.uniform(0.15, 0.4) * inner_w
        hy = float(np.interp(hx, xs, y_d)) - hb * geo.uniform(0.55, 0.85)
        lumps = geo.normal(0, 0.05, 3)
        dx, dy = xx - hx, yy - hy
        rx, ry = np.cos(ang) * dx + np.sin(ang) * dy, -np.sin(ang) * dx + np.cos(ang) * dy
        th = np.arctan2(ry, rx)
        wob = 1 + sum(a * np.cos((k + 2) * th + k) for k, a in enumerate(lumps))
        rr = ((np.abs(rx / ha) ** 2.4 + np.abs(ry / hb) ** 2.4) ** (1 / 2.4)) / wob
        heart = inner & (rr < 1) & (yy < y_d[None, :] + 3)
        paint(heart, "myocardium")
        pool = heart & (rr < 1 - geo.uniform(7, 12) / min(ha, hb))
        paint(pool, "blood")
        flow_w[pool] = 1.0
        lung &= ~heart
        liver &= ~heart

    # Great vessels as tubes along the body axis: aorta in front of the spine, IVC through the liver.
    if geo.random() < 0.55:
        r_ao = geo.uniform(9, 13)
        xc_ao = x_vbf - r_ao - geo.uniform(1, 4) + 2 * _curve(geo, 80)(ys)[:, None]
        aorta = body & (np.abs(xx - xc_ao) < r_ao) & ~heart
        paint(aorta, "blood")
        flow_w[aorta] = 1.0
    if geo.random() < 0.5:
        r_ivc, x_ivc = geo.uniform(8, 12), vbf_m - geo.uniform(25, 45)
        y0 = float(np.interp(x_ivc, xs, y_d)) - 20
        y1 = float(np.interp(x_ivc, xs, y_lb)) + 60
        beyond = np.maximum(np.maximum(y0 - yy, yy - y1), 0)  # rounded ends
        ivc = inner & (((xx - x_ivc) / r_ivc) ** 2 + (beyond / r_ivc) ** 2 < 1)
        paint(ivc, "blood")
        flow_w[ivc] = 0.5
    for m in (lung, liver, abdomen):
        m &= ~(flow_w > 0)
    if geo.random() < 0.3:  # gallbladder, anterior-inferior in the liver
        gx, ga, gb = wall_m + geo.uniform(15, 35), geo.uniform(10, 16), geo.uniform(18, 30)
        gy = float(np.interp(gx, xs, y_lb)) - geo.uniform(12, 25)
        gall = liver & (((xx - gx) / ga) ** 2 + ((yy - gy) / gb) ** 2 < 1)
        paint(gall, "fluid")
        liver &= ~gall

    # Vessel tubes (pulmonary from the hilum, hepatic from the dome) and cross-sections, on a uint8 canvas
    # whose rows start ``pad_px`` above the FOV (drawing coordinates are mm from the canvas corner).
    tubes = np.zeros((hc, nf), np.uint8)
    pad_mm = pad_px * fine_mm
    hilum = (vbf_m - geo.uniform(20, 40), y_dome - geo.uniform(60, 100) + pad_mm)
    for _ in range(int(geo.integers(6, 13))):
        start = (hilum[0] + geo.uniform(-12, 12), hilum[1] + geo.uniform(-15, 15))
        _draw_tube(tubes, start, geo.uniform(-np.pi, np.pi), geo.uniform(1.0, 2.2), fine_mm, geo)
    dome_post = (vbf_m - geo.uniform(20, 40), float(np.interp(vbf_m - 30, xs, y_d)) + 10 + pad_mm)
    for _ in range(int(geo.integers(2, 5))):
        _draw_tube(tubes, dome_post, geo.uniform(1.9, 2.9), geo.uniform(2.0, 3.5), fine_mm, geo)
    for _ in range(int(geo.integers(80, 181))):  # vessels cut across, kept where they fall in lung or liver
        c = (geo.uniform(0, fov_mm), geo.uniform(-100, fov_mm + 100) + pad_mm)
        cv2.circle(
            tubes,
            (round(c[0] * 4 / fine_mm), round(c[1] * 4 / fine_mm)),
            max(1, round(geo.uniform(0.6, 2.5) * 4 / fine_mm)),
            255,
            -1,
            cv2.LINE_AA,
            2,
        )
    vessels = (tubes.astype(np.float32) / 255.0) * (lung | liver)

    # Levels, texture and the lung's posterior density gradient.
    levels = {k: float(tex.uniform(lo, hi)) for k, (lo, hi) in LEVEL_RANGES.items()}
    lut = np.array([levels[t] for t in TISSUES], np.float32)
    amp = np.array([_TEXTURE.get(t, _DEFAULT_TEXTURE) for t in TISSUES], np.float32)
    coarse = power_law_noise((hc, nf), fine_mm, tex.uniform(2.4, 3.4), tex)
    grain = power_law_noise((hc, nf), fine_mm, tex.uniform(0.6, 1.4), tex)
    img = lut[lab] * np.clip(1 + amp[lab, 0] * coarse + amp[lab, 1] * grain, 0.05, None)
    gravity = np.clip((xx - x_wall) / np.maximum(x_vbf - x_wall, 1), 0, 1)
    img = np.where(lab == _T["lung"], img * (1 + tex.uniform(0.3, 1.2) * gravity), img)
    # Vessels thinner than the slice are partial-volumed through it: dimmer than the great vessels.
    img = img * (1 - vessels) + levels["blood"] * tex.uniform(0.45, 0.8) * vessels

    # Motion weights: SI falls off up the lung and down the abdomen, slides at the chest wall, zero at the
    # spine; AP grows from the spine to the anterior skin, smoothly.
    lam_up, lam_down = geo.uniform(70, 140), geo.uniform(150, 300)
    dist = (yy - y_d[None, :]).astype(np.float32)
    w_inner = np.where(
        dist < 0, np.maximum(np.exp(dist / lam_up), 0.1), np.exp(-np.clip(dist, 0, None) / lam_down)
    )
    w_si = np.where(inner, w_inner, 0.0).astype(np.float32)
    w_si = np.where(body & ~inner & (xx < x_vbf), 0.12, w_si).astype(np.float32)  # the anterior chest wall
    w_si = cv2.GaussianBlur(w_si, (0, 0), 1.5 / fine_mm)
    w_ap = np.clip((x_vbf - xx) / np.maximum(x_vbf - x_a, 1), 0, 1.2).astype(np.float32)
    w_ap = cv2.GaussianBlur(
        w_ap * np.float32(0.6 + 0.4 * np.exp(-np.abs(yy - y_dome) / 150)), (0, 0), 8 / fine_mm
    )

    susceptibility = cv2.GaussianBlur((lab == _T["lung"]).astype(np.float32), (0, 0), 15 / fine_mm)
    static = np.stack([img, img * flow_w, susceptibility, body.astype(np.float32)], axis=-1).astype(
        np.float32
    )
    return AnatomyB(
        static=np.ascontiguousarray(static),
        w_motion=np.ascontiguousarray(np.stack([w_si, w_ap], axis=-1).astype(np.float32)),
        masks={"lung": lung, "liver": liver, "abdomen": abdomen, "body": body},
        levels=levels,
        fine_mm=fine_mm,
        pad_px=pad_px,
        body_ap_mm=(float(np.median(x_a)), float(np.median(x_p))),
    )


# --------------------------------------------------------------------------- breathing


@dataclass(frozen=True)
class BreathingB:
    """The breathing oscillator of one case; SI and AP are the diaphragm's, in mm."""

    period_s: float = 4.0  # median breathing period
    period_cv: float = 0.12  # std of the log period (Ornstein-Uhlenbeck, 15 s memory)
    amplitude_mm: float = 12.0  # median SI excursion, end-exhale to end-inhale
    amplitude_cv: float = 0.2  # std of the log amplitude (Ornstein-Uhlenbeck, 25 s memory)
    inhale_fraction: float = 0.4  # share of a cycle spent inhaling
    exhale_power: float = 1.5  # > 1: a quick exhale, then a long end-exhale rest
    ap_ratio: float = 0.35  # AP excursion / SI excursion
    ap_lag_cycles: float = 0.04  # AP lags SI by this share of a cycle (hysteresis)
    drift_mm_per_min: float = 1.0  # linear SI baseline drift (signed)
    wander_mm: float = 0.5  # std of a slow baseline wander (8 s smoothing)
    holds: int = 0  # breath-holds over the sequence, each at end-inhale or end-exhale
    hold_s: tuple[float, float] = (4.0, 12.0)  # range of a hold's duration

    def __post_init__(self) -> None:
        if self.period_s <= 0 or self.amplitude_mm < 0 or self.holds < 0:
            raise ValueError("period_s must be positive, amplitude_mm and holds >= 0")
        if not 0.1 <= self.inhale_fraction <= 0.9 or self.exhale_power <= 0:
            raise ValueError("inhale_fraction must lie in [0.1, 0.9] and exhale_power be positive")


@dataclass(frozen=True)
class BreathingTraceB:
    """The diaphragm's motion at the frame times."""

    si: np.ndarray  # (T,) mm, + inferior (inhale)
    ap: np.ndarray  # (T,) mm, + anterior
    hold: np.ndarray  # (T,) bool: the frame falls in a breath-hold


def _ou(n: int, std: float, memory_s: float, rng: np.random.Generator) -> np.ndarray:
    """A stationary Ornstein-Uhlenbeck process with the given std and memory, on the :data:`_DT` grid."""
    a = math.exp(-_DT / memory_s)
    eps = rng.standard_normal(n) * std * math.sqrt(1 - a * a)
    out = np.empty(n)
    out[0] = rng.standard_normal() * std
    for i in range(1, n):
        out[i] = a * out[i - 1] + eps[i]
    return out


def _waveform(psi: np.ndarray, inhale: float, power: float) -> np.ndarray:
    """0 at end-exhale, 1 at end-inhale: a raised-cosine inhale, then an exhale raised to ``power``."""
    up = 0.5 * (1 - np.cos(np.pi * np.clip(psi / inhale, 0, 1)))
    down = (0.5 * (1 + np.cos(np.pi * np.clip((psi - inhale) / (1 - inhale), 0, 1)))) ** power
    return np.where(psi < inhale, up, down)


def breathing_b(p: BreathingB, n_frames: int, rate_hz: float, rng: np.random.Generator) -> BreathingTraceB:
    """Integrate the oscillator over the sequence and sample it at ``k / rate_hz``."""
    duration = n_frames / rate_hz + 1.0
    m = int(duration / _DT) + 1
    t = np.arange(m) * _DT
    period = p.period_s * np.exp(_ou(m, p.period_cv, 15.0, rng))
    amp = np.clip(
        p.amplitude_mm * np.exp(_ou(m, p.amplitude_cv, 25.0, rng)), 0.3 * p.amplitude_mm, 2.0 * p.amplitude_mm
    )
    starts = np.sort(rng.uniform(0.0, max(duration - 6.0, 0.5), p.holds))
    lengths = rng.uniform(*p.hold_s, p.holds)
    targets = rng.choice([p.inhale_fraction, 0.97], p.holds)  # end-inhale or late end-exhale
    phase = np.empty(m)
    hold = np.zeros(m, bool)
    ph, k, until = rng.uniform(0.0, 1.0), 0, -1.0
    for i in range(m):
        nxt = ph + _DT / period[i]
        if t[i] < until:
            hold[i], amp[i], nxt = True, amp[i - 1], ph
        elif k < p.holds and t[i] >= starts[k] and math.floor(nxt - targets[k]) > math.floor(ph - targets[k]):
            nxt = math.floor(nxt - targets[k]) + targets[k]  # stop exactly at the target phase
            until, k = t[i] + lengths[k], k + 1
            hold[i] = True
        phase[i] = ph = nxt
    psi = phase % 1.0
    wander = gaussian_filter1d(rng.standard_normal(m), 8.0 / _DT, mode="nearest")
    wander = p.wander_mm * (wander - wander[0]) / (wander.std() + 1e-12)
    drift = p.drift_mm_per_min * t / 60.0 + wander
    si = amp * _waveform(psi, p.inhale_fraction, p.exhale_power) + drift
    ap = p.ap_ratio * amp * _waveform((psi - p.ap_lag_cycles) % 1.0, p.inhale_fraction, p.exhale_power)
    ap = ap + 0.2 * drift
    tk = np.arange(n_frames) / rate_hz
    return BreathingTraceB(
        si=np.interp(tk, t, si), ap=np.interp(tk, t, ap), hold=hold[np.round(tk / _DT).astype(int)]
    )


# --------------------------------------------------------------------------- the tumour


@dataclass(frozen=True)
class TumourB:
    """A 3-D tumour: an irregular outline in the slice plane, an ellipsoidal profile across it."""

    orders: np.ndarray
    amps: np.ndarray
    phases: np.ndarray
    r0: float  # mm; the outline is r0 (1 + sum a_k cos(k theta + phi_k))
    depth: float  # mm, through-plane semi-axis

    @property
    def r_max(self) -> float:
        return self.r0 * (1 + float(np.abs(self.amps).sum()))

    def fraction(self, lx: np.ndarray, ly: np.ndarray, z: float, thickness: float) -> np.ndarray:
        """Share of a slice ``thickness`` thick, centred ``z`` mm from the tumour's middle, inside it."""
        theta = np.arctan2(ly, lx)
        r = self.r0 * (
            1
            + (
                self.amps[:, None, None]
                * np.cos(self.orders[:, None, None] * theta + self.phases[:, None, None])
            ).sum(0)
        )
        u2 = (lx * lx + ly * ly) / (r * r)
        hz = self.depth * np.sqrt(np.clip(1 - u2, 0, None))
        overlap = np.minimum(hz, z + thickness / 2) - np.maximum(-hz, z - thickness / 2)
        return (np.clip(overlap, 0, thickness) / thickness).astype(np.float32)

    def labelled_area_mm2(self, z: np.ndarray, thickness: float) -> np.ndarray:
        """Area where the fraction is >= 0.5 (before pixels): the model's own answer for a label's area."""
        area0 = np.pi * self.r0**2 * (1 + 0.5 * float((self.amps**2).sum()))
        lo, hi = np.zeros_like(z), np.full_like(z, self.depth)
        for _ in range(50):  # the half-chord at which the slice is half inside: bisection
            mid = (lo + hi) / 2
            overlap = np.minimum(mid, z + thickness / 2) - np.maximum(-mid, z - thickness / 2)
            inside = overlap >= thickness / 2
            hi, lo = np.where(inside, mid, hi), np.where(inside, lo, mid)
        return np.where(hi < self.depth * (1 - 1e-9), area0 * (1 - (hi / self.depth) ** 2), 0.0)


def tumour_shape_b(diameter_mm: float, depth_ratio: float, rng: np.random.Generator) -> TumourB:
    """Harmonics 2-8 with amplitudes falling as k^-1.5 (summing to <= 0.3), scaled to the requested area."""
    orders = np.arange(2, 9)
    amps = rng.normal(0.0, 1.0, len(orders)) / orders**1.5
    amps *= min(1.0, 0.3 / float(np.abs(amps).sum()))
    r0 = diameter_mm / 2 / math.sqrt(1 + 0.5 * float((amps**2).sum()))
    return TumourB(orders, amps, rng.uniform(0, 2 * np.pi, len(orders)), r0, r0 * depth_ratio)


def place_tumour_b(
    anat: AnatomyB,
    preferred_site: str,
    tumour: TumourB,
    trace: BreathingTraceB,
    fov: float,
    rng: np.random.Generator,
) -> tuple[str, np.ndarray]:
    """A site (``preferred_site`` first) and centre (canvas mm) keeping the moving tumour in FOV and organ."""
    f, pad = anat.fine_mm, anat.pad_px * anat.fine_mm
    r = tumour.r_max
    cand = np.stack([rng.uniform(0, fov, 4000), rng.uniform(0, fov, 4000) + pad], axis=1)
    ij = np.clip((cand / f).astype(int), 0, [anat.static.shape[1] - 1, anat.static.shape[0] - 1])
    w = anat.w_motion[ij[:, 1], ij[:, 0]]
    y_lo = cand[:, 1] - pad + w[:, 0] * trace.si.min() - r
    y_hi = cand[:, 1] - pad + w[:, 0] * trace.si.max() + r
    x_lo = cand[:, 0] - w[:, 1] * trace.ap.max() - r
    x_hi = cand[:, 0] - w[:, 1] * trace.ap.min() + r
    in_fov = (y_lo > 5) & (y_hi < fov - 5) & (x_lo > 5) & (x_hi < fov - 5)
    order = [preferred_site] + [s for s in ("liver", "lung", "abdomen") if s != preferred_site]
    for site in order:
        dist = cv2.distanceTransform(anat.masks[site].astype(np.uint8), cv2.DIST_L2, 5) * f
        d = dist[ij[:, 1], ij[:, 0]]
        for margin, w_min in ((0.8 * r, 0.35), (0.5 * r, 0.2), (0.3 * r, 0.0)):
            ok = np.nonzero(in_fov & (d >= margin) & (w[:, 0] >= w_min))[0]
            if len(ok):
                return site, cand[ok[0]]
    raise RuntimeError("no room for the tumour in this anatomy")
