"""Per-frame savings for the PyTorch engine that leave sam2's model code untouched.

Both act on the engine's own model instance, never on the installed package:

* :class:`CachedPositionEncoding` (every precision and device, exact). The image encoder's
  FPN neck asks sam2's ``PositionEmbeddingSine`` for a sine encoding of every feature level
  on every frame. sam2 caches the values but hands out ``cache[None].repeat(B, 1, 1, 1)``,
  a fresh copy gathered from a permuted layout: for the 128x128x256 level at 512 px that
  copy alone measured 24-32 ms per frame on 2 CPU cores. The values depend only on the
  feature-map size, so this wrapper computes them once (with sam2's own code) and returns
  the same tensor each time. Nothing in sam2 writes into a position encoding in place; the
  parity tests compare against sam2's predictor bit for bit, so a change there would show.

* :func:`bf16_matmul_attention` (CPU with ``dtype=bfloat16`` only, not exact: a bf16 path).
  PyTorch's CPU SDPA kernel runs no faster in bf16 than in float32 (about 42 ms for one
  cross-attention of 1,024 queries over 7,200 memory tokens on 2 Zen 4 cores), while plain
  bf16 matrix products use the CPU's bf16 dot-product instructions: the same attention as
  two bf16 products and a softmax took about 25 ms. Memory attention runs it 4 times per
  object per frame. Its error against float32 (about 1e-3 on unit-scale inputs) is of the
  order of bf16's own; the bf16 tests compare whole tracks against float32.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import torch

    from tracker.engines.sam2.options import Sam2Settings

from tracker.engines.sam2.rope import _module_base

logger = logging.getLogger(__name__)


class CachedPositionEncoding(_module_base()):  # type: ignore[misc]
    """sam2's ``PositionEmbeddingSine``, computed once per (height, width, device).

    The cached tensor is returned as is (no copy); callers must not write into it, and
    sam2 does not. A batch of B frames (Sam2Session.step_batch) gets a B-fold broadcast view of
    the one-frame encoding (the values do not depend on the frame), not a B-fold copy:
    at 1024 px the finest level alone is 64 MiB per frame.
    """

    def __init__(self, original: Any) -> None:
        super().__init__()
        self.original = original
        self._cache: dict[tuple[int, int, str], torch.Tensor] = {}

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        key = (int(x.shape[-2]), int(x.shape[-1]), str(x.device))
        cached = self._cache.get(key)
        if cached is None:
            cached = self.original(x[:1]).contiguous()
            self._cache[key] = cached
        if x.shape[0] == 1:
            return cached
        return cached.expand(x.shape[0], -1, -1, -1)


def bf16_matmul_attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
    """Softmax attention as bf16 matrix products: ``softmax(q k^T / sqrt(d)) v``.

    Runs with autocast off so that the softmax stays in bf16 (its reduction accumulates in
    float32 inside the kernel); autocast would upcast it and convert the 1,024 x 7,200
    score matrix twice, which costs more than the kernel saves.
    """
    import torch

    with torch.autocast(q.device.type, enabled=False):
        q, k, v = (t.to(torch.bfloat16) for t in (q, k, v))
        scores = torch.matmul(q * (q.shape[-1] ** -0.5), k.transpose(-1, -2))
        return torch.matmul(torch.softmax(scores, dim=-1), v)


def apply_fast_paths(model: Any, settings: Sam2Settings) -> list[str]:
    """Install the savings that apply to ``settings`` on ``model``; returns what was done.

    Idempotent, and a no-op for models whose parts are not sam2's (the ONNX engine's
    shells, which have no neck or rotary attention to wrap).
    """
    from sam2.modeling.position_encoding import PositionEmbeddingSine
    from sam2.modeling.sam.transformer import RoPEAttention

    from tracker.engines.sam2.rope import RealRoPEAttention

    done: list[str] = []
    neck = getattr(getattr(model, "image_encoder", None), "neck", None)
    if neck is not None and isinstance(getattr(neck, "position_encoding", None), PositionEmbeddingSine):
        neck.position_encoding = CachedPositionEncoding(neck.position_encoding)
        done.append("cached neck position encoding")
    if settings.device == "cpu" and settings.dtype == "bfloat16":
        swapped = 0
        for layer in getattr(getattr(model, "memory_attention", None), "layers", []):
            for name in ("self_attn", "cross_attn_image"):
                attn = getattr(layer, name, None)
                if isinstance(attn, RoPEAttention):
                    setattr(layer, name, RealRoPEAttention(attn, attention=bf16_matmul_attention))
                    swapped += 1
        if swapped:
            done.append(f"bf16 matmul attention in {swapped} memory-attention blocks")
    if done:
        logger.info("sam2 engine fast paths: %s", "; ".join(done))
    return done
