"""Family B: a second, independently written synthetic cine-MRI set, for validation only (never tune on B).

Family A (:mod:`tracker.lab.synth.hard_cine`) is the set the defaults were tuned on. A tracker or
gate that works on A might work only because of how A is drawn. Family B is drawn by other code
(the patient: anatomy, breathing and tumour, in :mod:`tracker.lab.synth.family_b_anatomy`; the
scanner, the rendering and the writing here; only the TrackRAD writer is shared with A), in the
ways that scanners and sites differ:

* **Noise**: Rician magnitude noise (complex Gaussian noise added before the magnitude) whose
  sigma varies across the image as ``noise_ratio ** L`` (``L`` in [0, 1], 0 nearest the coils) from
  a map of anterior and posterior surface-coil elements; SNR (liver over the median sigma)
  5-30 at 0.35 T and 12-70 at 1.5 T, wider than family A's 8-40.
* **Bias and contrast**: a residual coil shading and a smooth multiplicative bias field
  (random low-order cosines) per case; bSSFP-like tissue levels drawn per case
  (:data:`~tracker.lab.synth.family_b_anatomy.LEVEL_RANGES`).
* **bSSFP banding**: an off-resonance map (a per-case linear plus quadratic shim residual fixed
  to the scanner, plus the lung's susceptibility, which moves with the anatomy) pushed through a
  banding profile: dark bands where the phase per TR is near half a cycle.
* **Flow artefacts**: the flowing-blood signal (heart, aorta, IVC) modulated across k-space
  lines along the phase-encode axis (AP or SI per case): ghosts at +-``ghost_shift_frac`` of the
  field of view and a smear from a random phase per line, both pulsing with the heart.
* **Resolution and partial volume**: pixels of 1-2.5 mm (the field of view, 280-420 mm, and so
  the tumour and anatomy in pixels follow); everything is drawn on a grid of at most 0.5 mm and
  box-averaged down, so every edge is partial-volumed.
* **Breathing**: a stochastic phase oscillator (period and amplitude as slow log-normal
  Ornstein-Uhlenbeck processes), an asymmetric waveform (inhale fraction, exhale power), AP
  lagging SI, a linear drift plus a slow wander, and breath-holds at end-inhale or end-exhale,
  sampled at 4-8 Hz (any rate in between, not a fixed list).
* **Through-plane motion**: the tumour is a 3-D body and the slice (4-8 mm thick) moves through
  it with breathing and drifts; a voxel's tumour fraction is the share of the slice thickness
  inside the body, so the target fades and can leave the slice (empty ground truth).

**Ground truth** is exact by construction: the tumour fraction of each fine pixel is computed,
box-averaged with the same rule as the image, and thresholded at 0.5 (``label = voxel >= 50 %
tumour``). ``motion_mm`` is the displacement of the tumour's drawn centre (SI +inferior, AP
+anterior), as in family A.

**What B can stand in for**: a check that what was tuned on A does not depend on A's noise
statistics, 1 mm pixels, texture spectrum, contrast, breathing model or clean images. **What it
cannot**: a real scanner. Both families warp one 2-D slice with a smooth field (B's without a
cardiac component); neither has motion within a frame's acquisition, parallel-imaging or
wrap-around artefacts, Gibbs ringing, geometric distortion, or anatomy other than the tumour
moving through the slice, and both write the same TrackRAD layout.
Agreement between A and B is not evidence about patients; a gap between them flags overfitting.

Seeds: root :data:`FAMILY_B_SEED`, case ids ``B001``...; there is no tuning split.
"""

from __future__ import annotations

import json
import logging
import math
from dataclasses import asdict, dataclass, field
from pathlib import Path

import cv2
import numpy as np
import scipy.fft
from tqdm import tqdm

from tracker.io.trackrad import (
    write_trackrad_case,
)
from tracker.lab.synth.family_b_anatomy import (
    FINE_MM,
    AnatomyB,
    BreathingB,
    breathing_b,
    build_anatomy_b,
    place_tumour_b,
    power_law_noise,
    tumour_shape_b,
)
from tracker.lab.synth.preview import write_contact_sheet

