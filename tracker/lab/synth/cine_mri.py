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

This module holds the case (parameters, result, generation, writing); the parts live beside it
and the hard set (:mod:`tracker.lab.synth.hard_cine`) shares them: :mod:`~tracker.lab.synth.phantom`
(the anatomy), :mod:`~tracker.lab.synth.tumour`, :mod:`~tracker.lab.synth.motion` (field amplitudes and
the inverse warp), :mod:`~tracker.lab.synth.acquisition` (blur, coil gain, noise) and
:mod:`~tracker.lab.synth.preview` (a montage to check a case by eye).
"""

from __future__ import annotations

import json
import logging
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import cv2
import numpy as np
from tqdm import tqdm  # imported here: only needed when writing

from tracker.io.trackrad import write_trackrad_case  # imported here: only needed when writing
from tracker.lab.synth.acquisition import acquire, signal_scale
from tracker.lab.synth.breathing import BreathingParams, breathing_trace, random_breathing_params
from tracker.lab.synth.motion import FieldMotion, Warp, field_motion, inhale_phase
from tracker.lab.synth.phantom import PAD, SPACING_MM, Anatomy, build_anatomy, smoothstep
from tracker.lab.synth.tumour import Tumour, insert_tumour, place_tumour, tumour_shape

logger = logging.getLogger(__name__)

REGIONS = ("thorax", "abdomen", "liver")
FIELD_STRENGTHS_T = (0.35, 1.5)


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
        return np.stack([-self.motion_mm[:, 1], self.motion_mm[:, 0]], axis=1) / SPACING_MM

    @classmethod
    def from_canvas(
        cls,
        params: CineCaseParams,
        seed: int,
        frames: np.ndarray,
        labels: np.ndarray,
        anat: Anatomy,
        motion: FieldMotion,
        site: str,
        centre: tuple[float, float],
        trace: np.ndarray,
        metadata: dict[str, object],
    ) -> CineCase:
        """A rendered case, with what was drawn on the padded canvas moved into the field of view."""
        n = params.size_px
        return cls(
            frames=frames,
            labels=labels,
            params=params,
            motion_mm=motion.motion_mm.astype(np.float64),
            seed=seed,
            tumour_site=site,
            tumour_centre_px=(float(centre[0]), float(centre[1] - PAD)),
            breathing_mm=trace,
            body_mask=anat.masks["body"][PAD : PAD + n].copy(),
            metadata=metadata,
        )


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


def generate_case(params: CineCaseParams, seed: int) -> CineCase:
    """Render one case; the same ``(params, seed)`` always gives the same arrays."""
    t_start = time.perf_counter()
    rng = np.random.default_rng(seed)
    n, t_count = params.size_px, params.n_frames
    rate = params.frame_rate_hz
    trace = breathing_trace(t_count / rate, rate, rng, params.breathing)[:t_count]
    anat = build_anatomy(n, params.region, rng)
    hp = n + 2 * PAD

    diameter = params.tumour_diameter_mm / SPACING_MM
    radius_fn, r0, offset = tumour_shape(diameter, rng)
    site, centre = place_tumour(
        anat, params.region, params.tumour_diameter_mm, params.low_contrast, trace, rng
    )
    # Farthest outline point from the centroid (the polar origin is offset from it).
    r_max = float(r0 * (1 + np.abs(radius_fn[1]).sum()) + np.hypot(*offset))
    tumour = Tumour(centre=centre, radius_fn=radius_fn, r0=r0, r_max=r_max, site=site)
    origin = np.array(centre) - offset  # polar origin such that the centroid lands on ``centre``
    soft = insert_tumour(anat, tumour, params.tumour_diameter_mm, params.low_contrast, origin, rng)

    # Field amplitudes per frame, normalised so the tumour follows the breathing trace.
    t = np.arange(t_count) / rate
    heart_phase = rng.uniform(0, 2 * np.pi)
    motion = field_motion(
        anat.patterns, centre, trace, t, anat.heart_hz, params.cardiac_amplitude_mm, heart_phase, 0.5
    )

    # Breathing-phase deformation of the tumour: scale and rotation grow with inhalation.
    phase = inhale_phase(trace, params.breathing.amplitude_mean_mm)
    scales = 1.0 + params.tumour_deformation * phase
    angles = np.deg2rad(params.tumour_rotation_deg) * phase

    drift_sign = 1.0 if rng.random() < 0.5 else -1.0
    gain = 1.0 + params.intensity_drift * (
        drift_sign * t / max(t[-1], 1e-6) + 0.3 * np.sin(2 * np.pi * t / 47.0)
    )
    scale, sigma = signal_scale(params.noise_sigma, rng)

    warp = Warp.over(anat.patterns, n)
    gx, gy = warp.gx, warp.gy
    frames = np.empty((t_count, n, n), np.uint16)
    labels = np.zeros((t_count, n, n), np.uint8)
    # Patch (on output coordinates) in which the tumour's own transform replaces the field.
    blend_in, blend_out = r_max * 1.15 + 3.0, r_max * 1.15 + 12.0
    half = int(np.ceil(blend_out + 2))

    for k in range(t_count):
        src_x, src_y = warp.source(motion.amplitudes(k))

        # The tumour's similarity transform about its centroid, blended into the field.
        cx_out, cy_out = centre[0] + motion.disp_x[k], centre[1] + motion.disp_y[k] - PAD
        x0, x1 = max(0, int(cx_out) - half), min(n, int(cx_out) + half + 1)
        y0, y1 = max(0, int(cy_out) - half), min(n, int(cy_out) + half + 1)
        px, py = gx[y0:y1, x0:x1] - cx_out, gy[y0:y1, x0:x1] - cy_out
        cos_a, sin_a = np.cos(-angles[k]) / scales[k], np.sin(-angles[k]) / scales[k]
        tx = centre[0] + cos_a * px - sin_a * py
        ty = centre[1] + sin_a * px + cos_a * py
        w = 1.0 - smoothstep((np.sqrt(px * px + py * py) - blend_in) / (blend_out - blend_in))
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
    metadata: dict[str, object] = {"generation_s": elapsed, "hp": hp}
    return CineCase.from_canvas(params, seed, frames, labels, anat, motion, site, centre, trace, metadata)


# --------------------------------------------------------------------------- output


def save_case(out_dir: Path, case_id: str, case: CineCase, region: str, truth: dict[str, object]) -> Path:
    """Write ``case`` as the TrackRAD case folder ``out_dir/case_id`` with ``truth`` as ``synthetic.json``.

    ``region`` is the ``scanned_region`` recorded for TrackRAD readers; ``synthetic.json`` sits
    next to the TrackRAD files, which TrackRAD readers ignore.
    """

    params = case.params
    path = write_trackrad_case(
        out_dir,
        case_id,
        case.frames,
        case.labels[0],
        params.frame_rate_hz,
        labels=case.labels,
        b_field_strength_t=params.field_strength_t,
        scanned_region=region,
    )
    (path / "synthetic.json").write_text(json.dumps(truth))
    logger.info("wrote %s (%s, %s, %d frames)", path, region, case.tumour_site, params.n_frames)
    return path


def _case_id(index: int) -> str:
    return f"S{index + 1:03d}"


def write_cases(out_dir: Path, n_cases: int, seed: int, progress: bool = True) -> list[Path]:
    """Generate ``n_cases`` random cases and write them as TrackRAD case folders S001, S002, ...

    Each case also gets ``synthetic.json`` (the parameters, seed and true motion)
    next to the TrackRAD files; TrackRAD readers ignore it.
    """

    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    seeds = np.random.SeedSequence(seed).spawn(n_cases)
    paths: list[Path] = []
    for i in tqdm(range(n_cases), desc="synthetic cases", unit="case", disable=not progress):
        case_seed = int(seeds[i].generate_state(1)[0])
        params = random_case_params(np.random.default_rng(seeds[i].spawn(1)[0]))
        case = generate_case(params, case_seed)
        truth = {
            "seed": case_seed,
            "tumour_site": case.tumour_site,
            "tumour_centre_px": list(case.tumour_centre_px),
            "params": asdict(params),
            "motion_mm": case.motion_mm.round(4).tolist(),
            "motion_convention": "(SI, AP) mm; SI + inferior (+row), AP + anterior (-column)",
        }
        paths.append(save_case(out_dir, _case_id(i), case, params.region, truth))
    return paths
