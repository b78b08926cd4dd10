"""Replay's cine-MRI blocks: gating against the truth and an oracle, confidence against Dice, worst cases.

Scores that cannot be gamed: holding the beam all the time gives a zero
beam-on-outside fraction, so every case also reports its **duty cycle** (share
of frames with the beam on) beside the duty cycle of an **oracle gate**: the
same rule applied to the ground truth at zero latency (centroid rule: the true
centroid within the margin of the reference position; mask rule: at least P %
of the true target inside the boundary, the reference image's true mask
expanded by the margin). The reference is the one the gate was given
(:mod:`tracker.gating.reference`: the prompted frame, or end-exhale as a planner
sets it). ``duty_vs_oracle`` is their ratio. Summaries give the worst case
beside the mean.
"""

from __future__ import annotations

import itertools
from collections import Counter
from typing import TYPE_CHECKING

import numpy as np
from scipy import stats

from tracker.gating.evaluate import prediction_errors, score_gating
from tracker.gating.reference import Reference, boundary_region, planned_reference
from tracker.gating.types import BeamState
from tracker.masks import centroid_of
from tracker.types import FrameStatus

if TYPE_CHECKING:
    from tracker.io.sequence import Sequence
    from tracker.lab.replay.records import CaseResult


def true_centroids_mm(sequence: Sequence, object_id: int) -> np.ndarray:
    labels = np.asarray(sequence.labels)
    out = np.full((len(labels), 3), np.nan)
    for i, label in enumerate(labels):
        centroid = centroid_of(label == object_id)
        if centroid is not None:
            out[i] = sequence.geometry.pixel_to_mm(*centroid)
    return out


def true_inside_fractions(truths: np.ndarray, boundary: np.ndarray) -> np.ndarray:
    """Per frame, the share of the true target inside ``boundary`` (bool H x W); 0 if empty."""
    out = np.zeros(len(truths))
    for i, truth in enumerate(truths):
        if truth.any():
            out[i] = float(boundary[truth].mean())
    return out


def _mask_rule_outside_at_effect(
    times_s: np.ndarray, latencies_ms: np.ndarray, inside: np.ndarray
) -> np.ndarray:
    """Outside when the truth fails the rule at either frame around the decision's effect time."""
    effective = times_s + latencies_ms / 1000.0
    k = np.clip(np.searchsorted(times_s, effective, side="right") - 1, 0, len(times_s) - 1)
    k_next = np.minimum(k + 1, len(times_s) - 1)
    return ~(inside[k] & inside[k_next])


def case_reference(case: CaseResult) -> Reference | None:
    """The gating window's reference for the case's first object, as replay gave it to the gate."""
    seq = case.sequence
    if seq.labels is None or not seq.object_ids():
        return None
    times = np.array([seq.timestamp(i) for i in range(len(seq))])
    labels = np.asarray(seq.labels)
    return planned_reference(labels, seq.object_ids()[0], seq.geometry, times, case.options.gating_reference)


