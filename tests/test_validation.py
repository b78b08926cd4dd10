"""The hard cine-MRI set, replay's cine blocks (challenge, gating vs oracle, confidence) and the HTML report.

Everything runs for real: the generator, an in-process gRPC server with the flow
engine, replay, matplotlib and headless Chromium.
"""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import cv2
import numpy as np
import pytest

from tracker.io.trackrad import write_trackrad_case
from tracker.lab.synth.breathing import BreathingParams
from tracker.lab.synth.cine_mri import CineCaseParams
from tracker.lab.synth.hard_cine import (
    HardCineParams,
    _sliding_patterns,
    case_seeds,
    generate_hard_case,
    hard_breathing,
)

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")


def _params(**kw: object) -> HardCineParams:
    base = CineCaseParams(
        size_px=270,
        n_frames=24,
        frame_rate_hz=4.0,
        tumour_diameter_mm=20.0,
        breathing=BreathingParams(amplitude_mean_mm=8.0),
    )
    defaults: dict[str, object] = {
        "base": base,
        "through_plane_mm": 6.0,
        "tumour_depth_mm": 5.0,
        "coughs": 1,
        "breath_holds": 0,
        "gas_pockets": 1,
    }
    return HardCineParams(**{**defaults, **kw})  # type: ignore[arg-type]


@pytest.fixture(scope="module")
def hard_case():
    return generate_hard_case(_params(), seed=7)


def test_tuning_and_validation_seeds_are_disjoint_and_stable() -> None:
    tuning = case_seeds("tuning", 6)
    validation = case_seeds("validation", 6)
    assert [c for c, _, _ in tuning][:2] == ["T001", "T002"] and validation[0][0] == "V001"
    assert not {s for _, s, _ in tuning} & {s for _, s, _ in validation}
    assert [s for _, s, _ in case_seeds("tuning", 2)] == [s for _, s, _ in tuning[:2]]
    with pytest.raises(ValueError, match="unknown hard set"):
        case_seeds("test", 1)


def test_hard_case_is_deterministic_and_its_cross_section_changes(hard_case) -> None:
    again = generate_hard_case(_params(), seed=7)
    assert np.array_equal(again.frames, hard_case.frames) and np.array_equal(again.labels, hard_case.labels)
    areas = hard_case.labels.reshape(len(hard_case.labels), -1).sum(axis=1)
    assert areas[0] > 0
    assert areas.min() < 0.8 * areas.max()  # through-plane motion: the section grows and shrinks
    assert hard_case.frames.dtype == np.uint16


def test_through_plane_motion_can_take_the_target_out_of_the_slice() -> None:
    case = generate_hard_case(_params(through_plane_mm=14.0, tumour_depth_mm=3.0), seed=3)
    empty = ~case.labels.reshape(len(case.labels), -1).any(axis=1)
    assert not empty[0] and empty.any()


def test_breathing_has_coughs_holds_and_drift() -> None:
    p = _params(coughs=2, breath_holds=1, baseline_drift_mm=5.0)
    plain = _params(coughs=0, breath_holds=0, baseline_drift_mm=0.0)
    trace, through = hard_breathing(p, np.random.default_rng(1))
    calm, _ = hard_breathing(plain, np.random.default_rng(1))
    assert trace.shape == (24, 2) and through.shape == (24,) and through[0] == 0.0
    assert not np.allclose(trace, calm)


def test_sliding_boundary_makes_the_field_jump_at_the_lung(hard_case) -> None:
    from tracker.lab.synth.phantom import build_anatomy

    anat = build_anatomy(270, "thorax", np.random.default_rng(0))
    sliding = _sliding_patterns(anat, 0.5)
    lung = anat.masks["lung"]
    edge = cv2.dilate(lung.astype(np.uint8), np.ones((9, 9))) > 0
    ring = edge & ~lung  # just outside the lung
    inner = lung & ~(cv2.erode(lung.astype(np.uint8), np.ones((9, 9))) > 0)
    ratio_in = np.median(sliding[..., 0][inner] / np.maximum(anat.patterns[..., 0][inner], 1e-6))
    ratio_out = np.median(sliding[..., 0][ring] / np.maximum(anat.patterns[..., 0][ring], 1e-6))
    assert ratio_in < 0.7 and ratio_out > 0.9


