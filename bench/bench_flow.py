"""Benchmark of the `flow` engine against its targets, over real gRPC on loopback.

Accuracy: N generated cine-MRI cases (default 10), replayed at `--rate max`, scored
TrackRAD-style. The Dice target (>= 0.90) is per case, so each case's mean Dice is
checked and the worst case is reported beside the median over all pooled frames (a
pooled median can hide a case that misses); mean centroid error target <= 1.0 mm.

Latency: one 270x270 case replayed frame by frame: server-side time per frame
(target median <= 15 ms) and gRPC overhead = client end-to-end minus server time
(target median <= 3 ms).

    .venv/bin/python bench/bench_flow.py --json bench/results/flow.json
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import logging
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from tracker.io.trackrad import read_trackrad_case, write_trackrad_case
from tracker.lab.bench.common import machine_info, write_json
from tracker.lab.provenance import provenance
from tracker.lab.replay import ReplayOptions, connect, replay_sequence
from tracker.lab.synth.cine_mri import generate_case, random_case_params, write_cases

logger = logging.getLogger("bench_flow")


def machine() -> dict[str, object]:
    import cv2

    return {**machine_info(), "opencv": cv2.__version__}


def accuracy(n_cases: int, seed: int, workdir: Path) -> dict[str, object]:
    paths = write_cases(workdir / "accuracy", n_cases, seed, progress=True)
    frame_dice: list[float] = []
    case_rows = []
    with connect(None, "flow", {}) as client:
        for path in paths:
            sequence = read_trackrad_case(path)
            result = replay_sequence(client, sequence, ReplayOptions(rate="max", progress=False))
            scores = result.scores[1]
            dice = [f.dice for f in scores.frames]
            frame_dice.extend(dice)
            case_rows.append(
                {
                    "case": sequence.name,
                    "frames": len(sequence),
                    "frame_rate_hz": sequence.frame_rate_hz,
                    "size": list(sequence.shape_hw),
                    "dice_mean": scores.dice_mean,
                    "dice_median": float(np.median(dice)),
                    "centroid_mm_mean": scores.centroid_mm_mean,
                    "hd95_mm_mean": scores.hd95_mm_mean,
                }
            )
            row = case_rows[-1]
            logger.info("%s %.1f Hz: Dice %.3f, centroid %.2f mm", row["case"], row["frame_rate_hz"],
                        scores.dice_mean, scores.centroid_mm_mean)  # fmt: skip
    worst = min(case_rows, key=lambda c: c["dice_mean"])
    return {
        "cases": case_rows,
        "dice_mean_per_case": {c["case"]: c["dice_mean"] for c in case_rows},
        "dice_mean_worst_case": {"case": worst["case"], "dice_mean": worst["dice_mean"]},
        "cases_dice_mean_below_0.90": [c["case"] for c in case_rows if c["dice_mean"] < 0.90],
        "dice_median_all_frames": float(np.median(frame_dice)),
        "dice_mean_of_cases": float(np.mean([c["dice_mean"] for c in case_rows])),
        "centroid_mm_mean_of_cases": float(np.mean([c["centroid_mm_mean"] for c in case_rows])),
        "frames_scored": len(frame_dice),
    }


def latency(frames: int, seed: int, workdir: Path) -> dict[str, object]:
    rng = np.random.default_rng(seed)
    params = dataclasses.replace(random_case_params(rng), size_px=270, n_frames=frames)
    case = generate_case(params, seed)
    path = write_trackrad_case(
        workdir / "latency", "L270", case.frames, case.labels[0], params.frame_rate_hz, case.labels
    )
    sequence = read_trackrad_case(path)
    with connect(None, "flow", {}) as client:
        result = replay_sequence(client, sequence, ReplayOptions(rate="max", progress=False))
    records = result.records[1:]  # frame 0 carries the prompt set-up
    server = np.array([r.server_ms for r in records])
    e2e = np.array([r.end_to_end_ms for r in records])
    overhead = e2e - server
    return {
        "frame_size": [270, 270],
        "frames": len(records),
        "server_ms_median": float(np.median(server)),
        "server_ms_p95": float(np.percentile(server, 95)),
        "end_to_end_ms_median": float(np.median(e2e)),
        "grpc_overhead_ms_median": float(np.median(overhead)),
        "grpc_overhead_ms_p95": float(np.percentile(overhead, 95)),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cases", type=int, default=10)
    parser.add_argument("--seed", type=int, default=2025)
    parser.add_argument("--latency-frames", type=int, default=300)
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    run_provenance = provenance(seed=args.seed)  # at the start: the load average is the run's
    started = time.time()
    with tempfile.TemporaryDirectory() as tmp:
        acc = accuracy(args.cases, args.seed, Path(tmp))
        lat = latency(args.latency_frames, args.seed, Path(tmp))
    targets = {
        "dice_mean_every_case_ge_0.90": acc["dice_mean_worst_case"]["dice_mean"] >= 0.90,  # type: ignore[index]
        "dice_median_pooled_frames_ge_0.90": acc["dice_median_all_frames"] >= 0.90,
        "centroid_mm_mean_le_1.0": acc["centroid_mm_mean_of_cases"] <= 1.0,
        "server_ms_median_le_15": lat["server_ms_median"] <= 15.0,
        "grpc_overhead_ms_median_le_3": lat["grpc_overhead_ms_median"] <= 3.0,
    }
    result = {
        "provenance": run_provenance,
        "machine": machine(),
        "settings": vars(args) | {"json": str(args.json)},
        "accuracy": acc,
        "latency": lat,
        "targets_met": targets,
        "seconds": round(time.time() - started, 1),
    }
    print(json.dumps({k: result[k] for k in ("latency", "targets_met")}, indent=2))
    for case, dice in acc["dice_mean_per_case"].items():  # type: ignore[union-attr]
        print(f"  {case}: mean Dice {dice:.3f}{'  (below 0.90)' if dice < 0.90 else ''}")
    worst = acc["dice_mean_worst_case"]
    print(
        f"accuracy: worst case mean Dice {worst['dice_mean']:.3f} ({worst['case']}),"  # type: ignore[index]
        f" {len(acc['cases_dice_mean_below_0.90'])} of {len(acc['cases'])} cases below 0.90;"  # type: ignore[arg-type]
        f" median Dice {acc['dice_median_all_frames']:.3f} over {acc['frames_scored']} pooled frames;"
        f" mean centroid error {acc['centroid_mm_mean_of_cases']:.2f} mm"
    )
    if args.json:
        write_json(result, args.json)
    return 0


if __name__ == "__main__":
    sys.exit(main())