def gating_blocks(case: CaseResult, rule: str, min_inside_fraction: float) -> dict[str, object]:
    """Gating accuracy, duty cycle against the oracle's, HOLD causes and prediction error."""
    seq = case.sequence
    if case.gating_margin_mm is None or seq.labels is None or not seq.object_ids():
        return {}
    margin = case.gating_margin_mm
    oid = seq.object_ids()[0]  # a single-target plan gates on the first prompted object
    truth = true_centroids_mm(seq, oid)
    known = np.isfinite(truth).all(axis=1)
    if known.sum() < 2:
        return {}
    times = np.array([seq.timestamp(i) for i in range(len(seq))])
    for k in range(3):  # through frames where the target is out of the slice
        truth[~known, k] = np.interp(times[~known], times[known], truth[known, k])
    planned = case_reference(case)
    assert planned is not None
    reference = np.asarray(planned.position_mm)
    states = [r.beam if r.beam is not None else BeamState.HOLD for r in case.records]
    on = np.array([s is BeamState.ON for s in states])
    latencies = np.array([r.end_to_end_ms for r in case.records])
    gating = score_gating(times, states, latencies, truth, reference, margin).as_dict()
    if rule == "mask":
        boundary = boundary_region(planned.mask, margin, seq.geometry.spacing_mm)
        fractions = true_inside_fractions(np.asarray(seq.labels) == oid, boundary)
        oracle_on = (fractions >= min_inside_fraction) & known
        outside = _mask_rule_outside_at_effect(times, latencies, oracle_on)
        gating["beam_on_outside_fraction"] = float(outside[on].mean()) if on.any() else 0.0
        gating["beam_hold_inside_fraction"] = float((~outside[~on]).mean()) if (~on).any() else 0.0
    else:
        oracle_on = (np.linalg.norm(truth - reference, axis=1) <= margin) & known
    duty = float(on.mean()) if len(on) else 0.0
    oracle = float(oracle_on.mean()) if len(oracle_on) else 0.0
    gating.update(
        beam_on_frames=int(on.sum()),
        beam_on_outside_frames=round(gating["beam_on_outside_fraction"] * int(on.sum())),  # type: ignore[operator]
        oracle_on_frames=int(oracle_on.sum()),
        # Beam on while the true target was out of the slice: its in-plane position is then only
        # interpolated for beam_on_outside, so these frames are counted apart as well.
        beam_on_target_absent_frames=int((on & ~known).sum()),
        rule=rule,
        margin_mm=margin,
        reference=planned.how,
        reference_frame=planned.frame_index,
        duty_cycle=duty,
        oracle_duty_cycle=oracle,
        duty_vs_oracle=duty / oracle if oracle > 0 else None,
        hold_causes=dict(
            Counter(r.hold_cause or "unknown" for r in case.records if r.beam is not BeamState.ON)
        ),
        guard_mm_median=float(np.median([r.guard_mm for r in case.records])) if case.records else None,
    )
    measured = np.full((len(seq), 3), np.nan)
    predicted = np.full((len(seq), 3), np.nan)
    horizons = np.zeros(len(seq))
    for i, r in enumerate(case.records):
        if oid in r.positions:
            centroid, forecast, horizon_ms = r.positions[oid]
            measured[i] = centroid
            if forecast is not None:
                predicted[i] = forecast
                horizons[i] = horizon_ms / 1000.0
    pred_err, hold_err, compared = prediction_errors(times, measured, predicted, horizons, truth)
    prediction = {
        "horizon_ms_median": float(np.median(horizons[horizons > 0]) * 1000.0)
        if (horizons > 0).any()
        else None,
        "error_mm_mean": None if compared == 0 else pred_err,
        "no_prediction_error_mm_mean": None if compared == 0 else hold_err,
        "frames_compared": compared,
    }
    return {"gating": gating, "prediction": prediction, "oracle_beam": oracle_on.tolist()}


def confidence_block(case: CaseResult) -> dict[str, object]:
    """How well the reported confidence predicts the frame's error (first object, answered frames).

    Spearman against Dice and against the centroid error (mm, frames where both masks are
    non-empty); the per-frame pairs are kept (``frames_confidence``, ``frames_centroid_mm``) so
    that a summary can pool them across cases (:func:`pooled_confidence`).
    """
    if not case.scores or not case.sequence.object_ids():
        return {}
    oid = case.sequence.object_ids()[0]
    scores = case.scores.get(oid)
    if scores is None:
        return {}
    pairs = [
        (case.records[i].confidences[oid], f.dice, f.centroid_mm)
        for i, f in zip(scores.frame_indices, scores.frames, strict=True)
        if case.records[i].status is FrameStatus.OK and oid in case.records[i].confidences
    ]
    if not pairs:
        return {}
    conf = np.array([c for c, _, _ in pairs])
    dice = np.array([d for _, d, _ in pairs])
    error = np.array([e for _, _, e in pairs])
    finite = np.isfinite(error)
    return {
        "confidence_mean": float(conf.mean()),
        "confidence_min": float(conf.min()),
        "spearman_vs_dice": _spearman(conf, dice),
        "pearson_vs_dice": float(stats.pearsonr(conf, dice).statistic) if _varied(conf, dice) else None,
        "spearman_vs_centroid_error": _spearman(conf[finite], error[finite]),
        "frames": len(pairs),
        "frames_confidence": conf[finite].round(4).tolist(),
        "frames_centroid_mm": error[finite].round(4).tolist(),
    }


