"""The gating window's reference: end-exhale as a planner sets it, the same for the gate and the oracle."""

from __future__ import annotations

import numpy as np
import pytest

from tracker.gating.reference import boundary_region, planned_reference
from tracker.io.sequence import Sequence
from tracker.lab.replay import ReplayOptions
from tracker.lab.replay.run import session_config_for, summary_report
from tracker.types import Geometry, Modality


def _labels(rows: list[int | None], h: int = 60, w: int = 40) -> np.ndarray:
    """One 6 x 6 px target per frame, its top row at ``rows[k]`` (None: out of the slice)."""
    out = np.zeros((len(rows), h, w), np.uint8)
    for k, row in enumerate(rows):
        if row is not None:
            out[k, row : row + 6, 10:16] = 1
    return out


def test_end_exhale_is_the_most_cranial_labelled_frame_of_the_first_cycle_at_its_percentile() -> None:
    rows = [30, 26, 20, None, 24, 32, 36, 10]  # frame 3 out of the slice; frame 7 after the window
    labels = _labels(rows)
    times = np.arange(len(rows)) * 1.0
    ref = planned_reference(labels, 1, Geometry(), times, "end_exhale", window_s=6.0)
    assert ref.frame_index == 2  # rows run head to feet: the smallest row is the most cranial
    assert ref.position_mm == pytest.approx((12.5, 22.5, 0.0))
    assert ref.mask.sum() == 36 and ref.mask[20:26, 10:16].all()
    first = planned_reference(labels, 1, Geometry(), times, "first_frame")
    assert first.frame_index == 0 and first.position_mm == pytest.approx((12.5, 32.5, 0.0))


def test_a_cough_in_the_first_cycle_is_not_taken_for_exhale() -> None:
    rows = [30, 25, 21, 20, 21, 5, 24, 30, 34, 30, 25, 21]  # 2 Hz; frame 5 is a cough, 15 px up
    ref = planned_reference(_labels(rows), 1, Geometry(), np.arange(12) / 2.0, "end_exhale")
    assert ref.frame_index == 3


def test_an_oriented_sagittal_image_finds_the_head_along_patient_z() -> None:
    # Sagittal DICOM: columns run posterior (LPS +y), rows run towards the feet (LPS -z).
    sagittal = Geometry(x_direction=(0.0, 1.0, 0.0), y_direction=(0.0, 0.0, -1.0))
    labels = _labels([30, 20, 40])
    assert planned_reference(labels, 1, sagittal, np.arange(3.0), "end_exhale").frame_index == 1
    # Rows running towards the head instead: the largest row is now the most cranial.
    flipped = Geometry(x_direction=(0.0, 1.0, 0.0), y_direction=(0.0, 0.0, 1.0))
    assert planned_reference(labels, 1, flipped, np.arange(3.0), "end_exhale").frame_index == 2


def test_bad_references_are_refused() -> None:
    with pytest.raises(ValueError, match="gating reference must be one of"):
        planned_reference(_labels([10]), 1, Geometry(), np.zeros(1), "mid_ventilation")
    with pytest.raises(ValueError, match="in no frame's labels"):
        planned_reference(_labels([None, None]), 1, Geometry(), np.arange(2.0), "end_exhale")


def test_end_exhale_on_the_hard_generator_is_its_exhale_phase() -> None:
    """The 'head up' convention holds for the synthetic sets: the chosen frame is where the
    generator's own breathing trace (SI, positive towards the feet) is near its exhale end."""
    from tracker.lab.synth.breathing import BreathingParams
    from tracker.lab.synth.cine_mri import CineCaseParams
    from tracker.lab.synth.hard_cine import HardCineParams, generate_hard_case

    base = CineCaseParams(
        size_px=270, n_frames=24, frame_rate_hz=4.0, tumour_diameter_mm=20.0,
        breathing=BreathingParams(amplitude_mean_mm=10.0),
    )  # fmt: skip
    params = HardCineParams(base=base, through_plane_mm=1.0, tumour_depth_mm=8.0, coughs=0, breath_holds=0)
    for seed in (7, 11, 23):
        case = generate_hard_case(params, seed=seed)
        times = np.arange(len(case.labels)) / case.params.frame_rate_hz
        ref = planned_reference(case.labels, 1, Geometry(), times, "end_exhale")
        si = case.breathing_mm[:, 0]
        # Exhale lies at the trace's minimum; the inhale end is a whole amplitude away.
        assert si[ref.frame_index] - si.min() < 0.25 * np.ptp(si), (seed, si[ref.frame_index], si.min())


