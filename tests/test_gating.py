"""Gating logic without a server: geometry, prediction, fail-safe decisions, dose metric."""

from __future__ import annotations

import math

import numpy as np
import pytest
import SimpleITK as sitk

from tracker.gating.dose import relative_d98
from tracker.gating.gate import Gate
from tracker.gating.predictor import HoldPredictor, KalmanPredictor, make_predictor
from tracker.gating.types import BeamState, GatingConfig
from tracker.masks import describe
from tracker.types import FrameResult, FrameStatus, Geometry, ObjectTrack


def _oblique_geometry() -> Geometry:
    # A sagittal-oblique plane: columns along anterior-posterior tilted 20 degrees, rows head-feet.
    a = math.radians(20)
    return Geometry(
        spacing_mm=(0.9, 1.3),
        origin_mm=(-12.5, 40.0, 7.0),
        x_direction=(0.0, math.cos(a), math.sin(a)),
        y_direction=(0.0, -math.sin(a), math.cos(a)),
    )


def test_oblique_geometry_matches_simpleitk():
    g = _oblique_geometry()
    image = sitk.Image(50, 40, 1, sitk.sitkUInt8)
    image.SetSpacing((*g.spacing_mm, 1.0))
    image.SetOrigin(g.origin_mm)
    normal = np.cross(g.x_direction, g.y_direction)
    image.SetDirection(tuple(np.column_stack([g.x_direction, g.y_direction, normal]).ravel()))
    for x, y in ((0, 0), (10.5, 3.25), (49, 39)):
        assert g.pixel_to_mm(x, y) == pytest.approx(image.TransformContinuousIndexToPhysicalPoint((x, y, 0)))


def test_centroid_in_mm_follows_the_geometry():
    g = _oblique_geometry()
    mask = np.zeros((40, 50), bool)
    mask[10:14, 20:26] = True  # centroid (22.5, 11.5)
    result = describe(ObjectTrack(1, mask, 1.0), "tumour", g)
    assert result.centroid_px == pytest.approx((22.5, 11.5))
    assert result.centroid_mm == pytest.approx(g.pixel_to_mm(22.5, 11.5))


def _feed(predictor, times, positions):
    for t, p in zip(times, positions, strict=True):
        predictor.update(t, np.array([p, 0.0, 0.0]))


def test_kalman_extrapolates_linear_motion_exactly():
    times = np.arange(0, 5, 0.25)
    kf = KalmanPredictor(measurement_sd_mm=0.01)
    _feed(kf, times, 3.0 * times)  # 3 mm/s
    assert kf.predict(0.3)[0] == pytest.approx(3.0 * (times[-1] + 0.3), abs=0.02)


@pytest.mark.parametrize("rate_hz", [2.0, 4.0, 8.0])
def test_kalman_beats_no_prediction_on_breathing(rate_hz):
    rng = np.random.default_rng(1)
    times = np.arange(0, 60, 1 / rate_hz)
    motion = lambda t: 8.0 * np.sin(np.pi * t / 4.0) ** 2  # noqa: E731 - breathing-like: 4 s period, 8 mm
    kf, hold = KalmanPredictor(), HoldPredictor()
    errors = {"kalman": [], "hold": []}
    for t in times:
        z = np.array([motion(t) + rng.normal(0, 0.3), 0.0, 0.0])
        kf.update(t, z)
        hold.update(t, z)
        if t > 5:
            for name, p in (("kalman", kf), ("hold", hold)):
                errors[name].append(abs(p.predict(0.3)[0] - motion(t + 0.3)))
    assert np.mean(errors["kalman"]) < 0.8 * np.mean(errors["hold"])


def test_unknown_predictor_is_named():
    with pytest.raises(ValueError, match="unknown motion predictor 'magic'"):
        make_predictor("magic")


def _frame(index: int, x: float, *, score: float = 1.0, status=FrameStatus.OK, empty=False) -> FrameResult:
    mask = np.zeros((40, 50), bool)
    if not empty:
        mask[10:16, int(x) : int(x) + 6] = True
    obj = describe(ObjectTrack(1, mask, score), "", Geometry())
    return FrameResult(index, status, objects=[obj] if status in (FrameStatus.OK, FrameStatus.LATE) else [])


def _gate(**kw) -> Gate:
    # A constant (zero) guard unless a test asks for the error-driven one.
    kw = {"guard_sigmas": 0.0, "min_confidence": 0.0, **kw}
    config = GatingConfig(margin_mm=3.0, guard_mm=0.0, horizon_ms=250.0, predictor="hold", **kw)
    return Gate(config, Geometry())


def test_beam_on_inside_the_margin_and_held_outside():
    gate = _gate()
    assert gate.observe(_frame(0, 20), 0.0, 10).state is BeamState.ON  # sets the reference
    assert gate.observe(_frame(1, 22), 0.25, 10).state is BeamState.ON  # 2 mm
    held = gate.observe(_frame(2, 25), 0.5, 10)
    assert held.state is BeamState.HOLD and "outside the 3.0 mm margin" in held.reason
    assert gate.observe(_frame(3, 21), 0.75, 10).state is BeamState.ON


