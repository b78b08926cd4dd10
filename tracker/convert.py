"""Conversions between ``tracker.v1`` protocol messages and the project's types.

Used by both ends: the servicer decodes requests and encodes responses; the
client encodes requests and decodes responses. Every decoder validates what it
reads and raises :class:`~tracker.types.FrameError`,
:class:`~tracker.types.PromptError` or ``ValueError`` with a message that names
the problem, so that bad input is refused clearly rather than half-processed.
"""

from __future__ import annotations

import math
import time
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from tracker import masks as mask_codec
from tracker.gating.types import BeamState, GatingConfig, GatingDecision
from tracker.types import (
    BoxPrompt,
    BudgetPolicy,
    Frame,
    FrameError,
    FrameResult,
    FrameStatus,
    FrameTiming,
    Geometry,
    MaskPrompt,
    Modality,
    ObjectPrompt,
    ObjectResult,
    PointsPrompt,
    Prompt,
    PromptError,
    PromptUpdate,
    RepromptEvent,
    SessionConfig,
    TimestampClock,
    UpdateAction,
)
from tracker.v1 import tracker_pb2 as pb

PROTOCOL_VERSION = "tracker.v1"
DEFAULT_LATENCY_BUDGET_MS = 1000.0  # cine-MRI: the TrackRAD2025 limit per frame
DEFAULT_VIDEO_FRAME_RATE_HZ = 30.0  # endoscopy without a stated rate


def default_budget_ms(modality: Modality, frame_rate_hz: float) -> float:
    """The budget when a client states none: 1 s for cine-MRI, one frame interval for video."""
    if modality is Modality.CINE_MRI:
        return DEFAULT_LATENCY_BUDGET_MS
    if frame_rate_hz > 0:
        return 1000.0 / frame_rate_hz
    if modality is Modality.ENDOSCOPY:
        return 1000.0 / DEFAULT_VIDEO_FRAME_RATE_HZ
    return DEFAULT_LATENCY_BUDGET_MS


PIXEL_DTYPES: dict[int, np.dtype] = {
    pb.UINT8: np.dtype("<u1"),
    pb.UINT16: np.dtype("<u2"),
    pb.INT16: np.dtype("<i2"),
    pb.FLOAT32: np.dtype("<f4"),
}
_DTYPE_TO_PIXEL_TYPE = {np.dtype(v).newbyteorder("="): k for k, v in PIXEL_DTYPES.items()}

_MODALITY_FROM_PB = {
    pb.MODALITY_UNSPECIFIED: Modality.OTHER,
    pb.CINE_MRI: Modality.CINE_MRI,
    pb.ENDOSCOPY: Modality.ENDOSCOPY,
    pb.OTHER: Modality.OTHER,
}
_MODALITY_TO_PB = {Modality.CINE_MRI: pb.CINE_MRI, Modality.ENDOSCOPY: pb.ENDOSCOPY, Modality.OTHER: pb.OTHER}
_STATUS_TO_PB = {
    FrameStatus.OK: pb.OK,
    FrameStatus.LATE: pb.LATE,
    FrameStatus.DROPPED: pb.DROPPED,
    FrameStatus.ERROR: pb.ERROR,
    FrameStatus.LOST: pb.LOST,
}
_STATUS_FROM_PB = {v: k for k, v in _STATUS_TO_PB.items()}
_POLICY_FROM_PB = {
    pb.BUDGET_POLICY_UNSPECIFIED: BudgetPolicy.LATEST,
    pb.LATEST: BudgetPolicy.LATEST,
    pb.DEGRADE: BudgetPolicy.DEGRADE,
    pb.STRICT: BudgetPolicy.STRICT,
}
_POLICY_TO_PB = {
    BudgetPolicy.LATEST: pb.LATEST,
    BudgetPolicy.DEGRADE: pb.DEGRADE,
    BudgetPolicy.STRICT: pb.STRICT,
}
_CLOCK_FROM_PB = {
    pb.TIMESTAMP_CLOCK_UNSPECIFIED: TimestampClock.RELATIVE,
    pb.RELATIVE: TimestampClock.RELATIVE,
    pb.UNIX: TimestampClock.UNIX,
}
_CLOCK_TO_PB = {TimestampClock.RELATIVE: pb.RELATIVE, TimestampClock.UNIX: pb.UNIX}