logger = logging.getLogger(__name__)

FAMILY_B_SEED = 27_001
CASE_PREFIX = "B"
REGIONS = ("lung", "liver", "abdomen")  # TrackRAD's scanned_region; it also places the diaphragm in the FOV


@dataclass(frozen=True)
class ScannerB:
    """What the scanner adds: noise, shading, banding, flow ghosts, 16-bit scaling."""

    snr: float = 20.0  # liver signal / the median noise sigma over the field of view
    noise_ratio: float = 2.0  # max / min noise sigma across the field of view
    coil_shading: float = 0.2  # residual signal fall-off away from the coils (fraction)
    bias_strength: float = 0.15  # peak log-amplitude of a smooth multiplicative bias field
    band_cycles: float = 1.0  # off-resonance range across the field of view, in band periods
    band_offset: float = 0.0  # off-resonance phase per TR at the centre (cycles)
    band_depth: float = 0.7  # signal lost at the middle of a band
    band_width: float = 0.05  # width (std) of a band's dip, cycles of phase per TR
    susceptibility: float = 0.2  # off-resonance step (cycles) from tissue into lung; moves with it
    ghost_strength: float = 0.2  # pulsatile modulation of flowing blood across k-space lines
    ghost_shift_frac: float = 0.25  # ghost offset, fraction of the field of view along phase encode
    ghost_jitter_rad: float = 0.1  # random phase per k-space line of flowing blood (a smear)
    phase_encode: str = "ap"  # "ap" (along columns) or "si" (along rows)
    signal_counts: float = 600.0  # uint16 counts of unshaded liver signal
    gain_drift: float = 0.03  # gain change over the sequence (fraction, signed by the draw)
    heart_hz: float = 1.2  # the pulse of the flowing blood (ghost strength and inflow phase)

    def __post_init__(self) -> None:
        if self.snr <= 0 or self.noise_ratio < 1 or self.signal_counts <= 0:
            raise ValueError("snr and signal_counts must be positive and noise_ratio >= 1")
        if self.phase_encode not in ("ap", "si"):
            raise ValueError(f"phase_encode must be 'ap' or 'si', got {self.phase_encode!r}")


@dataclass(frozen=True)
class FamilyBParams:
    """One family-B case; :func:`random_family_b_params` draws these."""

    pixel_mm: float = 1.5  # in-plane resolution, square pixels
    fov_mm: float = 360.0  # square field of view (the image is round(fov / pixel) pixels)
    n_frames: int = 100
    frame_rate_hz: float = 6.0
    field_strength_t: float = 1.5
    region: str = "lung"  # "lung", "liver" or "abdomen": where the diaphragm sits in the FOV
    tumour_site: str = "lung"  # preferred site, "lung", "liver" or "abdomen" (another if no room)
    tumour_diameter_mm: float = 20.0  # equivalent-area diameter of the central cross-section
    tumour_depth_ratio: float = 1.0  # through-plane semi-axis / in-plane radius
    tumour_contrast: float = 1.4  # tumour / liver (lung site) or / its surroundings (other sites)
    tumour_rotation_deg: float = 3.0  # in-plane rotation at one median breath
    slice_thickness_mm: float = 6.0
    through_plane_mm: float = 4.0  # slice motion through the tumour over the breathing range
    slice_drift_mm: float = 0.0  # slow slice drift over the sequence
    slice_start_frac: float = 0.0  # slice offset at frame 0, in tumour depth semi-axes
    breathing: BreathingB = field(default_factory=BreathingB)
    scanner: ScannerB = field(default_factory=ScannerB)

    def __post_init__(self) -> None:
        if not 0.5 <= self.pixel_mm <= 4.0 or not 60 <= self.fov_mm <= 600:
            raise ValueError(f"pixel_mm {self.pixel_mm} / fov_mm {self.fov_mm} out of range")
        if self.n_frames < 1 or not 0.5 <= self.frame_rate_hz <= 16:
            raise ValueError("n_frames must be >= 1 and frame_rate_hz lie in [0.5, 16]")
        if self.region not in REGIONS or self.tumour_site not in REGIONS:
            raise ValueError(f"region and tumour_site must be among {REGIONS}")
        if not 3 <= self.tumour_diameter_mm <= 60 or self.slice_thickness_mm <= 0:
            raise ValueError("tumour_diameter_mm must lie in [3, 60] and slice_thickness_mm be positive")

    @property
    def size_px(self) -> int:
        return round(self.fov_mm / self.pixel_mm)

    @property
    def oversample(self) -> int:
        """Fine pixels per output pixel along each axis (fine spacing <= 0.5 mm)."""
        return max(2, math.ceil(self.pixel_mm / FINE_MM - 1e-9))

    @classmethod
    def from_dict(cls, data: dict[str, object]) -> FamilyBParams:
        """Inverse of ``dataclasses.asdict`` (e.g. from ``synthetic.json``), to regenerate a case."""
        values = dict(data)
        breathing = dict(values.pop("breathing"))  # type: ignore[call-overload]
        breathing["hold_s"] = tuple(breathing["hold_s"])
        scanner = dict(values.pop("scanner"))  # type: ignore[call-overload]
        return cls(breathing=BreathingB(**breathing), scanner=ScannerB(**scanner), **values)  # type: ignore[arg-type]


