"""Sweep the uncertainty-aware gate's knobs on the hard TUNING set only (issue #15).

Runs the flow engine once per tuning case in-process (no gRPC: the gate sees the
same FrameResults the server would build), then replays the recorded answers
through :class:`tracker.gating.gate.Gate` for every setting in the grid at a fixed
nominal latency, and prints, per setting, the worst beam-on-outside fraction and
the mean and worst duty cycle relative to the oracle's. This is how the defaults
in ``GatingConfig`` were chosen; the validation set is never read here.

    .venv/bin/python bench/tune_gating.py --cases 6 --json bench/results/tune_gating.json
"""

from __future__ import annotations

import argparse
import itertools
import json
import sys
from pathlib import Path
from typing import Any

import numpy as np
from tqdm import tqdm

from tracker.engines import create_engine
from tracker.gating.evaluate import score_gating
from tracker.gating.gate import Gate
from tracker.gating.report import true_centroids_mm
from tracker.gating.types import BeamState, GatingConfig
from tracker.io.readers import open_sequence
from tracker.masks import describe
from tracker.provenance import provenance
from tracker.types import Frame, FrameResult, FrameStatus, MaskPrompt, Modality, ObjectPrompt, SessionConfig

GRID = {
    "guard_mm": (0.0, 0.25, 0.5),
    "guard_sigmas": (0.5, 1.0, 1.5, 2.0),
    "confidence_error_mm": (0.5, 1.0, 2.0, 3.0),
    "min_confidence": (0.0, 0.5),
    "min_checked_forecasts": (1, 2, 3),
}


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


def _score(seq: Any, results: list[FrameResult], config: GatingConfig, latency_ms: float) -> dict[str, float]:
    gate = Gate(config, seq.geometry)
    times = np.array([seq.timestamp(i) for i in range(len(seq))])
    states = []
    for t, result in zip(times, results, strict=True):
        fresh = FrameResult(result.frame_index, result.status, objects=[_copy(o) for o in result.objects])
        states.append(gate.observe(fresh, float(t), latency_ms).state)
    oid = seq.object_ids()[0]
    truth = true_centroids_mm(seq, oid)
    known = np.isfinite(truth).all(axis=1)
    for k in range(3):
        truth[~known, k] = np.interp(times[~known], times[known], truth[known, k])
    latencies = np.full(len(times), latency_ms)
    scores = score_gating(times, states, latencies, truth, truth[0], config.margin_mm)
    oracle = float(((np.linalg.norm(truth - truth[0], axis=1) <= config.margin_mm) & known).mean())
    duty = float(np.mean([s is BeamState.ON for s in states]))
    return {"outside": scores.beam_on_outside_fraction, "duty": duty, "oracle": oracle}


def _copy(obj: Any) -> Any:
    from dataclasses import replace

    return replace(obj)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=Path("bench/data/hard_cine"))
    parser.add_argument("--cases", type=int, default=6)
    parser.add_argument("--margin-mm", type=float, default=3.0)
    parser.add_argument("--latency-ms", type=float, default=50.0, help="nominal end-to-end latency")
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args(argv)
    prov = provenance()
    from bench.bench_validation import _cases  # the same cached tuning cases

    paths = _cases(args.data, "tuning", args.cases)
    recorded = [_answers(p) for p in tqdm(paths, desc="flow on tuning cases")]
    rows = []
    for values in itertools.product(*GRID.values()):
        knobs = dict(zip(GRID, values, strict=True))
        config = GatingConfig(margin_mm=args.margin_mm, **knobs)
        per_case = [_score(seq, res, config, args.latency_ms) for seq, res in recorded]
        ratios = [c["duty"] / c["oracle"] for c in per_case if c["oracle"] > 0]
        rows.append(
            {
                **knobs,
                "outside_worst": max(c["outside"] for c in per_case),
                "outside_mean": float(np.mean([c["outside"] for c in per_case])),
                "duty_vs_oracle_mean": float(np.mean(ratios)) if ratios else None,
                "duty_vs_oracle_worst": min(ratios) if ratios else None,
            }
        )
    rows.sort(key=lambda r: (r["outside_worst"] > 0.01, -(r["duty_vs_oracle_mean"] or 0)))
    for r in rows[:15]:
        print(json.dumps(r))
    if args.json is not None:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(
            json.dumps(
                {
                    "provenance": prov,
                    "settings": vars(args) | {"data": str(args.data), "json": str(args.json)},
                    "grid": rows,
                },
                indent=2,
            )
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
