"""Sweep the uncertainty-aware gate's knobs on the hard TUNING set only.

Runs the flow engine once per tuning case in-process (no gRPC: the gate sees the
same FrameResults the server would build), then replays the recorded answers
through :class:`tracker.gating.gate.Gate` for every setting in the grid at several
nominal latencies (50, 100 and 200 ms by default), and reports, per setting and
latency, the worst beam-on-outside fraction and the duty cycle relative to the
oracle's: the mean of the per-case ratios, pooled over cases, and the worst case.
The window's reference is the one replay gives the gate and the oracle
(:mod:`tracker.gating.reference`): end-exhale and the first frame, by default both. A
setting counts as safe only if no case exceeds 1 % beam-on-outside at any of the
latencies with either reference. This is how the defaults in ``GatingConfig`` were
chosen; the validation set is never read here.

``--diagnose`` prints, for the defaults (or ``--gate`` settings) at the first latency and
reference, where the duty cycle goes: per case, the gate's HOLD causes on the frames the
oracle has the beam on, the oracle's beam-on share per quarter of the sequence, and the guard
band against the error it guards (the distance between the gated, predicted position
and the true position when the decision takes effect); and the engine's tracking error
per confidence band, which calibrates the guard's floor. ``--plot`` draws duty/oracle
against worst beam-on-outside for every setting, latency and reference.

    .venv/bin/python bench/tune_gating.py --json /tmp/tune_gating.json \\
        --plot docs/img/gating_tradeoff.png --diagnose --cache /tmp/tune_answers.pkl
"""

from __future__ import annotations

import argparse
import itertools
import json
import logging
import pickle
import sys
from collections import Counter
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np
from scipy import stats
from tqdm import tqdm

from tracker.engines import create_engine
from tracker.gating.evaluate import interpolate_positions, score_gating
from tracker.gating.gate import Gate
from tracker.gating.reference import REFERENCES, planned_reference
from tracker.gating.types import BeamState, GatingConfig
from tracker.io.readers import open_sequence
from tracker.lab.bench.common import write_json
from tracker.lab.provenance import provenance
from tracker.lab.replay.gating_report import true_centroids_mm
from tracker.masks import describe
from tracker.types import Frame, FrameResult, FrameStatus, MaskPrompt, Modality, ObjectPrompt, SessionConfig

logger = logging.getLogger("tune_gating")

GRID = {
    "guard_mm": (0.0, 0.25, 0.5),
    "guard_sigmas": (0.5, 1.0, 1.5, 2.0),
    "confidence_error_mm": (0.5, 1.0, 2.0, 3.0),
    "min_confidence": (0.0, 0.5),
    "min_checked_forecasts": (1, 2, 3),
}
OUTSIDE_TARGET = 0.01
DUTY_TARGET = 0.80


@dataclass
class Case:
    """One tuning case's recorded engine answers and what the gate is judged against."""

    name: str
    seq: Any
    results: list[FrameResult]
    times: np.ndarray
    truth: np.ndarray  # (T, 3) true centroids, interpolated through empty frames
    known: np.ndarray  # (T,) the target is in the slice
    reference_mm: np.ndarray
    reference_frame: int
    set_reference: bool  # end-exhale: the gate is given the reference, as replay does


@dataclass
class CaseScore:
    name: str
    outside: float
    duty: float
    oracle: float
    on_frames: int
    oracle_frames: int
    causes_on_oracle_frames: dict[str, int] = field(default_factory=dict)  # why the gate held there
    oracle_by_quarter: list[float] = field(default_factory=list)  # oracle beam-on share per time quarter
    guard_mm_median: float = 0.0
    error_mm_median: float = 0.0  # |predicted - truth at effect| on gated frames
    error_mm_p90: float = 0.0
    error_over_guard: float = 0.0  # share of gated frames whose error exceeded the guard
    tracking_mm_median: float = 0.0  # |measured - truth| at the frame itself


