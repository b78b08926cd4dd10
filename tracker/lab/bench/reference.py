"""``tracker bench reference``: the sam2 engine against sam2's offline video predictor.

Both run on the same frames (DAVIS-2016 ``blackswan`` JPEGs ping-ponged to ``--frames``,
or a synthetic textured scene when the data is absent), the same prompts (mask prompts on
frame 0: the swan's annotation, then rectangles for further ``--objects``) and the same
weights (same config, same seed or checkpoint). Reported for each:

* ``ms_per_frame_p50`` / ``ms_per_frame_p95``: wall time per frame. Ours: one
  ``session.step`` on decoded pixels (preprocessing included). Reference: the time
  between consecutive frames yielded by ``propagate_in_video`` (its frame 0 includes
  ``add_new_mask`` and the preflight memory encoding); its ``init_state``, which decodes
  and resizes the whole clip up front, is reported apart as ``init_s``.
* ``rss_mb_at``: resident memory after frames 1, 10, 100, 500 and 1000 (those reached)
  and after the last; ``peak_rss_mb``: the process's high-water mark (VmHWM). Each run is
  a fresh subprocess, so peak and growth belong to that run alone (model included; the
  model's own footprint is ``rss_mb_start``). RSS is read with psutil when installed, else
  from ``/proc/self/status``.
* ``parity``: max abs difference of the low-res mask logits (S/4 square) and min IoU of
  the binary masks at video resolution, over every frame and object both produced.

With random weights the decoder's mask logits are sharpened by the same factor in both
runs (:func:`tracker.engines.sam2.parity.sharpen_random_logits`) so the parity figures mean
something; timings are unaffected.

``--engine onnx`` adds the ONNX Runtime engine as a third run (its own subprocess, the
same weights exported with ``tracker export`` into the work folder, or ``--export-dir``):
its JSON entry ``onnx`` has the same keys as ``ours`` plus ``parity`` against the PyTorch
engine. ``ours`` and ``onnx`` also report per-stage medians (``stage_ms_p50``: encoder,
memory attention, decoder, memory encoder, ...), as the engines time them.

``--interleaved N`` adds a speed A/B that a shared machine cannot blur: one more process
builds two models from the same weights, one for the engine and one for the reference,
and advances them one frame each in turn over the first N frames (the reference's
``propagate_in_video`` generator is resumed for one frame at a time). It reports both
medians and the median of the per-frame ratios reference/ours under ``interleaved``.

Usage::
    python -m tracker.lab.bench.reference --frames 120 --model tiny --image-size 512 \\
        --random-weights --device cpu --objects 1 --json bench/sam2_reference.json
"""

from __future__ import annotations

import argparse
import contextlib
import json
import logging
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import psutil
from tqdm import tqdm

from tracker.engines.export import export_main
from tracker.engines.sam2.options import parse_options
from tracker.lab.bench.common import davis_clip, machine_info, ping_pong
from tracker.lab.provenance import provenance
from tracker.types import Frame, MaskPrompt, PromptUpdate, SessionConfig, UpdateAction

logger = logging.getLogger(__name__)

RSS_FRAMES = (1, 10, 100, 500, 1000)
_SHARPEN = 40.0


# -- measurement helpers ---------------------------------------------------------------------


def rss_mb() -> tuple[float, float]:
    """(current RSS, peak RSS) of this process in MB."""
    info = psutil.Process().memory_info()
    peak = getattr(info, "peak_wset", None)  # Windows only
    if peak is None:
        return info.rss / 2**20, _proc_status_mb("VmHWM")
    return info.rss / 2**20, peak / 2**20


def _proc_status_mb(key: str) -> float:
    try:
        with open("/proc/self/status", encoding="ascii") as f:
            for line in f:
                if line.startswith(key + ":"):
                    return int(line.split()[1]) / 1024.0
    except OSError:
        pass
    return float("nan")


# -- clip preparation --------------------------------------------------------------------------


