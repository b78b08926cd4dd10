"""Uncertainty-aware gating: confidence threshold, error-driven guard band, the mask rule, HOLD causes."""

from __future__ import annotations

import numpy as np
import pytest

from tracker import convert
from tracker.gating.gate import Gate
from tracker.gating.types import HOLD_CAUSES, BeamState, GatingConfig
from tracker.masks import describe
from tracker.types import FrameResult, FrameStatus, Geometry, ObjectTrack


def _frame(index: int, x: float, confidence: float | None = 1.0, size: int = 6) -> FrameResult:
    mask = np.zeros((40, 60), bool)
    mask[10 : 10 + size, int(x) : int(x) + size] = True
    obj = describe(ObjectTrack(1, mask, 1.0, confidence), "", Geometry())
    return FrameResult(index, FrameStatus.OK, objects=[obj])


def _gate(**kw) -> Gate:
    base = {"margin_mm": 3.0, "guard_mm": 0.0, "horizon_ms": 250.0, "predictor": "hold"}
    return Gate(GatingConfig(**{**base, **kw}), Geometry())


def test_low_confidence_holds_and_says_so() -> None:
    gate = _gate(min_confidence=0.5, guard_sigmas=0.0)
    assert gate.observe(_frame(0, 20, 0.9), 0.0, 10).state is BeamState.ON
    held = gate.observe(_frame(1, 20, 0.3), 0.25, 10)
    assert held.state is BeamState.HOLD and held.cause == "low_confidence"
    assert "confidence 0.30 below 0.50" in held.reason
    assert gate.observe(_frame(2, 20, 0.8), 0.5, 10).state is BeamState.ON


def test_a_missing_confidence_holds_when_a_threshold_is_set() -> None:
    gate = _gate(min_confidence=0.5)
    frame = _frame(0, 20)
    frame.objects[0].confidence = None
    held = gate.observe(frame, 0.0, 10)
    assert held.state is BeamState.HOLD and held.cause == "low_confidence"


def test_guard_band_grows_with_the_estimated_error() -> None:
    # Confidence 1 and a still target: no error, no guard, the beam stays on at 2 mm.
    steady = _gate(guard_sigmas=2.0, min_confidence=0.0)
    steady.set_reference(1, (22.5, 12.5, 0.0))  # the target sits still 2 mm from its reference
    for k in range(4):
        decision = steady.observe(_frame(k, 22), k * 0.25, 10)
    assert decision.state is BeamState.ON and decision.guard_mm == pytest.approx(0.0)
    # Lower confidence widens the guard: 2 sigmas x (1 - 0.6) x 2 mm = 1.6 mm, and 2 mm + 1.6 > 3.
    unsure = _gate(guard_sigmas=2.0, min_confidence=0.0, confidence_error_mm=2.0, min_checked_forecasts=0)
    unsure.observe(_frame(0, 20, 0.6), 0.0, 10)
    held = unsure.observe(_frame(1, 22, 0.6), 0.25, 10)
    assert held.state is BeamState.HOLD and held.cause == "guard_band"
    assert held.guard_mm == pytest.approx(2.0 * np.hypot(2.0, 0.4 * 2.0), rel=1e-6)  # the forecast erred 2 mm


def test_the_unseen_tracking_error_adds_in_quadrature() -> None:
    # guard_mm is the tracking error confidence does not see: with a still target at
    # confidence 0.75 (e_track = 2 mm x 0.25) the guard is 2 sigmas x hypot(0.6, 0.5), not
    # the larger of the two terms; and it stays the floor when sigmas are 0.
    gate = _gate(guard_mm=0.6, guard_sigmas=2.0, min_confidence=0.0, confidence_error_mm=2.0)
    for k in range(3):
        decision = gate.observe(_frame(k, 20, 0.75), k * 0.25, 10)
    assert decision.state is BeamState.ON
    assert decision.guard_mm == pytest.approx(2.0 * np.hypot(0.6, 0.5), rel=1e-6)
    fixed = _gate(guard_mm=0.6, guard_sigmas=0.0, min_confidence=0.0)
    for k in range(3):
        decision = fixed.observe(_frame(k, 20, 0.75), k * 0.25, 10)
    assert decision.guard_mm == pytest.approx(0.6)


def test_a_guard_that_covers_the_window_is_refused() -> None:
    with pytest.raises(ValueError, match="guard band would cover the whole window"):
        GatingConfig(margin_mm=3.0, guard_mm=1.5, guard_sigmas=2.0)
    GatingConfig(margin_mm=3.0, guard_mm=1.5, guard_sigmas=1.9)  # just under: allowed


