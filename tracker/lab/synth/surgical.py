"""Synthetic laparoscopic video with instruments that enter, leave, cross and occlude.

Why: the overseer (:mod:`tracker.overseer`) exists because the scene
constellation of surgical video changes — instruments come and go — and it can
only be validated on sequences whose every frame has instance ground truth.
Real annotated surgical video cannot ship with the project, so this module
draws it:

* a textured tissue background (low-frequency colour variation, fat islands,
  vessels, fine grain) seen through a moving camera (smooth random translation
  of a larger canvas), with endoscope light fall-off (vignette) and specular
  highlights that sit on the tissue and flicker;
* instruments of several classes (``grasper``, ``hook``, ``scissors``,
  ``clipper``), each a dark shaft from a fixed insertion point outside the view
  plus a class-specific metallic tip; they are inserted, wander, may be
  retracted, and pass over one another (painter's order), so visible masks
  shrink, split and vanish under occlusion;
* ground truth for every frame: ``Annotations/<frame>.png`` palette PNGs whose
  index ``k`` is instance ``k`` (what :func:`tracker.io.readers.open_sequence`
  reads as a DAVIS sequence) and ``annotations.json`` in COCO format
  (uncompressed RLE segmentations, ``category_id`` naming the class and an
  ``instance_id`` per annotation linking it to the palette index).

Cost: a 320x240 frame takes ~2 ms to draw; 100 frames write in well under a
second plus JPEG/PNG encoding.
"""

from __future__ import annotations

import json
import logging
import math
from dataclasses import asdict, dataclass, field
from pathlib import Path

import cv2
import numpy as np
from PIL import Image

from tracker.lab.synth.surgical_hard import from_any_edge, hard_scene, occlude, shade, smoke_and_blur
from tracker.overseer.coco import ANNOTATIONS_FILE, rle_encode

logger = logging.getLogger(__name__)

CLASSES: tuple[str, ...] = ("grasper", "hook", "scissors", "clipper")
# Travel time (frames) of an insertion or a retraction between the border and the working position.
_TRAVEL_FRAMES = 6
_JPEG_QUALITY = 92


@dataclass(frozen=True)
class InstrumentPlan:
    """One instrument instance over the whole sequence (times in frames, positions in pixels)."""

    instance_id: int  # palette index and COCO instance_id (1..K)
    class_name: str
    insertion_xy: tuple[float, float]  # trocar point, outside the view: the shaft always points here
    work_xy: tuple[float, float]  # where the tip works once inserted
    enter_frame: int  # first frame of the insertion (the tip starts at the border); <= 0: in at start
    exit_frame: int | None  # first frame of the retraction; None: stays to the end
    z: int  # drawing order: higher is in front
    wander_px: float
    phase: float
    grey: float  # shaft brightness, jittered per instance


@dataclass(frozen=True)
class SurgicalParams:
    frames: int = 100
    height: int = 240
    width: int = 320
    classes: tuple[str, ...] = CLASSES
    n_instruments: int = 0  # 0: chosen from the number of frames (at least 4)
    camera_motion_px: float = 10.0  # amplitude of the camera's translation
    frame_rate_hz: float = 25.0
    hard: bool = False  # smoke, blur, shading, tissue occlusion, entries from any edge (surgical_hard)


@dataclass
class SurgicalSequence:
    """What :func:`write_sequence` wrote and the schedule behind it."""

    path: Path
    params: SurgicalParams
    instruments: list[InstrumentPlan] = field(default_factory=list)

    def class_of(self) -> dict[int, str]:
        return {p.instance_id: p.class_name for p in self.instruments}


# --------------------------------------------------------------------------- scene


def _smooth_noise(shape: tuple[int, int], sigma: float, rng: np.random.Generator) -> np.ndarray:
    n = cv2.GaussianBlur(rng.standard_normal(shape).astype(np.float32), (0, 0), sigma)
    return n / (float(np.abs(n).max()) + 1e-6)


