"""The ``flow`` engine: classical, weight-free tracking by dense optical flow.

Each object's mask is carried from frame to frame by dense optical flow (OpenCV
DIS by default, Farneback optionally). Two estimates are made per object and
frame and blended pixel by pixel:

* the **anchored** estimate: flow from the current frame to the frame on which
  the object was last prompted (its *anchor*), used to warp the prompt mask.
  Because it never chains, its error does not accumulate over a long stream;
  it fails only when the current frame looks too different from the anchor
  (large deformation, out-of-plane motion, occlusion, a moving camera);
* the **short-term** estimate: flow from the current frame to the previous one,
  used to warp the previous answer. It copes with appearance change but drifts
  when chained on its own.

Each estimate is weighted by its photometric consistency (how well the warped
reference image matches the current one, locally), so the anchor dominates
while it still registers and the short-term estimate takes over where it does
not. Every flow field is computed once per frame and shared by all objects with
the same reference frame (objects prompted on the same frame share an anchor).

Cost per frame: one flow to the previous frame plus one per distinct anchor
frame still referenced (so one object costs two flows). Memory per session is
bounded: the anchor frames still referenced, the previous frame and each
object's anchor and previous masks, whatever the stream length.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Literal

import cv2
import numpy as np

from tracker.engines.base import PROMPT_CAPABILITIES, Engine, EngineInfo, EngineSession
from tracker.engines.calibration import SelfCalibration
from tracker.engines.imaging import drop_islands, noise_sigma, prompt_to_mask, target_contrast, to_gray8
from tracker.options import check_values, opt
from tracker.options import parse_options as parse_into
from tracker.types import (
    Frame,
    Modality,
    ObjectTrack,
    PromptError,
    PromptUpdate,
    SessionConfig,
    UpdateAction,
)

logger = logging.getLogger(__name__)

ENGINE_VERSION = "0.1.0"

_DIS_PRESETS = {
    "ultrafast": cv2.DISOPTICAL_FLOW_PRESET_ULTRAFAST,
    "fast": cv2.DISOPTICAL_FLOW_PRESET_FAST,
    "medium": cv2.DISOPTICAL_FLOW_PRESET_MEDIUM,
}
OWNER = "flow engine"  # names the options in error messages


@dataclass(frozen=True)
class FlowSettings:
    """The engine's validated options (see :func:`parse_options`); each field is one option."""

    algorithm: Literal["dis", "farneback"] = opt("dis", help="optical flow: DIS or Farneback")
    dis_preset: str = opt("medium", choices=tuple(_DIS_PRESETS), help="DIS speed/quality preset")
    # Variational refinement iterations; -1: the preset's own (5 for medium). 0 by default:
    # on synthetic cine it costs ~1.9 ms per flow (of ~4.7) with no measurable accuracy gain.
    dis_refinement: int = opt(0, minimum=-1, help="-1: the preset's own")
    # Prior trust in the anchor over the short-term estimate (tuned on synth cine).
    anchor_weight: float = opt(2.0, minimum=0, help="0 disables the anchored estimate")
    # Grey-level residual at which a warp's local confidence halves; results were flat
    # between 6 and 25 on synthetic cine, so this is not a sensitive knob.
    consistency_scale: float = opt(12.0, exclusive_minimum=0, help="grey levels")
    # Flow runs on frames downscaled to this longer side (masks stay full size): keeps
    # 1080p video near 480x270 cost; cine frames (270-450 px) are never scaled. On the
    # DAVIS clips 480 was ~30 % faster than 640 at equal or better J.
    max_side: int = opt(480, minimum=32, help="pixels")
    box_mode: Literal["grabcut", "box"] = opt("grabcut", help="box: use the filled box as the mask")
    # Expected object radius around a click; also the fallback disk radius.
    point_radius: float = opt(10.0, exclusive_minimum=0, help="pixels")
    # Parts of a propagated mask smaller than this fraction of its largest part are
    # flow specks, not object (see drop_islands); 0 keeps every part.
    min_island_fraction: float = opt(0.05, minimum=0, exclusive_maximum=1)
    # Tracking confidence: forward-backward flow error (px, full resolution) at which the
    # confidence halves; 0 turns the check off (one flow less per frame, photometric only).
    fb_scale_px: float = opt(1.0, minimum=0, help="pixels; 0: no forward-backward check")
    # Cine-MRI targets leave the slice (through-plane motion): when the tracked region's
    # contrast against its surroundings falls under this fraction of the anchor frame's, the
    # target is reported absent (empty mask) while its region is still carried along; it is
    # present again above this fraction + ABSENCE_HYSTERESIS. Tuned on the tuning set of
    # synthetic cine (absent frames <= 0.35, present frames >= 0.71). 0: never absent.
    absence_ratio: float = opt(0.5, minimum=0, exclusive_maximum=1, help="0: never report absence")
    # The check needs a target that stands out: anchor contrast at least this many times the
    # std of its surroundings (on the tuning set, fainter targets' ratios swing from 0.1 to 1).
    distinct_contrast: float = opt(1.0, minimum=0, help="anchor contrast / surrounding std")
    # Presence and forward-backward error relative to the session's first frames after each
    # prompt (tracker.engines.calibration): what a scan's noise and texture leave in every
    # frame then lowers neither. 0: absolute scores.
    calibration_frames: int = opt(8, minimum=0, help="frames; 0: no self-calibration")

    def __post_init__(self) -> None:
        check_values(self, owner=OWNER)