def _log_uniform(rng: np.random.Generator, lo: float, hi: float) -> float:
    return float(np.exp(rng.uniform(np.log(lo), np.log(hi))))


def random_family_b_params(rng: np.random.Generator) -> FamilyBParams:
    """Draw a case over family B's ranges.

    Geometry: pixels U(1, 2.5) mm, field of view U(280, 420) mm, 80-150 frames at U(4, 8) Hz
    (0.01 Hz steps), 0.35 or 1.5 T, region lung/liver/abdomen (0.5/0.3/0.2). Tumour: diameter
    log-U(10, 35) mm, depth ratio U(0.5, 1.2), contrast U(0.7, 1.5) x liver in lung, else
    hypo U(0.5, 0.8) / low U(1.08, 1.2) / hyper U(1.25, 1.8) x surroundings (0.25/0.2/0.55),
    rotation +-6 deg. Slice: U(4, 8) mm thick (at most 1.5 depth semi-axes), through-plane motion
    U(0, 12) mm, drift U(-4, 4) mm, start offset +-0.25 semi-axes. Breathing: period U(3, 6) s
    (cv 0.05-0.25), amplitude U(6, 25) mm (cv 0.05-0.35), inhale fraction U(0.3, 0.45), exhale
    power U(1, 2.5), AP ratio U(0.15, 0.5), AP lag 0-0.08 cycles, drift +-4 mm/min, wander 0-1 mm,
    0/1/2 holds (0.4/0.4/0.2) of 4-12 s. Scanner: SNR log-U(5, 30) at 0.35 T, log-U(12, 70) at
    1.5 T; noise ratio U(1.3, 4); coil shading 0-0.4; bias 0.05-0.35; bands over U(0, 1.5)
    (0.35 T) or U(0.3, 3) (1.5 T) periods, depth 0.4-0.95, width 0.03-0.08; susceptibility 0-0.3
    (x1.5 at 1.5 T); ghosts 0-0.35 at 0.1-0.4 of the FOV, jitter 0-0.3 rad; phase encode AP/SI
    (0.7/0.3); liver log-U(150, 2500) counts; gain drift 0-0.08; heart U(0.9, 1.6) Hz.
    """
    field_t = float(rng.choice([0.35, 1.5]))
    high = field_t > 1.0
    region = str(rng.choice(REGIONS, p=[0.5, 0.3, 0.2]))
    sites, weights = {
        "lung": (["lung", "liver"], [0.85, 0.15]),
        "liver": (["liver", "lung"], [0.8, 0.2]),
        "abdomen": (["abdomen", "liver"], [0.6, 0.4]),
    }[region]
    site = str(rng.choice(sites, p=weights))
    diameter = _log_uniform(rng, 10.0, 35.0)
    kind = rng.random()
    if site == "lung":  # against liver: the lung around it is near black
        contrast = rng.uniform(0.7, 1.5)
    elif kind < 0.25:  # hypo-intense against its surroundings
        contrast = rng.uniform(0.5, 0.8)
    elif kind < 0.45:  # low contrast
        contrast = rng.uniform(1.08, 1.2)
    else:  # hyper-intense
        contrast = rng.uniform(1.25, 1.8)
    depth_ratio = float(rng.uniform(0.5, 1.2))
    breathing = BreathingB(
        period_s=float(rng.uniform(3.0, 6.0)),
        period_cv=float(rng.uniform(0.05, 0.25)),
        amplitude_mm=float(rng.uniform(6.0, 25.0)),
        amplitude_cv=float(rng.uniform(0.05, 0.35)),
        inhale_fraction=float(rng.uniform(0.3, 0.45)),
        exhale_power=float(rng.uniform(1.0, 2.5)),
        ap_ratio=float(rng.uniform(0.15, 0.5)),
        ap_lag_cycles=float(rng.uniform(0.0, 0.08)),
        drift_mm_per_min=float(rng.uniform(0.0, 4.0) * rng.choice([-1.0, 1.0])),
        wander_mm=float(rng.uniform(0.0, 1.0)),
        holds=int(rng.choice([0, 1, 2], p=[0.4, 0.4, 0.2])),
    )
    scanner = ScannerB(
        snr=_log_uniform(rng, 12.0, 70.0) if high else _log_uniform(rng, 5.0, 30.0),
        noise_ratio=float(rng.uniform(1.3, 4.0)),
        coil_shading=float(rng.uniform(0.0, 0.4)),
        bias_strength=float(rng.uniform(0.05, 0.35)),
        band_cycles=float(rng.uniform(0.3, 3.0) if high else rng.uniform(0.0, 1.5)),
        band_offset=float(rng.uniform(0.0, 1.0)),
        band_depth=float(rng.uniform(0.4, 0.95)),
        band_width=float(rng.uniform(0.03, 0.08)),
        susceptibility=float(rng.uniform(0.0, 0.3) * (1.5 if high else 1.0)),
        ghost_strength=float(rng.uniform(0.0, 0.35)),
        ghost_shift_frac=float(rng.uniform(0.1, 0.4)),
        ghost_jitter_rad=float(rng.uniform(0.0, 0.3)),
        phase_encode=str(rng.choice(["ap", "si"], p=[0.7, 0.3])),
        signal_counts=_log_uniform(rng, 150.0, 2500.0),
        gain_drift=float(rng.uniform(0.0, 0.08)),
        heart_hz=float(rng.uniform(0.9, 1.6)),
    )
    return FamilyBParams(
        pixel_mm=float(rng.uniform(1.0, 2.5)),
        fov_mm=float(rng.uniform(280.0, 420.0)),
        n_frames=int(rng.integers(80, 151)),
        frame_rate_hz=round(float(rng.uniform(4.0, 8.0)), 2),
        field_strength_t=field_t,
        region=region,
        tumour_site=site,
        tumour_diameter_mm=diameter,
        tumour_depth_ratio=depth_ratio,
        tumour_contrast=float(contrast),
        tumour_rotation_deg=float(rng.uniform(-6.0, 6.0)),
        # At most 1.5 depth semi-axes thick, so that a slice through the middle labels the tumour.
        slice_thickness_mm=float(min(rng.uniform(4.0, 8.0), 1.5 * diameter / 2 * depth_ratio)),
        through_plane_mm=float(rng.uniform(0.0, 12.0)),
        slice_drift_mm=float(rng.uniform(-4.0, 4.0)),
        slice_start_frac=float(rng.uniform(-0.25, 0.25)),
        breathing=breathing,
        scanner=scanner,
    )


