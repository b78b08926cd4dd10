"""sam2 engine: image-encoder and whole-step cost per frame at batch 1, 2 and 4, in one run.

Issue #13, item 2. Random weights (seed 0): the cost of a frame does not depend on them.
Each round measures, for every dtype (float32; bfloat16 too where the CPU multiplies bf16
natively) and in an order rotated from round to round so that drift and load from other
processes hit every size alike:

* ``encoder``: ``forward_image`` + ``_prepare_backbone_features`` on a (B, 3, S, S) stack
  of B different frames (:func:`tracker.engines.sam2.session.encode_images`, what
  ``Sam2Engine.step_batch`` calls), wall time / B;
* ``step``: ``Sam2Engine.step_batch`` over B sessions (one mask-prompted object each, on
  different frames of the clip), wall time / B. The sessions stream on from round to
  round, so after ``--warmup`` rounds their memory banks are in steady state.

Writes JSON (``provenance``, settings, per dtype and size the p50/mean ms per frame, the
speed-up against B = 1 and the step's per-stage medians) and prints a table.

    .venv/bin/python bench/bench_batch.py --out bench/results/sam2_batch_cpu.json
    .venv/bin/python bench/bench_batch.py --smoke   # a short check of the script (256 px, one round)

With ``--onnx-export-dir DIR`` (a ``tracker export`` of the same model and size) the onnx
engine (ONNX Runtime, CPU, float32) is measured in the same rounds.
"""

from __future__ import annotations

import argparse
import contextlib
import logging
import sys
import time
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from tracker.lab.bench.interleaved import clip, write_result

logger = logging.getLogger("bench_batch")
STAGES = ("preprocess", "encoder", "memory_attention", "decoder", "memory_encoder")


@dataclass
class SizeResult:
    """Per-frame milliseconds at one batch size (timed rounds only)."""

    ms_per_frame: list[float] = field(default_factory=list)
    stages: dict[str, list[float]] = field(default_factory=dict)

    def summary(self, base_p50: float | None) -> dict[str, Any]:
        arr = np.asarray(self.ms_per_frame)
        p50 = float(np.percentile(arr, 50))
        out: dict[str, Any] = {
            "ms_per_frame_p50": round(p50, 2),
            "ms_per_frame_mean": round(float(arr.mean()), 2),
            "rounds": len(arr),
            "speedup_vs_batch_1": round(base_p50 / p50, 3) if base_p50 else None,
        }
        if self.stages:
            out["stage_ms_p50"] = {s: round(float(np.median(v)), 2) for s, v in self.stages.items()}
        return out


def _sync(device: str) -> None:
    if device == "cuda":
        import torch

        torch.cuda.synchronize()


@contextlib.contextmanager
def _model_context(engine: Any) -> Iterator[None]:
    """Inference mode and the engine's autocast, as its sessions run the encoder."""
    import torch

    s = engine.settings
    cast = (
        torch.autocast(s.device, dtype=torch.bfloat16) if s.dtype == "bfloat16" else contextlib.nullcontext()
    )
    with torch.inference_mode(), cast:
        yield


def model_inputs(engine: Any, frames: list[np.ndarray]) -> list[Any]:
    """Each frame as the engine's (1, 3, S, S) input (whole-frame window)."""
    from tracker.engines.sam2.preprocess import frame_to_tensor, full_window

    model = engine.model
    return [
        frame_to_tensor(f, model.image_size, full_window(f.shape[:2])).to(model.device).unsqueeze(0)
        for f in frames
    ]


def time_encoder(engine: Any, inputs: list[Any], batch: int, offset: int) -> float:
    """Milliseconds per frame of one encoder call on ``batch`` different frames."""
    import torch

    from tracker.engines.sam2.session import encode_images

    picked = [inputs[(offset + i) % len(inputs)] for i in range(batch)]
    with _model_context(engine):
        images = torch.cat(picked)
        _sync(engine.settings.device)
        t0 = time.perf_counter()
        encode_images(engine.model, images)
        _sync(engine.settings.device)
    return (time.perf_counter() - t0) * 1000.0 / batch


