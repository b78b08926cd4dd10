"""Issue #8's targets on synthetic cine-MRI, over real gRPC.

* Prediction: the Kalman predictor's position error at a 300 ms horizon, against the
  no-prediction error (the last measured position) at the same horizon, pooled and per
  case (the output names every case where prediction is worse than none).
* Gating: a 3 mm window (the gate's default guard), latency-compensated horizon; beam-on time with
  the true target outside the window (target <= 1 %), duty cycle, hold-while-inside,
  beam-off latency. Plus TrackRAD's relative D98.

    .venv/bin/python bench/bench_gating.py --cases 10 --json bench/results/gating.json
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

from tracker.lab.bench.common import machine_info, write_json
from tracker.lab.provenance import provenance
from tracker.lab.replay import ReplayOptions, replay
from tracker.lab.synth.cine_mri import write_cases


def beats(case: dict) -> bool | None:
    """Whether prediction's mean error is below no prediction's; None where none was compared."""
    pred, hold = case["prediction"]["error_mm_mean"], case["prediction"]["no_prediction_error_mm_mean"]
    return None if pred is None or hold is None else pred < hold


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cases", type=int, default=10)
    parser.add_argument("--seed", type=int, default=2025)
    parser.add_argument("--margin-mm", type=float, default=3.0)
    parser.add_argument("--horizon-ms", type=float, default=300.0)
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args(argv)
    run_provenance = provenance(seed=args.seed)  # at the start: the load average is the run's
    started = time.time()
    with tempfile.TemporaryDirectory() as tmp:
        paths = write_cases(Path(tmp), args.cases, args.seed, progress=True)
        predicted, _ = replay(
            paths,
            ReplayOptions(gating_margin_mm=args.margin_mm, prediction_horizon_ms=args.horizon_ms),
        )
        gated, _ = replay(paths, ReplayOptions(gating_margin_mm=args.margin_mm))
    prediction = predicted["summary"]["prediction"]
    per_case = [
        {
            "case": c["name"],
            "frame_rate_hz": c["frame_rate_hz"],
            **c["prediction"],
            "prediction_beats_none": beats(c),
        }
        for c in predicted["cases"]
    ]
    worse = [c["case"] for c in per_case if c["prediction_beats_none"] is False]
    uncompared = [c["case"] for c in per_case if c["prediction_beats_none"] is None]
    gating = gated["summary"]["gating"]
    result = {
        "provenance": run_provenance,
        "machine": machine_info(),
        "settings": vars(args) | {"json": str(args.json)},
        "prediction_at_horizon": prediction,
        "prediction_per_case": per_case,
        "prediction_worse_than_none_cases": worse,
        "prediction_not_compared_cases": uncompared,
        "gating": gating,
        "gating_per_case": [{"case": c["name"], **c["gating"]} for c in gated["cases"]],
        "relative_d98_mean": gated["summary"]["relative_d98_mean"],
        "dice_mean": gated["summary"]["dice_mean"],
        "targets_met": {
            "prediction_error_below_no_prediction": prediction["error_mm_mean"]
            < prediction["no_prediction_error_mm_mean"],
            "prediction_beats_none_on_every_case": not worse and not uncompared,
            "beam_on_outside_le_1pct": gating["beam_on_outside_fraction"] <= 0.01,
        },
        "seconds": round(time.time() - started, 1),
    }
    print(
        json.dumps(
            {k: result[k] for k in ("prediction_at_horizon", "gating", "relative_d98_mean", "targets_met")},
            indent=2,
        )
    )
    for c in per_case:
        if c["prediction_beats_none"] is None:
            print(f"  {c['case']}: no frame compared at the horizon")
            continue
        print(
            f"  {c['case']} ({c['frame_rate_hz']:.1f} Hz): prediction {c['error_mm_mean']:.2f} mm,"
            f" none {c['no_prediction_error_mm_mean']:.2f} mm"
            f"{'' if c['prediction_beats_none'] else '  <- prediction WORSE than none'}"
        )
    better = len(per_case) - len(worse) - len(uncompared)
    print(
        f"prediction beats no prediction on {better} of {len(per_case)} cases; worse on {len(worse)}: {worse}"
    )
    if args.json:
        write_json(result, args.json)
    return 0


if __name__ == "__main__":
    sys.exit(main())