def prepare_clip(folder: Path, n: int, objects: int, data: Path | None) -> tuple[list[np.ndarray], str]:
    """Write ``n`` JPEGs into ``folder``; return the frame-0 prompt masks and a description."""

    masks: list[np.ndarray] = []
    if data is not None and (data / "JPEGImages").is_dir():
        src = sorted((data / "JPEGImages").glob("*.jpg"))
        for i, k in enumerate(ping_pong(len(src), n)):
            shutil.copy(src[k], folder / f"{i:05d}.jpg")  # the published bytes, no re-encoding
        ann = cv2.imread(str(data / "Annotations" / f"{src[0].stem}.png"), cv2.IMREAD_GRAYSCALE)
        masks.append(ann > 127)
        desc = f"DAVIS-2016 {data.name}, {len(src)} frames ping-ponged to {n}"
    else:
        rng = np.random.default_rng(0)
        h, w = 480, 854
        tex = cv2.GaussianBlur(rng.random((h, w, 3)).astype(np.float32), (0, 0), 3.0)
        tex = ((tex - tex.min()) / (tex.max() - tex.min()) * 200).astype(np.uint8)
        yy, xx = np.mgrid[:h, :w]
        for i in range(n):
            img = tex.copy()
            cx = 300 + 120 * np.sin(i / 15.0)
            m = (xx - cx) ** 2 + (yy - 240) ** 2 <= 60**2
            img[m] = (230, 80, 50)
            cv2.imwrite(str(folder / f"{i:05d}.jpg"), cv2.cvtColor(img, cv2.COLOR_RGB2BGR))
            if i == 0:
                masks.append(m)
        desc = f"synthetic textured scene with a moving disc, {n} frames"
    h, w = masks[0].shape
    for j in range(1, objects):
        m = np.zeros((h, w), dtype=bool)
        x0 = (j * 0.17 * w) % (0.8 * w)
        m[int(0.05 * h) : int(0.25 * h), int(x0) : int(x0 + 0.15 * w)] = True
        masks.append(m)
    return masks, desc


# -- workers (one subprocess each) ----------------------------------------------------------------


def _build_model(spec: dict[str, Any]) -> Any:
    from tracker.engines.sam2.model import build_model
    from tracker.engines.sam2.parity import sharpen_random_logits

    settings = parse_options(spec["options"])
    model = build_model(settings)
    if settings.random_weights:
        sharpen_random_logits(model, _SHARPEN)
    return model


def _interleaved_worker(spec: dict[str, Any], out_dir: Path) -> int:
    """Ours and the reference in one process, one frame each in turn (see module docstring)."""
    import torch

    from tracker.engines.sam2.engine import Sam2Engine
    from tracker.engines.sam2.parity import _apply_reference, jpeg_paths, read_rgb

    n = spec["interleaved_frames"]
    folder = Path(spec["frames_dir"])
    prompts = np.load(spec["prompts"])["masks"]
    updates = [PromptUpdate(UpdateAction.ADD, j + 1, MaskPrompt(prompts[j])) for j in range(len(prompts))]
    engine = Sam2Engine(parse_options(spec["options"]), model=_build_model(spec))
    reference = _build_model(spec)  # the same weights; a model of its own, as sam2 ships it
    session = engine.open_session(SessionConfig())
    for u in updates:
        session.apply(u)
    bf16 = spec["options"].get("dtype") == "bfloat16"

    def ref_context() -> contextlib.AbstractContextManager[Any]:
        if bf16:
            return torch.autocast(spec["options"]["device"], dtype=torch.bfloat16)
        return contextlib.nullcontext()

    ours_ms, ref_ms = np.full(n, np.nan), np.full(n, np.nan)
    with torch.inference_mode():
        state = reference.init_state(str(folder))
        with ref_context():
            for u in updates:
                _apply_reference(reference, state, 0, u)
        frames = reference.propagate_in_video(state, start_frame_idx=0, max_frame_num_to_track=n - 1)
        paths = jpeg_paths(folder)[:n]
        for f in tqdm(range(n), desc="interleaved A/B", unit="frame"):
            pixels = read_rgb(paths[f])
            t0 = time.perf_counter()
            session.step(Frame(f, pixels))
            ours_ms[f] = (time.perf_counter() - t0) * 1e3
            t0 = time.perf_counter()
            with ref_context():
                done = next(frames)[0]
            ref_ms[f] = (time.perf_counter() - t0) * 1e3
            if done != f:
                raise RuntimeError(f"reference yielded frame {done}, expected {f}")
    session.close()
    # Frame 0 is the prompt frame for both (different work: ours answers from the prompt,
    # the reference consolidates it), so the comparison starts at frame 1.
    ratio = ref_ms[1:] / ours_ms[1:]
    result = {
        "frames": n,
        "ours_ms_p50": round(float(np.median(ours_ms[1:])), 1),
        "reference_ms_p50": round(float(np.median(ref_ms[1:])), 1),
        "ratio_reference_over_ours_p50": round(float(np.median(ratio)), 3),
        "frames_ours_faster": int((ratio > 1.0).sum()),
        "frames_compared": int(ratio.size),
    }
    (out_dir / "interleaved_result.json").write_text(json.dumps(result))
    return 0


