"""SAM2's rotary attention and memory attention rewritten with real cos/sin arithmetic.

Why: sam2's ``RoPEAttention`` rotates queries and keys with complex multiplication
(``torch.view_as_complex`` / ``torch.polar``), which neither ONNX exporter can express,
and it takes the number of object-pointer tokens to leave unrotated as a Python int, so a
traced graph would bake it in. Here the rotation is ``(x0*c - x1*s, x0*s + x1*c)`` over the
interleaved pairs sam2 uses, the cos/sin tables are real buffers taken from sam2's own
``freqs_cis`` (so the angles are bit-identical), and ``num_k_exclude_rope`` is a tensor:
keys are rotated with ``position % HW`` tables and the last ``num_k_exclude_rope`` of
them are put back unrotated with a ``where``, so the memory length *and* the number of
pointer tokens are dynamic axes of one graph. The installed package is not edited; these
modules borrow the original layers' weights. The export uses them (tracker/engines/onnx/), and so
does the PyTorch engine's bf16 CPU path, which swaps in a faster attention core
(tracker/engines/sam2/accel.py).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import torch

    # (q, k, v) -> attention output, each (B, heads, N, D); the default is SDPA.
    AttentionCore = Callable[[torch.Tensor, torch.Tensor, torch.Tensor], torch.Tensor]


def _module_base() -> type:
    import torch

    return torch.nn.Module


def rotate_pairs(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    """Rotate interleaved pairs ``(x[..., 2i], x[..., 2i+1])`` by angles given as cos/sin.

    ``x``: (..., N, D); ``cos``/``sin``: (N, D/2), broadcast over the leading axes. Same
    result as sam2's ``view_as_real(view_as_complex(x) * freqs_cis).flatten(3)``.
    """
    import torch

    pairs = x.reshape(*x.shape[:-1], x.shape[-1] // 2, 2)
    x0, x1 = pairs[..., 0], pairs[..., 1]
    out = torch.stack((x0 * cos - x1 * sin, x0 * sin + x1 * cos), dim=-1)
    return out.flatten(-2)


class RealRoPEAttention(_module_base()):  # type: ignore[misc]
    """sam2 ``RoPEAttention`` with real arithmetic; ``num_k_exclude_rope`` may be a tensor.

    Built from an existing ``RoPEAttention`` (shares its projection weights). The query
    grid (``feat_sizes``) is fixed at construction, as in an exported graph; keys may be
    any whole number of query grids plus the excluded tail (``rope_k_repeat``).
    ``attention`` replaces the softmax-attention core (default: SDPA, as sam2 calls it).

    ``values_after_attention``: attend over the unprojected values and project after, per
    head: ``softmax(QK^T) (M W^T + b) = (softmax(QK^T) M) W^T + b``, since each row of the
    attention weights sums to one. Equal in exact arithmetic (float rounding differs); it
    is used only where the values' input width is below the head width (SAM 2.1's memory
    cross-attention reads 64-wide memory into one 256-wide head), where the weighted sum
    over every memory token is then a quarter of the work.
    """

    def __init__(
        self, original: Any, attention: AttentionCore | None = None, values_after_attention: bool = False
    ) -> None:
        import torch

        super().__init__()
        self.attention = attention
        self.q_proj = original.q_proj
        self.k_proj = original.k_proj
        self.v_proj = original.v_proj
        self.out_proj = original.out_proj
        self.num_heads = int(original.num_heads)
        self.rope_k_repeat = bool(original.rope_k_repeat)
        freqs = original.freqs_cis.detach().cpu()  # (HW, D/2) complex64, sam2's own angles
        self.register_buffer("cos", torch.real(freqs).contiguous().float(), persistent=False)
        self.register_buffer("sin", torch.imag(freqs).contiguous().float(), persistent=False)
        v_in = int(self.v_proj.in_features)
        head = int(self.v_proj.out_features) // self.num_heads
        self.values_after_attention = values_after_attention and v_in < head

    def _heads(self, x: torch.Tensor) -> torch.Tensor:
        b, n, c = x.shape
        return x.reshape(b, n, self.num_heads, c // self.num_heads).transpose(1, 2)

    def forward(
        self,
        q: torch.Tensor,
        k: torch.Tensor,
        v: torch.Tensor,
        num_k_exclude_rope: torch.Tensor | int = 0,
    ) -> torch.Tensor:
        import torch
        import torch.nn.functional as F  # noqa: N812

        q = self._heads(self.q_proj(q))
        k = self._heads(self.k_proj(k))
        v = self._values_after(v) if self.values_after_attention else self._heads(self.v_proj(v))
        hw = self.cos.shape[0]
        q = rotate_pairs(q.float(), self.cos, self.sin).type_as(q)
        # Key positions cycle through the query grid (sam2 repeats freqs_cis per memory
        # frame); the last num_k_exclude_rope keys (object pointers) stay unrotated.
        n_k = k.shape[-2]
        pos = torch.arange(n_k, device=k.device)
        idx = torch.remainder(pos, hw)
        k_rot = rotate_pairs(k.float(), self.cos[idx], self.sin[idx]).type_as(k)
        if not self.rope_k_repeat and not torch.jit.is_tracing() and n_k != hw:
            raise ValueError(f"keys ({n_k}) must match queries ({hw}) without rope_k_repeat")
        n_ex = torch.as_tensor(num_k_exclude_rope, device=k.device).reshape(())
        keep_plain = (pos >= (n_k - n_ex)).reshape(1, 1, n_k, 1)
        k = torch.where(keep_plain, k, k_rot)
        out = F.scaled_dot_product_attention(q, k, v) if self.attention is None else self.attention(q, k, v)
        if self.values_after_attention:
            out = self._project_heads(out)
        b, h, n, c = out.shape
        return self.out_proj(out.transpose(1, 2).reshape(b, n, h * c))

    def _values_after(self, v: torch.Tensor) -> torch.Tensor:
        """The raw values, once per head: (B, heads, N, C_in)."""
        return v.unsqueeze(1).expand(-1, self.num_heads, -1, -1)

    def _project_heads(self, out: torch.Tensor) -> torch.Tensor:
        """Attention over raw values (B, heads, N, C_in) -> each head's projected values (B, heads, N, D)."""
        import torch

        weight = self.v_proj.weight.reshape(self.num_heads, -1, self.v_proj.in_features)  # (heads, D, C_in)
        out = torch.matmul(out, weight.transpose(1, 2).unsqueeze(0))
        if self.v_proj.bias is not None:
            out = out + self.v_proj.bias.reshape(1, self.num_heads, 1, -1)
        return out


