"""The four exportable pieces of SAM 2.1, as torch modules with plain-tensor signatures.

Each wraps submodules of a built SAM2 model (weights shared, nothing copied) and has
exactly the inputs/outputs of its ONNX graph, so the graph can be checked against the
module it was traced from (:func:`tracker.engines.onnx.export.verify_graph`). The cut points are
chosen so that *all* of sam2's control flow (memory selection, prompts, multimask choice,
object pointers, occlusion handling) stays in ``SAM2Base`` in torch and the graphs are pure
tensor programs:

* image encoder: trunk + FPN neck + the SAM decoder's ``conv_s0``/``conv_s1`` (what
  ``forward_image`` computes), with a dynamic batch axis (frames of several sessions in
  one call, :meth:`tracker.engines.sam2.session.Sam2Session.step_batch`); the sine position
  encodings depend only on shapes and are computed once in torch by the runtime instead of
  being copied out every frame;
* memory attention: :class:`tracker.engines.sam2.rope.RealMemoryAttention` (dynamic memory length
  and number of object-pointer tokens), its cross-attention weighting the 64-wide memory
  before the value projection rather than after (the same sum, a quarter of the work);
* memory encoder: ``MemoryEncoder.forward(pix_feat, mask, skip_mask_sigmoid=True)``, as
  ``_encode_new_memory`` calls it;
* SAM heads: prompt encoder + ``SAMMaskDecoder.predict_masks`` for all four mask tokens;
  the multimask/stability selection and ``obj_ptr_proj`` stay in torch (cheap, and they
  branch on Python flags).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from tracker.engines.sam2.rope import RealMemoryAttention, _module_base

if TYPE_CHECKING:
    import torch


@dataclass(frozen=True)
class TensorSpec:
    """One graph input or output: name, shape (ints or symbolic axis names) and dtype."""

    name: str
    shape: tuple[int | str, ...]
    dtype: str  # numpy dtype name: float32, int32, int64, bool


@dataclass(frozen=True)
class GraphSpec:
    """What a graph takes and returns; recorded in the manifest and checked at load."""

    name: str
    inputs: tuple[TensorSpec, ...]
    outputs: tuple[TensorSpec, ...]

    def dynamic_axes(self) -> dict[str, dict[int, str]]:
        out: dict[str, dict[int, str]] = {}
        for t in (*self.inputs, *self.outputs):
            axes = {i: d for i, d in enumerate(t.shape) if isinstance(d, str)}
            if axes:
                out[t.name] = axes
        return out


GRAPH_NAMES = ("image_encoder", "memory_attention", "memory_encoder", "sam_heads")


def graph_specs(model: Any) -> dict[str, GraphSpec]:
    """The I/O of every graph for ``model`` (sizes from its config and image size)."""
    s = int(model.image_size)
    h = s // 16
    c = int(model.hidden_dim)
    cm = int(model.mem_dim)
    n_levels = int(model.num_feature_levels)
    dec = model.sam_mask_decoder
    c0 = int(dec.conv_s0.out_channels) if model.use_high_res_features_in_sam else c
    c1 = int(dec.conv_s1.out_channels) if model.use_high_res_features_in_sam else c
    level_ch = [c0, c1, c][-n_levels:]
    level_hw = [4 * h, 2 * h, h][-n_levels:]
    n_tok = int(dec.num_mask_tokens)
    f32 = "float32"
    return {
        "image_encoder": GraphSpec(
            "image_encoder",
            # Dynamic batch: frames of several sessions share one call (Sam2Session.step_batch).
            (TensorSpec("image", ("batch", 3, s, s), f32),),
            tuple(
                TensorSpec(f"backbone_fpn_{i}", ("batch", level_ch[i], level_hw[i], level_hw[i]), f32)
                for i in range(n_levels)
            ),
        ),
        "memory_attention": GraphSpec(
            "memory_attention",
            (
                TensorSpec("curr", (h * h, 1, c), f32),
                TensorSpec("memory", ("num_memory_tokens", 1, cm), f32),
                TensorSpec("curr_pos", (h * h, 1, c), f32),
                TensorSpec("memory_pos", ("num_memory_tokens", 1, cm), f32),
                TensorSpec("num_obj_ptr_tokens", (), "int64"),
            ),
            (TensorSpec("pix_feat_with_mem", (h * h, 1, c), f32),),
        ),
        "memory_encoder": GraphSpec(
            "memory_encoder",
            (TensorSpec("pix_feat", (1, c, h, h), f32), TensorSpec("mask_for_mem", (1, 1, s, s), f32)),
            (
                TensorSpec("maskmem_features", (1, cm, h, h), f32),
                TensorSpec("maskmem_pos_enc", (1, cm, h, h), f32),
            ),
        ),
        "sam_heads": GraphSpec(
            "sam_heads",
            (
                TensorSpec("image_embeddings", (1, c, h, h), f32),
                TensorSpec("high_res_feat_s0", (1, c0, 4 * h, 4 * h), f32),
                TensorSpec("high_res_feat_s1", (1, c1, 2 * h, 2 * h), f32),
                TensorSpec("point_coords", (1, "num_points", 2), f32),
                TensorSpec("point_labels", (1, "num_points"), "int32"),
                TensorSpec("mask_input", (1, 1, 4 * h, 4 * h), f32),
                TensorSpec("has_mask_input", (), "bool"),
            ),
            (
                TensorSpec("masks", (1, n_tok, 4 * h, 4 * h), f32),
                TensorSpec("iou_pred", (1, n_tok), f32),
                TensorSpec("mask_tokens_out", (1, n_tok, c), f32),
                TensorSpec("object_score_logits", (1, 1), f32),
            ),
        ),
    }


class ImageEncoderGraph(_module_base()):  # type: ignore[misc]
    """``forward_image``'s feature maps: trunk + neck (+ ``conv_s0``/``conv_s1``)."""

    def __init__(self, model: Any) -> None:
        super().__init__()
        self.image_encoder = model.image_encoder
        self.high_res = bool(model.use_high_res_features_in_sam)
        self.conv_s0 = model.sam_mask_decoder.conv_s0 if self.high_res else None
        self.conv_s1 = model.sam_mask_decoder.conv_s1 if self.high_res else None
        self.num_levels = int(model.num_feature_levels)

    def forward(self, image: torch.Tensor) -> tuple[torch.Tensor, ...]:
        fpn = list(self.image_encoder(image)["backbone_fpn"])
        if self.high_res:
            fpn[0] = self.conv_s0(fpn[0])
            fpn[1] = self.conv_s1(fpn[1])
        return tuple(fpn[-self.num_levels :])


