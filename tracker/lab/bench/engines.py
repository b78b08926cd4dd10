"""``tracker bench engines``: every SAM2 engine on one clip, one run, against sam2 in float32.

The engines, all built from the same weights (random, seed 0, mask logits sharpened x40 so
masks are sharp and memory matters; or the export's checkpoint) at the export's image size:

* ``sam2-float32``: the PyTorch engine in float32, the reference every other is compared with;
* ``sam2-bfloat16``: the same with bf16 autocast (where the CPU multiplies bf16 natively);
* ``onnx-float32``: the exported graphs on ONNX Runtime (CPU);
* ``openvino-f32`` and ``openvino-bf16``: the same graphs on OpenVINO Runtime.

They stream the same clip and prompts one frame each in turn (:mod:`tracker.lab.bench.interleaved`),
so load from other processes hits every engine alike. Per engine: ms per frame (p50, p95,
worst), each stage's median including ``other`` (the frame's time outside the named stages:
memory bookkeeping and the copies between graphs), and agreement with ``sam2-float32`` (max
abs low-res logit difference, min mask IoU over every frame and object). Per graph: each
runtime's time on the same inputs (memory attention over 7 memory frames and 64 pointer
tokens) and OpenVINO f32's largest difference from ONNX Runtime.
"""

from __future__ import annotations

import argparse
import logging
import time
from pathlib import Path
from typing import Any

import numpy as np

from tracker.engines import create_engine
from tracker.engines.export import export_main
from tracker.engines.onnx.manifest import MANIFEST_NAME, RANDOM_WEIGHTS, Manifest
from tracker.engines.sam2.options import cpu_has_native_bf16, parse_options
from tracker.lab.bench.common import machine_info, write_json
from tracker.lab.bench.interleaved import clip, clip_source, compare_logits, run_interleaved
from tracker.lab.provenance import provenance

logger = logging.getLogger(__name__)

REFERENCE = "sam2-float32"
LABELS = ("sam2-float32", "sam2-bfloat16", "onnx-float32", "openvino-f32", "openvino-bf16")
GRAPH_REPEATS = 5
MEMORY_FRAMES = 7  # SAM 2.1's memory bank, full
POINTER_TOKENS = 64  # 16 object pointers, 4 tokens each