@pytest.fixture(scope="module")
def replayed(hard_case, tmp_path_factory):
    from tracker.lab.replay import ReplayOptions, replay

    root = tmp_path_factory.mktemp("hard")
    path = write_trackrad_case(
        root,
        "T900",
        hard_case.frames,
        hard_case.labels[0],
        4.0,
        labels=hard_case.labels,
        scanned_region="lung",
    )
    options = ReplayOptions(progress=False, gating_margin_mm=3.0)
    report, results = replay([path], options, report_path=root / "report.json")
    return root, report, results


def test_replay_reports_challenge_gating_oracle_and_confidence(replayed) -> None:
    _, report, _ = replayed
    case = report["cases"][0]
    challenge = case["challenge"]
    assert 0.0 <= challenge["dice"] <= 1.0 and challenge["asd_px"] >= 0.0
    assert challenge["relative_d98"] is not None and case["relative_d98_mean"] == challenge["relative_d98"]
    gating = case["gating"]
    assert 0.0 <= gating["duty_cycle"] <= 1.0 and 0.0 < gating["oracle_duty_cycle"] <= 1.0
    assert gating["rule"] == "centroid"
    holds = sum(1 for f in case["per_frame"] if f.get("beam") == "BEAM_HOLD")
    assert sum(gating["hold_causes"].values()) == holds  # every HOLD is counted under a cause
    assert "unknown" not in gating["hold_causes"]
    assert all("confidence" in f for f in case["per_frame"])
    assert 0.0 <= case["confidence"]["confidence_mean"] <= 1.0
    worst = report["summary"]["worst"]
    assert worst["dice_mean"]["case"] == "T900" and "beam_on_outside_fraction" in worst
    assert report["provenance"]["commit"] and "machine" in report["provenance"]


def test_mask_rule_and_challenge_mode_replay(replayed) -> None:
    from tracker.lab.replay import ReplayOptions, replay

    root, _, _ = replayed
    options = ReplayOptions(
        progress=False, gating_margin_mm=3.0, gating_rule="mask", min_inside_fraction=0.9, challenge_mode=True
    )
    report, _ = replay([root / "T900"], options)
    case = report["cases"][0]
    assert case["gating"]["rule"] == "mask"
    assert case["dice_mean"] == pytest.approx(case["challenge"]["dice"])
    assert 0.0 <= case["gating"]["oracle_duty_cycle"] <= 1.0


def test_end_exhale_reference_is_the_gates_and_the_oracles(replayed, hard_case) -> None:
    from tracker.gating.reference import planned_reference
    from tracker.lab.replay import ReplayOptions, replay
    from tracker.lab.replay.gating_report import true_centroids_mm

    root, _, _ = replayed
    options = ReplayOptions(progress=False, gating_margin_mm=3.0, gating_reference="end_exhale")
    report, results = replay([root / "T900"], options)
    gating = report["cases"][0]["gating"]
    seq = results[0].sequence
    times = np.arange(len(seq)) / seq.frame_rate_hz
    planned = planned_reference(np.asarray(seq.labels), 1, seq.geometry, times, "end_exhale")
    assert gating["reference"] == "end_exhale" and gating["reference_frame"] == planned.frame_index
    assert hard_case.breathing_mm[planned.frame_index, 0] < np.median(
        hard_case.breathing_mm[:, 0]
    )  # exhale side
    truth = true_centroids_mm(seq, 1)
    known = np.isfinite(truth).all(axis=1)
    near = np.linalg.norm(truth - np.asarray(planned.position_mm), axis=1) <= 3.0
    assert gating["oracle_on_frames"] == int((near & known).sum())  # the oracle's window is the planned one
    assert 0 <= gating["beam_on_target_absent_frames"] <= gating["beam_on_frames"]
    summary = report["summary"]["gating"]
    assert summary["duty_vs_oracle_pooled"] == pytest.approx(
        gating["beam_on_frames"] / gating["oracle_on_frames"]
    )


def _chromium(url: str, tmp_path: Path, *extra: str) -> subprocess.CompletedProcess[str]:
    assert CHROMIUM is not None
    command = [
        CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--no-first-run",
        "--disable-background-networking", "--disable-component-update", "--disable-sync",
        f"--user-data-dir={tmp_path / 'profile'}", "--window-size=1200,900",
        "--enable-logging=stderr", "--v=0", *extra, url,
    ]  # fmt: skip
    return subprocess.run(command, capture_output=True, text=True, timeout=90, check=False)


