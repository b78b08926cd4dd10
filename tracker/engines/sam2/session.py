"""One SAM 2.1 stream: its state and its step, one frame at a time or a batch of sessions' frames.

Meta's ``SAM2VideoPredictor`` is an offline tool: ``init_state`` loads a whole video,
``propagate_in_video`` walks over it and every frame's outputs are kept to the end. A
:class:`Sam2Session` drives the same model through ``SAM2Base``'s own methods, frame by frame:

1. ``forward_image`` + ``_prepare_backbone_features`` once per frame; the features are
   shared by every object of the session (batch size 1, as the reference runs objects).
   :meth:`Sam2Session.step_batch` runs this call once for frames of several sessions and
   hands each its slice; everything below stays per session.
2. Prompt updates arriving with the frame are applied first. A prompted object (ADD, or
   CORRECT, which makes the frame a conditioning frame of that object) runs ``track_step``
   with ``is_init_cond_frame=True`` and ``run_mem_encoder=False``; a mask prompt goes
   through ``_use_mask_as_output`` (``use_mask_input_as_output_without_sam``), points and
   boxes through the SAM heads. Its memory is then encoded with ``_encode_new_memory``
   from the (hole-filled) low-res logits upsampled to the model size, with
   ``is_mask_from_pts=True`` (so binarised): exactly what the reference's
   ``add_new_mask``/``add_new_points_or_box`` + ``propagate_in_video_preflight`` do.
3. Every other object runs ``track_step(is_init_cond_frame=False, run_mem_encoder=True)``
   against an ``output_dict`` built at the boundary from our per-object
   :class:`~tracker.engines.sam2.memory.ObjectMemory`, which holds only what SAM2 can still read
   (see :mod:`tracker.engines.sam2.memory` for the exact selection rule and what ``num_frames``
   is passed).
4. Mask features are stored in bfloat16 (as the reference stores them; halves memory).
   The low-res logits are hole-filled as the reference does (``fill_hole_area``, when
   sam2's CUDA kernel exists), upsampled to the frame (or crop window) with bilinear
   ``F.interpolate`` and thresholded at 0; the presence score is
   ``sigmoid(object_score_logits)``.

Not batched: memory attention, the SAM heads and the memory encoder run per object, as in
SAM2's own video predictor. Each object attends to its own memory bank, whose token count
depends on its history, and ``track_step`` interleaves those stages with Python control flow
on that history; batching them would mean re-implementing SAM2's memory selection outside
sam2, for a part that is a minor share of a frame at one or two objects.

Differences from the reference (all deliberate, all documented in the parity test):

* A CORRECT is a conditioning frame (the reference's ``add_all_frames_to_correct_as_cond``
  is False, but there a correction usually lands on an already-tracked frame; in a stream
  the prompt arrives with the frame, before it is tracked, and the reference also makes
  such a frame an initial conditioning frame). Older conditioning frames of the object
  stay, as in the reference (``clear_non_cond_mem_around_input`` is False there too).
* An object ADDed on frame k: the reference, asked to propagate from frame 0 after the
  object was added at k, also produces masks for it on frames < k by attending to its
  *future* conditioning memory, and those outputs then feed its memory after k. A causal
  stream cannot do that; it matches the reference run as the stream experiences it:
  propagate up to k - 1, add the object on k, propagate from k (tested).
* ``num_frames`` is "unbounded" (see :mod:`tracker.engines.sam2.memory`): identical to the
  reference for clips of at least ``max_obj_ptrs_in_encoder`` (16) frames.
* Crop mode and the cine-MRI preset have no counterpart in the reference.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np

from tracker.engines.base import EngineSession, StepOutput
from tracker.engines.sam2.memory import STREAM_NUM_FRAMES, MemoryFrame, MemoryPolicy, ObjectMemory
from tracker.engines.sam2.options import Sam2Settings
from tracker.engines.sam2.preprocess import (
    CropWindow,
    frame_to_tensor,
    full_window,
    logits_to_mask,
    logits_to_window,
    mask_box,
    mask_input,
    point_inputs,
    prompt_extent,
    square_window_around,
    union_box,
)
from tracker.engines.sam2.timing import timing_into
from tracker.timing import StageTimer
from tracker.types import (
    BoxPrompt,
    Frame,
    MaskPrompt,
    ObjectTrack,
    PointsPrompt,
    Prompt,
    PromptError,
    PromptUpdate,
    SessionConfig,
    UpdateAction,
)

if TYPE_CHECKING:
    import torch

logger = logging.getLogger(__name__)


@dataclass
class Sam2Runtime:
    """What every session of one engine shares and never changes: the model and how to run it.

    Built by :class:`tracker.engines.sam2.engine.Sam2Engine`; sessions read it and keep all of
    their own state themselves.
    """

    settings: Sam2Settings
    model: Any  # a SAM2VideoPredictor (or the onnx engine's model with runtime-backed parts)
    policy: MemoryPolicy  # which memory frames SAM2 can still read
    fill_hole_area: int
    fill_holes: bool  # sam2's hole-filling kernel is built and the model asks for it
    max_batch: int | None = None  # most frames one image-encoder call takes (None: any)


@dataclass
class _Track:
    """One tracked object's engine state: its memory bank and last outputs (its slot: the registry)."""

    object_id: int  # the client's id
    memory: ObjectMemory = field(default_factory=ObjectMemory)
    last_logits: torch.Tensor | None = None  # (1, 1, S/4, S/4) low-res logits of the last frame
    last_score: float = 0.0
    last_box: tuple[int, int, int, int] | None = None  # full-frame bbox of the last mask


