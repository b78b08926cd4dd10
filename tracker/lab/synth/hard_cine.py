"""The "hard" synthetic cine-MRI set: motion and appearance the flow engine does not simply invert.

The easy generator (:mod:`tracker.lab.synth.cine_mri`) warps one static image with
one smooth field, which is exactly what optical flow inverts, and the engines'
defaults were tuned on it. This generator reuses its anatomy and tumour shapes
but breaks each of those assumptions, as real MR-linac cine does:

* **Sliding boundaries.** The lung slides along the diaphragm and liver: its
  superior-inferior (and AP) displacement is a fraction ``sliding`` of the
  liver's, with a jump over ~2 px at the lung-liver interface instead of a
  smooth transition.
* **Through-plane motion.** The tumour is a 3-D body ``tumour_depth_mm`` thick
  (semi-axis) and the slice moves through it by up to ``through_plane_mm``
  with breathing (left-right motion) plus a slow drift: its cross-section
  grows, shrinks, changes shape (the outline's harmonics change with depth),
  loses contrast at its edge (partial volume) and can leave the slice
  altogether (empty ground truth).
* **Appearance change.** Inflow (bright blood and fluid pulsing with the heart),
  a larger intensity drift with a random walk, and bowel-gas pockets in the
  abdomen that appear, grow and vanish over seconds.
* **Irregular breathing.** The easy set's irregular trace (varying period and
  amplitude, deep breaths, pauses) plus a stronger baseline drift, coughs
  (sharp 0.3-0.6 s excursions) and breath-holds (5-15 s at inhale or exhale),
  sampled at 1-8 Hz, so coughs alias at low rates as they do on a scanner.

Ground truth is exact by construction: the label is the drawn cross-section
(soft outline >= 0.5) in output coordinates.

Seeds are split: the **tuning** set (root seed :data:`TUNING_SEED`, case ids
``T001``...) is the only one defaults may be tuned on; the **validation** set
(root seed :data:`VALIDATION_SEED`, ``V001``...) is for reporting only.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path

import cv2
import numpy as np
from tqdm import tqdm

from tracker.lab.synth.acquisition import acquire, signal_scale
from tracker.lab.synth.breathing import breathing_trace
from tracker.lab.synth.cine_mri import CineCase, CineCaseParams, random_case_params, save_case
from tracker.lab.synth.motion import Warp, field_motion, inhale_phase
from tracker.lab.synth.phantom import PAD, SPACING_MM, Anatomy, build_anatomy, noise_field
from tracker.lab.synth.tumour import place_tumour, tumour_shape

TUNING_SEED = 15_001
VALIDATION_SEED = 15_002
SETS = {"tuning": (TUNING_SEED, "T"), "validation": (VALIDATION_SEED, "V")}
_FINE_HZ = 20.0  # events (coughs) are modelled on this grid and then sampled at the frame rate


@dataclass(frozen=True)
class HardCineParams:
    """What makes one hard case hard; :func:`random_hard_params` draws these."""

    base: CineCaseParams
    sliding: float = 0.6  # lung displacement / liver displacement across the interface
    through_plane_mm: float = 4.0  # peak-to-peak slice motion through the tumour
    tumour_depth_mm: float = 8.0  # tumour semi-axis across the slice
    inflow: float = 0.25  # relative swing of bright blood/fluid signal with the heart
    gas_pockets: int = 2  # bowel gas pockets over the sequence (abdomen only)
    gain_drift: float = 0.15  # intensity drift over the sequence (fraction)
    baseline_drift_mm: float = 4.0  # extra SI baseline drift over the sequence
    coughs: int = 1
    breath_holds: int = 1

    def __post_init__(self) -> None:
        if not 0.0 <= self.sliding <= 1.0:
            raise ValueError(f"sliding must lie in [0, 1], got {self.sliding}")
        if self.tumour_depth_mm <= 0 or self.through_plane_mm < 0:
            raise ValueError("tumour_depth_mm must be positive and through_plane_mm >= 0")
        if min(self.gas_pockets, self.coughs, self.breath_holds) < 0:
            raise ValueError("gas_pockets, coughs and breath_holds must be >= 0")


def random_hard_params(rng: np.random.Generator) -> HardCineParams:
    base = random_case_params(rng)
    # Keep replays short: 270-360 px, 60-120 frames, 1-8 Hz as on the scanners.
    base = CineCaseParams(
        **{
            **asdict(base),
            "breathing": base.breathing,
            "size_px": int(rng.integers(270, 361)),
            "n_frames": int(rng.integers(60, 121)),
            "tumour_diameter_mm": float(np.exp(rng.uniform(np.log(10.0), np.log(30.0)))),
        }
    )
    radius = base.tumour_diameter_mm / 2
    return HardCineParams(
        base=base,
        sliding=float(rng.uniform(0.4, 0.8)),
        through_plane_mm=float(rng.uniform(2.0, 8.0)),  # left-right motion is the smallest axis
        tumour_depth_mm=float(radius * rng.uniform(0.7, 1.2)),
        inflow=float(rng.uniform(0.1, 0.4)),
        gas_pockets=int(rng.integers(0, 4)),
        gain_drift=float(rng.uniform(0.05, 0.25)),
        baseline_drift_mm=float(rng.uniform(1.0, 6.0)),
        coughs=int(rng.integers(0, 3)),
        breath_holds=int(rng.integers(0, 2)),
    )


def hard_breathing(p: HardCineParams, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """(T, 2) SI/AP trace (mm) at the frame times and (T,) through-plane offset (mm)."""
    rate, n = p.base.frame_rate_hz, p.base.n_frames
    duration = n / rate
    fine = breathing_trace(duration + 1.0, _FINE_HZ, rng, p.base.breathing)
    t = np.arange(len(fine)) / _FINE_HZ
    si, ap = fine[:, 0].copy(), fine[:, 1].copy()
    amp = max(p.base.breathing.amplitude_mean_mm, 1.0)
    for _ in range(p.breath_holds):  # hold at the current position (inhale or exhale) for 5-15 s
        start = rng.uniform(0, max(duration - 5.0, 0.1))
        stop = start + rng.uniform(5.0, 15.0)
        inside = (t >= start) & (t < stop)
        if inside.any():
            k0 = int(np.argmax(inside))
            si[inside] = si[k0] + 0.1 * (t[inside] - start)  # a slow creep while holding
            ap[inside] = ap[k0]
    for _ in range(p.coughs):  # a sharp excursion, mostly superior-inferior
        at, width = rng.uniform(0, duration), rng.uniform(0.3, 0.6)
        bump = np.exp(-0.5 * ((t - at) / (width / 2.5)) ** 2)
        si += rng.uniform(0.6, 1.2) * amp * bump * rng.choice([-1.0, 1.0])
        ap += 0.3 * amp * bump
    si += p.baseline_drift_mm * (t / max(t[-1], 1e-6)) * rng.choice([-1.0, 1.0])
    # Left-right (through-plane) motion follows breathing; the slice also drifts slowly.
    lr = (si - si.min()) / max(np.ptp(si), 1e-6) - 0.5
    through = p.through_plane_mm * (lr + 0.3 * np.sin(2 * np.pi * t / rng.uniform(20, 60)))
    frames_t = np.arange(n) / rate
    trace = np.stack([np.interp(frames_t, t, si), np.interp(frames_t, t, ap)], axis=1)
    through = np.interp(frames_t, t, through)
    return trace, through - through[0]  # the prompted frame cuts the tumour through its middle


def _sliding_patterns(anat: Anatomy, sliding: float) -> np.ndarray:
    """The field's patterns with the lung's SI/AP motion cut to ``sliding`` x across its boundary."""
    lung = cv2.GaussianBlur(anat.masks["lung"].astype(np.float32), (0, 0), 1.0)
    factor = 1.0 - (1.0 - sliding) * lung
    out = anat.patterns.copy()
    out[..., 0] *= factor
    out[..., 1] *= factor
    return out


def _gas_field(
    anat: Anatomy, p: HardCineParams, rng: np.random.Generator
) -> list[tuple[np.ndarray, float, float]]:
    """Gas pockets in the abdomen: (Gaussian footprint on the canvas, onset s, duration s)."""
    abdomen = anat.masks["abdomen"]
    ys, xs = np.nonzero(abdomen)
    pockets = []
    duration = p.base.n_frames / p.base.frame_rate_hz
    if len(ys) == 0:
        return pockets
    yy, xx = np.mgrid[0 : abdomen.shape[0], 0 : abdomen.shape[1]].astype(np.float32)
    for _ in range(p.gas_pockets):
        i = int(rng.integers(len(ys)))
        r = rng.uniform(4.0, 12.0)
        footprint = np.exp(-0.5 * ((xx - xs[i]) ** 2 + (yy - ys[i]) ** 2) / r**2) * abdomen
        pockets.append((footprint.astype(np.float32), rng.uniform(0, duration), rng.uniform(3.0, 12.0)))
    return pockets


def _tumour_level(
    anat: Anatomy, site: str, centre: tuple[float, float], p: CineCaseParams, rng: np.random.Generator
) -> float:
    lv = anat.levels
    x, y = round(centre[0]), round(centre[1])
    patch = anat.image[max(0, y - 20) : y + 21, max(0, x - 20) : x + 21]
    bg = float(np.median(patch)) if patch.size else lv["liver"]
    if site == "lung":
        return lv["liver"] * (rng.uniform(0.6, 0.8) if p.low_contrast else rng.uniform(0.9, 1.4))
    if p.low_contrast:
        return bg * rng.uniform(1.1, 1.2)
    return bg * (rng.uniform(0.5, 0.7) if rng.random() < 0.3 else rng.uniform(1.35, 1.8))


def generate_hard_case(p: HardCineParams, seed: int) -> CineCase:
    """Render one hard case; the same ``(params, seed)`` always gives the same arrays."""
    rng = np.random.default_rng(seed)
    b = p.base
    n, count, rate = b.size_px, b.n_frames, b.frame_rate_hz
    trace, through = hard_breathing(p, rng)
    anat = build_anatomy(n, b.region, rng)
    patterns = _sliding_patterns(anat, p.sliding)
    anat.patterns = patterns
    radius_fn, r0, _ = tumour_shape(b.tumour_diameter_mm / SPACING_MM, rng)
    alt_amps = rng.uniform(0.0, 0.2, len(radius_fn[0])) / radius_fn[0] ** 0.7  # the outline at depth
    site, centre = place_tumour(anat, b.region, b.tumour_diameter_mm, b.low_contrast, trace, rng)
    level = _tumour_level(anat, site, centre, b, rng)
    texture = (1.0 + 0.06 * noise_field(anat.image.shape, 1.2, rng)).astype(np.float32)
    gas = _gas_field(anat, p, rng)
    bright = (anat.image > 1.7 * anat.levels["liver"]).astype(np.float32)

    t = np.arange(count) / rate
    heart_phase = rng.uniform(0, 2 * np.pi)
    motion = field_motion(patterns, centre, trace, t, anat.heart_hz, b.cardiac_amplitude_mm, heart_phase, 0.3)
    pulse = 0.5 * (1 + np.cos(2 * np.pi * anat.heart_hz * t + heart_phase + 1.0))
    phase = inhale_phase(trace, b.breathing.amplitude_mean_mm)
    walk = np.cumsum(rng.normal(0, 1, count))
    walk = walk / max(np.abs(walk).max(), 1e-6)
    gain = 1.0 + p.gain_drift * (0.6 * t / max(t[-1], 1e-6) * rng.choice([-1.0, 1.0]) + 0.4 * walk)
    scale, sigma = signal_scale(b.noise_sigma, rng)

    warp = Warp.over(patterns, n)
    gx, gy = warp.gx, warp.gy
    frames = np.empty((count, n, n), np.uint16)
    labels = np.zeros((count, n, n), np.uint8)
    half = int(np.ceil(r0 * 2.2 + 6))
    orders, amps, phases = radius_fn
    for k in range(count):
        src_x, src_y = warp.source(motion.amplitudes(k))
        source = anat.image
        for footprint, onset, length in gas:
            life = (t[k] - onset) / length
            if 0 < life < 1:
                source = source * (1.0 - 0.9 * np.sin(np.pi * life) * footprint)
        img = cv2.remap(source, src_x, src_y, cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
        flow_bright = cv2.remap(bright, src_x, src_y, cv2.INTER_LINEAR, borderMode=cv2.BORDER_CONSTANT)
        img *= 1.0 + p.inflow * (pulse[k] - 0.5) * flow_bright

        # The tumour's cross-section at this slice position, drawn in output coordinates.
        depth = float(through[k]) / p.tumour_depth_mm
        section = np.sqrt(max(0.0, 1.0 - depth * depth))
        cx, cy = centre[0] + motion.disp_x[k], centre[1] + motion.disp_y[k] - PAD
        if section > 0.05:
            x0, x1 = max(0, int(cx) - half), min(n, int(cx) + half + 1)
            y0, y1 = max(0, int(cy) - half), min(n, int(cy) + half + 1)
            px, py = gx[y0:y1, x0:x1] - cx, gy[y0:y1, x0:x1] - cy
            sc = 1.0 + b.tumour_deformation * phase[k]
            ang = -np.deg2rad(b.tumour_rotation_deg) * phase[k]
            lx = (np.cos(ang) * px - np.sin(ang) * py) / sc
            ly = (np.sin(ang) * px + np.cos(ang) * py) / sc
            theta, rho = np.arctan2(ly, lx), np.sqrt(lx * lx + ly * ly)
            mix = amps + (alt_amps - amps) * abs(depth)
            outline = 1.0 + (
                mix[:, None, None] * np.cos(orders[:, None, None] * theta[None] + phases[:, None, None])
            ).sum(0)
            soft = np.clip(0.5 + (r0 * section * outline - rho) / 1.2, 0.0, 1.0).astype(np.float32)
            tex = cv2.remap(
                texture,
                (lx + centre[0]).astype(np.float32),
                (ly + centre[1]).astype(np.float32),
                cv2.INTER_LINEAR,
            )
            under = img[y0:y1, x0:x1]
            contrast = min(1.0, 1.4 * section)  # partial volume near the tumour's edge
            tum = under + (level * tex - under) * contrast
            img[y0:y1, x0:x1] = under * (1 - soft) + tum * soft
            labels[k, y0:y1, x0:x1] = soft >= 0.5
        frames[k] = acquire(img, b.blur_sigma_px, anat.bias * (gain[k] * scale), sigma, rng)

    metadata: dict[str, object] = {"through_plane_mm": through.round(3).tolist()}
    return CineCase.from_canvas(b, seed, frames, labels, anat, motion, site, centre, trace, metadata)


def case_seeds(which: str, n_cases: int) -> list[tuple[str, int, np.random.SeedSequence]]:
    """(case id, render seed, parameter seed sequence) of the first ``n_cases`` of a set."""
    if which not in SETS:
        raise ValueError(f"unknown hard set {which!r}; choose one of {', '.join(SETS)}")
    root, prefix = SETS[which]
    seqs = np.random.SeedSequence(root).spawn(n_cases)
    return [(f"{prefix}{i + 1:03d}", int(s.generate_state(1)[0]), s.spawn(1)[0]) for i, s in enumerate(seqs)]


def write_hard_cases(out_dir: Path, which: str, n_cases: int, progress: bool = True) -> list[Path]:
    """Write the first ``n_cases`` of the tuning or validation set as TrackRAD case folders."""

    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    paths = []
    for case_id, seed, param_seed in tqdm(
        case_seeds(which, n_cases), desc=f"hard {which}", disable=not progress
    ):
        params = random_hard_params(np.random.default_rng(param_seed))
        case = generate_hard_case(params, seed)
        # TrackRAD names the thorax region "lung" (it picks the dose metric's sigma).
        region = "lung" if params.base.region == "thorax" else params.base.region
        truth = {
            "set": which,
            "seed": seed,
            "tumour_site": case.tumour_site,
            "params": asdict(params),
            "motion_mm": case.motion_mm.round(4).tolist(),
            "through_plane_mm": case.metadata["through_plane_mm"],
            "empty_label_frames": int((~case.labels.any(axis=(1, 2))).sum()),
        }
        paths.append(save_case(out_dir, case_id, case, region, truth))
    return paths