@dataclass(frozen=True)
class Limits:
    """What one request may ask of the server; each refusal names the limit."""

    max_frame_pixels: int = 4096 * 4096
    max_objects_per_session: int = 64
    max_prompt_points: int = 256
    max_sessions: int = 32
    max_message_bytes: int = 256 * 1024 * 1024


# -- frames --------------------------------------------------------------------------------


def frame_from_proto(msg: pb.Frame, limits: Limits) -> Frame:
    """Decode and validate one frame; raise FrameError naming the problem."""
    dtype = PIXEL_DTYPES.get(msg.pixel_type)
    if dtype is None:
        name = (
            pb.PixelType.Name(msg.pixel_type) if msg.pixel_type in pb.PixelType.values() else msg.pixel_type
        )
        raise FrameError(
            f"frame {msg.index}: unsupported pixel type {name}; use UINT8, UINT16, INT16 or FLOAT32"
        )
    h, w = int(msg.height), int(msg.width)
    channels = int(msg.channels) or 1
    if h == 0 or w == 0:
        raise FrameError(f"frame {msg.index}: empty frame ({h}x{w})")
    if channels not in (1, 3):
        raise FrameError(f"frame {msg.index}: {channels} channels; only 1 (grey) or 3 (RGB) are supported")
    if h * w > limits.max_frame_pixels:
        raise FrameError(
            f"frame {msg.index}: {h}x{w} = {h * w} pixels exceeds the limit of"
            f" {limits.max_frame_pixels} pixels"
        )
    expected = h * w * channels * dtype.itemsize
    if len(msg.pixels) != expected:
        raise FrameError(
            f"frame {msg.index}: pixel buffer has {len(msg.pixels)} bytes but {h}x{w}x{channels}"
            f" {dtype.name} needs {expected}"
        )
    pixels = np.frombuffer(msg.pixels, dtype=dtype).astype(dtype.newbyteorder("="), copy=False)
    pixels = pixels.reshape((h, w) if channels == 1 else (h, w, 3))
    if dtype.kind == "f":
        bad = int(np.count_nonzero(~np.isfinite(pixels)))
        if bad:
            raise FrameError(f"frame {msg.index}: {bad} pixel(s) are NaN or infinite")
    return Frame(index=int(msg.index), pixels=pixels, timestamp_s=msg.timestamp_s or None)


def frame_to_proto(pixels: np.ndarray, index: int, timestamp_s: float | None = None) -> pb.Frame:
    """Encode a NumPy frame; raise ValueError for dtypes or shapes the protocol cannot carry."""
    pixels = np.asarray(pixels)
    pixel_type = _DTYPE_TO_PIXEL_TYPE.get(pixels.dtype.newbyteorder("="))
    if pixel_type is None:
        raise ValueError(f"frame dtype {pixels.dtype} is not one of uint8, uint16, int16, float32")
    if pixels.ndim == 3 and pixels.shape[2] == 1:
        pixels = pixels[:, :, 0]
    if pixels.ndim not in (2, 3) or (pixels.ndim == 3 and pixels.shape[2] != 3):
        raise ValueError(f"frame shape {pixels.shape} is neither (H, W) nor (H, W, 3)")
    data = np.ascontiguousarray(pixels, dtype=PIXEL_DTYPES[pixel_type]).tobytes()
    return pb.Frame(
        index=index,
        timestamp_s=timestamp_s or 0.0,
        height=pixels.shape[0],
        width=pixels.shape[1],
        channels=1 if pixels.ndim == 2 else 3,
        pixel_type=pixel_type,
        pixels=data,
    )


# -- masks and prompts ---------------------------------------------------------------------


def mask_from_proto(msg: pb.Mask) -> np.ndarray:
    h, w = int(msg.height), int(msg.width)
    if h == 0 or w == 0:
        raise ValueError(f"mask has no size ({h}x{w})")
    if msg.encoding == pb.PNG:
        return mask_codec.png_decode(msg.data, h, w)
    if msg.encoding in (pb.RLE, pb.MASK_ENCODING_UNSPECIFIED):
        return mask_codec.rle_decode(list(msg.rle_counts), h, w)
    raise ValueError(f"unknown mask encoding {msg.encoding}")