def parse_options(options: Mapping[str, str], base: FlowSettings | None = None) -> FlowSettings:
    """Validate string options into :class:`FlowSettings` (options not given: ``base``'s values).

    ValueError names the bad option and what it allows (see :func:`option_help`).
    """
    return parse_into(FlowSettings, options, owner=OWNER, base=base)


# -- engine ---------------------------------------------------------------------------


class FlowEngine(Engine):
    """Weight-free optical-flow tracker; holds only settings, sessions hold all state."""

    def __init__(self, settings: FlowSettings | None = None) -> None:
        self.settings = settings or FlowSettings()
        algo = self.settings.algorithm + (
            f"/{self.settings.dis_preset}" if self.settings.algorithm == "dis" else ""
        )
        self.info = EngineInfo(
            name="flow",
            version=f"{ENGINE_VERSION} ({algo}, OpenCV {cv2.__version__})",
            capabilities=PROMPT_CAPABILITIES,
            device="cpu",
        )

    @classmethod
    def from_options(cls, options: dict[str, str]) -> FlowEngine:
        """Build from string options; ``option_help(FlowSettings)`` lists names and allowed values."""
        return cls(parse_options(options))

    def open_session(self, config: SessionConfig) -> FlowSession:
        """A session with the engine's settings, overridden by the session's own engine options."""
        settings = self.settings
        if config.engine_options:
            try:
                settings = parse_options(config.engine_options, base=settings)
            except ValueError as exc:  # refused at open (INVALID_ARGUMENT), never silently ignored
                raise PromptError(f"session engine options: {exc}") from None
        return FlowSession(config, settings)

    def default_workers(self, cores: int) -> int:
        # One frame's flow is too small to spread over cores well; frames of
        # different sessions in parallel, one OpenCV thread each, use them all.
        return cores

    def set_intra_op_threads(self, threads: int) -> None:
        cv2.setNumThreads(threads)


# -- session state ----------------------------------------------------------------------


@dataclass
class _RefFrame:
    """A frame kept as a flow reference (an anchor or the previous frame)."""

    tick: int  # the session's own frame counter (client indices need not be unique)
    gray: np.ndarray  # uint8 at the flow's working resolution


@dataclass
class _ObjectState:
    object_id: int
    anchor: _RefFrame  # the frame it was last prompted on (shared by objects prompted together)
    anchor_mask: np.ndarray  # uint8 0/255 (H, W): the prompt mask on that frame
    prev_mask: np.ndarray  # uint8 0/255 (H, W): this object's answer on the previous frame
    anchor_box: Region | None = None  # bounding regions of the two masks (None: empty)
    prev_box: Region | None = None
    # Cine-MRI: the target's contrast against its surroundings on the anchor frame (None: too
    # faint to tell the target's absence by), and whether it is now out of the slice.
    anchor_contrast: float | None = None
    absent: bool = False
    calibration: SelfCalibration = field(default_factory=SelfCalibration)