# --------------------------------------------------------------------------- scanner


@dataclass(frozen=True)
class _Scanner:
    """Per-case maps on the output grid, fixed to the scanner."""

    shade: np.ndarray  # coil shading x bias field
    sigma: np.ndarray  # noise sigma, liver-signal units
    phase: np.ndarray  # off-resonance phase per TR from the shim residual (cycles)


def _scanner_maps(p: FamilyBParams, anat: AnatomyB, rng: np.random.Generator) -> _Scanner:
    sc, n = p.scanner, p.size_px
    c = (np.arange(n) + 0.5) * p.pixel_mm
    yy, xx = c[:, None], c[None, :]
    fov = n * p.pixel_mm
    sens = np.zeros((n, n))
    centre, spacing, radius = (
        fov / 2 + rng.uniform(-0.15, 0.15) * fov,
        rng.uniform(70, 110),
        rng.uniform(60, 110),
    )
    for x_coil in (anat.body_ap_mm[0] - 10, anat.body_ap_mm[1] + 10):
        count = int(rng.integers(2, 5))
        for j in range(count):
            y_el = centre + (j - (count - 1) / 2) * spacing
            sens += (1 + ((xx - x_coil) ** 2 + (yy - y_el) ** 2) / radius**2) ** -3.0
    log_c = 0.5 * np.log(sens)
    far = (log_c.max() - log_c) / max(np.ptp(log_c), 1e-9)  # 0 nearest the coils, 1 farthest
    sigma = sc.noise_ratio ** (far - np.median(far)) / sc.snr
    bias = np.zeros((n, n))
    for kx, ky in ((1, 0), (0, 1), (1, 1), (2, 0), (0, 2)):
        bias += (
            rng.normal()
            * np.cos(np.pi * kx * xx / fov + rng.uniform(0, 2 * np.pi))
            * np.cos(np.pi * ky * yy / fov + rng.uniform(0, 2 * np.pi))
        )
    bias = np.exp(sc.bias_strength * bias / max(np.abs(bias).max(), 1e-9))
    ang, curv = rng.uniform(0, 2 * np.pi), rng.uniform(-1, 1)
    u, v = (xx - fov / 2) / fov, (yy - fov / 2) / fov
    phase = sc.band_offset + sc.band_cycles * (u * np.cos(ang) + v * np.sin(ang) + curv * (u * u + v * v))
    shade = (1 - sc.coil_shading * far) * bias
    return _Scanner(shade.astype(np.float32), sigma.astype(np.float32), phase.astype(np.float32))


