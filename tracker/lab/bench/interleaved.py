"""Streaming several engines over one clip, frame by frame in turn (shared by bench scripts).

Alternating engines frame by frame keeps a comparison fair on a shared machine: load from
other processes hits every engine alike instead of whichever ran during it.
"""

from __future__ import annotations

import json
import logging
import sys
import time
from pathlib import Path
from typing import Any

import cv2
import numpy as np
from tqdm import tqdm

from tracker.lab.bench.common import davis_clip
from tracker.types import BoxPrompt, Frame, MaskPrompt, PromptUpdate, SessionConfig, UpdateAction

logger = logging.getLogger("interleaved")

STAGES = ("preprocess", "encoder", "memory_attention", "decoder", "memory_encoder", "mask_upsample")
WARMUP = 2


def clip_source(n: int) -> str:
    """What :func:`clip` streams, for the result file (the figures depend on it)."""
    if (davis_clip() / "JPEGImages").is_dir():
        return f"DAVIS-2016 blackswan, first {n} frames"
    return f"synthetic 480x854 clip, {n} frames (shared DAVIS data absent)"


def clip(n: int) -> tuple[list[np.ndarray], np.ndarray]:
    """blackswan's first ``n`` frames and its frame-0 mask; a synthetic clip, with a warning, without them."""

    from tracker.engines.sam2.parity import jpeg_paths, read_rgb

    src = davis_clip()
    if (src / "JPEGImages").is_dir():
        frames = [read_rgb(p) for p in jpeg_paths(src / "JPEGImages")[:n]]
        mask = cv2.imread(str(src / "Annotations" / "00000.png"), cv2.IMREAD_GRAYSCALE) > 127
        return frames, mask
    logger.warning("%s is absent: streaming a synthetic clip instead (recorded in the result)", src)
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


def run_interleaved(
    engines: dict[str, Any],
    frames: list[np.ndarray],
    mask: np.ndarray,
    objects: int = 2,
    progress: bool = False,
) -> tuple[dict[str, dict[str, Any]], dict[str, dict[int, dict]]]:
    """Stream the clip through one session per engine, alternating engines frame by frame.

    Object 1 is the clip's mask on frame 0; with ``objects > 1`` a box on the top-left
    bank is object 2. Returns per-engine timing summaries and every frame's low-res logits.
    Stage ``other`` is each frame's time outside the named stages (bookkeeping, copies).
    ``progress``: a progress bar over the frames (on stderr).
    """

    h, w = mask.shape
    sessions = {}
    for name, engine in engines.items():
        session = engine.open_session(SessionConfig())
        session.apply(PromptUpdate(UpdateAction.ADD, 1, MaskPrompt(mask)))
        if objects > 1:
            session.apply(PromptUpdate(UpdateAction.ADD, 2, BoxPrompt(0.05 * w, 0.05 * h, 0.3 * w, 0.25 * h)))
        sessions[name] = session
    per_frame: dict[str, list[float]] = {n: [] for n in engines}
    stages: dict[str, dict[str, list[float]]] = {n: {s: [] for s in (*STAGES, "other")} for n in engines}
    logits: dict[str, dict[int, dict]] = {n: {} for n in engines}
    for f, pixels in enumerate(tqdm(frames, desc="frames", unit="frame", disable=not progress)):
        for name, session in sessions.items():
            t0 = time.perf_counter()
            tracks = session.step(Frame(f, pixels)).tracks
            ms = (time.perf_counter() - t0) * 1000.0
            logits[name][f] = {t.object_id: session.last_logits(t.object_id).clone() for t in tracks}
            if f >= WARMUP:
                per_frame[name].append(ms)
                res = session.timer.results()
                for s in STAGES:
                    stages[name][s].append(res.get(s, 0.0))
                stages[name]["other"].append(ms - sum(res.get(s, 0.0) for s in STAGES))
    results = {}
    for name, session in sessions.items():
        session.close()
        arr = np.asarray(per_frame[name])
        results[name] = {
            "ms_per_frame_p50": round(float(np.percentile(arr, 50)), 1),
            "ms_per_frame_p95": round(float(np.percentile(arr, 95)), 1),
            "ms_per_frame_mean": round(float(arr.mean()), 1),
            "ms_per_frame_max": round(float(arr.max()), 1),
            "stage_ms_p50": {s: round(float(np.median(v)), 1) for s, v in stages[name].items()},
            "frames_timed": len(arr),
            "info": engines[name].info.version,
        }
    return results, logits


def compare_logits(a: dict[int, dict], b: dict[int, dict]) -> tuple[float, float]:
    """Max abs low-res logit difference and min mask IoU (logits > 0) over all frames and objects."""
    from tracker.engines.sam2.parity import mask_iou

    diff, iou = 0.0, 1.0
    for f, objects in a.items():
        for oid, x in objects.items():
            y = b[f][oid].float()
            x = x.float()
            diff = max(diff, float((x - y).abs().max()))
            iou = min(iou, mask_iou(x.numpy()[0, 0] > 0, y.numpy()[0, 0] > 0))
    return diff, iou


def write_result(result: dict[str, Any], out: Path | None) -> None:
    """Print ``result`` as JSON and, with ``out``, write it there too."""
    text = json.dumps(result, indent=2)
    if out:
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(text + "\n")
    sys.stdout.write(text + "\n")