class StepBench:
    """``batch`` sessions stepped together with ``step_batch``, round after round."""

    def __init__(self, engine: Any, frames: list[np.ndarray], mask: np.ndarray, batch: int) -> None:
        from tracker.types import MaskPrompt, ObjectPrompt, SessionConfig

        self.engine, self.frames, self.batch = engine, frames, batch
        self.sessions = [
            engine.open_session(SessionConfig(objects=(ObjectPrompt(1, MaskPrompt(mask)),)))
            for _ in range(batch)
        ]
        self.k = 0

    def frame_for(self, i: int, k: int) -> Any:
        """Session ``i``'s frame ``k``: it starts on clip frame 3 i, so a batch holds different
        images; frame 0 of each goes with the prompt mask, drawn on clip frame 0."""
        from tracker.types import Frame

        return Frame(k, self.frames[0 if k == 0 else (3 * i + k) % len(self.frames)])

    def step(self) -> tuple[float, list[dict[str, float]]]:
        """Milliseconds per frame of one ``step_batch`` call, and each item's stage times."""
        from tracker.engines.base import StepOutput

        work = [(s, self.frame_for(i, self.k)) for i, s in enumerate(self.sessions)]
        _sync(self.engine.settings.device)
        t0 = time.perf_counter()
        outcomes = self.engine.step_batch(work)
        _sync(self.engine.settings.device)
        ms = (time.perf_counter() - t0) * 1000.0 / self.batch
        self.k += 1
        bad = [o for o in outcomes if not isinstance(o, StepOutput)]
        if bad:
            raise RuntimeError(f"step_batch failed: {bad[0]!r}")
        return ms, [o.stages_ms for o in outcomes if isinstance(o, StepOutput)]

    def close(self) -> None:
        for s in self.sessions:
            s.close()


def batched_vs_one_by_one(
    engine: Any, frames: list[np.ndarray], mask: np.ndarray, sessions: int, steps: int
) -> dict[str, float]:
    """Max abs low-res logit difference and min mask IoU of ``step_batch`` against ``step``.

    ``sessions`` twin pairs (one mask-prompted object each, on different frames) stream
    ``steps`` frames: one set through ``step_batch`` (one encoder call per frame), the other
    one by one. On CPU in float32 the tests (tests/test_sam2_batch.py) hold this to 1e-4 /
    0.999; on a GPU and in bf16 kernels may differ by batch size, which this measures.
    """
    from tracker.engines.base import StepOutput
    from tracker.engines.sam2.parity import mask_iou

    batched, single = StepBench(engine, frames, mask, sessions), StepBench(engine, frames, mask, sessions)
    diff, iou = 0.0, 1.0
    try:
        for _ in range(steps):
            k = batched.k
            batched.step()
            for i, s in enumerate(single.sessions):
                out = s.step(batched.frame_for(i, k))
                assert isinstance(out, StepOutput)
            single.k += 1
            for a, b in zip(batched.sessions, single.sessions, strict=True):
                for oid in a.object_ids:
                    x, y = a.last_logits(oid).float(), b.last_logits(oid).float()
                    diff = max(diff, float((x - y).abs().max()))
                    iou = min(iou, mask_iou(x.cpu().numpy()[0, 0] > 0, y.cpu().numpy()[0, 0] > 0))
    finally:
        batched.close()
        single.close()
    return {"max_abs_logit_diff": diff, "min_iou": iou, "sessions": sessions, "frames": steps}


def build_engine(model: str, image_size: int, device: str, dtype: str) -> Any:
    from tracker.engines.sam2.engine import Sam2Engine
    from tracker.engines.sam2.options import parse_options

    options = {"model": model, "random_weights": "true", "image_size": str(image_size)}
    return Sam2Engine(parse_options(options | {"device": device, "dtype": dtype}))


def run(
    engines: dict[str, Any],
    frames: list[np.ndarray],
    mask: np.ndarray,
    batches: list[int],
    rounds: int,
    warmup: int,
    steps: bool = True,
) -> dict[str, dict[str, dict[int, SizeResult]]]:
    """``{dtype: {"encoder"|"step": {batch: SizeResult}}}`` over interleaved rounds."""
    from tqdm import tqdm

    inputs = {name: model_inputs(e, frames) for name, e in engines.items()}
    benches = {
        name: {b: StepBench(e, frames, mask, b) for b in batches} if steps else {}
        for name, e in engines.items()
    }
    out = {
        name: {"encoder": {b: SizeResult() for b in batches}, "step": {b: SizeResult() for b in batches}}
        for name in engines
    }
    try:
        for r in tqdm(range(warmup + rounds), desc="rounds", unit="round"):
            order = batches[r % len(batches) :] + batches[: r % len(batches)]
            for name, engine in engines.items():
                for b in order:
                    ms = time_encoder(engine, inputs[name], b, offset=r)
                    if r >= warmup:
                        out[name]["encoder"][b].ms_per_frame.append(ms)
                    if not steps:
                        continue
                    ms, stages = benches[name][b].step()
                    if r >= warmup:
                        res = out[name]["step"][b]
                        res.ms_per_frame.append(ms)
                        for s in STAGES:
                            res.stages.setdefault(s, []).extend(st.get(s, 0.0) for st in stages)
    finally:
        for per_batch in benches.values():
            for bench in per_batch.values():
                bench.close()
    if not steps:
        for name in out:
            out[name].pop("step")
    return out