def _answers(path: Path) -> tuple[Any, list[FrameResult]]:
    seq = open_sequence(path)
    prompt = seq.prompt_label()
    assert prompt is not None, f"{path}: no first-frame label"
    oid = seq.object_ids()[0]
    config = SessionConfig(
        modality=Modality.CINE_MRI,
        objects=(ObjectPrompt(oid, MaskPrompt(prompt == oid)),),
        geometry=seq.geometry,
    )
    session = create_engine("flow", {}).open_session(config)
    results = []
    for i in range(len(seq)):
        tracks = session.step(Frame(i, np.asarray(seq.frames[i]), seq.timestamp(i))).tracks
        objects = [describe(t, "target", seq.geometry) for t in tracks]
        results.append(FrameResult(i, FrameStatus.OK, objects=objects))
    return seq, results


def _case(seq: Any, results: list[FrameResult], reference: str) -> Case:
    oid = seq.object_ids()[0]
    times = np.array([seq.timestamp(i) for i in range(len(seq))])
    truth = true_centroids_mm(seq, oid)
    known = np.isfinite(truth).all(axis=1)
    for k in range(3):
        truth[~known, k] = np.interp(times[~known], times[known], truth[known, k])
    planned = planned_reference(np.asarray(seq.labels), oid, seq.geometry, times, reference)
    ref = np.asarray(planned.position_mm)
    return Case(
        seq.name, seq, results, times, truth, known, ref, planned.frame_index, reference != "first_frame"
    )


def _score(case: Case, config: GatingConfig, latency_ms: float, diagnose: bool = False) -> CaseScore:
    gate = Gate(config, case.seq.geometry)
    oid = case.seq.object_ids()[0]
    if case.set_reference:
        gate.set_reference(oid, case.reference_mm)
    decisions, predicted, measured = [], [], []
    for t, result in zip(case.times, case.results, strict=True):
        fresh = FrameResult(result.frame_index, result.status, objects=[replace(o) for o in result.objects])
        decisions.append(gate.observe(fresh, float(t), latency_ms))
        obj = next((o for o in fresh.objects if o.object_id == oid), None)
        forecast = None if obj is None else getattr(obj, "predicted_mm", None)
        predicted.append(np.full(3, np.nan) if forecast is None else np.asarray(forecast, dtype=float))
        centroid = None if obj is None else obj.centroid_mm
        measured.append(np.full(3, np.nan) if centroid is None else np.asarray(centroid, dtype=float))
    states = [d.state for d in decisions]
    latencies = np.full(len(case.times), latency_ms)
    scores = score_gating(case.times, states, latencies, case.truth, case.reference_mm, config.margin_mm)
    oracle_on = (np.linalg.norm(case.truth - case.reference_mm, axis=1) <= config.margin_mm) & case.known
    on = np.array([s is BeamState.ON for s in states])
    out = CaseScore(
        case.name,
        scores.beam_on_outside_fraction,
        float(on.mean()),
        float(oracle_on.mean()),
        int(on.sum()),
        int(oracle_on.sum()),
    )
    if not diagnose:
        return out
    out.causes_on_oracle_frames = dict(
        Counter(d.cause or "on" for d, o in zip(decisions, oracle_on, strict=True) if o)
    )
    out.oracle_by_quarter = [float(q.mean()) for q in np.array_split(oracle_on, 4)]
    at_effect = interpolate_positions(case.times, case.truth, case.times + latency_ms / 1000.0)
    error = np.linalg.norm(np.asarray(predicted) - at_effect, axis=1)
    guard = np.array([d.guard_mm for d in decisions])
    judged = np.isfinite(error) & np.array([d.cause in ("", "guard_band", "outside") for d in decisions])
    if judged.any():
        out.guard_mm_median = float(np.median(guard[judged]))
        out.error_mm_median = float(np.median(error[judged]))
        out.error_mm_p90 = float(np.percentile(error[judged], 90))
        out.error_over_guard = float((error[judged] > guard[judged]).mean())
    tracking = np.linalg.norm(np.asarray(measured) - case.truth, axis=1)
    out.tracking_mm_median = float(np.nanmedian(tracking[case.known])) if case.known.any() else 0.0
    return out


