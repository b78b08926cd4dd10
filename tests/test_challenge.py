"""TrackRAD2025 challenge-mode numbers (tracker.lab.scoring.challenge) on masks whose answers are known."""

from __future__ import annotations

import numpy as np
import pytest

from tracker.lab.scoring.challenge import challenge_scores


def _square(h: int, w: int, y: int, x: int, size: int) -> np.ndarray:
    m = np.zeros((h, w), bool)
    m[y : y + size, x : x + size] = True
    return m


def test_empty_truth_frames_are_dropped_and_the_first_kept_frame_is_the_prompt() -> None:
    truths = np.stack([_square(40, 60, 10, 10, 10)] * 5)
    truths[2] = False
    preds = truths.copy()
    preds[2] = _square(40, 60, 0, 0, 5)  # a prediction where there is no target: not scored
    scores = challenge_scores(preds, truths, dose=False)
    assert scores.empty_truth_frames == 1 and scores.frames_scored == 3 and scores.frame_indices == [1, 3, 4]
    assert scores.dice == pytest.approx(1.0) and scores.relative_d98 is None


def test_empty_prediction_penalty_is_max_h_w_pixels() -> None:
    truths = np.stack([_square(40, 60, 10, 10, 10)] * 3)
    preds = truths.copy()
    preds[1:] = False
    scores = challenge_scores(preds, truths, dose=False)
    assert scores.empty_predictions == 2 and scores.dice == 0.0
    assert scores.hd95_px == scores.asd_px == scores.centroid_px == pytest.approx(60.0)  # max(40, 60), not 50


def test_surface_distance_is_one_directional_and_the_symmetric_one_is_kept_apart() -> None:
    truth = _square(60, 60, 10, 10, 30)
    small = _square(60, 60, 20, 20, 10)  # well inside: its surface is 10 px from the truth's
    big = np.stack([truth, truth])
    pred = np.stack([truth, small])
    scores = challenge_scores(pred, big, dose=False)
    # prediction -> truth: every predicted surface pixel is 10 px from the truth's surface;
    # truth -> prediction: the truth's corners are farther (up to 14.1 px), so the symmetric
    # mean (frame 1 only: frame 0 is the prompt) is larger.
    assert scores.asd_px == pytest.approx(10.0)
    assert scores.msd_symmetric_px > scores.asd_px + 0.3


def test_dose_metric_is_reported_when_asked() -> None:
    truths = np.stack([_square(60, 60, 20, 20, 12)] * 6)
    scores = challenge_scores(truths, truths, dose=True, scanned_region="lung")
    assert scores.relative_d98 == pytest.approx(1.0)