def mask_to_proto(mask: np.ndarray, encoding: int = pb.RLE) -> pb.Mask:
    h, w = mask.shape
    if encoding == pb.PNG:
        return pb.Mask(height=h, width=w, encoding=pb.PNG, data=mask_codec.png_encode(mask))
    return pb.Mask(height=h, width=w, encoding=pb.RLE, rle_counts=mask_codec.rle_encode(mask))


def prompt_from_proto(msg: pb.Prompt, object_id: int, limits: Limits) -> Prompt:
    kind = msg.WhichOneof("kind")
    if kind == "mask":
        try:
            mask = mask_from_proto(msg.mask)
        except ValueError as exc:
            raise PromptError(f"mask prompt for object {object_id}: {exc}") from None
        if not mask.any():
            raise PromptError(f"mask prompt for object {object_id} is empty")
        return MaskPrompt(mask)
    if kind == "box":
        b = msg.box
        coords = (b.x0, b.y0, b.x1, b.y1)
        if not all(math.isfinite(c) for c in coords):
            raise PromptError(f"box prompt for object {object_id} has a non-finite coordinate")
        if b.x1 <= b.x0 or b.y1 <= b.y0:
            raise PromptError(f"box prompt for object {object_id} has no area: (x0, y0, x1, y1) = {coords}")
        return BoxPrompt(b.x0, b.y0, b.x1, b.y1)
    if kind == "points":
        pts = msg.points.points
        if not pts:
            raise PromptError(f"points prompt for object {object_id} has no points")
        if len(pts) > limits.max_prompt_points:
            raise PromptError(
                f"points prompt for object {object_id} has {len(pts)} points;"
                f" the limit is {limits.max_prompt_points}"
            )
        xy = np.array([[p.x, p.y] for p in pts], dtype=np.float64)
        if not np.isfinite(xy).all():
            raise PromptError(f"points prompt for object {object_id} has a non-finite coordinate")
        labels = np.array([1 if p.positive else 0 for p in pts], dtype=np.int64)
        if not labels.any():
            raise PromptError(f"points prompt for object {object_id} needs at least one positive point")
        return PointsPrompt(xy, labels)
    raise PromptError(f"object {object_id} has no prompt (set mask, box or points)")


def prompt_to_proto(prompt: Prompt) -> pb.Prompt:
    if isinstance(prompt, MaskPrompt):
        return pb.Prompt(mask=mask_to_proto(np.asarray(prompt.mask, dtype=bool)))
    if isinstance(prompt, BoxPrompt):
        return pb.Prompt(box=pb.Box(x0=prompt.x0, y0=prompt.y0, x1=prompt.x1, y1=prompt.y1))
    points = [
        pb.Point(x=float(x), y=float(y), positive=bool(lab))
        for (x, y), lab in zip(np.asarray(prompt.points), np.asarray(prompt.labels), strict=True)
    ]
    return pb.Prompt(points=pb.Points(points=points))


def _reference_from_proto(values: Sequence[float], object_id: int) -> tuple[float, float, float] | None:
    if not values:
        return None
    if len(values) != 3 or not all(math.isfinite(v) for v in values):
        raise PromptError(f"reference_mm of object {object_id} must be 3 finite numbers, got {list(values)}")
    return (float(values[0]), float(values[1]), float(values[2]))


def object_prompt_from_proto(msg: pb.ObjectPrompt, limits: Limits) -> ObjectPrompt:
    if not msg.HasField("prompt"):
        raise PromptError(f"object {msg.object_id} has no prompt (set mask, box or points)")
    prompt = prompt_from_proto(msg.prompt, msg.object_id, limits)
    return ObjectPrompt(
        msg.object_id, prompt, msg.label, _reference_from_proto(msg.reference_mm, msg.object_id)
    )


def object_prompt_to_proto(obj: ObjectPrompt) -> pb.ObjectPrompt:
    return pb.ObjectPrompt(
        object_id=obj.object_id,
        label=obj.label,
        prompt=prompt_to_proto(obj.prompt),
        reference_mm=obj.reference_mm or (),
    )


