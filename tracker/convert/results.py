"""Results: what the server answers per frame (objects, timing, gating decision, re-prompts)."""

from __future__ import annotations

import time

from tracker.convert.prompts import mask_from_proto, mask_to_proto
from tracker.gating.types import BeamState, GatingDecision
from tracker.types import (
    FrameResult,
    FrameStatus,
    FrameTiming,
    ObjectResult,
    RepromptEvent,
)
from tracker.v1 import tracker_pb2 as pb

_STATUS_TO_PB = {
    FrameStatus.OK: pb.OK,
    FrameStatus.LATE: pb.LATE,
    FrameStatus.DROPPED: pb.DROPPED,
    FrameStatus.ERROR: pb.ERROR,
    FrameStatus.LOST: pb.LOST,
}
_STATUS_FROM_PB = {v: k for k, v in _STATUS_TO_PB.items()}
_BEAM_TO_PB = {BeamState.ON: pb.BEAM_ON, BeamState.HOLD: pb.BEAM_HOLD}
_BEAM_FROM_PB = {v: k for k, v in _BEAM_TO_PB.items()}


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