@dataclass
class _PromptInputs:
    """One prompt as SAM2 takes it: a (1, 1, S, S) mask, or point coordinates and labels."""

    masks: Any = None
    points: dict[str, Any] | None = None


@dataclass
class _FrameFeatures:
    """This frame's backbone features in the layout ``track_step`` expects (shared by objects)."""

    vision_feats: list[Any]
    vision_pos_embeds: list[Any]
    feat_sizes: list[tuple[int, int]]


@dataclass
class _StepPlan:
    """What :meth:`Sam2Session._prepare` decided for a frame: its size and the prompts' inputs."""

    hw: tuple[int, int]
    inputs: dict[int, _PromptInputs]


@dataclass
class _BatchItem:
    """One work item of a batch that passed its session's preparation."""

    index: int  # position in the caller's work list
    session: Sam2Session
    plan: _StepPlan
    image: torch.Tensor  # (1, 3, S, S) model input


def encode_images(model: Any, images: torch.Tensor) -> list[_FrameFeatures]:
    """One image-encoder call on (B, 3, S, S) images; each item's features, as batch size 1.

    ``_prepare_backbone_features`` lays vision features out as (HW, B, C); item ``i`` gets
    the contiguous slice ``[:, i:i+1]``, the layout a one-frame call gives. For B = 1 the
    tensors are passed on untouched (the single-session path, bit-exact to the reference).
    """
    backbone_out = model.forward_image(images)
    _, feats, pos, sizes = model._prepare_backbone_features(backbone_out)
    if images.shape[0] == 1:
        return [_FrameFeatures(feats, pos, sizes)]
    return [
        _FrameFeatures(
            [f[:, i : i + 1].contiguous() for f in feats],
            [p[:, i : i + 1].contiguous() for p in pos],
            sizes,
        )
        for i in range(images.shape[0])
    ]