def _ghosts(flow: np.ndarray, sc: ScannerB, pulse: float, t: float, rng: np.random.Generator) -> np.ndarray:
    """Flowing-blood signal modulated across the phase-encode lines, minus the unmodulated signal."""
    axis = 1 if sc.phase_encode == "ap" else 0
    n = flow.shape[axis]
    line = np.fft.fftfreq(n) * n + n // 2  # acquisition order of each k-space line (linear ordering)
    mod = 1 + sc.ghost_strength * pulse * np.cos(
        2 * np.pi * round(sc.ghost_shift_frac * n) * line / n + 2 * np.pi * sc.heart_hz * t
    )
    mod = mod * np.exp(1j * sc.ghost_jitter_rad * pulse * rng.standard_normal(n)) - 1
    shape = (1, n) if axis == 1 else (n, 1)
    return scipy.fft.ifft(scipy.fft.fft(flow, axis=axis) * mod.astype(np.complex64).reshape(shape), axis=axis)


# --------------------------------------------------------------------------- case


@dataclass
class FamilyBCase:
    """One family-B sequence with its ground truth."""

    frames: np.ndarray  # (T, n, n) uint16 magnitude
    labels: np.ndarray  # (T, n, n) uint8, voxel >= 50 % tumour
    params: FamilyBParams
    seed: int
    tumour_site: str
    motion_mm: np.ndarray  # (T, 2) displacement of the tumour's centre (SI +inferior, AP +anterior)
    centre_px: np.ndarray  # (T, 2) the tumour's centre (x, y) in output pixels
    slice_offset_mm: np.ndarray  # (T,) slice centre relative to the tumour's middle
    label_area_mm2: np.ndarray  # (T,) the model's area at >= 50 % tumour (before pixelation)
    breath_hold: np.ndarray  # (T,) bool
    noise_sigma: np.ndarray  # (n, n) Rician sigma in uint16 counts
    body_any: np.ndarray  # (n, n) bool: pixels with any body in any frame
    metadata: dict[str, object] = field(default_factory=dict)

    @property
    def spacing_mm(self) -> float:
        return self.params.pixel_mm

    @property
    def frame_times_s(self) -> np.ndarray:
        return np.arange(len(self.frames)) / self.params.frame_rate_hz