def summarise(raw: dict[str, dict[str, dict[int, SizeResult]]]) -> dict[str, Any]:
    result: dict[str, Any] = {}
    for name, kinds in raw.items():
        result[name] = {}
        for kind, per_batch in kinds.items():
            base = float(np.percentile(per_batch[min(per_batch)].ms_per_frame, 50))
            result[name][kind] = {str(b): r.summary(base) for b, r in sorted(per_batch.items())}
    return result


def table(summary: dict[str, Any]) -> str:
    lines = ["| engine/dtype | what | batch | ms/frame p50 | speed-up vs 1 |", "|---|---|---|---|---|"]
    for name, kinds in summary.items():
        for kind, per_batch in kinds.items():
            for b, r in per_batch.items():
                lines.append(
                    f"| {name} | {kind} | {b} | {r['ms_per_frame_p50']:.1f} | {r['speedup_vs_batch_1']:.2f} |"
                )
    return "\n".join(lines)


@dataclass
class Settings:
    model: str
    image_size: int
    device: str
    dtypes: list[str]
    batches: list[int]
    rounds: int
    warmup: int
    threads: int
    frames: int
    seed: int = 0


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--model", default="tiny")
    p.add_argument("--image-size", type=int, default=512)
    p.add_argument("--batches", default="1,2,4", help="comma list of batch sizes (sessions)")
    p.add_argument("--rounds", type=int, default=12, help="timed rounds")
    p.add_argument("--warmup", type=int, default=8, help="untimed rounds first (memory banks fill up)")
    p.add_argument(
        "--dtypes", default="auto", help="comma list of float32,bfloat16; auto: bf16 only with native bf16"
    )
    p.add_argument("--threads", type=int, default=0, help="torch intra-op threads (0: torch's default)")
    p.add_argument(
        "--onnx-export-dir", type=Path, default=None, help="also the onnx engine (ORT CPU) on this export"
    )
    p.add_argument(
        "--out", type=Path, default=None, help="JSON file (e.g. bench/results/sam2_batch_cpu.json)"
    )
    p.add_argument("--smoke", action="store_true", help="256 px, 1 round, no warm-up: script check")
    args = p.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")

    from tracker.lab.provenance import provenance

    prov = provenance(seed=0)
    import torch

    from tracker.engines.sam2.options import cpu_has_native_bf16
    from tracker.lab.bench.common import machine_info

    if args.threads > 0:
        torch.set_num_threads(args.threads)
    if args.smoke:
        args.image_size, args.rounds, args.warmup = 256, 1, 0
    if args.dtypes == "auto":
        dtypes = ["float32", "bfloat16"] if cpu_has_native_bf16() else ["float32"]
    else:
        dtypes = [d.strip() for d in args.dtypes.split(",") if d.strip()]
    batches = sorted({int(b) for b in args.batches.split(",")})
    if batches[0] < 1:
        p.error("--batches must be positive integers")
    n_frames = max(8, 3 * max(batches) + 4)
    settings = Settings(
        args.model, args.image_size, "cpu", dtypes, batches, args.rounds, args.warmup,
        torch.get_num_threads(), n_frames,
    )  # fmt: skip
    frames, mask = clip(n_frames)
    engines = {d: build_engine(args.model, args.image_size, "cpu", d) for d in dtypes}
    if args.onnx_export_dir is not None:
        from tracker.engines.onnx.engine import OnnxEngine
        from tracker.engines.onnx.engine import parse_options as onnx_options

        options = {"export_dir": str(args.onnx_export_dir), "image_size": str(args.image_size)}
        engines["onnx_float32"] = OnnxEngine(onnx_options(options))
        if not engines["onnx_float32"].encoder_batches:
            p.error(f"{args.onnx_export_dir}: an export whose image encoder has batch 1; export again")
    raw = run(engines, frames, mask, batches, args.rounds, args.warmup)
    summary = summarise(raw)
    result = {
        "provenance": prov,
        "settings": asdict(settings) | {"smoke": args.smoke, "onnx_export_dir": str(args.onnx_export_dir)},
        "machine": machine_info(),
        "engine": {d: e.info.version for d, e in engines.items()},
        "results": summary,
    }
    print(table(summary))
    write_result(result, args.out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