def prompt_update_from_proto(msg: pb.PromptUpdate, limits: Limits) -> PromptUpdate:
    action = msg.WhichOneof("action")
    if action == "remove_object_id":
        return PromptUpdate(UpdateAction.REMOVE, msg.remove_object_id, update_id=msg.update_id)
    if action in ("add", "correct"):
        obj = object_prompt_from_proto(getattr(msg, action), limits)
        kind = UpdateAction.ADD if action == "add" else UpdateAction.CORRECT
        return PromptUpdate(
            kind, obj.object_id, obj.prompt, obj.label, update_id=msg.update_id, reference_mm=obj.reference_mm
        )
    raise PromptError(f"prompt update {msg.update_id} has no action (set add, remove_object_id or correct)")


def prompt_update_to_proto(update: PromptUpdate) -> pb.PromptUpdate:
    if update.action is UpdateAction.REMOVE:
        return pb.PromptUpdate(update_id=update.update_id, remove_object_id=update.object_id)
    if update.prompt is None:
        raise ValueError(f"{update.action.value} of object {update.object_id} needs a prompt")
    obj = object_prompt_to_proto(
        ObjectPrompt(update.object_id, update.prompt, update.label, update.reference_mm)
    )
    if update.action is UpdateAction.ADD:
        return pb.PromptUpdate(update_id=update.update_id, add=obj)
    return pb.PromptUpdate(update_id=update.update_id, correct=obj)


# -- sessions ------------------------------------------------------------------------------


def geometry_from_proto(msg: pb.Geometry) -> Geometry:
    default = Geometry()
    try:
        return Geometry(
            spacing_mm=tuple(msg.spacing_mm) or default.spacing_mm,  # type: ignore[arg-type]
            origin_mm=tuple(msg.origin_mm) or default.origin_mm,  # type: ignore[arg-type]
            x_direction=tuple(msg.x_direction) or default.x_direction,  # type: ignore[arg-type]
            y_direction=tuple(msg.y_direction) or default.y_direction,  # type: ignore[arg-type]
        )
    except ValueError as exc:
        raise ValueError(f"geometry: {exc}") from None


def geometry_to_proto(geometry: Geometry) -> pb.Geometry:
    return pb.Geometry(
        spacing_mm=geometry.spacing_mm,
        origin_mm=geometry.origin_mm,
        x_direction=geometry.x_direction,
        y_direction=geometry.y_direction,
    )


def _gating_for_session(msg: pb.GatingConfig, image_size: tuple[int, int] | None) -> GatingConfig | None:
    try:
        config = gating_config_from_proto(msg)
    except ValueError as exc:
        raise ValueError(f"gating: {exc}") from None
    window = None if config is None else config.window_mask
    if window is not None and image_size is not None and window.shape != image_size:
        raise ValueError(
            f"gating window mask is {window.shape[0]}x{window.shape[1]}"
            f" but frames are {image_size[0]}x{image_size[1]}"
        )
    return config


