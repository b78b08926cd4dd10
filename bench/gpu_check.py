"""GPU checks for the sam2 engine: parity on CUDA, then latency with bf16 autocast.

Run by bench/gpu_check.sh on a machine with an NVIDIA GPU (budget: under 8 minutes).
1. Parity: tiny at 512 px, fp32 on CUDA, 30 DAVIS frames, 2 mask-prompted objects; our
   engine against sam2's SAM2VideoPredictor on the same model (max abs logit diff, min IoU).
2. Latency: base_plus and tiny at 1024 px, bf16 autocast, one object, 10 warm-up frames then
   N timed frames: ms/frame p50/p99 and per-stage medians (CUDA events).
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

    from tracker.bench_reference import _default_data, ping_pong

    src = _default_data()
    paths = sorted((src / "JPEGImages").glob("*.jpg"))
    frames = []
    for k, i in enumerate(ping_pong(len(paths), n)):
        target = out_dir / f"{k:05d}.jpg"
        target.write_bytes(paths[i].read_bytes())
        frames.append(np.asarray(Image.open(target).convert("RGB")))
    first = np.asarray(Image.open(sorted((src / "Annotations").glob("*.png"))[0])) > 0
    return frames, first


def _engine(model: str, image_size: int, device: str, dtype: str):
    from engines.sam2.engine import Sam2Engine

    options = {"model": model, "random_weights": "true", "image_size": str(image_size)}
    return Sam2Engine.from_options(options | {"device": device, "dtype": dtype})


def parity(frames_dir: Path, first_mask: np.ndarray, device: str, image_size: int) -> dict[str, float]:
    from engines.sam2.parity import compare_in_process, sharpen_random_logits
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
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    from tracker.provenance import provenance

    run_provenance = provenance(seed=0)  # random weights, seed 0
    import torch

    if args.device == "cuda" and not torch.cuda.is_available():
        logger.error(
            "no CUDA device: this check needs an NVIDIA GPU (--device cpu only smoke-tests the script)"
        )
        return 2
    from tracker.bench_stream import machine_info

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
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(result, indent=2))
    print(table(result, args))
    return 0


if __name__ == "__main__":
    sys.exit(main())