def add_cli(subparsers: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    p = subparsers.add_parser(
        "engines",
        help="sam2 (float32, bfloat16), onnx and openvino (f32, bf16) on one clip, against sam2 float32",
        description=__doc__.splitlines()[0],
    )
    p.add_argument(
        "--export-dir",
        type=Path,
        required=True,
        help="a `tracker export` directory; exported here (tiny, random weights) when it has no manifest",
    )
    p.add_argument("--image-size", type=int, default=512, help="for a new export only")
    p.add_argument("--frames", type=int, default=40)
    p.add_argument("--objects", type=int, default=1, choices=(1, 2))
    p.add_argument("--threads", type=int, default=2, help="torch, ONNX Runtime and OpenVINO threads")
    p.add_argument(
        "--engine", action="append", default=[], choices=LABELS, help="run only these (default: all)"
    )
    p.add_argument("--json", type=Path, required=True)
    p.set_defaults(func=_cmd)


def _cmd(args: argparse.Namespace) -> int:
    report = run(args)
    write_json(report, args.json)
    logger.info("wrote %s", args.json)
    for label, res in report["engines"].items():
        logger.info(
            "%-14s %8.1f ms/frame p50 (p95 %.1f), min IoU vs float32 %s",
            label,
            res["ms_per_frame_p50"],
            res["ms_per_frame_p95"],
            res.get("min_iou_vs_float32"),
        )
    return 0


def ensure_export(export_dir: Path, image_size: int) -> None:
    """Export SAM 2.1 tiny with random weights (seed 0, logits x40) unless ``export_dir`` has one."""

    if (export_dir / MANIFEST_NAME).is_file():
        return
    logger.info("no export in %s: exporting tiny @%d px with random weights", export_dir, image_size)
    argv = ["--model", "tiny", "--random-weights", "--image-size", str(image_size)]
    if export_main([*argv, "--out", str(export_dir), "--sharpen-logits", "40"]) != 0:
        raise RuntimeError(f"export into {export_dir} failed")


def build_engines(export_dir: Path, labels: tuple[str, ...], threads: int) -> tuple[dict[str, Any], dict]:
    """The engines of ``labels`` from one export; those this machine cannot run, with the reason."""
    from tracker.engines.sam2.engine import Sam2Engine
    from tracker.engines.sam2.parity import sharpen_random_logits

    manifest = Manifest.read(export_dir)
    w = manifest.weights
    sam2 = {"model": manifest.model, "image_size": str(manifest.image_size), "device": "cpu"}
    if w.source == RANDOM_WEIGHTS:
        sam2 |= {"random_weights": "true", "seed": str(int(w.seed or 0))}
    else:
        sam2["checkpoint"] = str(w.path)
    export = {"export_dir": str(export_dir)}
    recipes = {
        "sam2-float32": lambda: Sam2Engine(parse_options({**sam2, "dtype": "float32"})),
        "sam2-bfloat16": lambda: Sam2Engine(parse_options({**sam2, "dtype": "bfloat16"})),
        "onnx-float32": lambda: create_engine(
            "onnx", {**export, "providers": "cpu", "intra_op_threads": str(threads)}
        ),
        "openvino-f32": lambda: create_engine(
            "openvino", {**export, "precision": "f32", "threads": str(threads)}
        ),
        "openvino-bf16": lambda: create_engine(
            "openvino", {**export, "precision": "bf16", "threads": str(threads)}
        ),
    }
    engines: dict[str, Any] = {}
    skipped: dict[str, str] = {}
    for label in labels:
        if label.endswith(("bfloat16", "bf16")) and not cpu_has_native_bf16():
            skipped[label] = "this CPU has no native bf16 (avx512_bf16 or AMX)"
            continue
        t0 = time.perf_counter()
        engine = recipes[label]()
        if label.startswith("sam2") and w.sharpen_logits:
            sharpen_random_logits(engine.model, float(w.sharpen_logits))
        logger.info("%s ready in %.1f s: %s", label, time.perf_counter() - t0, engine.info.version)
        engines[label] = engine
    return engines, skipped


def graph_timings(export_dir: Path, threads: int, bf16: bool) -> dict[str, dict[str, Any]]:
    """Each graph alone on the same inputs: ms per call for each runtime, OpenVINO f32 vs ONNX Runtime."""

    from tracker.engines.onnx.graphs import GraphSpec, TensorSpec, example_inputs
    from tracker.engines.onnx.openvino import (
        OvOptions,
        choose_device,
        compile_config,
        compile_graph,
        graph_cache_dir,
        import_openvino,
        writable_cache,
    )
    from tracker.engines.onnx.runtime import OrtGraph, RuntimeOptions, make_session

    manifest = Manifest.read(export_dir)
    core = import_openvino().Core()
    out: dict[str, dict[str, Any]] = {}
    for name, rec in manifest.graphs.items():
        spec = GraphSpec(
            name,
            tuple(TensorSpec(t["name"], tuple(t["shape"]), t["dtype"]) for t in rec.inputs),
            tuple(TensorSpec(t["name"], tuple(t["shape"]), t["dtype"]) for t in rec.outputs),
        )
        inputs = example_inputs(spec, seed=1, num_memory_frames=MEMORY_FRAMES)
        if name == "memory_attention":  # the pointer tokens of a full bank, not example_inputs' 16
            hw = int(spec.inputs[0].shape[0])
            g = np.random.default_rng(1)
            n = MEMORY_FRAMES * hw + POINTER_TOKENS
            import torch

            inputs = (
                inputs[0],
                torch.from_numpy(g.standard_normal((n, 1, inputs[1].shape[2]), dtype=np.float32)),
                inputs[2],
                torch.from_numpy(g.standard_normal((n, 1, inputs[3].shape[2]), dtype=np.float32)),
                torch.tensor(POINTER_TOKENS, dtype=torch.int64),
            )
        path = export_dir / rec.file
        runtimes: dict[str, Any] = {
            "onnxruntime": OrtGraph(make_session(path, RuntimeOptions(intra_op_threads=threads)))
        }
        for precision in ("f32", "bf16") if bf16 else ("f32",):
            opts = OvOptions(export_dir=export_dir, precision=precision, threads=threads)
            choice = choose_device(core, opts)
            # The engine's own cache folder and settings: what it compiled is imported, not compiled again.
            cache = graph_cache_dir(export_dir / "openvino_cache", name, rec.sha256, precision)
            config = compile_config(choice, cache if writable_cache(cache) else None)
            runtimes[f"openvino-{precision}"] = compile_graph(core, path, config, choice.device, name)
        outputs = {}
        ms: dict[str, float] = {}
        for label, graph in runtimes.items():
            outputs[label] = graph(*inputs)
            times = []
            for _ in range(GRAPH_REPEATS):
                t0 = time.perf_counter()
                graph(*inputs)
                times.append((time.perf_counter() - t0) * 1000.0)
            ms[label] = round(float(np.median(times)), 1)
        ref = outputs["onnxruntime"]
        diffs = {
            label: max(float((a - b).abs().max()) for a, b in zip(ref, outs, strict=True))
            for label, outs in outputs.items()
            if label != "onnxruntime"
        }
        out[name] = {
            "ms_median": ms,
            "max_abs_diff_vs_onnxruntime": diffs,
            "input_shapes": {t.name: list(x.shape) for t, x in zip(spec.inputs, inputs, strict=True)},
        }
        logger.info("graph %s: %s", name, ms)
    return out


def run(args: argparse.Namespace) -> dict[str, Any]:
    import torch

    run_provenance = provenance(seed=0)
    torch.set_num_threads(args.threads)
    labels = tuple(args.engine) or LABELS
    if REFERENCE not in labels:
        labels = (REFERENCE, *labels)
    ensure_export(args.export_dir, args.image_size)
    engines, skipped = build_engines(args.export_dir, labels, args.threads)
    frames, mask = clip(args.frames)
    timing, logits = run_interleaved(engines, frames, mask, objects=args.objects, progress=True)
    results: dict[str, dict[str, Any]] = {}
    for label in engines:
        res = dict(timing[label])
        if label != REFERENCE:
            diff, iou = compare_logits(logits[REFERENCE], logits[label])
            res["max_abs_logit_diff_vs_float32"] = diff
            res["min_iou_vs_float32"] = iou
        results[label] = res
    graphs = graph_timings(args.export_dir, args.threads, "openvino-bf16" in engines)
    speedups = {
        f"{a}_vs_{b}": round(results[b]["ms_per_frame_p50"] / results[a]["ms_per_frame_p50"], 3)
        for a, b in (
            ("openvino-bf16", "sam2-bfloat16"),
            ("openvino-bf16", "sam2-float32"),
            ("openvino-f32", "onnx-float32"),
            ("openvino-f32", "sam2-float32"),
        )
        if a in results and b in results
    }
    targets: dict[str, Any] = {}
    if "openvino-bf16_vs_sam2-bfloat16" in speedups:
        targets["openvino_bf16_2_5x_sam2_bf16"] = speedups["openvino-bf16_vs_sam2-bfloat16"] >= 2.5
    if "openvino-bf16" in results:
        targets["openvino_bf16_min_iou_ge_0_99"] = results["openvino-bf16"]["min_iou_vs_float32"] >= 0.99
    f32_diffs = [g["max_abs_diff_vs_onnxruntime"]["openvino-f32"] for g in graphs.values()]
    targets["openvino_f32_graphs_within_1e-4_of_onnxruntime"] = bool(f32_diffs) and max(f32_diffs) <= 1e-4
    manifest_model = engines[REFERENCE].settings
    return {
        "provenance": run_provenance,
        "model": f"{manifest_model.model} @{manifest_model.image_size}px",
        "weights": "random (seed 0), logits x40" if manifest_model.random_weights else "checkpoint",
        "frames": len(frames),
        "frames_timed": timing[REFERENCE]["frames_timed"],
        "clip": clip_source(len(frames)),
        "objects": args.objects,
        "threads": args.threads,
        "machine": machine_info(torch_threads=True),
        "engines": results,
        "skipped": skipped,
        "speedup_p50": speedups,
        "graphs": graphs,
        "targets": targets,
    }