def tracking_error_by_confidence(cases: list[Case]) -> dict[str, Any]:
    """The engine's centroid error against the truth, overall and per confidence band: what the
    guard's tracking term should cover (frames with the target in the slice, the prompt left out)."""
    errors, confidences = [], []
    for case in cases:
        for k, result in enumerate(case.results[1:], start=1):
            obj = result.objects[0] if result.objects else None
            if obj is None or obj.centroid_mm is None or not case.known[k] or obj.confidence is None:
                continue
            errors.append(float(np.linalg.norm(np.asarray(obj.centroid_mm) - case.truth[k])))
            confidences.append(obj.confidence)
    err, conf = np.array(errors), np.array(confidences)

    def stats_of(e: np.ndarray) -> dict[str, float]:
        return {"frames": len(e), "rms": float(np.sqrt(np.mean(e**2))), "median": float(np.median(e)),
                "p90": float(np.percentile(e, 90))}  # fmt: skip

    bands = [(0.0, 0.5), (0.5, 0.6), (0.6, 0.7), (0.7, 0.8), (0.8, 1.01)]
    return {
        "all": stats_of(err),
        "by_confidence": {
            f"{lo:g}-{min(hi, 1):g}": stats_of(err[(conf >= lo) & (conf < hi)])
            for lo, hi in bands
            if ((conf >= lo) & (conf < hi)).any()
        },
        "spearman_confidence_vs_error": float(stats.spearmanr(conf, err).statistic),
    }


def _summary(per_case: list[CaseScore]) -> dict[str, float | None]:
    ratios = [c.duty / c.oracle for c in per_case if c.oracle > 0]
    oracle_frames = sum(c.oracle_frames for c in per_case)
    return {
        "outside_worst": max(c.outside for c in per_case),
        "outside_mean": float(np.mean([c.outside for c in per_case])),
        "duty_vs_oracle_mean": float(np.mean(ratios)) if ratios else None,
        "duty_vs_oracle_pooled": sum(c.on_frames for c in per_case) / oracle_frames
        if oracle_frames
        else None,
        "duty_vs_oracle_worst": min(ratios) if ratios else None,
    }