Region = tuple[int, int, int, int]  # (y0, y1, x0, x1), full-resolution pixels
# Working-resolution pixels of image kept around the objects for the backward flow of the
# forward-backward check: enough for DIS's coarsest pyramid level to see the same structure.
FB_CONTEXT_PX = 32
ABSENCE_HYSTERESIS = 0.1  # an absent target returns above absence_ratio + this


@dataclass
class _Fields:
    """A warp's full-resolution values over one region."""

    # Where each pixel lies in the reference, as cv2.remap takes it: one float32 (h, w, 2)
    # map, or the x and y maps apart (h, w) and (h, w).
    maps: tuple[np.ndarray, np.ndarray | None]
    confidence: np.ndarray  # float32 (h, w) in (0, 1]: local photometric consistency of the warp
    # The same, blind to smooth intensity change and less the scanner's noise: the presence score.
    structure: np.ndarray
    fb_error: np.ndarray | None  # float32 (h, w): forward-backward flow error, full-res px


@dataclass
class _Warp:
    """Flow from the current frame to one reference frame, shared by every object using it.

    Held at the flow's working resolution; :meth:`region` gives full-resolution
    values for the pixels an object can reach, so a small target in a large frame
    does not pay for warping the whole frame.
    """

    work_map: np.ndarray  # float32 (h, w, 2): where each working pixel lies in the reference
    flow: np.ndarray  # float32 (h, w, 2): work_map minus the pixel's own position
    confidence: np.ndarray  # float32 (h, w) in (0, 1]: local photometric consistency of the warp
    # The same, blind to smooth intensity change (drift, inflow, coil shading) and less the
    # scanner's noise: the presence score.
    structure: np.ndarray
    fb_error: np.ndarray | None  # float32 (h, w): forward-backward flow error, full-resolution px
    hw: tuple[int, int]  # full resolution
    grid: np.ndarray  # float32 (H, W, 2) full-resolution pixel coordinates
    max_shift_px: float  # the largest flow component, full-resolution px: how far any pixel moves
    packed: np.ndarray | None = None  # (h, w, 4): what region() samples, built on its first call

    def region(self, roi: Region) -> _Fields:
        """Full-resolution values over ``roi``, as a bilinear resize of the whole field would give."""
        y0, y1, x0, x1 = roi
        h, w = self.work_map.shape[:2]
        if (h, w) == self.hw:
            cut = (slice(y0, y1), slice(x0, x1))
            fb = None if self.fb_error is None else self.fb_error[cut]
            return _Fields((self.work_map[cut], None), self.confidence[cut], self.structure[cut], fb)
        # Sample the working fields at the full-resolution pixel centres, as cv2.resize's
        # INTER_LINEAR does (src = (dst + 0.5) * scale - 0.5), over the region only.
        sx, sy = w / self.hw[1], h / self.hw[0]
        to_work = np.array([[sx, 0.0, sx * (x0 + 0.5) - 0.5], [0.0, sy, sy * (y0 + 0.5) - 0.5]])
        size = (x1 - x0, y1 - y0)

        def sample(field: np.ndarray) -> np.ndarray:
            flags = cv2.INTER_LINEAR | cv2.WARP_INVERSE_MAP
            return cv2.warpAffine(field, to_work, size, flags=flags, borderMode=cv2.BORDER_REPLICATE)

        if self.packed is None:  # the flow in full-resolution pixels, and the two confidences
            fx, fy = self.flow[..., 0] * np.float32(1.0 / sx), self.flow[..., 1] * np.float32(1.0 / sy)
            self.packed = np.dstack([fx, fy, self.confidence, self.structure])
        # The four fields in one call: OpenCV interpolates 1-, 3- and 4-channel float images
        # with exact weights, but 2-channel ones (the flow alone) with weights rounded to
        # 1/32 of a pixel, which errs by a tenth of a pixel where the flow varies.
        fields = sample(self.packed)
        map_x = fields[..., 0] + self.grid[0, x0:x1, 0]
        map_y = fields[..., 1] + self.grid[y0:y1, 0, 1][:, None]
        fb = None if self.fb_error is None else sample(self.fb_error)
        return _Fields((map_x, map_y), fields[..., 2], fields[..., 3], fb)


