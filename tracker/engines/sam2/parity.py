"""Run this engine and sam2's own ``SAM2VideoPredictor`` on the same clip, and compare.

Used by tests/test_sam2_parity.py and tracker/lab/bench/reference.py. The reference runs
offline on a folder of JPEG frames (``init_state``); the engine is fed the very same
decoded pixels (the JPEGs read back with PIL), so both see identical model inputs.

Prompt schedules are replayed on the reference *as a stream experiences them*: the
reference propagates up to the frame before a prompt update, the update is applied
(``add_new_mask`` / ``add_new_points_or_box`` / ``remove_object``) on its frame, and
propagation resumes from that frame. That is the only way the reference can add an object
on frame k > 0 causally: added before a propagation from frame 0, it would also segment
the object on frames < k from its future conditioning memory (see
:mod:`tracker.engines.sam2.engine`).
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
from PIL import Image

from tracker.types import (
    BoxPrompt,
    Frame,
    MaskPrompt,
    PointsPrompt,
    PromptUpdate,
    SessionConfig,
    UpdateAction,
)

if TYPE_CHECKING:
    import torch

    from tracker.engines.sam2.engine import Sam2Engine

# frame index -> {object id: (low-res logits (1, 1, S/4, S/4), video-res logits (1, 1, H, W))}
FrameOutputs = dict[int, tuple["torch.Tensor", "torch.Tensor"]]
OnFrame = Callable[[int, FrameOutputs], None]


def jpeg_paths(folder: Path) -> list[Path]:
    """The frames of a sam2-style JPEG folder (``<index>.jpg``), in sam2's order."""
    names = [p for p in os.listdir(folder) if os.path.splitext(p)[-1] in (".jpg", ".jpeg", ".JPG", ".JPEG")]
    names.sort(key=lambda p: int(os.path.splitext(p)[0]))
    return [folder / n for n in names]


def read_rgb(path: Path) -> np.ndarray:
    """Decoded pixels of one JPEG, exactly as sam2's loader decodes it (PIL, RGB)."""

    with Image.open(path) as im:
        return np.array(im.convert("RGB"))


def run_reference(
    model: Any,
    jpeg_dir: Path,
    schedule: dict[int, list[PromptUpdate]],
    on_frame: OnFrame,
    num_frames: int | None = None,
    causal: bool = True,
) -> None:
    """Run ``SAM2VideoPredictor`` over ``jpeg_dir`` with prompt updates on their frames.

    ``causal=False`` applies every update on its frame *before* one propagation from
    frame 0 (the reference's usual offline use; not what a stream can do).
    """
    import torch

    with torch.inference_mode():
        state = model.init_state(str(jpeg_dir))
        n = state["num_frames"] if num_frames is None else min(num_frames, state["num_frames"])
        starts = sorted(f for f in schedule if f < n)
        if not starts or starts[0] != 0:
            raise ValueError("the schedule must prompt at least one object on frame 0")
        if not causal:
            for start in starts:
                for u in schedule[start]:
                    _apply_reference(model, state, start, u)
            starts = [0]
            schedule = {}
        for i, start in enumerate(starts):
            end = starts[i + 1] - 1 if i + 1 < len(starts) else n - 1
            for u in schedule.get(start, []):
                _apply_reference(model, state, start, u)
            for f, obj_ids, video_res in model.propagate_in_video(
                state, start_frame_idx=start, max_frame_num_to_track=end - start
            ):
                outs: FrameOutputs = {}
                for idx, oid in enumerate(obj_ids):
                    per_obj = state["output_dict_per_obj"][idx]
                    out = per_obj["cond_frame_outputs"].get(f) or per_obj["non_cond_frame_outputs"][f]
                    outs[oid] = (out["pred_masks"], video_res[idx : idx + 1])
                on_frame(f, outs)


def _apply_reference(model: Any, state: dict[str, Any], f: int, u: PromptUpdate) -> None:
    if u.action is UpdateAction.REMOVE:
        model.remove_object(state, u.object_id, strict=True, need_output=False)
        return
    p = u.prompt
    if isinstance(p, MaskPrompt):
        model.add_new_mask(state, f, u.object_id, np.asarray(p.mask, dtype=bool))
    elif isinstance(p, BoxPrompt):
        model.add_new_points_or_box(state, f, u.object_id, box=[p.x0, p.y0, p.x1 - 1.0, p.y1 - 1.0])
    elif isinstance(p, PointsPrompt):
        labels = (np.asarray(p.labels).reshape(-1) == 1).astype(np.int32)
        model.add_new_points_or_box(
            state, f, u.object_id, points=np.asarray(p.points, np.float32), labels=labels
        )
    else:
        raise TypeError(f"unsupported prompt {type(p).__name__}")


