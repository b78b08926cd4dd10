"""Judging gating and prediction against ground truth (used by replay).

Each frame's decision takes effect when its answer reaches the client, at
``acquisition time + end-to-end latency``, and stays in force until the next
decision takes effect. The truth is the ground-truth target centroid,
interpolated linearly between frames, compared with the reference position
(the ground-truth centroid of the prompted frame) and the margin.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from tracker.gating.types import BeamState


def interpolate_positions(times_s: np.ndarray, positions: np.ndarray, at_s: np.ndarray) -> np.ndarray:
    """Positions (T, 3) known at ``times_s``, linearly interpolated at ``at_s`` (clamped at the ends)."""
    return np.stack([np.interp(at_s, times_s, positions[:, k]) for k in range(positions.shape[1])], axis=1)


@dataclass(frozen=True)
class GatingScores:
    beam_on_fraction: float  # share of frames whose decision was BEAM_ON
    beam_on_outside_fraction: float  # of BEAM_ON decisions, the share with the true target outside
    beam_hold_inside_fraction: float  # of BEAM_HOLD decisions, the share with the true target inside
    beam_off_latency_ms: float | None  # mean delay from the target leaving to the beam holding
    exits: int  # times the true target left the window

    def as_dict(self) -> dict[str, float | int | None]:
        return {
            "beam_on_fraction": self.beam_on_fraction,
            "beam_on_outside_fraction": self.beam_on_outside_fraction,
            "beam_hold_inside_fraction": self.beam_hold_inside_fraction,
            "beam_off_latency_ms": self.beam_off_latency_ms,
            "exits": self.exits,
        }


def score_gating(
    times_s: np.ndarray,
    states: list[BeamState],
    latencies_ms: np.ndarray,
    truth_mm: np.ndarray,
    reference_mm: np.ndarray,
    margin_mm: float,
) -> GatingScores:
    """Gating accuracy of per-frame ``states`` against the true centroids ``truth_mm`` (T, 3)."""
    times_s = np.asarray(times_s, dtype=float)
    effective_s = times_s + np.asarray(latencies_ms, dtype=float) / 1000.0
    true_at_effect = interpolate_positions(times_s, truth_mm, effective_s)
    inside_at_effect = np.linalg.norm(true_at_effect - reference_mm, axis=1) <= margin_mm
    on = np.array([s is BeamState.ON for s in states])
    on_fraction = float(on.mean()) if len(on) else 0.0
    on_outside = float((~inside_at_effect[on]).mean()) if on.any() else 0.0
    hold_inside = float(inside_at_effect[~on].mean()) if (~on).any() else 0.0

    inside_at_frames = np.linalg.norm(truth_mm - reference_mm, axis=1) <= margin_mm
    latencies: list[float] = []
    exits = 0
    order = np.argsort(effective_s, kind="stable")
    for k in range(1, len(times_s)):
        if not (inside_at_frames[k - 1] and not inside_at_frames[k]):
            continue
        exits += 1
        t_exit = times_s[k]
        in_force = [i for i in order if effective_s[i] <= t_exit]
        if in_force and not on[in_force[-1]]:
            latencies.append(0.0)  # already held when the target left
            continue
        later_holds = [effective_s[i] for i in order if effective_s[i] > t_exit and not on[i]]
        if later_holds:
            latencies.append((later_holds[0] - t_exit) * 1000.0)
    return GatingScores(
        beam_on_fraction=on_fraction,
        beam_on_outside_fraction=on_outside,
        beam_hold_inside_fraction=hold_inside,
        beam_off_latency_ms=float(np.mean(latencies)) if latencies else None,
        exits=exits,
    )


def prediction_errors(
    times_s: np.ndarray,
    measured_mm: np.ndarray,
    predicted_mm: np.ndarray,
    horizon_s: float | np.ndarray,
    truth_mm: np.ndarray,
) -> tuple[float, float, int]:
    """Mean error at the horizon of the prediction and of no prediction (the measurement itself).

    Frames whose horizon reaches past the last frame, or with a missing value, are skipped.
    Returns (prediction error mm, no-prediction error mm, frames compared).
    """
    at = np.asarray(times_s, dtype=float) + np.asarray(horizon_s, dtype=float)
    valid = (at <= times_s[-1]) & np.isfinite(predicted_mm).all(axis=1) & np.isfinite(measured_mm).all(axis=1)
    if not valid.any():
        return float("nan"), float("nan"), 0
    truth = interpolate_positions(times_s, truth_mm, at[valid])
    predicted_error = np.linalg.norm(predicted_mm[valid] - truth, axis=1)
    held_error = np.linalg.norm(measured_mm[valid] - truth, axis=1)
    return float(predicted_error.mean()), float(held_error.mean()), int(valid.sum())
