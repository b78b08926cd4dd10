"""GPU checks for the sam2 engine: parity on CUDA, then latency with bf16 autocast.

Run by bench/gpu_check.sh on a machine with an NVIDIA GPU (budget: under 8 minutes).
1. Parity: tiny at 512 px, fp32 on CUDA, 30 DAVIS frames, 2 mask-prompted objects; our
   engine against sam2's SAM2VideoPredictor on the same model (max abs logit diff, min IoU).
2. Latency: base_plus and tiny at 1024 px, bf16 autocast, one object, 10 warm-up frames then
   N timed frames: ms/frame p50/p99 and per-stage medians (CUDA events).
3. Batching across sessions: base_plus at 1024 px, bf16, image encoder and whole
   ``step_batch`` at batch 1 and ``--batch-size`` (default 8) in interleaved rounds
   (bench/bench_batch.py); prints the batched / one-by-one speed-up per frame, and how far
   ``step_batch`` is from one-by-one steps on this device and dtype (6 frames).
Prints a table and writes JSON. Random weights: the cost of a frame does not depend on them.
``--device cpu`` with small sizes only smoke-tests the script itself.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

logger = logging.getLogger("gpu_check")
REPO = Path(__file__).resolve().parent.parent
STAGES = ("encoder", "memory_attention", "decoder", "memory_encoder")


def davis_frames(n: int, out_dir: Path) -> tuple[list[np.ndarray], np.ndarray]:
    """``n`` blackswan frames (ping-ponged) written as JPEGs to ``out_dir``, and the frame-0 mask."""
    from PIL import Image

    from tracker.lab.bench.common import davis_clip, ping_pong

    src = davis_clip()
    paths = sorted((src / "JPEGImages").glob("*.jpg"))
    frames = []
    for k, i in enumerate(ping_pong(len(paths), n)):
        target = out_dir / f"{k:05d}.jpg"
        target.write_bytes(paths[i].read_bytes())
        frames.append(np.asarray(Image.open(target).convert("RGB")))
    first = np.asarray(Image.open(sorted((src / "Annotations").glob("*.png"))[0])) > 0
    return frames, first


def _engine(model: str, image_size: int, device: str, dtype: str):
    from tracker.engines.sam2.engine import Sam2Engine

    options = {"model": model, "random_weights": "true", "image_size": str(image_size)}
    return Sam2Engine.from_options(options | {"device": device, "dtype": dtype})


def parity(frames_dir: Path, first_mask: np.ndarray, device: str, image_size: int) -> dict[str, float]:
    from tracker.engines.sam2.parity import compare_in_process, sharpen_random_logits
    from tracker.types import MaskPrompt, PromptUpdate, UpdateAction

    engine = _engine("tiny", image_size, device, "float32")
    sharpen_random_logits(engine.model)
    other = np.roll(first_mask, 60, axis=1)
    schedule = {
        0: [
            PromptUpdate(UpdateAction.ADD, 1, MaskPrompt(first_mask)),
            PromptUpdate(UpdateAction.ADD, 2, MaskPrompt(other)),
        ]
    }
    stats = compare_in_process(engine, frames_dir, schedule)
    return {
        "max_abs_logit_diff": float(stats.max_abs_logit_diff_low_res),
        "max_abs_logit_diff_video_res": float(stats.max_abs_logit_diff_video_res),
        "min_iou": float(stats.min_iou),
        "frames": stats.frames,
    }


def latency(
    model: str, frames: list[np.ndarray], first_mask: np.ndarray, timed: int, device: str, image_size: int
) -> dict[str, object]:
    from tracker.types import Frame, MaskPrompt, ObjectPrompt, SessionConfig

    engine = _engine(model, image_size, device, "bfloat16" if device == "cuda" else "float32")
    session = engine.open_session(SessionConfig(objects=(ObjectPrompt(1, MaskPrompt(first_mask)),)))
    warm = 10 if device == "cuda" else 1
    totals, stages = [], []
    for i in range(warm + timed):
        start = time.perf_counter()
        session.step(Frame(i, frames[i % len(frames)]))
        per_stage = session.timer.results()  # synchronises on the last CUDA event
        if i >= warm:
            totals.append((time.perf_counter() - start) * 1000.0)
            stages.append(per_stage)
    session.close()
    return {
        "model": model,
        "ms_per_frame_p50": float(np.percentile(totals, 50)),
        "ms_per_frame_p99": float(np.percentile(totals, 99)),
        "stages_ms_median": {k: float(np.median([s.get(k, 0.0) for s in stages])) for k in STAGES},
        "frames": timed,
    }


def batching(frames: list[np.ndarray], first_mask: np.ndarray, args: argparse.Namespace) -> dict:
    """Per-frame ms at batch 1 and ``args.batch_size``, and the speed-up of batching."""
    from bench_batch import batched_vs_one_by_one, build_engine, run, summarise

    dtype = "bfloat16" if args.device == "cuda" else "float32"
    engine = build_engine(args.batch_model, args.image_size, args.device, dtype)
    batches = [1, args.batch_size]
    raw = run({dtype: engine}, frames, first_mask, batches, args.batch_rounds, warmup=3)
    summary = summarise(raw)[dtype]
    exact = batched_vs_one_by_one(engine, frames, first_mask, args.batch_size, steps=6)
    big = str(args.batch_size)
    return {
        "model": args.batch_model,
        "dtype": dtype,
        "batch_size": args.batch_size,
        "encoder": summary["encoder"],
        "step": summary["step"],
        "encoder_speedup": summary["encoder"][big]["speedup_vs_batch_1"],
        "step_speedup": summary["step"][big]["speedup_vs_batch_1"],
        "exactness": exact,
    }


def table(result: dict, args: argparse.Namespace) -> str:
    p = result["parity"]
    lines = [
        f"GPU: {result['machine']['gpu']}",
        f"parity (tiny {args.parity_size} px, fp32, {args.device}, {p['frames']} frames x 2 objects):"
        f" max |logit diff| {p['max_abs_logit_diff']:.2e}, min IoU {p['min_iou']:.4f}"
        " [target <= 1e-3, >= 0.999]",
        f"| model @{args.image_size} | ms/frame p50 | p99 | " + " | ".join(STAGES) + " |",
        "|---|---|---|---|---|---|---|",
    ]
    for r in result["latency"]:
        stage_ms = " | ".join(f"{r['stages_ms_median'][k]:.1f}" for k in STAGES)
        lines.append(
            f"| {r['model']} | {r['ms_per_frame_p50']:.1f} | {r['ms_per_frame_p99']:.1f} | {stage_ms} |"
        )
    lines.append("target: base_plus @1024 <= 30 ms/frame on an H100-class card (bf16)")
    b = result.get("batching")
    if b:
        n = str(b["batch_size"])
        for kind in ("encoder", "step"):
            one, many = b[kind]["1"]["ms_per_frame_p50"], b[kind][n]["ms_per_frame_p50"]
            lines.append(
                f"batching ({b['model']} @{args.image_size} {b['dtype']}), {kind}: {one:.1f} ms/frame"
                f" one by one, {many:.1f} ms/frame at batch {n}:"
                f" batched/one-by-one speed-up x{b[kind + '_speedup']:.2f}"
            )
        e = b["exactness"]
        lines.append(
            f"batching exactness ({e['sessions']} sessions x {e['frames']} frames, step_batch vs step):"
            f" max |logit diff| {e['max_abs_logit_diff']:.2e}, min IoU {e['min_iou']:.4f}"
            " [CPU fp32 test bound <= 1e-4, >= 0.999]"
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--frames", type=int, default=100, help="timed frames per model")
    parser.add_argument("--json", type=Path, default=REPO / "bench" / "results" / "gpu_check.json")
    parser.add_argument(
        "--device", choices=["cuda", "cpu"], default="cuda", help="cpu: smoke-test the script"
    )
    parser.add_argument("--models", default="base_plus,tiny")
    parser.add_argument("--image-size", type=int, default=1024, help="for the latency runs")
    parser.add_argument("--parity-size", type=int, default=512)
    parser.add_argument("--parity-frames", type=int, default=30)
    parser.add_argument("--batch-model", default="base_plus", help="for the batching check")
    parser.add_argument("--batch-size", type=int, default=8, help="sessions per batch (vs 1)")
    parser.add_argument("--batch-rounds", type=int, default=10, help="timed rounds (after 3 warm-up)")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    from tracker.lab.provenance import provenance

    run_provenance = provenance(seed=0)  # random weights, seed 0
    import torch

    if args.device == "cuda" and not torch.cuda.is_available():
        logger.error(
            "no CUDA device: this check needs an NVIDIA GPU (--device cpu only smoke-tests the script)"
        )
        return 2
    from tracker.lab.bench.common import machine_info

    gpu = torch.cuda.get_device_name(0) if args.device == "cuda" else "none (CPU smoke test)"
    result: dict = {
        "provenance": run_provenance,
        "machine": machine_info() | {"gpu": gpu},
        "settings": vars(args) | {"json": str(args.json)},
    }
    with tempfile.TemporaryDirectory() as tmp:
        frames, first = davis_frames(args.parity_frames, Path(tmp))
        result["parity"] = parity(Path(tmp), first, args.device, args.parity_size)
        result["latency"] = [
            latency(m, frames, first, args.frames, args.device, args.image_size)
            for m in args.models.split(",")
        ]
        if args.batch_size > 1:
            result["batching"] = batching(frames, first, args)
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(result, indent=2))
    print(table(result, args))
    return 0


if __name__ == "__main__":
    sys.exit(main())