def _tissue(h: int, w: int, rng: np.random.Generator) -> np.ndarray:
    """Float32 RGB in [0, 1]: pink-red tissue with fat islands, vessels and grain."""
    base = np.empty((h, w, 3), np.float32)
    low = _smooth_noise((h, w), max(h, w) / 10, rng)
    mid = _smooth_noise((h, w), max(h, w) / 40, rng)
    grain = _smooth_noise((h, w), 1.2, rng)
    base[..., 0] = 0.72 + 0.12 * low + 0.06 * mid  # red
    base[..., 1] = 0.30 + 0.08 * low + 0.05 * mid
    base[..., 2] = 0.28 + 0.05 * low + 0.04 * mid
    fat = _smooth_noise((h, w), max(h, w) / 25, rng) > 0.45
    fat = cv2.GaussianBlur(fat.astype(np.float32), (0, 0), 2.0)[..., None]
    base = base * (1 - 0.8 * fat) + np.array([0.85, 0.72, 0.40], np.float32) * 0.8 * fat
    vessels = np.zeros((h, w), np.uint8)
    for _ in range(max(4, (h * w) // 6000)):
        pts = [(rng.uniform(0, w), rng.uniform(0, h))]
        ang = rng.uniform(0, 2 * math.pi)
        for _ in range(8):
            ang += rng.normal(0, 0.4)
            step = rng.uniform(8, 20)
            pts.append((pts[-1][0] + step * math.cos(ang), pts[-1][1] + step * math.sin(ang)))
        cv2.polylines(vessels, [np.int32(pts)], False, 255, int(rng.integers(1, 3)), cv2.LINE_AA)
    v = cv2.GaussianBlur(vessels.astype(np.float32) / 255.0, (0, 0), 0.8)[..., None]
    base = base * (1 - 0.6 * v) + np.array([0.45, 0.05, 0.08], np.float32) * 0.6 * v
    base += 0.05 * grain[..., None]
    return np.clip(base, 0, 1)


def _plans(p: SurgicalParams, rng: np.random.Generator) -> list[InstrumentPlan]:
    """A schedule with entries, exits and crossings guaranteed whatever the seed.

    Instance 1 and 2 are in at the start (from opposite sides, so they cross);
    instance 1 is retracted around mid-sequence; later instances enter at random
    times and some leave again. Events keep a few frames from the sequence end
    so their delays can be measured.
    """
    n, h, w = p.frames, p.height, p.width
    k = p.n_instruments or max(4, 2 + n // 30)
    last = max(2, n - 10)
    plans: list[InstrumentPlan] = []
    depth = rng.permutation(k)
    for i in range(k):
        side = (-1.0 if i % 2 == 0 else 1.0) * (1 if rng.random() < 0.8 else -1)
        insertion = (
            w / 2 + side * rng.uniform(0.65, 0.85) * w,
            rng.uniform(-0.3, 1.3) * h,
        )
        work = (w / 2 + rng.uniform(-0.22, 0.22) * w, h / 2 + rng.uniform(-0.22, 0.22) * h)
        # The first two are in view from the start; the others are inserted later.
        enter = -_TRAVEL_FRAMES if i < 2 else int(rng.integers(max(1, n // 10), max(2, int(0.6 * n))))
        exit_frame: int | None = None
        if i == 0:
            exit_frame = int(rng.integers(int(0.3 * n), max(int(0.3 * n) + 1, int(0.6 * n))))
        elif i >= 2 and rng.random() < 0.5:
            start = enter + _TRAVEL_FRAMES + max(8, n // 5)
            if start < last:
                exit_frame = int(rng.integers(start, last + 1))
        plans.append(
            InstrumentPlan(
                instance_id=i + 1,
                class_name=p.classes[(i + int(rng.integers(0, len(p.classes)))) % len(p.classes)]
                if i >= len(p.classes)
                else p.classes[i % len(p.classes)],
                insertion_xy=(float(insertion[0]), float(insertion[1])),
                work_xy=(float(work[0]), float(work[1])),
                enter_frame=enter,
                exit_frame=exit_frame,
                z=int(depth[i]),
                wander_px=float(rng.uniform(0.03, 0.08) * min(h, w)),
                phase=float(rng.uniform(0, 2 * math.pi)),
                grey=float(rng.uniform(0.18, 0.30)),
            )
        )
    return plans


def _tip_position(plan: InstrumentPlan, t: int, hw: tuple[int, int]) -> tuple[float, float] | None:
    """Where the tip is at frame ``t`` (None when fully retracted), moving along the shaft axis."""
    ix, iy = plan.insertion_xy
    wx, wy = plan.work_xy
    wx += plan.wander_px * math.sin(0.11 * t + plan.phase)
    wy += plan.wander_px * math.cos(0.07 * t + 1.3 * plan.phase)
    if t < plan.enter_frame:
        return None
    insert_f = min(1.0, (t - plan.enter_frame) / _TRAVEL_FRAMES)
    out_f = 0.0
    if plan.exit_frame is not None and t >= plan.exit_frame:
        out_f = min(1.0, (t - plan.exit_frame) / _TRAVEL_FRAMES)
        if out_f >= 1.0:
            return None
    # Depth along the axis: 0 at the insertion point, 1 at the working position. The tip is at
    # the view's border at depth d0 (where the axis crosses the image rectangle).
    d0 = _border_depth((ix, iy), (wx, wy), hw)
    d = d0 + (1.0 - d0) * insert_f * (1.0 - out_f)
    return (ix + d * (wx - ix), iy + d * (wy - iy))


def _border_depth(a: tuple[float, float], b: tuple[float, float], hw: tuple[int, int]) -> float:
    """Fraction along a->b (a outside, b inside) where the segment enters the image, a little outside."""
    h, w = hw
    lo, hi = 0.0, 1.0
    for _ in range(30):
        mid = (lo + hi) / 2
        x, y = a[0] + mid * (b[0] - a[0]), a[1] + mid * (b[1] - a[1])
        if 0 <= x < w and 0 <= y < h:
            hi = mid
        else:
            lo = mid
    return max(0.0, lo - 0.02)


def _poly(points: list[tuple[float, float]]) -> np.ndarray:
    return np.round(np.asarray(points, np.float64)).astype(np.int32)


def _draw_instrument(
    canvas: np.ndarray, label: np.ndarray, plan: InstrumentPlan, tip: tuple[float, float], t: int
) -> None:
    """Draw shaft and class-specific tip in place; ``label`` gets the instance id where visible."""
    h, w = label.shape
    s = min(h, w)
    tx, ty = tip
    ix, iy = plan.insertion_xy
    ux, uy = tx - ix, ty - iy
    norm = math.hypot(ux, uy) or 1.0
    ux, uy = ux / norm, uy / norm  # forward (towards the tip)
    vx, vy = -uy, ux  # sideways
    half = 0.035 * s
    base = (tx - 0.12 * s * ux, ty - 0.12 * s * uy)  # where the shaft ends and the tip begins
    far = (ix - 0.1 * s * ux, iy - 0.1 * s * uy)
    shaft = _poly(
        [
            (base[0] + half * vx, base[1] + half * vy),
            (far[0] + half * vx, far[1] + half * vy),
            (far[0] - half * vx, far[1] - half * vy),
            (base[0] - half * vx, base[1] - half * vy),
        ]
    )
    parts: list[tuple[np.ndarray, tuple[float, float, float]]] = []
    g = plan.grey
    parts.append((shaft, (g, g, g * 1.05)))
    silver = (0.78, 0.78, 0.80)
    jl = 0.12 * s  # tip length
    open_a = 0.25 + 0.15 * math.sin(0.3 * t + plan.phase)

    def jaw(angle: float, length: float, width: float, colour: tuple[float, float, float]) -> None:
        c, sn = math.cos(angle), math.sin(angle)
        fx, fy = ux * c - uy * sn, uy * c + ux * sn
        px, py = -fy, fx
        parts.append(
            (
                _poly(
                    [
                        (base[0] + width * px, base[1] + width * py),
                        (base[0] + length * fx + 0.3 * width * px, base[1] + length * fy + 0.3 * width * py),
                        (base[0] + length * fx - 0.3 * width * px, base[1] + length * fy - 0.3 * width * py),
                        (base[0] - width * px, base[1] - width * py),
                    ]
                ),
                colour,
            )
        )

    if plan.class_name == "grasper":
        jaw(open_a, jl, 0.018 * s, silver)
        jaw(-open_a, jl, 0.018 * s, silver)
    elif plan.class_name == "scissors":
        jaw(0.12, jl * 1.1, 0.012 * s, (0.85, 0.85, 0.70))
        jaw(-0.05, jl * 1.1, 0.012 * s, (0.85, 0.85, 0.70))
    elif plan.class_name == "clipper":
        jaw(0.0, jl * 0.9, 0.03 * s, (0.35, 0.40, 0.60))
        parts.append(
            (
                _poly(
                    [
                        (base[0] + 0.6 * jl * ux + 0.006 * s * vx, base[1] + 0.6 * jl * uy + 0.006 * s * vy),
                        (
                            base[0] + 0.95 * jl * ux + 0.006 * s * vx,
                            base[1] + 0.95 * jl * uy + 0.006 * s * vy,
                        ),
                        (
                            base[0] + 0.95 * jl * ux - 0.006 * s * vx,
                            base[1] + 0.95 * jl * uy - 0.006 * s * vy,
                        ),
                        (base[0] + 0.6 * jl * ux - 0.006 * s * vx, base[1] + 0.6 * jl * uy - 0.006 * s * vy),
                    ]
                ),
                (0.90, 0.75, 0.25),
            ),
        )
    else:  # hook: a thin rod with a bent end
        jaw(0.0, jl, 0.008 * s, (0.70, 0.70, 0.72))
        end = (base[0] + jl * ux, base[1] + jl * uy)
        hook = _poly(
            [
                (end[0] - 0.008 * s * ux, end[1] - 0.008 * s * uy),
                (end[0] + 0.06 * s * vx, end[1] + 0.06 * s * vy),
                (end[0] + 0.06 * s * vx + 0.012 * s * ux, end[1] + 0.06 * s * vy + 0.012 * s * uy),
                (end[0] + 0.008 * s * ux, end[1] + 0.008 * s * uy),
            ]
        )
        parts.append((hook, (0.70, 0.70, 0.72)))
    for poly, colour in parts:
        m = np.zeros((h, w), np.uint8)
        cv2.fillPoly(m, [poly], 1)
        sel = m.astype(bool)
        canvas[sel] = colour
        label[sel] = plan.instance_id
    # A specular streak along the shaft (metal reflects the endoscope's light).
    streak = np.zeros((h, w), np.uint8)
    off = 0.3 * half
    cv2.line(
        streak,
        (round(base[0] + off * vx), round(base[1] + off * vy)),
        (round(far[0] + off * vx), round(far[1] + off * vy)),
        1,
        max(1, round(0.006 * s)),
    )
    sel = streak.astype(bool) & (label == plan.instance_id)
    canvas[sel] = np.minimum(1.0, canvas[sel] + 0.35)


def render_sequence(params: SurgicalParams, seed: int) -> tuple[np.ndarray, np.ndarray, list[InstrumentPlan]]:
    """Frames (T, H, W, 3) uint8 RGB, instance label maps (T, H, W) uint8, and the schedule."""
    rng = np.random.default_rng(seed)
    h, w, n = params.height, params.width, params.frames
    pad = math.ceil(params.camera_motion_px * 2) + 4
    tissue = _tissue(h + 2 * pad, w + 2 * pad, rng)
    plans = _plans(params, rng)
    scene = None
    if params.hard:
        plans = from_any_edge(plans, (h, w), seed)
        scene = hard_scene(seed, (h, w), n, [p.instance_id for p in plans])
    previous = (0.0, 0.0)
    yy, xx = np.mgrid[:h, :w].astype(np.float32)
    r2 = ((xx - w / 2) / (0.75 * w)) ** 2 + ((yy - h / 2) / (0.75 * h)) ** 2
    vignette = np.clip(1.0 - 0.55 * r2, 0.25, 1.0)[..., None]
    spec_xy = rng.uniform([pad, pad], [w + pad, h + pad], size=(max(3, (h * w) // 8000), 2))
    freq = rng.uniform(0.02, 0.05, size=2)
    phases = rng.uniform(0, 2 * math.pi, size=4)
    frames = np.empty((n, h, w, 3), np.uint8)
    labels = np.zeros((n, h, w), np.uint8)
    for t in range(n):
        cx = params.camera_motion_px * (
            math.sin(freq[0] * t * 2 * math.pi + phases[0]) + 0.3 * math.sin(0.21 * t + phases[2])
        )
        cy = params.camera_motion_px * (
            math.sin(freq[1] * t * 2 * math.pi + phases[1]) + 0.3 * math.cos(0.17 * t + phases[3])
        )
        m = np.float32([[1, 0, -(pad + cx)], [0, 1, -(pad + cy)]])
        canvas = cv2.warpAffine(tissue, m, (w, h), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REFLECT)
        spec = np.zeros((h, w), np.uint8)
        for k, (sx, sy) in enumerate(spec_xy):
            if math.sin(0.5 * t + k) > -0.3:  # flicker: a highlight comes and goes with the view angle
                c = (round(sx - pad - cx), round(sy - pad - cy))
                cv2.ellipse(
                    spec, c, (int(rng.integers(2, 5)), int(rng.integers(1, 3))), float(k * 37), 0, 360, 1, -1
                )
        canvas[spec.astype(bool)] = 1.0
        tissue_view = canvas.copy() if scene is not None else None
        label = labels[t]
        for plan in sorted(plans, key=lambda p: p.z):
            tip = _tip_position(plan, t, (h, w))
            if tip is not None:
                _draw_instrument(canvas, label, plan, tip, t)
        if scene is not None and tissue_view is not None:
            shade(canvas, label, scene, t)
            occlude(canvas, label, tissue_view, scene, t)
            canvas = smoke_and_blur(canvas, scene, t, (cx - previous[0], cy - previous[1]))
        previous = (cx, cy)
        img = canvas * vignette
        img += rng.normal(0, 0.012, size=img.shape).astype(np.float32)
        frames[t] = np.clip(img * 255.0, 0, 255).astype(np.uint8)
    return frames, labels, plans


# --------------------------------------------------------------------------- output


def coco_annotations(
    labels: np.ndarray, plans: list[InstrumentPlan], classes: tuple[str, ...], file_names: list[str]
) -> dict[str, object]:
    """COCO instance annotations of every frame, with ``instance_id`` linking to the palette index."""
    class_of = {p.instance_id: p.class_name for p in plans}
    cat_id = {name: i + 1 for i, name in enumerate(classes)}
    n, h, w = labels.shape
    images = [
        {"id": t, "file_name": file_names[t], "height": h, "width": w, "frame_index": t} for t in range(n)
    ]
    annotations = []
    for t in range(n):
        for k in np.unique(labels[t]):
            if k == 0:
                continue
            m = labels[t] == k
            ys, xs = np.nonzero(m)
            annotations.append(
                {
                    "id": len(annotations) + 1,
                    "image_id": t,
                    "category_id": cat_id[class_of[int(k)]],
                    "instance_id": int(k),
                    "segmentation": rle_encode(m),
                    "area": int(m.sum()),
                    "bbox": [
                        int(xs.min()),
                        int(ys.min()),
                        int(xs.max() - xs.min() + 1),
                        int(ys.max() - ys.min() + 1),
                    ],
                    "iscrowd": 0,
                }
            )
    return {
        "info": {"description": "tracker synth surgical", "version": "1"},
        "images": images,
        "annotations": annotations,
        "categories": [{"id": cat_id[c], "name": c, "supercategory": "instrument"} for c in classes],
        "instances": [{"instance_id": p.instance_id, "category": p.class_name} for p in plans],
    }


def write_sequence(
    out_dir: Path | str,
    frames: int = 100,
    seed: int = 0,
    *,
    height: int = 240,
    width: int = 320,
    n_instruments: int = 0,
    camera_motion_px: float = 10.0,
    hard: bool = False,
) -> SurgicalSequence:
    """Render one sequence and write it as a DAVIS-layout folder with COCO annotations.

    Layout: ``JPEGImages/00000.jpg``, ``Annotations/00000.png`` (palette,
    index = instance id), ``annotations.json`` (COCO) and ``meta.json`` (the
    schedule: classes, entry and exit frames of every instance).
    """
    if frames < 2:
        raise ValueError(f"need at least 2 frames, got {frames}")
    if height < 32 or width < 32:
        raise ValueError(f"frames must be at least 32x32, got {height}x{width}")
    out = Path(out_dir)
    params = SurgicalParams(
        frames=frames,
        height=height,
        width=width,
        n_instruments=n_instruments,
        camera_motion_px=camera_motion_px,
        hard=hard,
    )
    images, labels, plans = render_sequence(params, seed)
    (out / "JPEGImages").mkdir(parents=True, exist_ok=True)
    (out / "Annotations").mkdir(parents=True, exist_ok=True)
    from tracker.io.readers import davis_palette

    palette = davis_palette().astype(np.uint8).ravel().tolist()
    names = [f"{t:05d}" for t in range(frames)]
    for t, name in enumerate(names):
        Image.fromarray(images[t]).save(out / "JPEGImages" / f"{name}.jpg", quality=_JPEG_QUALITY)
        png = Image.fromarray(labels[t], mode="P")
        png.putpalette(palette)
        png.save(out / "Annotations" / f"{name}.png")
    coco = coco_annotations(labels, plans, params.classes, [f"JPEGImages/{n}.jpg" for n in names])
    (out / ANNOTATIONS_FILE).write_text(json.dumps(coco))
    meta = {"seed": seed, "params": asdict(params), "instruments": [asdict(p) for p in plans]}
    (out / "meta.json").write_text(json.dumps(meta, indent=1))
    logger.info("wrote %d surgical frames with %d instruments to %s", frames, len(plans), out)
    return SurgicalSequence(out, params, plans)


# --------------------------------------------------------------------------- CLI hook