RELIABILITY_BINS = (0.0, 0.25, 0.5, 0.75, 0.9, 1.0)


def pooled_confidence(cases: list[dict[str, object]]) -> dict[str, object]:
    """Confidence against centroid error over every case's frames: Spearman and a reliability table.

    The table bins frames by confidence (:data:`RELIABILITY_BINS`, the last bin closed) and
    gives each bin's frame count, mean and 95th-percentile centroid error: a confidence that
    means the same on every scan has errors that fall as the bins rise, whatever the case.
    """
    conf = np.array([c for case in cases for c in _frames(case, "frames_confidence")])
    error = np.array([e for case in cases for e in _frames(case, "frames_centroid_mm")])
    if conf.size == 0:
        return {}
    bins = []
    for lo, hi in itertools.pairwise(RELIABILITY_BINS):
        inside = (conf >= lo) & ((conf < hi) | (hi == RELIABILITY_BINS[-1]))
        chosen = error[inside]
        bins.append(
            {
                "confidence_from": lo,
                "confidence_to": hi,
                "frames": int(inside.sum()),
                "centroid_mm_mean": float(chosen.mean()) if chosen.size else None,
                "centroid_mm_p95": float(np.percentile(chosen, 95)) if chosen.size else None,
            }
        )
    return {
        "frames": int(conf.size),
        "spearman_vs_centroid_error": _spearman(conf, error),
        "reliability": bins,
    }


def _frames(case: dict[str, object], key: str) -> list[float]:
    block = case.get("confidence")
    values = block.get(key, []) if isinstance(block, dict) else []
    return list(values) if isinstance(values, list) else []


def _varied(a: np.ndarray, b: np.ndarray) -> bool:
    return len(a) >= 3 and np.ptp(a) > 0 and np.ptp(b) > 0


def _spearman(a: np.ndarray, b: np.ndarray) -> float | None:
    return float(stats.spearmanr(a, b).statistic) if _varied(a, b) else None


WORST = {  # summary key -> (where in a case report, "min" or "max" is worst)
    "dice_mean": (("dice_mean",), "min"),
    "challenge_dice": (("challenge", "dice"), "min"),
    "relative_d98": (("challenge", "relative_d98"), "min"),
    "centroid_mm_mean": (("centroid_mm_mean",), "max"),
    "beam_on_outside_fraction": (("gating", "beam_on_outside_fraction"), "max"),
    "duty_vs_oracle": (("gating", "duty_vs_oracle"), "min"),
}


def _dig(report: dict[str, object], path: tuple[str, ...]) -> float | None:
    value: object = report
    for key in path:
        if not isinstance(value, dict) or key not in value:
            return None
        value = value[key]
    return float(value) if isinstance(value, int | float) and np.isfinite(value) else None


def worst_cases(cases: list[dict[str, object]]) -> dict[str, dict[str, object]]:
    """Per headline figure: the worst case's value and name, beside the mean over cases."""
    out: dict[str, dict[str, object]] = {}
    for name, (path, worst) in WORST.items():
        values = [(v, str(c["name"])) for c in cases if (v := _dig(c, path)) is not None]
        if not values:
            continue
        pick = min(values) if worst == "min" else max(values)
        out[name] = {"worst": pick[0], "case": pick[1], "mean": float(np.mean([v for v, _ in values]))}
    return out
