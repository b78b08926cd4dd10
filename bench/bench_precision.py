"""sam2 engine on CPU: float32 against bfloat16 autocast, in one run.

Streams the same clip through two engines built from the same random weights (seed 0,
logits sharpened x40 so masks are sharp and memory matters), one in float32 and one with
``dtype=bfloat16``, alternating frame by frame so load from other processes hits both alike.
Writes JSON: per-engine ``ms_per_frame_p50``/``p95`` and per-stage medians, the speed-up,
and ``agreement`` (max abs low-res logit difference and min mask IoU of bf16 against fp32).

    .venv/bin/python bench/bench_precision.py --image-size 512 --frames 40 --objects 1 \\
        --out bench/results/precision_cpu.json

bf16 on CPU needs native bf16 instructions (avx512_bf16 or amx_bf16); the engine refuses it
elsewhere, and so does this script.
"""

from __future__ import annotations

import argparse
import logging
from pathlib import Path

from tracker.lab.bench.interleaved import clip, clip_source, compare_logits, run_interleaved, write_result

logger = logging.getLogger("bench_precision")


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--model", default="tiny")
    p.add_argument("--image-size", type=int, default=512)
    p.add_argument("--frames", type=int, default=40)
    p.add_argument("--objects", type=int, default=1, choices=(1, 2))
    p.add_argument("--threads", type=int, default=2, help="torch intra-op threads")
    p.add_argument("--out", type=Path, default=None)
    args = p.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    from tracker.lab.provenance import provenance

    run_provenance = provenance(seed=0)  # both engines' random weights use seed 0

    import torch

    from tracker.engines.sam2.engine import Sam2Engine
    from tracker.engines.sam2.options import parse_options
    from tracker.engines.sam2.parity import sharpen_random_logits
    from tracker.lab.bench.common import machine_info

    torch.set_num_threads(args.threads)
    base = {"model": args.model, "random_weights": "true", "device": "cpu"}
    base["image_size"] = str(args.image_size)
    engines = {}
    for dtype in ("float32", "bfloat16"):
        engine = Sam2Engine(parse_options({**base, "dtype": dtype}))  # refuses bf16 without native bf16
        sharpen_random_logits(engine.model)
        engines[dtype] = engine
    frames, mask = clip(args.frames)
    res, logits = run_interleaved(engines, frames, mask, objects=args.objects)
    diff, iou = compare_logits(logits["float32"], logits["bfloat16"])
    result = {
        "provenance": run_provenance,
        "model": f"{engines['float32'].settings.model} (random weights, seed 0, logits x40)",
        "image_size": args.image_size,
        "frames": len(frames),
        "clip": clip_source(len(frames)),
        "objects": args.objects,
        "threads": args.threads,
        "torch_version": torch.__version__,
        "machine": machine_info(),
        "float32": res["float32"],
        "bfloat16": res["bfloat16"],
        "speedup_p50": round(res["float32"]["ms_per_frame_p50"] / res["bfloat16"]["ms_per_frame_p50"], 3),
        "agreement": {"max_abs_logit_diff": diff, "min_iou": iou},
    }
    write_result(result, args.out)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