def test_prediction_errors_are_measured_online() -> None:
    gate = _gate(guard_sigmas=1.0, min_confidence=0.0)
    xs = [20, 21, 20, 21, 20, 21]  # a hold predictor 250 ms ahead errs by 1 mm every frame
    for k, x in enumerate(xs):
        gate.observe(_frame(k, x), k * 0.25, 10)
    obj = _frame(6, 20).objects[0]
    assert gate.estimated_error_mm(obj) == pytest.approx(1.0, abs=1e-6)


def test_mask_rule_from_the_first_mask_needs_p_percent_inside() -> None:
    gate = _gate(rule="mask", margin_mm=3.0, min_inside_fraction=0.95, guard_sigmas=0.0, min_confidence=0.0)
    assert gate.observe(_frame(0, 20), 0.0, 10).state is BeamState.ON
    assert gate.observe(_frame(1, 22), 0.25, 10).state is BeamState.ON  # within the 3 mm boundary
    held = gate.observe(_frame(2, 25), 0.5, 10)  # 5 px: a third of the target is out
    assert held.state is BeamState.HOLD and held.cause == "outside"
    assert "inside the boundary (needs 95%)" in held.reason
    lax = _gate(rule="mask", margin_mm=3.0, min_inside_fraction=0.6, guard_sigmas=0.0, min_confidence=0.0)
    lax.observe(_frame(0, 20), 0.0, 10)
    assert lax.observe(_frame(1, 25), 0.25, 10).state is BeamState.ON  # 67 % inside is enough at P = 60 %


def test_mask_rule_guard_band_demands_depth() -> None:
    gate = _gate(rule="mask", margin_mm=3.0, guard_mm=2.5, guard_sigmas=0.0, min_confidence=0.0)
    gate.observe(_frame(0, 20), 0.0, 10)
    held = gate.observe(_frame(1, 21), 0.25, 10)
    assert held.state is BeamState.HOLD and held.cause == "guard_band"


def test_every_hold_has_a_known_cause() -> None:
    gate = _gate(min_confidence=0.5, guard_sigmas=2.0)
    frames = [_frame(k, 20 + (k % 7), 0.2 + 0.1 * (k % 9)) for k in range(40)]
    frames[5] = FrameResult(5, FrameStatus.DROPPED)
    frames[9] = FrameResult(9, FrameStatus.OK)  # nothing tracked
    holds = [gate.observe(f, k * 0.25, 10) for k, f in enumerate(frames)]
    holds = [d for d in holds if d.state is BeamState.HOLD]
    assert len(holds) > 5
    assert all(d.cause in HOLD_CAUSES and d.reason for d in holds)
    assert {"frame_status", "not_tracked", "low_confidence"} <= {d.cause for d in holds}


def test_confidence_cause_and_guard_cross_the_wire() -> None:
    gate = _gate(min_confidence=0.5)
    result = _frame(0, 20, 0.25)
    result.gating = gate.observe(result, 0.0, 10)
    msg = convert.frame_result_to_proto(result)
    back = convert.frame_result_from_proto(msg)
    assert back.objects[0].confidence == pytest.approx(0.25)
    assert back.gating is not None and back.gating.cause == "low_confidence"
    config = GatingConfig(rule="mask", min_confidence=0.0, guard_sigmas=1.5, confidence_error_mm=4.0)
    again = convert.gating_config_from_proto(convert.gating_config_to_proto(config))
    assert again is not None
    assert (again.rule, again.min_confidence, again.guard_sigmas, again.confidence_error_mm) == (
        "mask",
        0.0,
        1.5,
        4.0,
    )


def test_bad_uncertainty_settings_are_refused() -> None:
    with pytest.raises(ValueError, match="rule"):
        GatingConfig(rule="box")
    with pytest.raises(ValueError, match="min_confidence"):
        GatingConfig(min_confidence=1.5)
    with pytest.raises(ValueError, match="guard_sigmas"):
        GatingConfig(guard_sigmas=-1)


