"""PyTorch ``sam2`` engine vs ONNX Runtime ``onnx`` engine in one run.

Exports the graphs (random weights, seed 0, logits sharpened x40 in both so masks are
sharp and memory matters), then streams the same clip through both engines and writes
JSON: per-engine ``ms_per_frame_p50``/``p95`` and per-stage medians (encoder, memory
attention, decoder, memory encoder), the speed-up, and ``parity`` (max abs low-res
logit difference, min mask IoU over all frames and objects).

    .venv/bin/python bench/bench_onnx.py --image-size 512 --frames 32 --threads 2 \
        --out bench/results/onnx_cpu.json

Frames: DAVIS-2016 blackswan from the shared data when present, else a synthetic clip (with a
warning; the result's `clip` says which);
two objects (the swan's mask and a box on the bank) prompted on frame 0. The first two
frames of each engine are warm-up and excluded from the timings (not from parity). The
engines alternate frame by frame, so load from other processes hits both alike.
"""

from __future__ import annotations

import argparse
import logging
import tempfile
from pathlib import Path

from tracker.lab.bench.interleaved import clip, clip_source, compare_logits, run_interleaved, write_result

logger = logging.getLogger("bench_onnx")


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--image-size", type=int, default=512)
    p.add_argument("--frames", type=int, default=32)
    p.add_argument("--threads", type=int, default=2, help="torch threads and ORT intra-op threads")
    p.add_argument("--optimization", default="all", help="ORT graph optimisation level")
    p.add_argument("--export-dir", type=Path, default=None, help="reuse/keep an export here")
    p.add_argument("--out", type=Path, default=None)
    args = p.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    from tracker.lab.provenance import provenance

    run_provenance = provenance(seed=0)  # the export's random weights use seed 0

    import torch

    from tracker.engines.export import export_main
    from tracker.engines.onnx.engine import OnnxEngine
    from tracker.engines.onnx.engine import parse_options as onnx_options
    from tracker.engines.onnx.manifest import MANIFEST_NAME
    from tracker.engines.sam2.engine import Sam2Engine
    from tracker.engines.sam2.options import parse_options
    from tracker.engines.sam2.parity import sharpen_random_logits
    from tracker.lab.bench.common import machine_info

    torch.set_num_threads(args.threads)
    tmp = tempfile.TemporaryDirectory()
    export_dir = args.export_dir or Path(tmp.name) / "export"
    if not (export_dir / MANIFEST_NAME).is_file():
        export_main(
            [
                "--model",
                "tiny",
                "--random-weights",
                "--image-size",
                str(args.image_size),
                "--out",
                str(export_dir),
                "--sharpen-logits",
                "40",
            ]
        )
    frames, mask = clip(args.frames)
    torch_engine = Sam2Engine(
        parse_options({"random_weights": "true", "image_size": str(args.image_size), "device": "cpu"})
    )
    sharpen_random_logits(torch_engine.model)
    onnx_engine = OnnxEngine(
        onnx_options(
            {
                "export_dir": str(export_dir),
                "providers": "cpu",
                "intra_op_threads": str(args.threads),
                "optimization": args.optimization,
            }
        )
    )
    res, lo = run_interleaved({"ours": torch_engine, "onnx": onnx_engine}, frames, mask)
    ours, onnx = res["ours"], res["onnx"]
    diff, iou = compare_logits(lo["ours"], lo["onnx"])
    result = {
        "provenance": run_provenance,
        "model": "sam2.1_hiera_tiny (random weights, seed 0, logits x40)",
        "image_size": args.image_size,
        "frames": len(frames),
        "clip": clip_source(len(frames)),
        "objects": 2,
        "threads": args.threads,
        "torch_version": torch.__version__,
        "machine": machine_info(),
        "ours": ours,
        "onnx": onnx,
        "speedup_p50": round(ours["ms_per_frame_p50"] / onnx["ms_per_frame_p50"], 3),
        "parity": {"max_abs_logit_diff": diff, "min_iou": iou},
    }
    write_result(result, args.out)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
