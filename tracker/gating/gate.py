"""Beam gating: per frame, may the beam be on? Fail-safe by construction.

The beam is on only when every gated object is present, confidently tracked,
answered in time, and its *predicted* position (at the latency horizon) lies
inside the gating window. Any doubt holds the beam: a missing, late, dropped or
errored frame, a lost object, a low presence score, or silence on the stream
for longer than the timeout.

The window is either a margin around each object's reference position (the
distance of the predicted centroid from the reference, in mm) or a mask in the
image (a fraction of the object's mask, moved to its predicted position, must
lie inside it).
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field

import numpy as np

from tracker.gating.predictor import MotionPredictor, make_predictor
from tracker.types import FrameResult, FrameStatus, Geometry, ObjectResult


class BeamState(enum.Enum):
    ON = "BEAM_ON"
    HOLD = "BEAM_HOLD"


@dataclass(frozen=True)
class GatingDecision:
    state: BeamState
    reason: str
    frame_index: int | None = None  # None: decided without a frame (a stalled stream)


@dataclass(frozen=True)
class GatingConfig:
    margin_mm: float = 3.0  # window: a sphere of this radius around each reference position
    # The beam stays on only while the predicted position is this far inside the margin:
    # a guard band for tracking and prediction error, traded against duty cycle.
    guard_mm: float = 0.5
    window_mask: np.ndarray | None = None  # or: a mask in the image (bool H x W)
    min_inside_fraction: float = 0.95  # mask window: share of the object that must lie inside
    min_presence: float = 0.5  # presence score under which the object counts as lost
    stall_timeout_ms: float = 500.0  # hold when no frame has been answered for this long
    beam_latency_ms: float = 0.0  # added to the measured latency to make the horizon
    horizon_ms: float = 0.0  # > 0: a fixed prediction horizon instead of latency + beam latency
    predictor: str = "kalman"
    object_ids: tuple[int, ...] = ()  # objects that gate the beam; empty: all

    def __post_init__(self) -> None:
        if not np.isfinite(self.margin_mm) or self.margin_mm <= 0:
            raise ValueError(f"gating margin must be a positive number of mm, got {self.margin_mm}")
        if not 0 <= self.guard_mm < self.margin_mm:
            raise ValueError(
                f"gating guard must lie in [0, margin), got {self.guard_mm} mm for {self.margin_mm} mm"
            )
        if not 0 < self.min_inside_fraction <= 1:
            raise ValueError(f"min_inside_fraction must be in (0, 1], got {self.min_inside_fraction}")
        if self.stall_timeout_ms <= 0:
            raise ValueError(f"stall timeout must be positive, got {self.stall_timeout_ms} ms")
        make_predictor(self.predictor)  # validates the name


@dataclass
class _ObjectMotion:
    predictor: MotionPredictor
    reference_mm: np.ndarray | None = None


@dataclass
class Gate:
    """One session's gating state: predictors per object, the latency estimate, the last decision."""

    config: GatingConfig
    geometry: Geometry
    _objects: dict[int, _ObjectMotion] = field(default_factory=dict)
    _latencies_ms: list[float] = field(default_factory=list)
    last_decision: GatingDecision | None = None

    def set_reference(self, object_id: int, reference_mm: tuple[float, float, float] | np.ndarray) -> None:
        self._motion(object_id).reference_mm = np.asarray(reference_mm, dtype=float)

    def forget(self, object_id: int) -> None:
        self._objects.pop(object_id, None)

    def _motion(self, object_id: int) -> _ObjectMotion:
        if object_id not in self._objects:
            self._objects[object_id] = _ObjectMotion(make_predictor(self.config.predictor))
        return self._objects[object_id]

    def horizon_ms(self) -> float:
        """The prediction horizon: fixed, or the session's median latency plus the beam's."""
        if self.config.horizon_ms > 0:
            return self.config.horizon_ms
        recent = self._latencies_ms[-50:]
        measured = float(np.median(recent)) if recent else 0.0
        return measured + self.config.beam_latency_ms

    def observe(self, result: FrameResult, acquired_s: float, latency_ms: float) -> GatingDecision:
        """Update predictions from an answered frame, fill its objects' motion fields, decide."""
        if result.status is FrameStatus.OK and latency_ms > 0:
            self._latencies_ms.append(latency_ms)
            del self._latencies_ms[:-200]
        horizon_ms = self.horizon_ms()
        for obj in result.objects:
            motion = self._motion(obj.object_id)
            if obj.centroid_mm is None or not obj.present:
                continue
            position = np.asarray(obj.centroid_mm, dtype=float)
            if motion.reference_mm is None:
                motion.reference_mm = position  # the first confident position is the reference
            motion.predictor.update(acquired_s, position)
            predicted = motion.predictor.predict(horizon_ms / 1000.0)
            obj.displacement_mm = tuple(float(v) for v in position - motion.reference_mm)  # type: ignore[assignment]
            if predicted is not None:
                obj.predicted_mm = tuple(float(v) for v in predicted)  # type: ignore[assignment]
                obj.prediction_horizon_ms = horizon_ms
        decision = self.decide(result)
        self.last_decision = decision
        return decision

    def decide(self, result: FrameResult) -> GatingDecision:
        index = result.frame_index
        if result.status is not FrameStatus.OK:
            return GatingDecision(
                BeamState.HOLD, f"frame {result.status.value}: {result.message}".strip(": "), index
            )
        gated = [
            o for o in result.objects if not self.config.object_ids or o.object_id in self.config.object_ids
        ]
        missing = set(self.config.object_ids) - {o.object_id for o in result.objects}
        if missing:
            return GatingDecision(BeamState.HOLD, f"object(s) {sorted(missing)} not tracked", index)
        if not gated:
            return GatingDecision(BeamState.HOLD, "no object to gate on", index)
        for obj in gated:
            reason = self._outside(obj)
            if reason is not None:
                return GatingDecision(BeamState.HOLD, f"object {obj.object_id}: {reason}", index)
        return GatingDecision(BeamState.ON, "every gated object is inside the window", index)

    def _outside(self, obj: ObjectResult) -> str | None:
        """Why ``obj`` keeps the beam off, or None when it is inside the window."""
        if obj.centroid_mm is None:
            return "lost (empty mask)"
        if obj.score < self.config.min_presence:
            return f"presence score {obj.score:.2f} below {self.config.min_presence:.2f}"
        if not obj.present:
            return "lost"
        predicted = getattr(obj, "predicted_mm", None)
        if predicted is None:
            return "no position prediction yet"
        if self.config.window_mask is not None:
            return self._outside_mask(obj, np.asarray(predicted))
        reference = self._motion(obj.object_id).reference_mm
        assert reference is not None
        distance = float(np.linalg.norm(np.asarray(predicted) - reference))
        if distance > self.config.margin_mm - self.config.guard_mm:
            margin, guard = self.config.margin_mm, self.config.guard_mm
            return (
                f"predicted {distance:.1f} mm from the reference, outside the {margin:.1f} mm margin"
                f" less its {guard:.1f} mm guard"
            )
        return None

    def _outside_mask(self, obj: ObjectResult, predicted_mm: np.ndarray) -> str | None:
        window = self.config.window_mask
        assert window is not None and obj.centroid_px is not None
        if window.shape != obj.mask.shape:
            return f"gating mask is {window.shape} but frames are {obj.mask.shape}"
        shift_px = self._mm_to_px_shift(predicted_mm - np.asarray(obj.centroid_mm))
        ys, xs = np.nonzero(obj.mask)
        ys = np.clip(np.round(ys + shift_px[1]).astype(int), 0, window.shape[0] - 1)
        xs = np.clip(np.round(xs + shift_px[0]).astype(int), 0, window.shape[1] - 1)
        inside = float(window[ys, xs].mean()) if ys.size else 0.0
        if inside < self.config.min_inside_fraction:
            needed = self.config.min_inside_fraction
            return f"{inside:.0%} of the predicted target inside the gating mask (needs {needed:.0%})"
        return None

    def _mm_to_px_shift(self, delta_mm: np.ndarray) -> np.ndarray:
        """A patient-space displacement as (dx, dy) pixels in the image plane."""
        g = self.geometry
        dx = float(np.dot(delta_mm, g.x_direction)) / g.spacing_mm[0]
        dy = float(np.dot(delta_mm, g.y_direction)) / g.spacing_mm[1]
        return np.array([dx, dy])

    def stalled(self, silent_ms: float) -> GatingDecision | None:
        """A HOLD when the stream has been silent past the timeout (once per stall)."""
        if silent_ms < self.config.stall_timeout_ms:
            return None
        if self.last_decision is not None and self.last_decision.frame_index is None:
            return None  # already held for this stall
        decision = GatingDecision(
            BeamState.HOLD,
            f"no frame answered for {silent_ms:.0f} ms (timeout {self.config.stall_timeout_ms:.0f} ms)",
        )
        self.last_decision = decision
        return decision