def reach(boxes: list[Region | None], margin: float, hw: tuple[int, int]) -> Region | None:
    """The pixels a warp can carry any of ``boxes`` into: their union grown by ``margin``, clipped."""
    present = [b for b in boxes if b is not None]
    if not present:
        return None
    m = int(np.ceil(margin))
    return (
        max(0, min(b[0] for b in present) - m),
        min(hw[0], max(b[1] for b in present) + m),
        max(0, min(b[2] for b in present) - m),
        min(hw[1], max(b[3] for b in present) + m),
    )


def bounding_region(mask: np.ndarray) -> Region | None:
    rows = np.flatnonzero(mask.any(axis=1))
    if rows.size == 0:
        return None
    cols = np.flatnonzero(mask.any(axis=0))
    return (int(rows[0]), int(rows[-1]) + 1, int(cols[0]), int(cols[-1]) + 1)


class FlowSession(EngineSession):
    """One stream's state: reference frames and per-object masks (bounded in size)."""

    def __init__(self, config: SessionConfig, settings: FlowSettings) -> None:
        self._settings = settings
        self._tracks: dict[int, _ObjectState] = {}
        self._prev: _RefFrame | None = None
        self._tick = 0
        self._grid: np.ndarray | None = None  # (H, W, 2) pixel coordinates, full resolution
        self._work_grid: np.ndarray | None = None  # the same at the flow's working resolution
        self._dis: cv2.DISOpticalFlow | None = None
        if settings.algorithm == "dis":
            # One instance per session: DIS keeps scratch buffers and is not re-entrant.
            self._dis = cv2.DISOpticalFlow_create(_DIS_PRESETS[settings.dis_preset])
            if settings.dis_refinement >= 0:
                self._dis.setVariationalRefinementIterations(settings.dis_refinement)
        super().__init__(config)
        self._prepared: tuple[tuple[int, int], tuple[int, int]] | None = None  # (frame, working) size
        if self._image_size is not None:  # declared, or its mask prompts' size: prepare before any frame
            self._prepare(self._image_size)

    # -- helpers ----------------------------------------------------------------------

    def degradations(self) -> tuple[str, ...]:
        return ("lower input resolution: optical flow at half the working size",)

    def _work_size(self, hw: tuple[int, int]) -> tuple[int, int]:
        h, w = hw
        s = min(1.0, self._settings.max_side / max(h, w))
        if self.degradation_level >= 1:
            s *= 0.5
        return (max(2, round(h * s)), max(2, round(w * s)))

    def _prepare(self, hw: tuple[int, int]) -> None:
        """Build the per-size state (pixel grids, DIS buffers) now, not in the first tracked frame."""
        work = self._work_size(hw)
        if self._prepared != (hw, work):
            self._grids(hw)
            if self._dis is not None:  # its first call at a size allocates its pyramids; no other state
                self._dis.calc(np.zeros(work, np.uint8), np.zeros(work, np.uint8), None)
            self._prepared = (hw, work)

    def _grids(self, hw: tuple[int, int]) -> tuple[np.ndarray, np.ndarray]:
        work = self._work_size(hw)
        if self._grid is None or self._grid.shape[:2] != hw:
            self._grid = _pixel_grid(hw)
            self._work_grid = None
        if self._work_grid is None or self._work_grid.shape[:2] != work:
            self._work_grid = self._grid if work == hw else _pixel_grid(work)
        assert self._work_grid is not None
        return self._grid, self._work_grid

    def _flow(self, cur: np.ndarray, ref: np.ndarray) -> np.ndarray:
        """Dense flow f with cur(x) ≈ ref(x + f(x)), float32 (h, w, 2) at working resolution."""
        if self._dis is not None:
            return self._dis.calc(cur, ref, None)
        # Farneback: 5 levels and a 21 px window reach ~20 px displacements at 270x270.
        return cv2.calcOpticalFlowFarneback(cur, ref, None, 0.5, 5, 21, 5, 7, 1.5, 0)

    def _warp_to(
        self,
        cur: np.ndarray,
        ref: np.ndarray,
        hw: tuple[int, int],
        noise: float,
        fb_boxes: list[Region | None] | None = None,
    ) -> _Warp:
        """The warp to ``ref``; with ``fb_boxes``, its forward-backward error around those masks.

        ``noise``: the std of ``cur``'s noise (grey levels), which no warp can explain away.
        """
        grid, work_grid = self._grids(hw)
        if ref.shape != cur.shape:  # the working size changed (degradation) since ref was kept
            ref = cv2.resize(ref, (cur.shape[1], cur.shape[0]), interpolation=cv2.INTER_AREA)
        with self.timer.stage("flow"):
            flow = self._flow(cur, ref)
        work_map = work_grid + flow
        warped = cv2.remap(ref, work_map, None, cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
        signed = cur.astype(np.float32) - warped.astype(np.float32)
        residual = np.abs(signed)
        # Average the residual over a window ~3 % of the image side: single pixels are
        # too noisy to judge a warp by, whole frames too coarse to localise its failures.
        k = max(3, (round(0.03 * max(cur.shape)) | 1))
        scale = np.float32(self._settings.consistency_scale)
        confidence = 1.0 / (1.0 + (cv2.blur(residual, (k, k)) / scale) ** 2)
        # Without the residual's local mean (a window 3x wider), a brightness change that
        # is smooth in space (drift, inflow, shading) no longer reads as a lost target.
        structural = cv2.blur(np.abs(signed - cv2.blur(signed, (3 * k, 3 * k))), (k, k))
        # What a perfect warp leaves is noise: this frame's, and the reference's averaged down by
        # the bilinear warp (by 4x in variance at half-pixel shifts, not at all at whole-pixel
        # ones); the floor takes the least of that, 1.25 sigma^2, whose mean absolute value is
        # sqrt(2/pi * 1.25) sigma. It comes off the local mean absolute residual in quadrature,
        # so a noisy scan that registers well is not read as a target about to be lost; on a
        # clean frame nothing changes. Quadrature is exact for variances, an approximation for
        # mean absolute values: a uniform mismatch of one noise std reads at ~0.85 of its size.
        floor = np.float32(2.0 / np.pi * 1.25 * noise**2)
        excess = np.sqrt(np.maximum(structural * structural - floor, 0.0))
        structure = 1.0 / (1.0 + (excess / scale) ** 2)
        scale_up = max(hw[1] / cur.shape[1], hw[0] / cur.shape[0])
        max_shift = float(np.abs(flow).max()) * scale_up if flow.size else 0.0
        fb_error = None
        if fb_boxes is not None:
            fb_error = self._fb_error(cur, ref, flow, work_map, hw, reach(fb_boxes, max_shift + 2.0, hw))
        return _Warp(work_map, flow, confidence, structure, fb_error, hw, grid, max_shift)

    def _fb_error(
        self,
        cur: np.ndarray,
        ref: np.ndarray,
        flow: np.ndarray,
        work_map: np.ndarray,
        hw: tuple[int, int],
        roi: Region | None,
    ) -> np.ndarray:
        """Forward-backward flow error (full-resolution px) over ``roi``; zero elsewhere.

        The flow back from the reference, read where each pixel landed, should undo
        the forward flow; what is left is the flow's own error. The confidence reads
        it over the mask only, so the backward flow is computed on a crop around the
        objects (with context on every side), not over the whole frame.
        """
        h, w = cur.shape[:2]
        error = np.zeros((h, w), np.float32)
        if roi is None:
            return error
        sy, sx = h / hw[0], w / hw[1]
        wy0, wy1 = max(0, int(roi[0] * sy)), min(h, int(np.ceil(roi[1] * sy)))
        wx0, wx1 = max(0, int(roi[2] * sx)), min(w, int(np.ceil(roi[3] * sx)))
        if wy1 <= wy0 or wx1 <= wx0:
            return error
        # The crop must hold where the window's pixels land in the reference, plus context
        # for the flow's coarsest pyramid level.
        window = work_map[wy0:wy1, wx0:wx1]
        context = FB_CONTEXT_PX + 1
        cy0 = max(0, min(wy0, int(np.floor(window[..., 1].min()))) - context)
        cy1 = min(h, max(wy1, int(np.ceil(window[..., 1].max())) + 1) + context)
        cx0 = max(0, min(wx0, int(np.floor(window[..., 0].min()))) - context)
        cx1 = min(w, max(wx1, int(np.ceil(window[..., 0].max())) + 1) + context)
        with self.timer.stage("flow"):
            back = self._flow(
                np.ascontiguousarray(ref[cy0:cy1, cx0:cx1]), np.ascontiguousarray(cur[cy0:cy1, cx0:cx1])
            )
        at = window - np.array([cx0, cy0], dtype=np.float32)
        back_at = cv2.remap(back, at, None, cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
        error[wy0:wy1, wx0:wx1] = np.linalg.norm(flow[wy0:wy1, wx0:wx1] + back_at, axis=2)
        error *= np.float32(hw[1] / w)  # working px -> full-resolution px
        return error

    # -- EngineSession ------------------------------------------------------------------

    def _step(self, frame: Frame, updates: list[PromptUpdate]) -> list[ObjectTrack]:
        hw = frame.shape_hw
        with self.timer.stage("preprocess"):
            gray_full = to_gray8(frame.pixels)
            if np.shares_memory(gray_full, frame.pixels):
                gray_full = gray_full.copy()  # the client may reuse its buffer; anchors must not change
            work = self._work_size(hw)
            gray = (
                gray_full
                if work == hw
                else cv2.resize(gray_full, (work[1], work[0]), interpolation=cv2.INTER_AREA)
            )
            noise = noise_sigma(gray)
        self._tick += 1
        current = _RefFrame(self._tick, gray)

        # Updates first, in arrival order: a prompt on this frame defines its answer here.
        prompted: set[int] = set()
        for update in updates:
            if update.action is UpdateAction.REMOVE:
                self._tracks.pop(update.object_id, None)
                prompted.discard(update.object_id)
                continue
            assert update.prompt is not None  # guaranteed by EngineSession.apply
            mask = prompt_to_mask(
                update.prompt,
                frame.pixels,
                box_mode=self._settings.box_mode,
                point_radius=self._settings.point_radius,
            )
            if not mask.any():
                raise PromptError(f"the prompt for object {update.object_id} gives an empty mask")
            m8 = mask.astype(np.uint8) * 255
            # ADD and CORRECT alike: the object is (re-)anchored on this frame.
            box = bounding_region(mask)
            self._tracks[update.object_id] = _ObjectState(
                update.object_id,
                current,
                m8,
                m8,
                box,
                box,
                self._anchor_contrast(frame.pixels, mask),
                calibration=SelfCalibration(self._settings.calibration_frames),
            )
            prompted.add(update.object_id)
            logger.debug(
                "object %d anchored on frame %d (%s)", update.object_id, frame.index, update.action.value
            )

        if self._tracks.keys() <= prompted:  # no flow on this frame (a prompt frame): prepare the next
            self._prepare(hw)
        warps: dict[int, _Warp] = {}  # reference tick -> flow, computed at most once per frame

        # The forward-backward check runs on the short-term flow only, around the objects.
        fb_boxes = [s.prev_box for s in self._tracks.values()] if self._settings.fb_scale_px > 0 else None

        def warp_for(ref: _RefFrame) -> _Warp:
            if ref.tick not in warps:
                fb = fb_boxes if ref is self._prev else None
                warps[ref.tick] = self._warp_to(gray, ref.gray, hw, noise, fb)
            return warps[ref.tick]

        tracks: list[ObjectTrack] = []
        alpha = np.float32(self._settings.anchor_weight)
        loop_start, flow_before = time.perf_counter(), self.timer.elapsed("flow")
        for oid, state in self._tracks.items():
            if oid in prompted:
                tracks.append(ObjectTrack(oid, state.anchor_mask > 0, 1.0))
                continue
            assert self._prev is not None  # an unprompted object was tracked on an earlier frame
            short = warp_for(self._prev)
            anch = None if state.anchor.tick == self._prev.tick or alpha == 0 else warp_for(state.anchor)
            # Bilinear warping moves a mask by at most the largest flow, plus one pixel of
            # interpolation support: nothing outside this region can be part of the answer.
            shift = max(short.max_shift_px, anch.max_shift_px if anch is not None else 0.0)
            boxes = [state.prev_box] + ([state.anchor_box] if anch is not None else [])
            roi = reach(boxes, shift + 2.0, hw)
            mask = np.zeros(hw, dtype=bool)
            score, confidence = 0.0, 0.0
            if roi is not None:
                y0, y1, x0, x1 = roi
                near = short.region(roi)
                soft = _remap_mask(state.prev_mask, near.maps)
                presence = near.structure
                if anch is not None:
                    far = anch.region(roi)
                    m_anchor = _remap_mask(state.anchor_mask, far.maps)
                    wa = alpha * far.confidence
                    soft = (wa * m_anchor + near.confidence * soft) / (wa + near.confidence)
                    presence = np.maximum(far.structure, near.structure)
                mask[y0:y1, x0:x1] = soft >= 0.5
                if self._settings.min_island_fraction > 0:
                    mask = drop_islands(mask, self._settings.min_island_fraction)
                inside = mask[y0:y1, x0:x1]
                score, confidence = self._scores(state, presence, near.fb_error, inside)
            state.prev_mask = mask.astype(np.uint8) * 255
            state.prev_box = bounding_region(mask)
            if self._out_of_slice(state, frame.pixels, mask):  # carried along, reported absent
                mask, score, confidence = np.zeros(hw, dtype=bool), 0.0, 0.0
            tracks.append(ObjectTrack(oid, mask, score, confidence))
        # Warping and blending masks, apart from the flow fields computed inside the loop.
        loop_ms = (time.perf_counter() - loop_start) * 1000.0
        self.timer.add("propagate", loop_ms - (self.timer.elapsed("flow") - flow_before))

        # Keep only what the next frame needs: this frame and the objects' own anchors
        # (held by their states, so dropped objects free theirs with them).
        self._prev = current
        return tracks

    def _anchor_contrast(self, pixels: np.ndarray, mask: np.ndarray) -> float | None:
        """A cine target's contrast on its anchor frame, or None when absence cannot be judged."""
        if self.config.modality is not Modality.CINE_MRI or self._settings.absence_ratio == 0:
            return None
        contrast, spread = target_contrast(pixels, mask)
        distinct = abs(contrast) >= self._settings.distinct_contrast * spread and contrast != 0.0
        return contrast if distinct else None

    def _out_of_slice(self, state: _ObjectState, pixels: np.ndarray, mask: np.ndarray) -> bool:
        """Whether the target has left the slice: its region's contrast, relative to the anchor's."""
        if state.anchor_contrast is None or not mask.any():
            return False
        ratio = target_contrast(pixels, mask)[0] / state.anchor_contrast
        limit = self._settings.absence_ratio + (ABSENCE_HYSTERESIS if state.absent else 0.0)
        state.absent = ratio < limit
        return state.absent

    def _scores(
        self, state: _ObjectState, presence: np.ndarray, fb_error: np.ndarray | None, inside: np.ndarray
    ) -> tuple[float, float]:
        """(presence score, tracking confidence) over the mask, relative to the session's start.

        Confidence is presence (photometric consistency) x forward-backward agreement.
        """
        if not inside.any():
            return 0.0, 0.0
        raw = min(1.0, max(0.0, float(presence[inside].mean())))
        fb_px = None if fb_error is None else float(fb_error[inside].mean())
        score, fb = state.calibration.apply(raw, fb_px)
        if fb is None:
            return score, score
        return score, score / (1.0 + (fb / self._settings.fb_scale_px) ** 2)

    def _close(self) -> None:
        self._tracks.clear()
        self._prev = None
        self._grid = self._work_grid = self._prepared = None

    # -- introspection (tests, metrics) -----------------------------------------------

    def held_frames(self) -> int:
        """How many distinct frames this session keeps (anchors plus the previous frame)."""
        ticks = {s.anchor.tick for s in self._tracks.values()}
        if self._prev is not None:
            ticks.add(self._prev.tick)
        return len(ticks)


def _pixel_grid(hw: tuple[int, int]) -> np.ndarray:
    h, w = hw
    xs, ys = np.meshgrid(np.arange(w, dtype=np.float32), np.arange(h, dtype=np.float32))
    return np.dstack([xs, ys])


def _remap_mask(mask8: np.ndarray, maps: tuple[np.ndarray, np.ndarray | None]) -> np.ndarray:
    """Warp a 0/255 mask with bilinear interpolation; soft result in [0, 1], outside = 0."""
    warped = cv2.remap(mask8, *maps, cv2.INTER_LINEAR, borderMode=cv2.BORDER_CONSTANT, borderValue=0)
    return warped.astype(np.float32) * np.float32(1.0 / 255.0)