class Sam2Session(EngineSession):
    """One stream: per-object memories, the crop window, the frame counter."""

    def __init__(self, config: SessionConfig, runtime: Sam2Runtime) -> None:
        self._rt = runtime
        self._tracks: dict[int, _Track] = {}  # client id -> engine state (which objects: self.objects)
        self._frame_idx = -1  # the session's own counter (client indices need not be unique)
        self._window: CropWindow | None = None
        self._window_set = False  # whether the window was set from prompts (crop mode)
        self._maskmem_pos_enc: list[Any] | None = None  # same for every frame and object: kept once
        super().__init__(config)
        if runtime.settings.device == "cuda":  # time GPU work with CUDA events, not host clocks
            import torch

            self.timer.cuda_device = torch.device("cuda")

    # -- introspection (tests, benchmark) -------------------------------------------------

    @property
    def frame_idx(self) -> int:
        """Index of the last frame processed (0-based), -1 before the first."""
        return self._frame_idx

    @property
    def window(self) -> CropWindow | None:
        return self._window

    def memory_of(self, object_id: int) -> ObjectMemory:
        return self._tracks[object_id].memory

    def slot_of(self, object_id: int) -> int:
        return self.objects.slot_of(object_id)

    def last_logits(self, object_id: int, full_res: bool = False) -> torch.Tensor:
        """Last frame's logits: low-res (1, 1, S/4, S/4), or upsampled to the frame/crop window."""
        t = self._tracks[object_id]
        if t.last_logits is None:
            raise KeyError(f"object {object_id} has no output yet")
        if not full_res:
            return t.last_logits
        assert self._window is not None
        return logits_to_window(t.last_logits, self._window)

    def storage_bytes(self) -> int:
        """Tensor bytes held by all memories (excluding the shared positional encoding)."""
        return sum(t.memory.storage_bytes() for t in self._tracks.values())

    # -- helpers --------------------------------------------------------------------------

    def _autocast(self) -> contextlib.AbstractContextManager[Any]:
        import torch

        settings = self._rt.settings
        if settings.dtype == "bfloat16":
            # On CPU this pays only where the CPU multiplies bf16 natively (the option
            # checks); memory attention then needs tracker.engines.sam2.accel's attention core,
            # since PyTorch's CPU SDPA does not speed up in bf16. Figures: README,
            # "Precision" (bench/bench_precision.py).
            return torch.autocast(settings.device, dtype=torch.bfloat16)
        return contextlib.nullcontext()

    def _next_window(self, hw: tuple[int, int], prompts: dict[int, Prompt], removed: set[int]) -> CropWindow:
        """The crop window for this frame, given the prompts arriving with it.

        Without ``crop_margin_px`` the whole frame. Otherwise the window is set from the
        prompts and then stays fixed: SAM2's spatial memory is encoded in crop
        coordinates, so moving the crop under tracked objects would misalign their
        memory. It is recomputed only when a new prompt does not fit (or nothing was
        tracked any more); then it covers the new prompts and the other objects' last masks,
        and a warning says those objects' memory was encoded in the old window.
        """
        margin = self._rt.settings.crop_margin_px
        if margin is None:
            return self._window or full_window(hw)
        if not prompts:
            return self._window or full_window(hw)
        extents = [prompt_extent(p, hw) for p in prompts.values()]
        kept = [t for oid, t in self._tracks.items() if oid not in removed]
        others = [t.last_box for t in kept if t.object_id not in prompts and t.last_box]
        fits = self._window is not None and all(self._window.contains(e) for e in extents)
        if self._window is not None and self._window_set and kept and fits:
            return self._window
        new = square_window_around(union_box(extents + others), margin, hw)
        if self._window is not None and others and new != self._window:
            logger.warning(
                "sam2 crop window moved from %s to %s for a new prompt; objects already tracked keep memory"
                " encoded in the old window until they are prompted again",
                self._window,
                new,
            )
        return new

    def _prompt_inputs(self, oid: int, prompt: Prompt, window: CropWindow) -> _PromptInputs:
        """Model inputs for a prompt; PromptError (before any state changes) if unusable."""
        model = self._rt.model
        s = model.image_size
        if isinstance(prompt, MaskPrompt):
            masks = mask_input(prompt.mask, s, window).to(model.device)
            if not bool(masks.any()):
                raise PromptError(
                    f"the mask prompt for object {oid} vanishes at the model's resolution ({s} px over a"
                    f" {window.height}x{window.width} (height x width) window);"
                    " use a larger mask or crop_margin_px"
                )
            return _PromptInputs(masks=masks)
        if isinstance(prompt, BoxPrompt | PointsPrompt):
            pts = point_inputs(prompt, s, window)
            return _PromptInputs(points={k: v.to(model.device) for k, v in pts.items()})
        raise PromptError(f"unsupported prompt type {type(prompt).__name__}")

    def _model_input(self, pixels: np.ndarray) -> torch.Tensor:
        """This frame as the (1, 3, S, S) model input, in the current window."""
        model = self._rt.model
        assert self._window is not None
        with self.timer.stage("preprocess"):
            img = frame_to_tensor(pixels, model.image_size, self._window)
            return img.to(model.device).unsqueeze(0)

    def _features(self, pixels: np.ndarray) -> _FrameFeatures:
        img = self._model_input(pixels)
        with self.timer.stage("encoder"):
            return encode_images(self._rt.model, img)[0]

    def _fill_holes(self, low_res: torch.Tensor) -> torch.Tensor:
        if not self._rt.fill_holes:
            return low_res
        from sam2.utils.misc import fill_holes_in_mask_scores

        return fill_holes_in_mask_scores(low_res, self._rt.fill_hole_area)

    def _keep_pos_enc(self, pos_enc: list[Any]) -> list[Any]:
        if self._maskmem_pos_enc is None:
            self._maskmem_pos_enc = [x[0:1].clone() for x in pos_enc]
        return self._maskmem_pos_enc

    def _track_step(self, ff: _FrameFeatures, **kwargs: Any) -> dict[str, Any]:
        """SAM2's ``track_step`` for this frame's features (see :func:`_track_step`)."""
        return _track_step(
            self._rt.model,
            frame_idx=self._frame_idx,
            current_vision_feats=ff.vision_feats,
            current_vision_pos_embeds=ff.vision_pos_embeds,
            feat_sizes=ff.feat_sizes,
            num_frames=STREAM_NUM_FRAMES,
            **kwargs,
        )

    def _run_prompted(self, track: _Track, inputs: _PromptInputs, ff: _FrameFeatures) -> dict[str, Any]:
        """A conditioning frame: SAM2 on the prompt alone, then its memory (as the reference)."""
        import torch
        import torch.nn.functional as F  # noqa: N812

        model = self._rt.model
        s = model.image_size
        masks, points = inputs.masks, inputs.points
        out = self._track_step(
            ff,
            is_init_cond_frame=True,
            point_inputs=points,
            mask_inputs=masks,
            output_dict={"cond_frame_outputs": {}, "non_cond_frame_outputs": {}},
            run_mem_encoder=False,
        )
        low_res = self._fill_holes(out["pred_masks"])
        # propagate_in_video_preflight: memory from the stored low-res logits, upsampled.
        high_res = F.interpolate(low_res, size=(s, s), mode="bilinear", align_corners=False)
        feats, pos_enc = model._encode_new_memory(
            current_vision_feats=ff.vision_feats,
            feat_sizes=ff.feat_sizes,
            pred_masks_high_res=high_res,
            object_score_logits=out["object_score_logits"],
            is_mask_from_pts=True,
        )
        self._keep_pos_enc(pos_enc)
        track.memory.add_cond(MemoryFrame(self._frame_idx, out["obj_ptr"], feats.to(torch.bfloat16)))
        return {"pred_masks": low_res, "object_score_logits": out["object_score_logits"], "iou": out["iou"]}

    def _run_tracked(self, track: _Track, ff: _FrameFeatures) -> dict[str, Any]:
        import torch

        pos_enc = self._maskmem_pos_enc
        assert pos_enc is not None  # an object is always prompted (and encoded) before it is tracked
        # DEGRADE policy, step 1: no new memory on alternate frames (halves the memory encoder's
        # cost). The frame still answers but is not stored: an entry without mask features
        # inside the mask-memory window would be read by SAM2 as one with them.
        skip_memory = self.degradation_level >= 1 and self._frame_idx % 2 == 1
        out = self._track_step(
            ff,
            is_init_cond_frame=False,
            point_inputs=None,
            mask_inputs=None,
            output_dict=track.memory.as_output_dict(pos_enc),
            run_mem_encoder=not skip_memory,
        )
        if not skip_memory:
            feats = out["maskmem_features"].to(torch.bfloat16)
            track.memory.add_non_cond(MemoryFrame(self._frame_idx, out["obj_ptr"], feats))
        low_res = self._fill_holes(out["pred_masks"])
        return {"pred_masks": low_res, "object_score_logits": out["object_score_logits"], "iou": out["iou"]}

    # -- EngineSession ----------------------------------------------------------------------

    def _step(self, frame: Frame, updates: list[PromptUpdate]) -> list[ObjectTrack]:
        import torch

        plan = self._prepare(frame, updates)
        with torch.inference_mode(), self._autocast(), timing_into(self.timer):
            return self._track(plan, self._features(frame.pixels))

    def _prepare(self, frame: Frame, updates: list[PromptUpdate]) -> _StepPlan:
        """Check the prompts, then commit this frame's object and window changes.

        Everything that can fail on a bad prompt happens before any state changes, so a
        PromptError leaves the session as it was (batched steps rely on it too).
        """
        hw = frame.shape_hw
        # Net effect of the updates, in arrival order: the last prompt for an object wins,
        # a REMOVE cancels earlier prompts of this frame, a REMOVE + ADD starts afresh.
        prompts: dict[int, Prompt] = {}
        removed: set[int] = set()
        fresh: set[int] = set()
        for update in updates:
            oid = update.object_id
            if update.action is UpdateAction.REMOVE:
                removed.add(oid)
                prompts.pop(oid, None)
                fresh.discard(oid)
                continue
            assert update.prompt is not None  # EngineSession.apply guarantees it
            prompts[oid] = update.prompt
            if update.action is UpdateAction.ADD or oid not in self._tracks or oid in removed:
                fresh.add(oid)

        window = self._next_window(hw, prompts, removed)
        try:
            inputs = {oid: self._prompt_inputs(oid, p, window) for oid, p in prompts.items()}
        except PromptError:
            for oid in fresh:  # a failed ADD leaves no half-made object behind
                if oid in self.objects:
                    self.objects.remove(oid)
            raise

        for oid in removed:
            self._tracks.pop(oid, None)  # its memory goes with it
        for oid in prompts:
            if oid in fresh:
                self._tracks[oid] = _Track(oid)
        self._window = window
        self._window_set = self._window_set or bool(prompts)
        self._frame_idx += 1
        return _StepPlan(hw, inputs)

    def _track(self, plan: _StepPlan, ff: _FrameFeatures) -> list[ObjectTrack]:
        """Every object on this frame's features (inside inference mode, autocast, timing)."""
        import torch

        assert self._window is not None
        results: list[ObjectTrack] = []
        for oid, track in self._tracks.items():
            if oid in plan.inputs:
                out = self._run_prompted(track, plan.inputs[oid], ff)
                logger.debug("object %d conditioned on frame %d", oid, self._frame_idx)
            else:
                out = self._run_tracked(track, ff)
            low_res = out["pred_masks"].float()
            score = float(torch.sigmoid(out["object_score_logits"].float()).reshape(-1)[0])
            # Confidence: SAM2's own predicted IoU of the chosen mask times its object score.
            iou = min(1.0, max(0.0, float(out["iou"].float().reshape(-1)[0])))
            with self.timer.stage("mask_upsample"):
                mask = logits_to_mask(low_res, self._window, plan.hw)
            track.last_logits = low_res
            track.last_score = score
            track.last_box = mask_box(mask)
            track.memory.prune(self._frame_idx, self._rt.policy)
            results.append(ObjectTrack(oid, mask, score, iou * score))
        return results

    def degradations(self) -> tuple[str, ...]:
        # A lower input resolution would need a second model built for it (the rotary
        # tables and memory layout are sized at build time), so it is not offered here.
        return ("skip the memory-encoder update on alternate frames",)

    def _close(self) -> None:
        self._tracks.clear()
        self._maskmem_pos_enc = None
        self._window = None
        self._window_set = False

    # -- a batch: frames of several sessions through one image-encoder call ------------------

    @staticmethod
    def step_batch(
        runtime: Sam2Runtime, work: Sequence[tuple[EngineSession, Frame]]
    ) -> list[StepOutput | Exception]:
        """One outcome per item, in order: its :class:`StepOutput` or the exception it raised.

        Per session: the frame check, :meth:`_prepare` (a PromptError is raised here, before the
        session's state changes) and the frame's model input. Once per chunk of at most
        ``runtime.max_batch`` items: the image encoder on the stacked inputs. Per session again:
        every object's memory attention, SAM heads and memory encoder, as a one-frame step.
        An item that fails gets its exception in its place; its batch-mates go on. If the shared
        encoder call fails, every item of its chunk gets that exception (each session's frame
        counter has then advanced, as in a one-frame step). Each item's ``encoder`` stage is the
        call's time divided by the batch size (its share), and ``batch_size`` says that size.
        """
        import torch

        outcomes: list[StepOutput | Exception | None] = [None] * len(work)
        seen: set[int] = set()
        items: list[_BatchItem] = []
        for i, (session, frame) in enumerate(work):
            try:
                if not isinstance(session, Sam2Session) or session._rt is not runtime:
                    raise TypeError(f"work item {i}: the session was not opened by this engine")
                if id(session) in seen:
                    raise ValueError(f"work item {i}: session appears twice in one batch (frame order)")
                seen.add(id(session))
                plan = session._prepare(frame, session._begin_step(frame))
                with torch.inference_mode(), session._autocast():
                    image = session._model_input(frame.pixels)
                items.append(_BatchItem(i, session, plan, image))
            except Exception as exc:
                outcomes[i] = exc
        chunk = runtime.max_batch or len(items) or 1
        for start in range(0, len(items), chunk):
            Sam2Session._encode_and_track(runtime, items[start : start + chunk], outcomes)
        assert all(o is not None for o in outcomes)
        return outcomes  # type: ignore[return-value]

    @staticmethod
    def _encode_and_track(
        runtime: Sam2Runtime, items: list[_BatchItem], outcomes: list[StepOutput | Exception | None]
    ) -> None:
        import torch

        b = len(items)
        lead = items[0].session
        timer = StageTimer(cuda_device=lead.timer.cuda_device)
        try:
            with torch.inference_mode(), lead._autocast(), timer.stage("encoder"):
                images = items[0].image if b == 1 else torch.cat([it.image for it in items])
                features = encode_images(runtime.model, images)
            encoder_ms = timer.results()["encoder"]
        except Exception as exc:
            logger.exception("sam2 batched image encoder failed for %d frames", b)
            for it in items:
                outcomes[it.index] = exc
            return
        for it, ff in zip(items, features, strict=True):
            session = it.session
            try:
                session.timer.add("encoder", encoder_ms / b)
                with torch.inference_mode(), session._autocast(), timing_into(session.timer):
                    tracks = session._track(it.plan, ff)
                out = session._finish_step(tracks)
                out.batch_size = b
                outcomes[it.index] = out
            except Exception as exc:
                outcomes[it.index] = exc


