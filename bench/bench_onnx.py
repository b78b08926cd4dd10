"""PyTorch ``sam2`` engine vs ONNX Runtime ``onnx`` engine in one run (GitHub #4).

Exports the graphs (random weights, seed 0, logits sharpened x40 in both so masks are
sharp and memory matters), then streams the same clip through both engines and writes
JSON: per-engine ``ms_per_frame_p50``/``p95`` and per-stage medians (encoder, memory
attention, decoder, memory encoder), the speed-up, and ``parity`` (max abs low-res
logit difference, min mask IoU over all frames and objects).

    .venv/bin/python bench/bench_onnx.py --image-size 512 --frames 32 --threads 2 \
        --out bench/results/onnx_cpu.json

Frames: DAVIS-2016 blackswan from the shared data when present, else a synthetic clip;
two objects (the swan's mask and a box on the bank) prompted on frame 0. The first two
frames of each engine are warm-up and excluded from the timings (not from parity). The
engines alternate frame by frame, so load from other processes hits both alike.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
import tempfile
from pathlib import Path
from typing import Any

import numpy as np

REPO = Path(__file__).resolve().parent.parent
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

logger = logging.getLogger("bench_onnx")

STAGES = ("preprocess", "encoder", "memory_attention", "decoder", "memory_encoder", "mask_upsample")
WARMUP = 2


def _clip(n: int) -> tuple[list[np.ndarray], np.ndarray]:
    import cv2

    from engines.sam2.parity import jpeg_paths, read_rgb

    src = REPO.parent / "shared" / "data" / "davis2016" / "blackswan"
    if (src / "JPEGImages").is_dir():
        frames = [read_rgb(p) for p in jpeg_paths(src / "JPEGImages")[:n]]
        mask = cv2.imread(str(src / "Annotations" / "00000.png"), cv2.IMREAD_GRAYSCALE) > 127
        return frames, mask
    rng = np.random.default_rng(0)
    h, w = 480, 854
    tex = (cv2.GaussianBlur(rng.random((h, w, 3)).astype(np.float32), (0, 0), 2.0) * 255).astype(np.uint8)
    yy, xx = np.mgrid[:h, :w]
    frames = []
    for i in range(n):
        img = tex.copy()
        img[(xx - 300 - 4 * i) ** 2 + (yy - 240) ** 2 <= 60**2] = (230, 60, 40)
        frames.append(img)
    return frames, (xx - 300) ** 2 + (yy - 240) ** 2 <= 60**2


def _run_interleaved(
    engines: dict[str, Any], frames: list[np.ndarray], mask: np.ndarray
) -> tuple[dict[str, dict[str, Any]], dict[str, dict[int, dict]]]:
    """Stream the clip through one session per engine, alternating engines frame by frame.

    Interleaving keeps the comparison fair on a shared machine: load from other
    processes hits both engines alike instead of whichever ran during it.
    """
    import time

    from tracker.types import BoxPrompt, Frame, MaskPrompt, PromptUpdate, SessionConfig, UpdateAction

    h, w = mask.shape
    sessions = {}
    for name, engine in engines.items():
        session = engine.open_session(SessionConfig())
        session.apply(PromptUpdate(UpdateAction.ADD, 1, MaskPrompt(mask)))
        session.apply(PromptUpdate(UpdateAction.ADD, 2, BoxPrompt(0.05 * w, 0.05 * h, 0.3 * w, 0.25 * h)))
        sessions[name] = session
    per_frame: dict[str, list[float]] = {n: [] for n in engines}
    stages: dict[str, dict[str, list[float]]] = {n: {s: [] for s in STAGES} for n in engines}
    logits: dict[str, dict[int, dict]] = {n: {} for n in engines}
    for f, pixels in enumerate(frames):
        for name, session in sessions.items():
            t0 = time.perf_counter()
            tracks = session.step(Frame(f, pixels))
            ms = (time.perf_counter() - t0) * 1000.0
            logits[name][f] = {t.object_id: session.last_logits(t.object_id).clone() for t in tracks}
            if f >= WARMUP:
                per_frame[name].append(ms)
                res = session.timer.results()
                for s in STAGES:
                    stages[name][s].append(res.get(s, 0.0))
    results = {}
    for name, session in sessions.items():
        session.close()
        arr = np.asarray(per_frame[name])
        results[name] = {
            "ms_per_frame_p50": round(float(np.percentile(arr, 50)), 1),
            "ms_per_frame_p95": round(float(np.percentile(arr, 95)), 1),
            "ms_per_frame_mean": round(float(arr.mean()), 1),
            "stage_ms_p50": {s: round(float(np.median(v)), 1) for s, v in stages[name].items()},
            "frames_timed": len(arr),
            "info": engines[name].info.version,
        }
    return results, logits


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

    import torch

    from engines.onnx.engine import OnnxEngine
    from engines.onnx.engine import parse_options as onnx_options
    from engines.onnx.manifest import MANIFEST_NAME
    from engines.sam2.engine import Sam2Engine
    from engines.sam2.options import parse_options
    from engines.sam2.parity import mask_iou, sharpen_random_logits
    from tracker.export import export_main

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
    frames, mask = _clip(args.frames)
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
    res, lo = _run_interleaved({"ours": torch_engine, "onnx": onnx_engine}, frames, mask)
    ours, onnx = res["ours"], res["onnx"]
    lo_t, lo_o = lo["ours"], lo["onnx"]
    diff, iou = 0.0, 1.0
    for f in lo_t:
        for oid, a in lo_t[f].items():
            b = lo_o[f][oid]
            diff = max(diff, float((a - b).abs().max()))
            iou = min(iou, mask_iou(a.numpy()[0, 0] > 0, b.numpy()[0, 0] > 0))
    result = {
        "model": "sam2.1_hiera_tiny (random weights, seed 0, logits x40)",
        "image_size": args.image_size,
        "frames": len(frames),
        "objects": 2,
        "threads": args.threads,
        "torch_version": torch.__version__,
        "ours": ours,
        "onnx": onnx,
        "speedup_p50": round(ours["ms_per_frame_p50"] / onnx["ms_per_frame_p50"], 3),
        "parity": {"max_abs_logit_diff": diff, "min_iou": iou},
    }
    text = json.dumps(result, indent=2)
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(text + "\n")
    sys.stdout.write(text + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