def plot_tradeoff(rows: list[dict[str, Any]], chosen: dict[str, Any], title: str, path: Path) -> None:
    """Duty/oracle (mean of cases, pooled, worst case) against worst beam-on-outside: one row of
    panels per window reference, one colour per latency, one point per grid setting."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    panels = (("duty_vs_oracle_mean", "mean of cases"), ("duty_vs_oracle_pooled", "pooled"),
              ("duty_vs_oracle_worst", "worst case"))  # fmt: skip
    references = list(rows[0]["results"])
    fig, axes = plt.subplots(
        len(references), 3, figsize=(13, 4.0 * len(references)), sharex=True, sharey=True, squeeze=False
    )
    for row_axes, reference in zip(axes, references, strict=True):
        latencies = list(rows[0]["results"][reference])
        for ax, (key, name) in zip(row_axes, panels, strict=True):
            for latency in reversed(latencies):  # the nominal latency drawn last, on top
                x = [100 * r["results"][reference][latency]["outside_worst"] for r in rows]
                y = [r["results"][reference][latency][key] or 0 for r in rows]
                ax.scatter(x, y, s=10, alpha=0.45, label=f"grid, {latency} ms")
            for i, latency in enumerate(latencies):
                c = chosen["results"][reference][latency]
                x, y = 100 * c["outside_worst"], c[key] or 0
                ax.scatter([x], [y], s=110, facecolors="none", edgecolors="black", linewidths=1.4,
                           label="defaults" if i == 0 else None)  # fmt: skip
                ax.annotate(f"{latency} ms", (x, y), xytext=(8, -3), textcoords="offset points", fontsize=7)
            ax.axvline(100 * OUTSIDE_TARGET, color="red", linestyle="--", linewidth=1, label="≤ 1 % outside")
            ax.axhline(DUTY_TARGET, color="green", linestyle="--", linewidth=1, label="≥ 0.8 of oracle")
            ax.set_title(f"{reference} reference: duty ÷ oracle's, {name}", fontsize=9)
            ax.set_xscale("symlog", linthresh=1.0, linscale=2.0)  # linear to 1 %, then logarithmic
            ax.set_xlim(-0.2, 110)
            ax.grid(alpha=0.3)
        row_axes[0].set_ylabel("duty cycle ÷ oracle's")
    for ax in axes[-1]:
        ax.set_xlabel("worst case beam-on-outside (% of beam-on frames)")
    axes[0][0].legend(fontsize=7, loc="lower right")
    fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=90)
    plt.close(fig)


def _evaluate(
    cases: dict[str, list[Case]], config: GatingConfig, latencies: list[float]
) -> dict[str, dict[str, Any]]:
    """Summaries per window reference and latency."""
    return {
        reference: {f"{lat:g}": _summary([_score(c, config, lat) for c in ref_cases]) for lat in latencies}
        for reference, ref_cases in cases.items()
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=Path("bench/data/hard_cine"))
    parser.add_argument("--cases", type=int, default=6)
    parser.add_argument("--margin-mm", type=float, default=3.0)
    parser.add_argument(
        "--latency-ms",
        type=float,
        nargs="+",
        default=[50.0, 100.0, 200.0],
        help="nominal end-to-end latencies: a setting is safe only if safe at every one",
    )
    parser.add_argument(
        "--reference",
        choices=REFERENCES,
        nargs="+",
        default=["end_exhale", "first_frame"],
        help="window references: a setting is safe only if safe with every one",
    )
    parser.add_argument("--gate", action="append", default=[], metavar="KNOB=VALUE", help="for --diagnose")
    parser.add_argument("--diagnose", action="store_true", help="where the duty cycle goes, per case")
    parser.add_argument("--no-grid", action="store_true", help="only --diagnose")
    parser.add_argument("--cache", type=Path, default=None, help="pickle of the engine's answers (re-used)")
    parser.add_argument("--plot", type=Path, default=None, help="trade-off PNG")
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    prov = provenance()
    from bench.bench_validation import _cases  # the same cached tuning cases

    paths = _cases(args.data, "tuning", args.cases)
    if args.cache is not None and args.cache.is_file():
        recorded = pickle.loads(args.cache.read_bytes())
    else:
        recorded = [_answers(p) for p in tqdm(paths, desc="flow on tuning cases")]
        if args.cache is not None:
            args.cache.write_bytes(pickle.dumps(recorded))
    cases = {ref: [_case(seq, res, ref) for seq, res in recorded] for ref in args.reference}
    knobs = {
        k: (int if k == "min_checked_forecasts" else float)(v)
        for k, v in (g.split("=", 1) for g in args.gate)
    }
    chosen = GatingConfig(margin_mm=args.margin_mm, **knobs)  # type: ignore[arg-type]
    result: dict[str, Any] = {"provenance": prov, "settings": {k: str(v) for k, v in vars(args).items()}}
    nominal, main_reference = args.latency_ms[0], args.reference[0]
    diagnosis = [_score(c, chosen, nominal, diagnose=True) for c in cases[main_reference]]
    result["chosen"] = {
        "knobs": knobs,
        "results": _evaluate(cases, chosen, args.latency_ms),
        f"cases ({main_reference}, {nominal:g} ms)": [asdict(d) for d in diagnosis],
        "tracking_error_mm": tracking_error_by_confidence(cases[main_reference]),
    }
    if args.diagnose:
        for c, d in zip(cases[main_reference], diagnosis, strict=True):
            logger.info("%s ref frame %d: %s", c.name, c.reference_frame, json.dumps(asdict(d)))
        logger.info("chosen %s: %s", knobs, json.dumps(result["chosen"]["results"]))
        logger.info("tracking error (mm): %s", json.dumps(result["chosen"]["tracking_error_mm"]))
    if not args.no_grid:
        rows = []
        for values in itertools.product(*GRID.values()):
            setting = dict(zip(GRID, values, strict=True))
            config = GatingConfig(margin_mm=args.margin_mm, **setting)  # type: ignore[arg-type]
            results = _evaluate(cases, config, args.latency_ms)
            safe = all(v["outside_worst"] <= OUTSIDE_TARGET for r in results.values() for v in r.values())
            rows.append({**setting, "safe": safe, "results": results})
        rows.sort(
            key=lambda r: (
                not r["safe"],
                -(r["results"][main_reference][f"{nominal:g}"]["duty_vs_oracle_mean"] or 0),
            )
        )
        for r in rows[:15]:
            logger.info(json.dumps(r))
        result["grid"] = rows
        if args.plot is not None:
            title = (
                f"{len(rows)} gate settings on the {len(recorded)} hard tuning cases, {args.margin_mm:g} mm"
                " margin; circles: the defaults"
            )
            plot_tradeoff(rows, result["chosen"], title, args.plot)
    if args.json is not None:
        write_json(result, args.json)
    return 0


if __name__ == "__main__":
    sys.exit(main())