def _streaming_engine(kind: str, spec: dict[str, Any], model: Any) -> Any:
    """The PyTorch engine on ``model`` (``ours``), or the ONNX Runtime engine on the export."""
    from tracker.engines.sam2.engine import Sam2Engine

    if kind == "ours":
        return Sam2Engine(parse_options(spec["options"]), model=model)
    from tracker.engines.onnx.engine import OnnxEngine
    from tracker.engines.onnx.engine import parse_options as onnx_options

    return OnnxEngine(onnx_options({"export_dir": spec["export_dir"], "providers": spec["providers"]}))


def _worker(kind: str, spec_path: Path) -> int:
    import torch

    from tracker.engines.sam2.parity import _apply_reference, jpeg_paths, read_rgb

    spec = json.loads(spec_path.read_text())
    folder, out_dir = Path(spec["frames_dir"]), Path(spec["out_dir"])
    if kind == "interleaved":
        return _interleaved_worker(spec, out_dir)
    n, s = spec["frames"], spec["image_size"]
    prompts = np.load(spec["prompts"])["masks"]
    k = len(prompts)
    low = s // 4
    model = _build_model(spec) if kind != "onnx" else None
    # Outputs kept for the parity comparison are streamed to files as they come: held in
    # memory (or in a written memory map, whose dirty pages count as resident) they would
    # grow this process's RSS by ~117 MB over 1000 frames and hide whether the engine is flat.
    logits_file = open(out_dir / f"{kind}_logits.bin", "wb")  # noqa: SIM115 - closed below
    masks_file = open(out_dir / f"{kind}_masks.bin", "wb")  # noqa: SIM115 - closed below
    ms = np.full(n, np.nan)
    rss_at: dict[str, float] = {}
    start_rss = rss_mb()[0]
    updates = [PromptUpdate(UpdateAction.ADD, j + 1, MaskPrompt(prompts[j])) for j in range(k)]

    def record(f: int, outs: dict[int, tuple[torch.Tensor, torch.Tensor]]) -> None:
        for oid in sorted(outs):
            lo, vid = outs[oid]
            logits_file.write(lo.float().cpu().numpy()[0, 0].astype(np.float32).tobytes())
            masks_file.write(np.packbits((vid[0, 0] > 0).cpu().numpy()).tobytes())
        if f + 1 in RSS_FRAMES or f == n - 1:
            rss_at[str(f + 1)] = round(rss_mb()[0], 1)

    init_s = 0.0
    bar = tqdm(total=n, desc=f"{kind} ({k} object{'s' if k > 1 else ''}, {s}px)", unit="frame")
    stages: dict[str, list[float]] = {}
    if kind in ("ours", "onnx"):
        engine = _streaming_engine(kind, spec, model)
        session = engine.open_session(SessionConfig())
        for u in updates:
            session.apply(u)
        for f, path in enumerate(jpeg_paths(folder)[:n]):
            pixels = read_rgb(path)
            t0 = time.perf_counter()
            out = session.step(Frame(f, pixels))
            tracks = out.tracks
            ms[f] = (time.perf_counter() - t0) * 1e3
            for stage, stage_ms in out.stages_ms.items():
                stages.setdefault(stage, []).append(stage_ms)
            record(
                f,
                {
                    t.object_id: (session.last_logits(t.object_id), session.last_logits(t.object_id, True))
                    for t in tracks
                },
            )
            bar.update()
        session.close()
    else:
        # The reference under the same precision as ours: sam2's README wraps its
        # predictor in torch.autocast(..., dtype=torch.bfloat16) for bf16.
        autocast = (
            torch.autocast(spec["options"]["device"], dtype=torch.bfloat16)
            if spec["options"].get("dtype") == "bfloat16"
            else contextlib.nullcontext()
        )
        with torch.inference_mode(), autocast:
            t0 = time.perf_counter()
            state = model.init_state(str(folder))
            init_s = time.perf_counter() - t0
            t_prev = time.perf_counter()
            for u in updates:
                _apply_reference(model, state, 0, u)
            for f, obj_ids, video_res in model.propagate_in_video(state, start_frame_idx=0):
                ms[f] = (time.perf_counter() - t_prev) * 1e3
                outs = {}
                for idx, oid in enumerate(obj_ids):
                    per_obj = state["output_dict_per_obj"][idx]
                    o = per_obj["cond_frame_outputs"].get(f) or per_obj["non_cond_frame_outputs"][f]
                    outs[oid] = (o["pred_masks"], video_res[idx : idx + 1])
                record(f, outs)
                bar.update()
                t_prev = time.perf_counter()  # the next frame's time excludes our recording
    bar.close()
    logits_file.close()
    masks_file.close()
    frames_done = int(np.isfinite(ms).sum())
    logits = np.fromfile(out_dir / f"{kind}_logits.bin", np.float32).reshape(frames_done, k, low, low)
    np.save(out_dir / f"{kind}_logits.npy", logits)
    packed = np.fromfile(out_dir / f"{kind}_masks.bin", np.uint8).reshape(frames_done * k, -1)
    np.save(out_dir / f"{kind}_masks.npy", packed)
    result = {
        "ms_per_frame_p50": round(float(np.nanpercentile(ms, 50)), 1),
        "ms_per_frame_p95": round(float(np.nanpercentile(ms, 95)), 1),
        "ms_per_frame_mean": round(float(np.nanmean(ms)), 1),
        "ms_first_frame": round(float(ms[0]), 1),
        "rss_mb_at": rss_at,
        "peak_rss_mb": round(rss_mb()[1], 1),
        "rss_mb_start": round(start_rss, 1),
        "init_s": round(init_s, 2),
        "frames": int(np.isfinite(ms).sum()),
    }
    if stages:
        result["stage_ms_p50"] = {k: round(float(np.median(v)), 1) for k, v in stages.items()}
        result["engine"] = engine.info.version
    (out_dir / f"{kind}_result.json").write_text(json.dumps(result))
    np.save(out_dir / f"{kind}_ms.npy", ms)
    return 0


