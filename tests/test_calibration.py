"""Self-calibrated quality scores (tracker.engines.calibration): a session judged against its own start."""

from __future__ import annotations

import math

import numpy as np
import pytest

from tests.conftest import disk, shift, textured_image
from tracker.engines.calibration import SelfCalibration, presence_error
from tracker.engines.flow import FlowEngine
from tracker.types import Frame, MaskPrompt, Modality, ObjectPrompt, SessionConfig


def test_presence_error_inverts_the_score() -> None:
    for score in (1.0, 0.8, 0.5, 0.1):
        e = presence_error(score)
        assert 1.0 / (1.0 + e * e) == pytest.approx(score)
    assert presence_error(0.0) == math.inf


def test_scores_as_good_as_the_start_read_as_certain_and_only_worse_ones_lower_them() -> None:
    cal = SelfCalibration(frames=3)
    start = [(0.6, 0.8), (0.62, 0.9), (0.58, 0.7)]  # a noisy scan: the start itself reads 0.6
    assert [cal.apply(p, f) for p, f in start] == start  # learning: the raw values stand
    assert cal.presence_ref == pytest.approx(presence_error(0.6))
    assert cal.fb_ref == pytest.approx(0.8)
    same, fb = cal.apply(0.6, 0.8)
    assert same == pytest.approx(1.0) and fb == pytest.approx(0.0)
    worse, fb = cal.apply(0.2, 2.8)
    assert 0.2 < worse < 0.6 and fb == pytest.approx(2.0)
    better, _ = cal.apply(0.9, 0.1)
    assert better == 1.0


def test_a_poor_start_is_not_taken_as_normal() -> None:
    cal = SelfCalibration(frames=2)
    cal.apply(0.02, 5.0)
    cal.apply(0.02, 5.0)
    assert cal.presence_ref == 3.0 and cal.fb_ref == 1.0  # capped: a raw 0.1, 1 px
    still_poor, fb = cal.apply(0.02, 5.0)
    assert still_poor == pytest.approx(1 / (1 + (7 - 3) ** 2)) and fb == pytest.approx(4.0)


def test_off_means_the_raw_scores() -> None:
    cal = SelfCalibration(frames=0)
    assert cal.apply(0.3, 2.0) == (0.3, 2.0) and cal.presence_ref is None


def test_on_a_noisy_scan_the_flow_engine_reads_steady_tracking_as_certain() -> None:
    """Noise strongest where the target is (a coil far from it): raw, steady tracking reads as doubt."""
    h, w = 96, 128
    base = textured_image(h, w)
    rng = np.random.default_rng(0)
    mask = disk(h, w, 64, 48, 12)

    sigma = np.where(np.arange(w) < w // 3, 3.0, 40.0)[None, :] * np.ones((h, 1))  # the global estimate

    def confidences(frames: int) -> list[float]:
        session = FlowEngine.from_options({"calibration_frames": str(frames)}).open_session(
            SessionConfig(modality=Modality.CINE_MRI, objects=(ObjectPrompt(1, MaskPrompt(mask)),))
        )
        out = []
        for i in range(20):
            img = shift(base, 0.4 * i, 0.2 * i).astype(np.float32) + rng.normal(0, 1, (h, w)) * sigma
            out.append(session.step(Frame(i, np.clip(img, 0, 255).astype(np.uint8))).tracks[0].confidence)
        return out[10:]

    raw_noisy, cal_noisy = confidences(0), confidences(8)
    assert np.mean(raw_noisy) < 0.7  # the scan's noise reads as doubt
    assert np.mean(cal_noisy) > 0.85 and np.mean(cal_noisy) > np.mean(raw_noisy) + 0.15