class MemoryAttentionGraph(RealMemoryAttention):
    """Memory attention with real RoPE, values projected after attending (see engines.sam2.rope)."""

    def __init__(self, original: Any) -> None:
        super().__init__(original, values_after_attention=True)


class MemoryEncoderGraph(_module_base()):  # type: ignore[misc]
    """``MemoryEncoder`` as ``_encode_new_memory`` calls it (mask already sigmoid/binarised)."""

    def __init__(self, model: Any) -> None:
        super().__init__()
        self.memory_encoder = model.memory_encoder

    def forward(
        self, pix_feat: torch.Tensor, mask_for_mem: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        out = self.memory_encoder(pix_feat, mask_for_mem, skip_mask_sigmoid=True)
        return out["vision_features"], out["vision_pos_enc"][0]


class SamHeadsGraph(_module_base()):  # type: ignore[misc]
    """Prompt encoder + ``predict_masks`` for all mask tokens (no selection).

    ``has_mask_input`` picks the dense embedding: the encoded ``mask_input`` or sam2's
    learned ``no_mask_embed`` (what the prompt encoder does for ``masks=None``); a ``where``
    keeps the choice inside one graph and bit-exact.
    """

    def __init__(self, model: Any) -> None:
        super().__init__()
        self.prompt_encoder = model.sam_prompt_encoder
        self.mask_decoder = model.sam_mask_decoder
        self.high_res = bool(model.use_high_res_features_in_sam)

    def forward(
        self,
        image_embeddings: torch.Tensor,
        high_res_feat_s0: torch.Tensor,
        high_res_feat_s1: torch.Tensor,
        point_coords: torch.Tensor,
        point_labels: torch.Tensor,
        mask_input: torch.Tensor,
        has_mask_input: torch.Tensor,
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        import torch

        pe = self.prompt_encoder
        sparse = pe._embed_points(point_coords, point_labels, pad=True)
        no_mask = pe.no_mask_embed.weight.reshape(1, -1, 1, 1).expand(
            1, -1, pe.image_embedding_size[0], pe.image_embedding_size[1]
        )
        dense = torch.where(has_mask_input, pe._embed_masks(mask_input), no_mask)
        return self.mask_decoder.predict_masks(
            image_embeddings=image_embeddings,
            image_pe=pe.get_dense_pe(),
            sparse_prompt_embeddings=sparse,
            dense_prompt_embeddings=dense,
            repeat_image=False,
            high_res_features=[high_res_feat_s0, high_res_feat_s1] if self.high_res else None,
        )


def graph_module(name: str, model: Any) -> torch.nn.Module:
    """The torch module that graph ``name`` is traced from."""
    if name == "image_encoder":
        return ImageEncoderGraph(model).eval()
    if name == "memory_attention":
        return MemoryAttentionGraph(model.memory_attention).eval()
    if name == "memory_encoder":
        return MemoryEncoderGraph(model).eval()
    if name == "sam_heads":
        return SamHeadsGraph(model).eval()
    raise ValueError(f"unknown graph {name!r}; known: {', '.join(GRAPH_NAMES)}")


def example_inputs(
    spec: GraphSpec, seed: int = 0, num_memory_frames: int = 2, batch: int = 1
) -> tuple[torch.Tensor, ...]:
    """Random inputs for ``spec`` (tracing and verification); symbolic axes get sizes."""
    import torch

    g = torch.Generator().manual_seed(seed)
    out: list[torch.Tensor] = []
    hw = None
    for t in spec.inputs:
        if t.name == "curr":
            hw = int(t.shape[0])
        shape: list[int] = []
        for d in t.shape:
            if d == "num_memory_tokens":
                assert hw is not None
                shape.append(num_memory_frames * hw + 16)
            elif d == "num_points":
                shape.append(2)
            elif d == "batch":
                shape.append(batch)
            else:
                shape.append(int(d))
        if t.name == "num_obj_ptr_tokens":
            out.append(torch.tensor(16, dtype=torch.int64))
        elif t.name == "point_labels":
            out.append(torch.tensor([[1, 0]], dtype=torch.int32))
        elif t.name == "point_coords":
            out.append(torch.rand(shape, generator=g) * 100.0)
        elif t.name == "has_mask_input":
            out.append(torch.tensor(True))
        elif t.name in ("mask_for_mem",):
            out.append((torch.rand(shape, generator=g) > 0.5).float())
        else:
            out.append(torch.randn(shape, generator=g))
    return tuple(out)