# -- driver ---------------------------------------------------------------------------------------


def _parity(
    out_dir: Path, n: int, k: int, shape: tuple[int, int], runs: tuple[str, str] = ("ours", "reference")
) -> dict[str, Any]:
    from tracker.engines.sam2.parity import mask_iou

    a = np.load(out_dir / f"{runs[0]}_logits.npy", mmap_mode="r")
    b = np.load(out_dir / f"{runs[1]}_logits.npy", mmap_mode="r")
    max_diff = 0.0
    for f in range(n):
        max_diff = max(max_diff, float(np.abs(a[f] - b[f]).max()))
    ma, mb = np.load(out_dir / f"{runs[0]}_masks.npy"), np.load(out_dir / f"{runs[1]}_masks.npy")
    size = shape[0] * shape[1]
    ious = [
        mask_iou(np.unpackbits(x)[:size].astype(bool), np.unpackbits(y)[:size].astype(bool))
        for x, y in zip(ma, mb, strict=True)
    ]
    return {
        "max_abs_logit_diff": max_diff,
        "min_iou": float(min(ious)),
        "frames": n,
        "objects": k,
        "logits_compared_at": "low-res (image_size/4 square), after sam2's hole filling",
        "iou_at": "video resolution, logits > 0",
    }


def _export(args: argparse.Namespace, out: Path, random_weights: bool) -> None:
    """``tracker export`` of the benchmark's weights (random ones sharpened as in the runs)."""

    argv = ["--model", args.model, "--image-size", str(args.image_size), "--out", str(out)]
    if random_weights:
        argv += ["--random-weights", "--seed", str(args.seed), "--sharpen-logits", str(_SHARPEN)]
    else:
        argv += ["--checkpoint", str(args.checkpoint)]
    logger.info("exporting the ONNX graphs to %s", out)
    export_main(argv)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="tracker bench reference", description=__doc__.split("\n\n")[0])
    p.add_argument("--frames", type=int, default=120)
    p.add_argument("--model", default="tiny")
    p.add_argument("--image-size", type=int, default=512)
    w = p.add_mutually_exclusive_group()
    w.add_argument("--random-weights", action="store_true")
    w.add_argument("--checkpoint", type=Path)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--device", default="cpu", choices=("cpu", "cuda"))
    p.add_argument(
        "--dtype",
        default="float32",
        choices=("float32", "bfloat16"),
        help="bfloat16: both runs under bf16 autocast (the reference the way sam2's README runs it)",
    )
    p.add_argument("--objects", type=int, default=1)
    p.add_argument("--data", type=Path, default=None, help="a DAVIS sequence folder (default: blackswan)")
    p.add_argument("--json", type=Path, default=None, help="write the results here")
    p.add_argument("--keep", type=Path, default=None, help="keep the frames and outputs in this folder")
    p.add_argument(
        "--interleaved",
        type=int,
        default=0,
        metavar="N",
        help="also an A/B over N frames, frame by frame in turn",
    )
    p.add_argument(
        "--engine",
        default="sam2",
        choices=("sam2", "onnx"),
        help="onnx: also run the ONNX Runtime engine on an export of the same weights",
    )
    p.add_argument("--export-dir", type=Path, default=None, help="with --engine onnx: reuse this export")
    p.add_argument("--providers", default="cpu", help="with --engine onnx: ONNX Runtime providers")
    p.add_argument("--_worker", choices=("ours", "reference", "interleaved", "onnx"), help=argparse.SUPPRESS)
    p.add_argument("--_spec", type=Path, help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args._worker:
        return _worker(args._worker, args._spec)

    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    run_provenance = provenance(seed=args.seed)  # at the start: the load average is the run's
    if args.frames < 2 or args.objects < 1:
        p.error("--frames must be >= 2 and --objects >= 1")
    if not args.random_weights and args.checkpoint is None:
        p.error("give --random-weights or --checkpoint PATH")
    options = {
        "model": args.model,
        "image_size": str(args.image_size),
        "device": args.device,
        "dtype": args.dtype,
        "seed": str(args.seed),
    }
    if args.checkpoint is not None:
        options["checkpoint"] = str(args.checkpoint)
    else:
        options["random_weights"] = "true"

    settings = parse_options(options)  # fail on bad options before writing anything
    if args.engine == "onnx" and settings.dtype != "float32":
        p.error("--engine onnx compares float32 graphs: leave --dtype at float32")

    work = args.keep or Path(tempfile.mkdtemp(prefix="sam2_bench_"))
    frames_dir = work / "frames"
    frames_dir.mkdir(parents=True, exist_ok=True)
    data = args.data or davis_clip()
    masks, desc = prepare_clip(frames_dir, args.frames, args.objects, data if data.is_dir() else None)
    np.savez_compressed(work / "prompts.npz", masks=np.stack(masks))
    spec = {
        "frames_dir": str(frames_dir),
        "out_dir": str(work),
        "frames": args.frames,
        "image_size": settings.image_size,
        "options": options,
        "prompts": str(work / "prompts.npz"),
    }
    kinds = ["ours", "reference"]
    if args.engine == "onnx":
        spec["export_dir"] = str(args.export_dir or work / "export")
        spec["providers"] = args.providers
        kinds.append("onnx")
    (work / "spec.json").write_text(json.dumps(spec))
    results: dict[str, Any] = {}
    try:
        if args.engine == "onnx" and args.export_dir is None:
            _export(args, work / "export", settings.random_weights)
        for kind in kinds:
            logger.info("running %s in a subprocess", kind)
            cmd = [
                sys.executable,
                "-m",
                "tracker.lab.bench.reference",
                "--_worker",
                kind,
                "--_spec",
                str(work / "spec.json"),
            ]
            subprocess.run(cmd, check=True, cwd=Path(__file__).resolve().parents[3])
            results[kind] = json.loads((work / f"{kind}_result.json").read_text())
        results["parity"] = _parity(work, args.frames, args.objects, masks[0].shape)
        if "onnx" in results:
            results["onnx"]["parity"] = _parity(
                work, args.frames, args.objects, masks[0].shape, ("onnx", "ours")
            )
        if args.interleaved:
            spec["interleaved_frames"] = min(args.interleaved, args.frames)
            (work / "spec.json").write_text(json.dumps(spec))
            logger.info("running the interleaved A/B over %d frames", spec["interleaved_frames"])
            cmd = [sys.executable, "-m", "tracker.lab.bench.reference", "--_worker", "interleaved"]
            cmd += ["--_spec", str(work / "spec.json")]
            subprocess.run(cmd, check=True, cwd=Path(__file__).resolve().parents[3])
            results["interleaved"] = json.loads((work / "interleaved_result.json").read_text())
    finally:
        if args.keep is None:
            shutil.rmtree(work, ignore_errors=True)
    results["provenance"] = run_provenance
    results["machine"] = machine_info(torch_threads=True)
    results["settings"] = {
        "frames": args.frames,
        "model": settings.model,
        "image_size": settings.image_size,
        "weights": str(args.checkpoint) if args.checkpoint else f"random (seed {args.seed})",
        "random_logit_sharpening": _SHARPEN if settings.random_weights else None,
        "device": settings.device,
        "dtype": settings.dtype,
        "objects": args.objects,
        "clip": desc,
        "video_size_hw": list(masks[0].shape),
        "prompts": "mask prompts on frame 0",
        "rss": "psutil RSS (current); /proc/self/status VmHWM (peak)",
        "isolation": "each run in its own subprocess, one after the other (ours first)",
    }
    text = json.dumps(results, indent=2)
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(text + "\n")
    for kind in kinds:
        r = results[kind]
        logger.info(
            "%-9s %7.1f ms/frame p50, %7.1f p95; RSS %s MB; peak %.0f MB",
            kind,
            r["ms_per_frame_p50"],
            r["ms_per_frame_p95"],
            r["rss_mb_at"],
            r["peak_rss_mb"],
        )
    par = results["parity"]
    logger.info("parity: max |logit diff| %.3g, min IoU %.6f", par["max_abs_logit_diff"], par["min_iou"])
    if "interleaved" in results:
        ab = results["interleaved"]
        logger.info(
            "interleaved: ours %.1f ms/frame p50, reference %.1f; per-frame reference/ours p50 %.3f",
            ab["ours_ms_p50"],
            ab["reference_ms_p50"],
            ab["ratio_reference_over_ours_p50"],
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