def _sequence(rows: list[int | None]) -> Sequence:
    labels = _labels(rows)
    return Sequence("s", np.zeros(labels.shape, np.uint8), 1.0, Modality.CINE_MRI, labels=labels)


def test_replay_gives_the_gate_the_planned_reference_and_boundary() -> None:
    seq = _sequence([30, 26, 20, 24, 32, 36])
    planned = planned_reference(np.asarray(seq.labels), 1, seq.geometry, np.arange(6.0), "end_exhale")
    centroid = session_config_for(seq, ReplayOptions(gating_margin_mm=3.0, gating_reference="end_exhale"))
    assert centroid.objects[0].reference_mm == pytest.approx(planned.position_mm)
    assert centroid.gating is not None and centroid.gating.window_mask is None
    mask = session_config_for(
        seq, ReplayOptions(gating_margin_mm=3.0, gating_rule="mask", gating_reference="end_exhale")
    )
    assert mask.gating is not None and mask.gating.window_mask is not None
    expected = boundary_region(planned.mask, 3.0, seq.geometry.spacing_mm)
    assert np.array_equal(mask.gating.window_mask, expected) and expected[17:29, 10:16].all()
    # The first-frame reference leaves the gate to take its first confident position, as before.
    plain = session_config_for(seq, ReplayOptions(gating_margin_mm=3.0))
    assert plain.objects[0].reference_mm is None and plain.gating.window_mask is None  # type: ignore[union-attr]
    with pytest.raises(ValueError, match="needs ground-truth labels"):
        unlabelled = Sequence("u", np.zeros((2, 60, 40), np.uint8), 1.0, first_label=_labels([30])[0])
        session_config_for(unlabelled, ReplayOptions(gating_margin_mm=3.0, gating_reference="end_exhale"))


def test_summary_pools_duty_over_cases_beside_the_mean_of_ratios() -> None:
    def case(name: str, on: int, oracle: int, frames: int) -> dict[str, object]:
        gating = {
            "beam_on_fraction": on / frames, "beam_on_outside_fraction": 0.0,
            "beam_hold_inside_fraction": 0.0, "beam_off_latency_ms": None, "duty_cycle": on / frames,
            "oracle_duty_cycle": oracle / frames, "duty_vs_oracle": on / oracle,
            "beam_on_frames": on, "oracle_on_frames": oracle,
        }  # fmt: skip
        prediction = {"horizon_ms_median": 50.0, "error_mm_mean": 1.0, "no_prediction_error_mm_mean": 1.0}
        return {
            "name": name, "frames": frames, "dropped": 0, "late": 0, "errors": 0, "dice_mean": 0.9,
            "hd95_mm_mean": 1.0, "msd_mm_mean": 1.0, "centroid_mm_mean": 1.0, "j_mean_after_prompt": 0.9,
            "gating": gating, "prediction": prediction,
        }  # fmt: skip

    summary = summary_report([case("a", 9, 10, 100), case("b", 1, 10, 100), case("c", 80, 80, 100)], [])
    gating = summary["gating"]
    assert gating["duty_vs_oracle"] == pytest.approx((0.9 + 0.1 + 1.0) / 3)  # type: ignore[index]
    assert gating["duty_vs_oracle_pooled"] == pytest.approx(90 / 100)  # type: ignore[index]
    assert summary["worst"]["duty_vs_oracle"]["worst"] == pytest.approx(0.1)  # type: ignore[index]
