"""Beam gating: per frame, may the beam be on? Fail-safe by construction.

The beam is on only when every gated object is present, confidently tracked,
answered in time, and both its *predicted* position (at the latency horizon) and
its measured one lie inside the gating window by more than the guard band: a
forecast may hold the beam before the target leaves, but never release it before
the target is seen back inside. Any doubt holds the beam:
a missing, late, dropped or errored frame, a lost object, a low presence score,
a tracking confidence under the threshold, or silence on the stream for longer
than the timeout. Every HOLD carries a reason (a sentence) and a cause (a short
code, :data:`tracker.gating.types.HOLD_CAUSES`).

Two rules (``GatingConfig.rule``):

* ``"centroid"``: the distance of the predicted (and measured) centroid from the
  object's reference position must stay under ``margin - guard`` (Elekta Unity style);
* ``"mask"``: at least ``min_inside_fraction`` of the tracked target, where it is and
  moved to its predicted position, must lie inside the boundary region, and by more than
  the guard (ViewRay MRIdian's "percent of target outside the boundary"). The
  boundary is ``window_mask`` when given, else the object's first confident
  mask expanded by ``margin_mm``.

The guard band is taken from the estimated error, not a constant:
``guard = max(guard_mm, guard_sigmas * sqrt(guard_mm^2 + e_pred^2 + e_track^2 + e_latency^2))``,
where ``guard_mm`` is the tracking error that confidence does not see (and the guard's
floor), ``e_pred`` is the RMS of the gate's own recent prediction errors (each
forecast is checked when the measurement for its time arrives), ``e_track =
confidence_error_mm * (1 - confidence)`` turns the engine's tracking confidence
into millimetres, and ``e_latency = speed * (p90 - median latency)`` is how far
the target moves when an answer arrives later than the forecast assumed. The four are
independent sources of error, so they add in quadrature.

No beam before the prediction error is known: the gate holds (``warming_up``) until
``min_checked_forecasts`` forecasts have been checked, and again after every doubtful
frame (the object lost, or under the presence or confidence threshold). A doubtful
measurement is no evidence: the forecasts still waiting for their check are dropped, none
is made from it, and the count starts again from the next trustworthy frame.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
from scipy import ndimage

from tracker.gating.predictor import MotionPredictor, make_predictor
from tracker.gating.types import BeamState, GatingConfig, GatingDecision
from tracker.objects import ObjectRegistry
from tracker.types import FrameResult, FrameStatus, Geometry, ObjectResult


@dataclass
class _ObjectMotion:
    predictor: MotionPredictor
    reference_mm: np.ndarray | None = None
    boundary_mm: np.ndarray | None = None  # mask rule: depth inside the boundary region (mm), per pixel
    # Forecasts still to be checked: (time they are for, position); and the last measurement.
    pending: list[tuple[float, np.ndarray]] = field(default_factory=list)
    last: tuple[float, np.ndarray] | None = None
    errors_mm: list[float] = field(default_factory=list)  # recent prediction errors
    checked: int = 0  # forecasts checked since the start or the last doubtful frame
    doubted: bool = False  # a doubtful frame reset ``checked``
    slot: int | None = None  # the registry slot of the object this state is for

    def doubt(self) -> None:
        """Forget the unchecked forecasts and the count: they rest on a doubtful measurement."""
        self.pending.clear()
        self.checked = 0
        self.doubted = True

    def check_forecasts(self, t_s: float, position: np.ndarray) -> None:
        """Score the forecasts made for times up to ``t_s`` against the measured track."""
        due = [(t, p) for t, p in self.pending if t <= t_s]
        self.pending = [(t, p) for t, p in self.pending if t > t_s]
        for t, forecast in due:
            actual = position
            if self.last is not None and t_s > self.last[0] and t >= self.last[0]:
                w = (t - self.last[0]) / (t_s - self.last[0])  # interpolate between measurements
                actual = (1 - w) * self.last[1] + w * position
            self.errors_mm.append(float(np.linalg.norm(forecast - actual)))
            self.checked += 1
        del self.errors_mm[:-10]  # recent ones: the error of the breathing as it is now
        self.last = (t_s, position)

    def prediction_error_mm(self) -> float:
        """RMS of the recent forecast errors; 0 before any was checked."""
        return float(np.sqrt(np.mean(np.square(self.errors_mm)))) if self.errors_mm else 0.0


@dataclass
class Gate:
    """One session's gating state: predictors per object, the latency estimate, the last decision."""

    config: GatingConfig
    geometry: Geometry
    # The session's objects (tracker.objects): an object's motion state lasts as long as it does.
    # None (offline use): every object the gate is shown.
    objects: ObjectRegistry | None = None
    _objects: dict[int, _ObjectMotion] = field(default_factory=dict)
    _latencies_ms: list[float] = field(default_factory=list)
    last_decision: GatingDecision | None = None

    def set_reference(self, object_id: int, reference_mm: tuple[float, float, float] | np.ndarray) -> None:
        self._motion(object_id).reference_mm = np.asarray(reference_mm, dtype=float)

    def forget(self, object_id: int) -> None:
        self._objects.pop(object_id, None)

    def _motion(self, object_id: int) -> _ObjectMotion:
        slot = self.objects.slot_or_none(object_id) if self.objects is not None else None
        if object_id not in self._objects or self._objects[object_id].slot != slot:  # new, or added anew
            self._objects[object_id] = _ObjectMotion(make_predictor(self.config.predictor), slot=slot)
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
        if self.objects is not None:  # removed objects take their motion state with them
            for gone in set(self._objects).difference(self.objects.ids()):
                del self._objects[gone]
        for obj in result.objects:
            motion = self._motion(obj.object_id)
            if self._doubt(obj) is not None:
                motion.doubt()
            if obj.centroid_mm is None or not obj.present:
                continue
            position = np.asarray(obj.centroid_mm, dtype=float)
            if motion.reference_mm is None:
                motion.reference_mm = position  # the first confident position is the reference
            if self.config.mask_rule and motion.boundary_mm is None:
                motion.boundary_mm = self._boundary_depth(obj)
            motion.check_forecasts(acquired_s, position)
            motion.predictor.update(acquired_s, position)
            predicted = motion.predictor.predict(horizon_ms / 1000.0)
            if predicted is not None and self._doubt(obj) is None:
                motion.pending.append((acquired_s + horizon_ms / 1000.0, np.asarray(predicted, dtype=float)))
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
            reason = f"frame {result.status.value}: {result.message}".strip(": ")
            return GatingDecision(BeamState.HOLD, reason, index, "frame_status")
        gated = [
            o for o in result.objects if not self.config.object_ids or o.object_id in self.config.object_ids
        ]
        missing = set(self.config.object_ids) - {o.object_id for o in result.objects}
        if missing:
            return GatingDecision(
                BeamState.HOLD, f"object(s) {sorted(missing)} not tracked", index, "not_tracked"
            )
        if not gated:
            return GatingDecision(BeamState.HOLD, "no object to gate on", index, "not_tracked")
        guard = 0.0
        for obj in gated:
            hold = self._outside(obj)
            guard = max(guard, self.guard_mm(obj))
            if hold is not None:
                cause, reason = hold
                return GatingDecision(
                    BeamState.HOLD, f"object {obj.object_id}: {reason}", index, cause, guard
                )
        return GatingDecision(BeamState.ON, "every gated object is inside the window", index, "", guard)

    def estimated_error_mm(self, obj: ObjectResult) -> float:
        """One standard error of the gated position: tracking error, seen by confidence or not,
        prediction error and latency jitter."""
        motion = self._motion(obj.object_id)
        e_pred = motion.prediction_error_mm()
        confidence = 0.0 if obj.confidence is None else obj.confidence
        e_track = self.config.confidence_error_mm * (1.0 - confidence)
        e_unseen = self.config.guard_mm
        return float(np.sqrt(e_unseen**2 + e_pred**2 + e_track**2 + self._latency_error_mm(motion) ** 2))

    def _latency_error_mm(self, motion: _ObjectMotion) -> float:
        """How far the target moves during the latency's jitter: the forecast is made for the
        median latency, but an answer that arrives later takes effect later."""
        recent = self._latencies_ms[-50:]
        if self.config.horizon_ms > 0 or len(recent) < 5:
            return 0.0
        spread_s = float(np.percentile(recent, 90) - np.median(recent)) / 1000.0
        h = self.horizon_ms() / 1000.0
        now, later = motion.predictor.predict(h), motion.predictor.predict(h + 0.1)
        if now is None or later is None:
            return 0.0
        speed = float(np.linalg.norm(later - now)) / 0.1
        return speed * spread_s

    def guard_mm(self, obj: ObjectResult) -> float:
        """The guard band for ``obj``: the configured floor, widened to the estimated error."""
        return max(self.config.guard_mm, self.config.guard_sigmas * self.estimated_error_mm(obj))

    def _doubt(self, obj: ObjectResult) -> tuple[str, str] | None:
        """(cause, reason) when ``obj``'s measurement is not to be trusted: lost or unconfident."""
        if obj.centroid_mm is None:
            return "lost", "lost (empty mask)"
        if obj.score < self.config.min_presence:
            return "lost", f"presence score {obj.score:.2f} below {self.config.min_presence:.2f}"
        if not obj.present:
            return "lost", "lost"
        if self.config.min_confidence > 0:
            if obj.confidence is None:
                return "low_confidence", "no tracking confidence reported"
            if obj.confidence < self.config.min_confidence:
                needed = self.config.min_confidence
                return "low_confidence", f"tracking confidence {obj.confidence:.2f} below {needed:.2f}"
        return None

    def _outside(self, obj: ObjectResult) -> tuple[str, str] | None:
        """(cause, reason) why ``obj`` keeps the beam off, or None when it is inside the window."""
        if (doubt := self._doubt(obj)) is not None:
            return doubt
        predicted = getattr(obj, "predicted_mm", None)
        if predicted is None:
            return "lost", "no position prediction yet"
        motion = self._motion(obj.object_id)
        checked, needed = motion.checked, self.config.min_checked_forecasts
        if self.config.guard_sigmas > 0 and checked < needed:
            since = " since the last doubtful frame" if motion.doubted else ""
            return "warming_up", f"{checked} of {needed} forecasts checked{since}: prediction error not known"
        guard = self.guard_mm(obj)
        # A forecast may hold the beam early (the target leaving), never release it early (the
        # target coming back): both the predicted and the measured position must pass.
        positions = {"predicted": np.asarray(predicted), "measured": np.asarray(obj.centroid_mm)}
        if self.config.mask_rule:
            for which, position in positions.items():
                if (hold := self._outside_mask(obj, position, guard, which)) is not None:
                    return hold
            return None
        reference = motion.reference_mm
        assert reference is not None
        distances = {which: float(np.linalg.norm(p - reference)) for which, p in positions.items()}
        which = max(distances, key=lambda k: distances[k])
        distance, margin = distances[which], self.config.margin_mm
        if distance > margin:
            return (
                "outside",
                f"{which} {distance:.1f} mm from the reference, outside the {margin:.1f} mm margin",
            )
        if distance > margin - guard:
            return (
                "guard_band",
                f"{which} {distance:.1f} mm from the reference, within its {guard:.1f} mm guard band"
                f" (estimated error) of the {margin:.1f} mm margin",
            )
        return None

    def _boundary_depth(self, obj: ObjectResult) -> np.ndarray:
        """Depth (mm) of every pixel inside the boundary region; 0 outside it."""
        window = self.config.window_mask
        if window is None:  # the object's first confident mask expanded by the margin
            g = self.geometry
            outside = ndimage.distance_transform_edt(~obj.mask, sampling=(g.spacing_mm[1], g.spacing_mm[0]))
            window = outside <= self.config.margin_mm
        window = np.asarray(window, dtype=bool)
        g = self.geometry
        return ndimage.distance_transform_edt(window, sampling=(g.spacing_mm[1], g.spacing_mm[0]))

    def _outside_mask(
        self, obj: ObjectResult, position_mm: np.ndarray, guard: float, which: str = "predicted"
    ) -> tuple[str, str] | None:
        depth = self._motion(obj.object_id).boundary_mm
        assert depth is not None and obj.centroid_px is not None
        if depth.shape != obj.mask.shape:
            return "outside", f"gating mask is {depth.shape} but frames are {obj.mask.shape}"
        shift_px = self._mm_to_px_shift(position_mm - np.asarray(obj.centroid_mm))
        ys, xs = np.nonzero(obj.mask)
        ys = np.round(ys + shift_px[1]).astype(int)
        xs = np.round(xs + shift_px[0]).astype(int)
        in_image = (ys >= 0) & (ys < depth.shape[0]) & (xs >= 0) & (xs < depth.shape[1])
        d = np.zeros(ys.shape)
        d[in_image] = depth[ys[in_image], xs[in_image]]
        needed = self.config.min_inside_fraction
        inside = float((d > 0).mean()) if ys.size else 0.0
        if inside < needed:
            return "outside", f"{inside:.0%} of the {which} target inside the boundary (needs {needed:.0%})"
        # Inside by more than the guard: a pixel this deep stays inside under that much error.
        deep = float((d > guard).mean()) if ys.size else 0.0
        if deep < needed:
            return (
                "guard_band",
                f"{deep:.0%} of the {which} target inside the boundary by its {guard:.1f} mm guard band"
                f" (needs {needed:.0%})",
            )
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
            cause="stalled",
        )
        self.last_decision = decision
        return decision