@pytest.mark.parametrize(
    ("frame", "reason"),
    [
        (lambda: _frame(1, 20, empty=True), "lost"),
        (lambda: _frame(1, 20, score=0.3), "presence score 0.30"),
        (lambda: _frame(1, 20, status=FrameStatus.LATE), "frame LATE"),
        (lambda: FrameResult(1, FrameStatus.DROPPED, message="skipped"), "frame DROPPED"),
        (lambda: FrameResult(1, FrameStatus.ERROR, message="bad pixels"), "frame ERROR: bad pixels"),
    ],
)
def test_every_doubt_holds_the_beam(frame, reason):
    gate = _gate()
    gate.observe(_frame(0, 20), 0.0, 10)
    decision = gate.observe(frame(), 0.25, 10)
    assert decision.state is BeamState.HOLD and reason in decision.reason


def test_a_stall_holds_once_per_stall():
    gate = _gate(stall_timeout_ms=500)
    gate.observe(_frame(0, 20), 0.0, 10)
    assert gate.stalled(400) is None
    held = gate.stalled(600)
    assert (
        held.state is BeamState.HOLD
        and held.frame_index is None
        and "no frame answered for 600 ms" in held.reason
    )
    assert gate.stalled(900) is None  # already held
    gate.observe(_frame(1, 20), 1.0, 10)
    assert gate.stalled(700) is not None  # a new stall


def test_prediction_moves_the_decision_ahead_of_the_motion():
    # Moving 10 mm/s: at a 300 ms horizon the beam holds before the target crosses 3 mm.
    gate = Gate(GatingConfig(margin_mm=3.0, guard_mm=0.0, horizon_ms=300.0, predictor="kalman"), Geometry())
    decisions = []
    for i in range(12):
        t = i * 0.05
        decisions.append((t * 10, gate.observe(_frame(i, 20 + round(t * 10)), t, 10).state))
    first_hold = next(x for x, s in decisions if s is BeamState.HOLD)
    assert first_hold < 3.0


def test_mask_window_needs_the_predicted_target_inside():
    window = np.zeros((40, 50), bool)
    window[5:25, 15:30] = True
    gate = _gate(window_mask=window)
    assert gate.observe(_frame(0, 18), 0.0, 10).state is BeamState.ON
    held = gate.observe(_frame(1, 27), 0.25, 10)
    assert held.state is BeamState.HOLD and "inside the boundary" in held.reason and held.cause == "outside"


def test_gated_objects_must_all_be_present():
    gate = _gate(object_ids=(1, 2))
    decision = gate.observe(_frame(0, 20), 0.0, 10)
    assert decision.state is BeamState.HOLD and "[2] not tracked" in decision.reason


def test_relative_d98_is_one_for_perfect_tracking_and_drops_with_error():
    yy, xx = np.mgrid[:80, :80]
    truths = np.stack([(xx - 40 - k % 5) ** 2 + (yy - 40) ** 2 < 8**2 for k in range(20)])
    assert relative_d98(truths, truths) == pytest.approx(1.0)
    shifted = np.roll(truths, 6, axis=2)  # every prediction 6 mm off: beyond the 3 mm margin
    assert relative_d98(shifted, truths) < 0.9
    small = np.roll(truths, 1, axis=2)  # within the margin: coverage kept
    assert relative_d98(small, truths) == pytest.approx(1.0, abs=0.02)
    missing = truths.copy()
    missing[10:] = False  # half the frames untracked deliver nothing
    assert relative_d98(missing, truths) == pytest.approx(0.5, abs=0.05)
    assert relative_d98(shifted, truths, "lung") != relative_d98(shifted, truths)


def test_gating_scores_against_truth():
    from tracker.gating.evaluate import score_gating

    times = np.arange(10) * 0.25
    truth = np.zeros((10, 3))
    truth[4:7, 0] = 5.0  # the target is outside a 3 mm window on frames 4-6
    on, hold = BeamState.ON, BeamState.HOLD
    states = [on, on, on, on, on, hold, hold, on, on, on]  # one frame late to hold
    latencies = np.full(10, 50.0)
    scores = score_gating(times, states, latencies, truth, np.zeros(3), 3.0)
    assert scores.exits == 1
    assert scores.beam_on_fraction == pytest.approx(0.8)
    # Decision 4 (ON) takes effect at 1.05 s with the target outside; decision 7 (ON) at 1.80 s
    # after it has come back (interpolated 0 mm at 1.75 s): 1 of 8 ON decisions is wrong.
    assert scores.beam_on_outside_fraction == pytest.approx(1 / 8)
    assert scores.beam_hold_inside_fraction == pytest.approx(0.0)
    # Left at 1.00 s (frame 4); the first HOLD (frame 5) takes effect at 1.30 s.
    assert scores.beam_off_latency_ms == pytest.approx(300.0)


def test_prediction_error_compares_with_no_prediction():
    from tracker.gating.evaluate import prediction_errors

    times = np.arange(20) * 0.1
    truth = np.stack([times * 10.0, np.zeros(20), np.zeros(20)], axis=1)  # 10 mm/s
    predicted = truth + np.array([3.0, 0, 0])  # perfect prediction 0.3 s ahead
    pred_err, hold_err, n = prediction_errors(times, truth, predicted, 0.3, truth)
    assert n == 17 and pred_err == pytest.approx(0.0, abs=1e-9) and hold_err == pytest.approx(3.0)