def generate_family_b_case(p: FamilyBParams, seed: int) -> FamilyBCase:
    """Render one case; the same ``(params, seed)`` always gives the same arrays.

    Separate generators draw the breathing, the geometry, the texture, the tumour, the scanner maps
    and the per-frame noise, so changing ``pixel_mm`` changes neither the motion nor the tumour.
    """
    geo, tex, br, tum, scan, noise = (np.random.default_rng(s) for s in np.random.SeedSequence(seed).spawn(6))
    n, s, count, rate = p.size_px, p.oversample, p.n_frames, p.frame_rate_hz
    fine, nf = p.pixel_mm / s, n * s
    fov = n * p.pixel_mm
    trace = breathing_b(p.breathing, count, rate, br)
    pad_px = math.ceil((np.abs(trace.si).max() * 1.2 + 20) / fine)
    anat = build_anatomy_b(fov, fine, pad_px, p.region, geo, tex)
    tumour = tumour_shape_b(p.tumour_diameter_mm, p.tumour_depth_ratio, tum)
    site, centre = place_tumour_b(anat, p.tumour_site, tumour, trace, fov, tum)
    ij = np.clip((centre / fine - 0.5).round().astype(int), 0, None)
    w_si, w_ap = (float(v) for v in anat.w_motion[ij[1], ij[0]])
    motion = np.stack([trace.si * w_si, trace.ap * w_ap], axis=1)
    rad = math.ceil(2 * tumour.r_max / fine)
    y0, y1 = max(ij[1] - rad, 0), min(ij[1] + rad + 1, anat.static.shape[0])
    x0, x1 = max(ij[0] - rad, 0), min(ij[0] + rad + 1, anat.static.shape[1])
    rows, cols = np.ogrid[y0:y1, x0:x1]
    ring = ((rows - ij[1]) ** 2 + (cols - ij[0]) ** 2 <= rad * rad) & anat.masks[site][y0:y1, x0:x1]
    window = anat.static[y0:y1, x0:x1, 0]
    ref = anat.levels["liver"] if site == "lung" or not ring.any() else float(np.median(window[ring]))
    level = ref * p.tumour_contrast
    tex_half = math.ceil(1.2 * tumour.r_max / FINE_MM) + 2
    tum_tex = 1 + 0.06 * power_law_noise((2 * tex_half + 1,) * 2, FINE_MM, 2.0, tum)
    maps = _scanner_maps(p, anat, scan)
    sc = p.scanner

    t = np.arange(count) / rate
    si_norm = (trace.si - trace.si.min()) / max(float(np.ptp(trace.si)), 1e-9)
    z = (
        p.slice_start_frac * tumour.depth
        + p.through_plane_mm * (si_norm - si_norm[0])
        + p.slice_drift_mm * t / max(t[-1], 1e-9)
    )
    angle = np.deg2rad(p.tumour_rotation_deg) * np.clip(
        trace.si / max(p.breathing.amplitude_mm, 1e-3), -0.5, 2
    )
    gain = 1 + sc.gain_drift * scan.choice([-1.0, 1.0]) * t / max(t[-1], 1e-9)
    heart_phase = scan.uniform(0, 2 * np.pi)

    # The inverse warp is solved on the output grid (in fine canvas pixels) and interpolated up.
    oy, ox = ((np.mgrid[0:n, 0:n] + 0.5) * s - 0.5).astype(np.float32)
    oy += pad_px
    w_out = cv2.remap(anat.w_motion, ox, oy, cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
    frames = np.empty((count, n, n), np.uint16)
    labels = np.zeros((count, n, n), np.uint8)
    centres = np.empty((count, 2))
    body_any = np.zeros((n, n), bool)
    half = tumour.r_max / fine + 2
    for k in range(count):
        si_px, ap_px = float(trace.si[k]) / fine, float(trace.ap[k]) / fine
        src_x, src_y = ox + ap_px * w_out[..., 1], oy - si_px * w_out[..., 0]
        for _ in range(2):  # fixed-point inverse of the forward field p -> p + (-AP w_ap, SI w_si)
            w = cv2.remap(anat.w_motion, src_x, src_y, cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
            src_x, src_y = ox + ap_px * w[..., 1], oy - si_px * w[..., 0]
        src_x = cv2.resize(src_x, (nf, nf), interpolation=cv2.INTER_LINEAR)
        src_y = cv2.resize(src_y, (nf, nf), interpolation=cv2.INTER_LINEAR)
        ch = cv2.remap(anat.static, src_x, src_y, cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)

        # The tumour at this frame's position, angle and slice offset, drawn on the fine grid.
        cx = float(centre[0] - motion[k, 1]) / fine - 0.5
        cy = float(centre[1] + motion[k, 0]) / fine - 0.5 - pad_px
        centres[k] = ((cx + 0.5) / s - 0.5, (cy + 0.5) / s - 0.5)
        xa, xb = max(0, int((cx - half) // s) * s), min(nf, math.ceil((cx + half + 1) / s) * s)
        ya, yb = max(0, int((cy - half) // s) * s), min(nf, math.ceil((cy + half + 1) / s) * s)
        px = (np.arange(xa, xb, dtype=np.float32)[None, :] - np.float32(cx)) * np.float32(fine)
        py = (np.arange(ya, yb, dtype=np.float32)[:, None] - np.float32(cy)) * np.float32(fine)
        ca, sa = math.cos(angle[k]), math.sin(angle[k])
        lx, ly = ca * px + sa * py, -sa * px + ca * py
        frac = tumour.fraction(lx, ly, float(z[k]), p.slice_thickness_mm)
        tx = cv2.remap(
            tum_tex,
            lx / FINE_MM + tex_half,
            ly / FINE_MM + tex_half,
            cv2.INTER_LINEAR,
            borderMode=cv2.BORDER_REFLECT,
        )
        patch = ch[ya:yb, xa:xb]
        patch[..., 0] += (level * tx - patch[..., 0]) * frac
        patch[..., 1] *= 1 - frac
        out = cv2.resize(ch, (n, n), interpolation=cv2.INTER_AREA)  # box average: partial volume
        labels[k, ya // s : yb // s, xa // s : xb // s] = (
            cv2.resize(frac, ((xb - xa) // s, (yb - ya) // s), interpolation=cv2.INTER_AREA) >= 0.5
        )
        body_any |= out[..., 3] > 0

        # The scanner: banding, shading, flow ghosts, Rician noise with a varying sigma, 16 bits.
        phi = maps.phase + sc.susceptibility * out[..., 2] - 0.5
        band = 1 - sc.band_depth * np.exp(-0.5 * ((phi - np.round(phi)) / sc.band_width) ** 2)
        shade = maps.shade * band * gain[k]
        pulse = 0.5 + 0.5 * math.cos(2 * np.pi * sc.heart_hz * t[k] + heart_phase)
        signal = shade * out[..., 0] + _ghosts(shade * out[..., 1], sc, pulse, float(t[k]), noise)
        re = signal.real + maps.sigma * noise.standard_normal((n, n), dtype=np.float32)
        im = signal.imag + maps.sigma * noise.standard_normal((n, n), dtype=np.float32)
        frames[k] = np.clip(np.sqrt(re * re + im * im) * sc.signal_counts + 0.5, 0, 65535).astype(np.uint16)

    if not labels[0].any():
        raise ValueError("the first frame shows no target (slice too thick or too far from the tumour)")
    return FamilyBCase(
        frames=frames,
        labels=labels,
        params=p,
        seed=seed,
        tumour_site=site,
        motion_mm=motion,
        centre_px=centres,
        slice_offset_mm=z,
        label_area_mm2=tumour.labelled_area_mm2(z, p.slice_thickness_mm),
        breath_hold=trace.hold,
        noise_sigma=maps.sigma * np.float32(sc.signal_counts),
        body_any=body_any,
        metadata={"tumour_level": level, "tumour_r0_mm": tumour.r0, "tumour_depth_mm": tumour.depth},
    )


# --------------------------------------------------------------------------- output


def family_b_case_seeds(n_cases: int) -> list[tuple[str, int, np.random.SeedSequence]]:
    """(case id, render seed, parameter seed sequence) of the first ``n_cases`` of family B."""
    seqs = np.random.SeedSequence(FAMILY_B_SEED).spawn(n_cases)
    return [
        (f"{CASE_PREFIX}{i + 1:03d}", int(q.generate_state(1)[0]), q.spawn(1)[0]) for i, q in enumerate(seqs)
    ]


def save_family_b_case(out_dir: Path, case_id: str, case: FamilyBCase, truth: dict[str, object]) -> Path:
    """Write ``case`` as the TrackRAD case folder ``out_dir/case_id``, pixel spacing included."""
    p = case.params
    path = write_trackrad_case(
        out_dir,
        case_id,
        case.frames,
        case.labels[0],
        p.frame_rate_hz,
        case.labels,
        b_field_strength_t=p.field_strength_t,
        scanned_region=p.region,
        spacing_mm=(p.pixel_mm, p.pixel_mm),
    )
    (path / "synthetic.json").write_text(json.dumps(truth))
    logger.info("wrote %s (%s, %.2f mm, %d frames)", path, case.tumour_site, p.pixel_mm, p.n_frames)
    return path


def write_family_b_preview(case: FamilyBCase, path_png: Path) -> Path:
    """A contact sheet of the case's frames with the ground truth outlined."""
    p = case.params
    caption = (
        f"family B {p.region}/{case.tumour_site}, {p.field_strength_t:g} T, {p.pixel_mm:.2f} mm, "
        f"{p.frame_rate_hz:g} Hz, SNR {p.scanner.snr:.0f}, seed {case.seed}"
    )
    return write_contact_sheet(case.frames, case.labels, path_png, caption=caption)


def write_family_b_cases(
    out_dir: Path, n_cases: int, progress: bool = True, preview: bool = False
) -> list[Path]:
    """Write the first ``n_cases`` of family B (validation only) as TrackRAD case folders ``B001``...

    Each folder also holds ``synthetic.json`` (seed, parameters, true motion, slice offsets,
    breath-hold and empty frames) and, with ``preview``, ``preview.png``; TrackRAD readers ignore both.
    """
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    paths = []
    for case_id, seed, param_seed in tqdm(
        family_b_case_seeds(n_cases), desc="family B", disable=not progress
    ):
        params = random_family_b_params(np.random.default_rng(param_seed))
        case = generate_family_b_case(params, seed)
        truth = {
            "set": "family_b_validation",
            "seed": seed,
            "tumour_site": case.tumour_site,
            "params": asdict(params),
            "spacing_mm": params.pixel_mm,
            "motion_mm": case.motion_mm.round(4).tolist(),
            "motion_convention": "(SI, AP) mm; SI + inferior (+row), AP + anterior (-column)",
            "slice_offset_mm": case.slice_offset_mm.round(3).tolist(),
            "breath_hold_frames": np.nonzero(case.breath_hold)[0].tolist(),
            "empty_label_frames": int((~case.labels.any(axis=(1, 2))).sum()),
        }
        path = save_family_b_case(out_dir, case_id, case, truth)
        if preview:
            write_family_b_preview(case, path / "preview.png")
        paths.append(path)
    return paths