def test_latency_jitter_widens_the_guard_for_a_moving_target() -> None:
    def run(latencies: list[float]) -> float:
        gate = Gate(
            GatingConfig(
                margin_mm=20.0, guard_mm=0.0, predictor="kalman", guard_sigmas=1.0, min_confidence=0.0
            ),
            Geometry(),
        )
        decision = None
        for k, latency in enumerate(latencies):
            decision = gate.observe(_frame(k, 5 + 2 * k), k * 0.25, latency)  # 8 mm/s, steady
        assert decision is not None
        return decision.guard_mm

    steady = run([50.0] * 12)
    jittery = run([50.0, 50.0, 400.0] * 4)
    assert jittery > steady + 1.0  # 8 mm/s x ~0.3 s of jitter


def test_the_beam_holds_until_the_prediction_error_is_known() -> None:
    gate = _gate(guard_sigmas=1.0, min_confidence=0.0, min_checked_forecasts=3)
    decisions = [gate.observe(_frame(k, 20), k * 0.25, 10) for k in range(5)]
    assert [d.cause for d in decisions[:3]] == ["warming_up"] * 3
    assert "0 of 3 forecasts checked" in decisions[0].reason
    assert decisions[3].state is BeamState.ON and decisions[4].state is BeamState.ON


def _doubtful(kind: str, index: int) -> FrameResult:
    """A frame whose measurement is not to be trusted: low confidence, low presence, or no mask."""
    if kind == "low_confidence":
        return _frame(index, 20, confidence=0.3)
    mask = np.zeros((40, 60), bool)
    if kind == "low_presence":
        mask[10:16, 20:26] = True
    track = ObjectTrack(1, mask, 0.2 if kind == "low_presence" else 0.0, 1.0)
    return FrameResult(index, FrameStatus.OK, objects=[describe(track, "", Geometry())])


@pytest.mark.parametrize(
    ("kind", "cause"), [("low_confidence", "low_confidence"), ("low_presence", "lost"), ("empty", "lost")]
)
def test_after_a_doubtful_frame_forecasts_are_checked_again_before_the_beam(kind: str, cause: str) -> None:
    gate = _gate(guard_sigmas=1.0, min_confidence=0.5, min_checked_forecasts=1)
    frames = [_frame(0, 20), _frame(1, 20), _frame(2, 20), _doubtful(kind, 3), _frame(4, 20), _frame(5, 20)]
    decisions = [gate.observe(f, k * 0.25, 10) for k, f in enumerate(frames)]
    assert [d.cause for d in decisions] == ["warming_up", "", "", cause, "warming_up", ""]
    assert "0 of 1 forecasts checked since the last doubtful frame" in decisions[4].reason
    assert decisions[5].state is BeamState.ON


def test_a_forecast_holds_the_beam_early_but_never_releases_it_early() -> None:
    gate = _gate(guard_sigmas=0.0, min_confidence=0.0)
    assert gate.observe(_frame(0, 20), 0.0, 10).state is BeamState.ON  # reference: centroid (22.5, 12.5)
    coming_back = _frame(1, 25)  # measured 5 mm out ...
    coming_back.objects[0].predicted_mm = (23.5, 12.5, 0.0)  # ... forecast 1 mm in
    held = gate.decide(coming_back)
    assert held.state is BeamState.HOLD and held.cause == "outside"
    assert "measured 5.0 mm from the reference" in held.reason
    leaving = _frame(2, 21)  # measured 1 mm out, forecast 4 mm out
    leaving.objects[0].predicted_mm = (26.5, 12.5, 0.0)
    held = gate.decide(leaving)
    assert held.state is BeamState.HOLD and "predicted 4.0 mm" in held.reason
    both_in = _frame(3, 21)
    both_in.objects[0].predicted_mm = (23.0, 12.5, 0.0)
    assert gate.decide(both_in).state is BeamState.ON


def test_mask_rule_needs_the_measured_target_inside_as_well() -> None:
    gate = _gate(rule="mask", min_inside_fraction=0.95, guard_sigmas=0.0, min_confidence=0.0)
    gate.observe(_frame(0, 20), 0.0, 10)  # boundary: this mask expanded by 3 mm
    coming_back = _frame(1, 25)  # 5 px out: a third of the target is outside ...
    coming_back.objects[0].predicted_mm = (23.5, 12.5, 0.0)  # ... forecast back inside
    held = gate.decide(coming_back)
    assert held.state is BeamState.HOLD and held.cause == "outside"
    assert "of the measured target inside the boundary" in held.reason
    inside = _frame(2, 21)
    inside.objects[0].predicted_mm = (23.5, 12.5, 0.0)
    assert gate.decide(inside).state is BeamState.ON