def _track_step(model: Any, *, run_mem_encoder: bool, **kwargs: Any) -> dict[str, Any]:
    """``SAM2Base.track_step``, step for step, that also keeps the predicted IoU of the chosen mask.

    ``track_step`` drops the mask decoder's IoU prediction, so this calls its two
    halves (``_track_step`` and ``_encode_memory_in_output``) the same way and adds
    ``"iou"``: the best IoU over the multimask outputs (the mask SAM2 picks), or the
    single output's; 1 for a mask prompt (SAM2 returns the mask itself).
    """
    current_out, sam_outputs, _, _ = model._track_step(
        track_in_reverse=False, prev_sam_mask_logits=None, **kwargs
    )
    _, _, ious, low_res_masks, high_res_masks, obj_ptr, object_score_logits = sam_outputs
    current_out["pred_masks"] = low_res_masks
    current_out["pred_masks_high_res"] = high_res_masks
    current_out["obj_ptr"] = obj_ptr
    current_out["object_score_logits"] = object_score_logits  # inference only, as track_step
    model._encode_memory_in_output(
        kwargs["current_vision_feats"],
        kwargs["feat_sizes"],
        kwargs["point_inputs"],
        run_mem_encoder,
        high_res_masks,
        object_score_logits,
        current_out,
    )
    current_out["iou"] = ious.max(dim=-1).values
    return current_out