def run_ours(
    engine: Sam2Engine,
    frames: Iterable[np.ndarray],
    schedule: dict[int, list[PromptUpdate]],
    on_frame: OnFrame,
    session_hook: Callable[[Any], None] | None = None,
) -> None:
    """Stream ``frames`` through a session of ``engine``, applying updates on their frames."""

    session = engine.open_session(SessionConfig())
    if session_hook is not None:
        session_hook(session)
    try:
        for f, pixels in enumerate(frames):
            for u in schedule.get(f, []):
                session.apply(u)
            tracks = session.step(Frame(f, pixels)).tracks
            outs: FrameOutputs = {
                t.object_id: (
                    session.last_logits(t.object_id),
                    session.last_logits(t.object_id, full_res=True),
                )
                for t in tracks
            }
            on_frame(f, outs)
    finally:
        session.close()


@dataclass
class ParityStats:
    """Worst-case agreement over all frames and objects both runs produced."""

    frames: int = 0
    object_frames: int = 0
    max_abs_logit_diff_low_res: float = 0.0
    max_abs_logit_diff_video_res: float = 0.0
    min_iou: float = 1.0
    worst: str = ""
    missing: list[str] = field(default_factory=list)

    def add(self, f: int, ours: FrameOutputs, ref: FrameOutputs) -> None:
        self.frames += 1
        if set(ours) != set(ref):
            self.missing.append(f"frame {f}: ours {sorted(ours)} vs reference {sorted(ref)}")
        for oid in set(ours) & set(ref):
            self.object_frames += 1
            (lo_a, vid_a), (lo_b, vid_b) = ours[oid], ref[oid]
            d_lo = float((lo_a.float().cpu() - lo_b.float().cpu()).abs().max())
            d_vid = float((vid_a.float().cpu() - vid_b.float().cpu()).abs().max())
            iou = mask_iou(vid_a.cpu().numpy()[0, 0] > 0, vid_b.cpu().numpy()[0, 0] > 0)
            if d_lo > self.max_abs_logit_diff_low_res:
                self.max_abs_logit_diff_low_res = d_lo
                self.worst = f"frame {f} object {oid}"
            self.max_abs_logit_diff_video_res = max(self.max_abs_logit_diff_video_res, d_vid)
            self.min_iou = min(self.min_iou, iou)


def mask_iou(a: np.ndarray, b: np.ndarray) -> float:
    """IoU of two bool masks; two empty masks agree perfectly (1.0)."""
    union = int(np.logical_or(a, b).sum())
    return 1.0 if union == 0 else int(np.logical_and(a, b).sum()) / union


def compare_in_process(
    engine: Sam2Engine, jpeg_dir: Path, schedule: dict[int, list[PromptUpdate]], num_frames: int | None = None
) -> ParityStats:
    """Run the reference (on ``engine.model``) and the engine, then compare frame by frame.

    Both outputs are kept for the whole clip (video-res logits included), so this is for
    short clips; the benchmark compares low-res logits written to disk instead.
    """
    ref: dict[int, FrameOutputs] = {}
    ours: dict[int, FrameOutputs] = {}

    def keep(store: dict[int, FrameOutputs]) -> OnFrame:
        def cb(f: int, outs: FrameOutputs) -> None:
            store[f] = {k: (a.detach().cpu().clone(), b.detach().cpu().clone()) for k, (a, b) in outs.items()}

        return cb

    paths = jpeg_paths(jpeg_dir)[: num_frames or None]
    run_reference(engine.model, jpeg_dir, schedule, keep(ref), num_frames=len(paths))
    run_ours(engine, (read_rgb(p) for p in paths), schedule, keep(ours))
    stats = ParityStats()
    for f in sorted(set(ref) | set(ours)):
        if f not in ref or f not in ours:
            stats.missing.append(f"frame {f} only in {'ours' if f in ours else 'reference'}")
            continue
        stats.add(f, ours[f], ref[f])
    return stats


def iter_frames(paths: list[Path]) -> Iterator[np.ndarray]:
    for p in paths:
        yield read_rgb(p)


def sharpen_random_logits(model: Any, factor: float = 40.0) -> None:
    """Scale the mask logits of a randomly initialised model by ``factor``, in place.

    Random SAM2 weights give mask logits of about +-0.3 on every pixel: sigmoid maps that
    to ~0.5 everywhere, so the memory encoder sees no object and different memory
    selections change the outputs only by ~1e-3, too little for a 1e-3 parity bound to
    tell a right memory bank from a wrong one. Multiplying the last linear layer of the
    decoder's hypernetwork MLPs (weights and bias: logits are linear in them) spreads the
    logits to about +-10, so masks are sharp and memory matters. Applied once to the model
    that *both* runs share; for tests and benchmarks with random weights only.
    """
    import torch

    with torch.no_grad():
        for mlp in model.sam_mask_decoder.output_hypernetworks_mlps:
            last = mlp.layers[-1]
            last.weight.mul_(factor)
            last.bias.mul_(factor)
