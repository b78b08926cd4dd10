"""Per-object SAM2 memory for a causal stream, bounded exactly as SAM2 reads it.

SAM2's ``SAM2Base._prepare_memory_conditioned_features`` decides, for the frame ``f``
being tracked, which earlier outputs it attends to:

* **conditioning (prompted) frames**: all of them, or the ``max_cond_frames_in_attn``
  temporally closest (``select_closest_cond_frames``). In a causal stream there are no
  future prompts, so "closest" means "most recent". Their mask memories get temporal
  position 0; their object pointers are used when ``t <= f``.
* **non-conditioning mask memories**: ``num_maskmem - 1`` slots; slot ``t_rel = 1`` is
  frame ``f - 1``, slots ``t_rel >= 2`` are ``((f - 2) // r) * r - (t_rel - 2) * r`` with
  ``r = memory_temporal_stride_for_eval``. A missing frame falls back to an *unselected*
  conditioning frame with that index, else the slot is skipped.
* **object pointers**: those of the selected conditioning frames plus, for
  ``t_diff = 1 .. max_ptrs - 1``, frame ``f - t_diff`` (non-conditioning, else an
  unselected conditioning frame), where ``max_ptrs = min(num_frames,
  max_obj_ptrs_in_encoder)``.

Everything else is never read again by any later frame, so :meth:`ObjectMemory.prune`
releases it after each frame: mask features older than the mask-memory window are
dropped (only the pointer, ``hidden_dim`` floats, is kept while the frame is inside the
pointer window), and entries outside both windows are deleted. The state per object is
therefore at most ``num_maskmem - 1`` non-conditioning feature maps and
``max_obj_ptrs_in_encoder - 1`` non-conditioning pointers, whatever the stream length,
plus the conditioning frames (one per prompt: ADD and each CORRECT; with
``max_cond_frames_in_attn = -1``, SAM2's default, all of them stay selected forever,
exactly as in SAM2).

``num_frames``: SAM2's video predictor passes the clip length; a stream has none. The
engine passes :data:`STREAM_NUM_FRAMES` (larger than any pointer window), which is what
the reference does for any clip of at least ``max_obj_ptrs_in_encoder`` frames: the
pointer count and the normalisation of the pointers' temporal encoding
(``t_diff_max = max_ptrs - 1``) then do not depend on where the stream ends.
``num_frames`` is used by ``track_step`` for nothing else in forward tracking (the
multimask decision depends on the prompt's point count and ``is_init_cond_frame`` only).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import torch

# "Unbounded" clip length for track_step's num_frames (see the module docstring).
STREAM_NUM_FRAMES = 2**31 - 1


@dataclass(frozen=True)
class MemoryPolicy:
    """The model settings that decide which memories SAM2 reads (copied from SAM2Base)."""

    num_maskmem: int
    stride: int  # memory_temporal_stride_for_eval
    max_cond_frames: int  # max_cond_frames_in_attn; -1: no limit
    use_obj_ptrs: bool  # use_obj_ptrs_in_encoder
    max_obj_ptrs: int  # min(STREAM_NUM_FRAMES, max_obj_ptrs_in_encoder)

    @classmethod
    def of(cls, model: Any) -> MemoryPolicy:
        return cls(
            num_maskmem=int(model.num_maskmem),
            stride=max(1, int(model.memory_temporal_stride_for_eval)),
            max_cond_frames=int(model.max_cond_frames_in_attn),
            use_obj_ptrs=bool(model.use_obj_ptrs_in_encoder),
            max_obj_ptrs=min(STREAM_NUM_FRAMES, int(model.max_obj_ptrs_in_encoder)),
        )

    def mask_frames_read_at(self, f: int) -> list[int]:
        """Frame indices SAM2 looks up for non-conditioning mask memory when tracking ``f``."""
        out = []
        r = self.stride
        for t_pos in range(1, self.num_maskmem):
            t_rel = self.num_maskmem - t_pos
            out.append(f - 1 if t_rel == 1 else ((f - 2) // r) * r - (t_rel - 2) * r)
        return out

    def features_needed_later(self, t: int, latest: int) -> bool:
        """Whether frame ``t``'s mask memory can be read by some frame after ``latest``.

        Frame ``latest + 1`` reads ``latest`` (t_rel 1) and the stride grid from
        ``((latest - 1) // r) * r`` back ``num_maskmem - 3`` steps; later frames read only
        newer grid points, so that lower bound never decreases.
        """
        if self.num_maskmem < 2:
            return False
        if t == latest:
            return True
        if self.num_maskmem < 3:
            return False
        r = self.stride
        lowest = ((latest - 1) // r) * r - (self.num_maskmem - 3) * r
        return t % r == 0 and t >= lowest

    def pointer_needed_later(self, t: int, latest: int) -> bool:
        """Whether frame ``t``'s object pointer is inside the window of some frame after ``latest``."""
        return self.use_obj_ptrs and (latest + 1) - t <= self.max_obj_ptrs - 1


@dataclass
class MemoryFrame:
    """What SAM2 keeps of one object's output on one frame, for later frames to attend to."""

    frame_idx: int
    obj_ptr: torch.Tensor  # (1, hidden_dim) float32
    # (1, mem_dim, H/16, W/16) bfloat16, as SAM2's predictor stores it; None once the frame
    # has left the mask-memory window but is still inside the pointer window.
    maskmem_features: torch.Tensor | None


@dataclass
class ObjectMemory:
    """One object's memory bank: prompted frames apart from the rolling ones."""

    cond: dict[int, MemoryFrame] = field(default_factory=dict)  # prompted frames
    non_cond: dict[int, MemoryFrame] = field(default_factory=dict)  # tracked frames, rolling

    def add_cond(self, entry: MemoryFrame) -> None:
        self.non_cond.pop(entry.frame_idx, None)
        self.cond[entry.frame_idx] = entry

    def add_non_cond(self, entry: MemoryFrame) -> None:
        self.non_cond[entry.frame_idx] = entry

    def selected_cond(self, policy: MemoryPolicy) -> list[int]:
        """Conditioning frames SAM2 selects for any later frame: the most recent ``max_cond``."""
        frames = sorted(self.cond)
        if policy.max_cond_frames == -1 or len(frames) <= policy.max_cond_frames:
            return frames
        return frames[-policy.max_cond_frames :]

    def prune(self, latest: int, policy: MemoryPolicy) -> None:
        """Release what no frame after ``latest`` can read (see the module docstring)."""
        selected = set(self.selected_cond(policy))
        for store, is_cond in ((self.non_cond, False), (self.cond, True)):
            for t in list(store):
                if is_cond and t in selected:
                    continue
                entry = store[t]
                if entry.maskmem_features is not None and not policy.features_needed_later(t, latest):
                    entry.maskmem_features = None
                if entry.maskmem_features is None and not policy.pointer_needed_later(t, latest):
                    del store[t]

    def as_output_dict(self, maskmem_pos_enc: list[torch.Tensor]) -> dict[str, dict[int, dict[str, Any]]]:
        """The ``output_dict`` that ``SAM2Base.track_step`` reads, built at the boundary.

        Entries are views on our tensors (no copies). Pointer-only entries carry
        ``maskmem_features=None``; pruning guarantees SAM2 never selects them for mask memory.
        """

        def out(e: MemoryFrame) -> dict[str, Any]:
            return {
                "maskmem_features": e.maskmem_features,
                "maskmem_pos_enc": maskmem_pos_enc,
                "obj_ptr": e.obj_ptr,
            }

        return {
            "cond_frame_outputs": {t: out(e) for t, e in self.cond.items()},
            "non_cond_frame_outputs": {t: out(e) for t, e in self.non_cond.items()},
        }

    def feature_frames(self) -> int:
        """Non-conditioning entries that still hold mask-memory features."""
        return sum(e.maskmem_features is not None for e in self.non_cond.values())

    def storage_bytes(self) -> int:
        """Bytes of tensor storage held (features and pointers, conditioning frames included)."""
        total = 0
        for e in (*self.cond.values(), *self.non_cond.values()):
            total += e.obj_ptr.numel() * e.obj_ptr.element_size()
            if e.maskmem_features is not None:
                total += e.maskmem_features.numel() * e.maskmem_features.element_size()
        return total