@pytest.mark.skipif(CHROMIUM is None, reason="chromium is not installed (Debian: apt-get install chromium)")
def test_html_report_is_self_contained_and_renders_in_headless_chromium(replayed, tmp_path) -> None:
    from tracker.lab.report.html import write_html_report

    _, report, results = replayed
    page = write_html_report(tmp_path / "report.html", report, results)
    text = page.read_text()
    assert not re.search(r"""(src|href)=["']?(https?:)?//""", text), "the page must not reach the network"
    assert text.count("data:image/png;base64,") >= 3  # latency CDF, reliability and the case's figure
    assert "Confidence against error, all cases" in text
    assert "conf. vs centroid error (Spearman)" in text
    assert "T900" in text and "oracle duty" in text and "commit" in text
    dom = _chromium(page.as_uri(), tmp_path, "--dump-dom")
    assert 'data-rendered="ok"' in dom.stdout, dom.stderr[-2000:]
    console_errors = [line for line in dom.stderr.splitlines() if "CONSOLE" in line and "rror" in line]
    assert not console_errors, console_errors
    png = tmp_path / "shot.png"
    _chromium(page.as_uri(), tmp_path, f"--screenshot={png}")
    shot = cv2.imread(str(png))
    assert shot is not None and shot.shape[:2] == (900, 1200)
    assert shot.std() > 10, "the screenshot is blank"
    assert (shot < 128).any(axis=2).sum() > 2000, "hardly anything dark on the page: no text or figures"


def test_confidence_is_scored_against_centroid_error_per_case_and_pooled(replayed) -> None:
    from tracker.lab.replay.gating_report import RELIABILITY_BINS, pooled_confidence

    _, report, _ = replayed
    block = report["cases"][0]["confidence"]
    assert len(block["frames_confidence"]) == len(block["frames_centroid_mm"]) > 3
    assert -1.0 <= block["spearman_vs_centroid_error"] <= 1.0
    pooled = report["summary"]["confidence"]
    assert pooled["frames"] == len(block["frames_confidence"])
    assert sum(b["frames"] for b in pooled["reliability"]) == pooled["frames"]
    # Two made-up cases: confident frames are the accurate ones in both.
    cases = [
        {"confidence": {"frames_confidence": [0.95, 0.6, 0.3], "frames_centroid_mm": [0.2, 1.0, 3.0]}},
        {"confidence": {"frames_confidence": [0.92, 1.0, 0.1], "frames_centroid_mm": [0.4, 0.1, 5.0]}},
    ]
    made_up = pooled_confidence(cases)
    assert made_up["spearman_vs_centroid_error"] == pytest.approx(-1.0)
    by_bin = {(b["confidence_from"], b["confidence_to"]): b for b in made_up["reliability"]}
    assert by_bin[(0.9, 1.0)]["frames"] == 3 and by_bin[(0.9, 1.0)]["centroid_mm_mean"] == pytest.approx(
        0.7 / 3
    )
    assert (
        by_bin[(0.0, 0.25)]["centroid_mm_mean"] == 5.0
        and len(made_up["reliability"]) == len(RELIABILITY_BINS) - 1
    )
    assert pooled_confidence([{}]) == {}


def test_dose_metric_only_for_cine_mri() -> None:
    from tracker.io.sequence import Sequence
    from tracker.lab.replay import CaseResult, cine_blocks
    from tracker.types import Modality

    labels = np.zeros((4, 40, 40), np.uint8)
    labels[:, 10:20, 10:20] = 1

    def blocks(modality: Modality) -> dict[str, object]:
        seq = Sequence(
            "s", np.zeros((4, 40, 40), np.uint8), 4.0, modality, first_label=labels[0], labels=labels
        )
        return cine_blocks(CaseResult(seq, [], labels.astype(np.uint16), {}, 250.0))

    video = blocks(Modality.ENDOSCOPY)
    assert video == {"relative_d98_mean": None} and "challenge" not in video
    cine = blocks(Modality.CINE_MRI)
    assert cine["relative_d98_mean"] == pytest.approx(1.0) and cine["challenge"]["dice"] == pytest.approx(1.0)


def test_synth_cine_hard_command_writes_a_trackrad_case(tmp_path) -> None:
    import subprocess
    import sys

    done = subprocess.run(
        [sys.executable, "-m", "tracker.cli", "synth", "cine-hard", "--set", "tuning", "--cases", "1",
         "--out", str(tmp_path)],
        capture_output=True, text=True, timeout=300, check=False,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-2000:]
    case = tmp_path / "T001"
    assert (case / "synthetic.json").is_file() and (case / "scanned-region.json").is_file()
    from tracker.io.trackrad import read_trackrad_case

    seq = read_trackrad_case(case)
    assert seq.labels is not None and len(seq) >= 60 and np.asarray(seq.first_label).any()