def session_config_from_proto(msg: pb.SessionOpen, limits: Limits) -> SessionConfig:
    """Decode and validate a session opening; raise ValueError (PromptError included) naming the problem."""
    if msg.modality not in _MODALITY_FROM_PB:
        raise ValueError(f"unknown modality {msg.modality}")
    if msg.budget_policy not in _POLICY_FROM_PB:
        raise ValueError(f"unknown budget_policy {msg.budget_policy}; use LATEST, DEGRADE or STRICT")
    if msg.timestamp_clock not in _CLOCK_FROM_PB:
        raise ValueError(f"unknown timestamp_clock {msg.timestamp_clock}; use RELATIVE or UNIX")
    if not math.isfinite(msg.frame_rate_hz) or msg.frame_rate_hz < 0:
        raise ValueError(f"frame_rate_hz must be zero (unknown) or positive, got {msg.frame_rate_hz}")
    modality = _MODALITY_FROM_PB[msg.modality]
    budget = msg.latency_budget_ms or default_budget_ms(modality, msg.frame_rate_hz)
    if not math.isfinite(budget) or budget < 0:
        raise ValueError(
            f"latency_budget_ms must be a positive number of milliseconds, got {msg.latency_budget_ms}"
        )
    if len(msg.objects) > limits.max_objects_per_session:
        raise ValueError(
            f"{len(msg.objects)} objects requested; the limit is {limits.max_objects_per_session} per session"
        )
    objects = tuple(object_prompt_from_proto(o, limits) for o in msg.objects)
    ids = [o.object_id for o in objects]
    if len(set(ids)) != len(ids):
        raise PromptError(f"object ids must be unique; got {ids}")
    image_size: tuple[int, int] | None = None
    if msg.height or msg.width:
        if not (msg.height and msg.width):
            raise ValueError(f"declare both height and width or neither (got {msg.height}x{msg.width})")
        image_size = (int(msg.height), int(msg.width))
    # A mask prompt fixes the frame size as surely as a declaration does.
    for obj in objects:
        if isinstance(obj.prompt, MaskPrompt):
            shape = obj.prompt.mask.shape
            if image_size is None:
                image_size = (int(shape[0]), int(shape[1]))
            elif tuple(shape) != image_size:
                raise PromptError(
                    f"mask prompt for object {obj.object_id} is {shape[0]}x{shape[1]}"
                    f" but the frames are {image_size[0]}x{image_size[1]}"
                )
    if image_size is not None and image_size[0] * image_size[1] > limits.max_frame_pixels:
        raise ValueError(
            f"frames of {image_size[0]}x{image_size[1]} exceed the limit of {limits.max_frame_pixels} pixels"
        )
    return SessionConfig(
        modality=modality,
        engine=msg.engine,
        engine_options=dict(msg.engine_options),
        objects=objects,
        latency_budget_ms=float(budget),
        frame_rate_hz=float(msg.frame_rate_hz),
        geometry=geometry_from_proto(msg.geometry),
        image_size=image_size,
        client_name=msg.client_name,
        budget_policy=_POLICY_FROM_PB[msg.budget_policy],
        timestamp_clock=_CLOCK_FROM_PB[msg.timestamp_clock],
        gating=_gating_for_session(msg.gating, image_size),
    )


def session_open_to_proto(config: SessionConfig, mask_encoding: int = pb.RLE) -> pb.SessionOpen:
    return pb.SessionOpen(
        modality=_MODALITY_TO_PB[config.modality],
        engine=config.engine,
        engine_options=config.engine_options,
        objects=[object_prompt_to_proto(o) for o in config.objects],
        latency_budget_ms=config.latency_budget_ms,
        frame_rate_hz=config.frame_rate_hz,
        geometry=geometry_to_proto(config.geometry),
        mask_encoding=mask_encoding,
        client_name=config.client_name,
        height=config.image_size[0] if config.image_size else 0,
        width=config.image_size[1] if config.image_size else 0,
        budget_policy=_POLICY_TO_PB[config.budget_policy],
        timestamp_clock=_CLOCK_TO_PB[config.timestamp_clock],
        gating=gating_config_to_proto(config.gating),
    )


# -- results -------------------------------------------------------------------------------


def object_result_to_proto(obj: ObjectResult, encoding: int) -> pb.ObjectResult:
    msg = pb.ObjectResult(
        object_id=obj.object_id,
        label=obj.label,
        mask=mask_to_proto(obj.mask, encoding),
        score=obj.score,
        present=obj.present,
        area_px=obj.area_px,
    )
    if obj.box is not None:
        msg.box.CopyFrom(pb.Box(x0=obj.box[0], y0=obj.box[1], x1=obj.box[2], y1=obj.box[3]))
    if obj.centroid_px is not None:
        msg.centroid_x_px, msg.centroid_y_px = obj.centroid_px
    if obj.centroid_mm is not None:
        msg.centroid_mm.extend(obj.centroid_mm)
    for name in ("box_mm", "displacement_mm", "predicted_mm"):
        value = getattr(obj, name)
        if value is not None:
            getattr(msg, name).extend(value)
    msg.prediction_horizon_ms = obj.prediction_horizon_ms
    if obj.confidence is not None:
        msg.confidence = obj.confidence
    return msg