class RealMemoryAttention(_module_base()):  # type: ignore[misc]
    """sam2 ``MemoryAttention`` (eval) over :class:`RealRoPEAttention` layers.

    Inputs are sam2's seq-first tensors: ``curr``/``curr_pos`` (HW, B, C), ``memory``/
    ``memory_pos`` (M, B, C_mem) and ``num_obj_ptr_tokens`` (a 0-d int64 tensor). Returns
    (HW, B, C) as ``MemoryAttention.forward`` does. Dropout is off (eval only).
    ``values_after_attention``: see :class:`RealRoPEAttention` (the cross-attention only).
    """

    def __init__(self, original: Any, values_after_attention: bool = False) -> None:
        import torch

        super().__init__()
        if not original.batch_first:
            raise ValueError("only batch_first memory attention (as in SAM 2.1) is supported")
        self.pos_enc_at_input = bool(original.pos_enc_at_input)
        self.norm = original.norm
        self.layers = torch.nn.ModuleList(
            _RealMemoryAttentionLayer(layer, values_after_attention) for layer in original.layers
        )

    def forward(
        self,
        curr: torch.Tensor,
        memory: torch.Tensor,
        curr_pos: torch.Tensor,
        memory_pos: torch.Tensor,
        num_obj_ptr_tokens: torch.Tensor,
    ) -> torch.Tensor:
        output = curr
        if self.pos_enc_at_input:
            output = output + 0.1 * curr_pos
        output = output.transpose(0, 1)
        curr_pos = curr_pos.transpose(0, 1)
        memory = memory.transpose(0, 1)
        memory_pos = memory_pos.transpose(0, 1)
        for layer in self.layers:
            output = layer(output, memory, memory_pos, curr_pos, num_obj_ptr_tokens)
        return self.norm(output).transpose(0, 1)


class _RealMemoryAttentionLayer(_module_base()):  # type: ignore[misc]
    """One ``MemoryAttentionLayer`` (eval): self-attn, cross-attn to memory, MLP."""

    def __init__(self, layer: Any, values_after_attention: bool = False) -> None:
        super().__init__()
        self.self_attn = RealRoPEAttention(layer.self_attn)
        self.cross_attn_image = RealRoPEAttention(
            layer.cross_attn_image, values_after_attention=values_after_attention
        )
        self.norm1, self.norm2, self.norm3 = layer.norm1, layer.norm2, layer.norm3
        self.linear1, self.linear2 = layer.linear1, layer.linear2
        self.activation = layer.activation
        self.pos_enc_at_attn = bool(layer.pos_enc_at_attn)
        self.pos_enc_at_cross_attn_queries = bool(layer.pos_enc_at_cross_attn_queries)
        self.pos_enc_at_cross_attn_keys = bool(layer.pos_enc_at_cross_attn_keys)

    def forward(
        self,
        tgt: torch.Tensor,
        memory: torch.Tensor,
        pos: torch.Tensor,
        query_pos: torch.Tensor,
        num_k_exclude_rope: torch.Tensor,
    ) -> torch.Tensor:
        tgt2 = self.norm1(tgt)
        q = k = tgt2 + query_pos if self.pos_enc_at_attn else tgt2
        tgt = tgt + self.self_attn(q, k, tgt2)
        tgt2 = self.norm2(tgt)
        tgt2 = self.cross_attn_image(
            tgt2 + query_pos if self.pos_enc_at_cross_attn_queries else tgt2,
            memory + pos if self.pos_enc_at_cross_attn_keys else memory,
            memory,
            num_k_exclude_rope,
        )
        tgt = tgt + tgt2
        tgt2 = self.linear2(self.activation(self.linear1(self.norm3(tgt))))
        return tgt + tgt2
