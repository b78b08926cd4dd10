"""Sessions: the opening message (modality, budget, geometry, objects, gating) and its checks."""

from __future__ import annotations

import math

import numpy as np

from tracker.convert.limits import Limits, default_budget_ms
from tracker.convert.prompts import (
    mask_from_proto,
    mask_to_proto,
    object_prompt_from_proto,
    object_prompt_to_proto,
)
from tracker.gating.types import GatingConfig
from tracker.types import (
    BudgetPolicy,
    Geometry,
    MaskPrompt,
    Modality,
    PromptError,
    SessionConfig,
    TimestampClock,
)
from tracker.v1 import tracker_pb2 as pb

_MODALITY_FROM_PB = {
    pb.MODALITY_UNSPECIFIED: Modality.OTHER,
    pb.CINE_MRI: Modality.CINE_MRI,
    pb.ENDOSCOPY: Modality.ENDOSCOPY,
    pb.OTHER: Modality.OTHER,
}
_MODALITY_TO_PB = {Modality.CINE_MRI: pb.CINE_MRI, Modality.ENDOSCOPY: pb.ENDOSCOPY, Modality.OTHER: pb.OTHER}
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