def object_result_from_proto(msg: pb.ObjectResult) -> ObjectResult:
    empty = msg.area_px == 0
    return ObjectResult(
        object_id=msg.object_id,
        label=msg.label,
        mask=mask_from_proto(msg.mask),
        score=msg.score,
        present=msg.present,
        area_px=int(msg.area_px),
        box=None if not msg.HasField("box") else (msg.box.x0, msg.box.y0, msg.box.x1, msg.box.y1),
        centroid_px=None if empty else (msg.centroid_x_px, msg.centroid_y_px),
        centroid_mm=tuple(msg.centroid_mm) if len(msg.centroid_mm) == 3 else None,  # type: ignore[arg-type]
        box_mm=tuple(msg.box_mm) or None,
        displacement_mm=tuple(msg.displacement_mm) or None,  # type: ignore[arg-type]
        predicted_mm=tuple(msg.predicted_mm) or None,  # type: ignore[arg-type]
        prediction_horizon_ms=msg.prediction_horizon_ms,
        confidence=msg.confidence if msg.HasField("confidence") else None,
    )


_BEAM_TO_PB = {BeamState.ON: pb.BEAM_ON, BeamState.HOLD: pb.BEAM_HOLD}
_BEAM_FROM_PB = {v: k for k, v in _BEAM_TO_PB.items()}


def gating_decision_to_proto(decision: GatingDecision) -> pb.GatingDecision:
    return pb.GatingDecision(
        state=_BEAM_TO_PB[decision.state],
        reason=decision.reason,
        frame_index=decision.frame_index or 0,
        stalled=decision.frame_index is None,
        decided_at_s=time.time(),
        cause=decision.cause,
        guard_mm=decision.guard_mm,
    )


def gating_decision_from_proto(msg: pb.GatingDecision) -> GatingDecision:
    return GatingDecision(
        _BEAM_FROM_PB.get(msg.state, BeamState.HOLD),  # unknown states read as HOLD: fail safe
        msg.reason,
        None if msg.stalled else int(msg.frame_index),
        msg.cause,
        msg.guard_mm,
    )


def gating_config_from_proto(msg: pb.GatingConfig) -> GatingConfig | None:
    if not msg.enabled:
        return None
    defaults = GatingConfig()
    window = None
    if msg.HasField("window_mask"):
        window = mask_from_proto(msg.window_mask)
    return GatingConfig(
        margin_mm=msg.margin_mm or defaults.margin_mm,
        guard_mm=0.0 if msg.no_guard else (msg.guard_mm or defaults.guard_mm),
        window_mask=window,
        min_inside_fraction=msg.min_inside_fraction or defaults.min_inside_fraction,
        min_presence=msg.min_presence or defaults.min_presence,
        stall_timeout_ms=msg.stall_timeout_ms or defaults.stall_timeout_ms,
        beam_latency_ms=msg.beam_latency_ms,
        horizon_ms=msg.horizon_ms,
        predictor=msg.predictor or defaults.predictor,
        object_ids=tuple(msg.object_ids),
        rule=msg.rule or defaults.rule,
        min_confidence=msg.min_confidence if msg.HasField("min_confidence") else defaults.min_confidence,
        guard_sigmas=msg.guard_sigmas if msg.HasField("guard_sigmas") else defaults.guard_sigmas,
        confidence_error_mm=(
            msg.confidence_error_mm if msg.HasField("confidence_error_mm") else defaults.confidence_error_mm
        ),
        min_checked_forecasts=(
            msg.min_checked_forecasts
            if msg.HasField("min_checked_forecasts")
            else defaults.min_checked_forecasts
        ),
    )


def gating_config_to_proto(config: GatingConfig | None) -> pb.GatingConfig:
    if config is None:
        return pb.GatingConfig()
    msg = pb.GatingConfig(
        enabled=True,
        margin_mm=config.margin_mm,
        guard_mm=config.guard_mm,
        no_guard=config.guard_mm == 0,
        min_inside_fraction=config.min_inside_fraction,
        min_presence=config.min_presence,
        stall_timeout_ms=config.stall_timeout_ms,
        beam_latency_ms=config.beam_latency_ms,
        horizon_ms=config.horizon_ms,
        predictor=config.predictor,
        object_ids=config.object_ids,
        rule=config.rule,
        min_confidence=config.min_confidence,
        guard_sigmas=config.guard_sigmas,
        confidence_error_mm=config.confidence_error_mm,
        min_checked_forecasts=config.min_checked_forecasts,
    )
    if config.window_mask is not None:
        msg.window_mask.CopyFrom(mask_to_proto(np.asarray(config.window_mask, dtype=bool)))
    return msg


def reprompt_event_to_proto(event: RepromptEvent) -> pb.RepromptEvent:
    return pb.RepromptEvent(
        object_id=event.object_id,
        label=event.label,
        reason=event.reason,
        action=event.action,
        observed_frame=max(0, event.observed_frame),
        score=event.score,
        iou=event.iou,
        message=event.message,
    )


def reprompt_event_from_proto(msg: pb.RepromptEvent) -> RepromptEvent:
    return RepromptEvent(
        object_id=int(msg.object_id),
        label=msg.label,
        reason=msg.reason,
        action=msg.action,
        observed_frame=int(msg.observed_frame),
        score=float(msg.score),
        iou=float(msg.iou),
        message=msg.message,
    )


def frame_result_to_proto(
    result: FrameResult, encoding: int = pb.RLE, budget_ms: float | None = None
) -> pb.FrameResult:
    """Encode a result; the encoding itself is timed as the ``encode`` stage.

    Serialising masks is the last stage of the pipeline, so its time is added to
    the total (and to the time since acquisition) here, and an answer that the
    encoding pushes over ``budget_ms`` is marked LATE rather than reported on time.
    """
    start = time.perf_counter()
    objects = [object_result_to_proto(o, encoding) for o in result.objects]
    t = result.timing
    msg = pb.FrameResult(
        frame_index=result.frame_index,
        status=_STATUS_TO_PB[result.status],
        message=result.message,
        objects=objects,
        timing=pb.FrameTiming(
            receive_time_s=t.receive_time_s,
            queue_ms=t.queue_ms,
            compute_ms=t.compute_ms,
            total_ms=t.total_ms,
            stages_ms=t.stages_ms,
            since_acquisition_ms=t.since_acquisition_ms,
            batch_size=t.batch_size,
        ),
        applied_update_ids=result.applied_update_ids,
        degradations=result.degradations,
        degradation_reason=result.degradation_reason,
        reprompts=[reprompt_event_to_proto(e) for e in result.reprompts],
    )
    if result.gating is not None:
        msg.gating.CopyFrom(gating_decision_to_proto(result.gating))
    if result.status in (FrameStatus.OK, FrameStatus.LATE):
        encode_ms = (time.perf_counter() - start) * 1000.0
        msg.timing.stages_ms["encode"] = encode_ms
        msg.timing.total_ms += encode_ms
        if t.since_acquisition_ms:
            msg.timing.since_acquisition_ms += encode_ms
        elapsed = msg.timing.since_acquisition_ms or msg.timing.total_ms
        if budget_ms is not None and result.status is FrameStatus.OK and elapsed > budget_ms:
            msg.status = pb.LATE
            msg.message = (
                f"answered {elapsed:.1f} ms after the frame, over the session budget of {budget_ms:.0f} ms"
            )
            if (
                msg.HasField("gating") and msg.gating.state == pb.BEAM_ON
            ):  # late answers never keep the beam on
                msg.gating.state = pb.BEAM_HOLD
                msg.gating.reason = f"frame LATE: {msg.message}"
                msg.gating.cause = "frame_status"
    return msg


def frame_result_from_proto(msg: pb.FrameResult) -> FrameResult:
    t = msg.timing
    return FrameResult(
        frame_index=int(msg.frame_index),
        status=_STATUS_FROM_PB.get(msg.status, FrameStatus.ERROR),
        objects=[object_result_from_proto(o) for o in msg.objects],
        timing=FrameTiming(
            t.receive_time_s,
            t.queue_ms,
            t.compute_ms,
            t.total_ms,
            dict(t.stages_ms),
            t.since_acquisition_ms,
            t.batch_size,
        ),
        message=msg.message,
        applied_update_ids=list(msg.applied_update_ids),
        degradations=list(msg.degradations),
        degradation_reason=msg.degradation_reason,
        reprompts=[reprompt_event_from_proto(e) for e in msg.reprompts],
        gating=gating_decision_from_proto(msg.gating) if msg.HasField("gating") else None,
    )
