"""tracker/engines/sam2/accel.py: the engine's per-frame savings on its own model instance.

The cached position encoding must be exact (same bits as sam2's, every frame) and really
cached; the bf16 CPU attention core must be installed only for bf16 on CPU and agree with
sam2's own bf16 attention to within bf16 rounding.
"""

from __future__ import annotations

import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("sam2")

from tracker.engines.sam2.accel import CachedPositionEncoding, apply_fast_paths, bf16_matmul_attention  # noqa: E402
from tracker.engines.sam2.model import build_model  # noqa: E402
from tracker.engines.sam2.options import cpu_has_native_bf16, parse_options  # noqa: E402
from tracker.engines.sam2.rope import RealRoPEAttention  # noqa: E402

SIZE = 256


def _settings(dtype: str = "float32"):
    return parse_options(
        {"random_weights": "true", "image_size": str(SIZE), "device": "cpu", "dtype": dtype}, cpu_bf16=True
    )


def test_cached_position_encoding_is_exact_and_computed_once() -> None:
    plain = build_model(_settings())
    fast = build_model(_settings())
    done = apply_fast_paths(fast, _settings())
    assert done == ["cached neck position encoding"]  # float32: no attention swap
    assert isinstance(fast.image_encoder.neck.position_encoding, CachedPositionEncoding)
    assert apply_fast_paths(fast, _settings()) == []  # idempotent
    images = [torch.rand(1, 3, SIZE, SIZE, generator=torch.Generator().manual_seed(i)) for i in range(2)]
    with torch.inference_mode():
        outs = [(plain.forward_image(x), fast.forward_image(x)) for x in images]
    for a, b in outs:
        for key in ("vision_features",):
            assert torch.equal(a[key], b[key])
        for xa, xb in zip(
            a["backbone_fpn"] + a["vision_pos_enc"], b["backbone_fpn"] + b["vision_pos_enc"], strict=True
        ):
            assert torch.equal(xa, xb)
    # Second frame: the very same tensors, not recomputed copies.
    first, second = outs[0][1]["vision_pos_enc"], outs[1][1]["vision_pos_enc"]
    assert all(x.data_ptr() == y.data_ptr() for x, y in zip(first, second, strict=True))
    # A batch of frames (Sam2Session.step_batch): sam2's values, as a view on the one-frame cache.
    batch = torch.cat(images)
    with torch.inference_mode():
        a, b = plain.forward_image(batch), fast.forward_image(batch)
    for xa, xb, one in zip(a["vision_pos_enc"], b["vision_pos_enc"], first, strict=True):
        assert xb.shape[0] == 2 and torch.equal(xa, xb)
        assert xb.data_ptr() == one.data_ptr()


def test_bf16_core_matches_sdpa_to_bf16_rounding() -> None:
    g = torch.Generator().manual_seed(0)
    q, k, v = (torch.randn(1, 1, n, 64, generator=g) for n in (96, 400, 400))
    exact = torch.nn.functional.scaled_dot_product_attention(q, k, v)
    ours = bf16_matmul_attention(q, k, v)
    assert ours.dtype == torch.bfloat16
    err = float((ours.float() - exact).abs().max())
    assert 0.0 < err < 2e-2, err  # bf16 keeps ~3 significant digits


def test_bf16_attention_swap_only_for_bf16_on_cpu() -> None:
    model = build_model(_settings())
    originals = [(layer.self_attn, layer.cross_attn_image) for layer in model.memory_attention.layers]
    done = apply_fast_paths(model, _settings("bfloat16"))
    n = 2 * len(model.memory_attention.layers)
    assert done == ["cached neck position encoding", f"bf16 matmul attention in {n} memory-attention blocks"]
    for layer, (sa, ca) in zip(model.memory_attention.layers, originals, strict=True):
        for new, old in ((layer.self_attn, sa), (layer.cross_attn_image, ca)):
            assert isinstance(new, RealRoPEAttention) and new.attention is bf16_matmul_attention
            assert new.q_proj is old.q_proj  # the same weights, borrowed

    # The swapped memory attention agrees with sam2's own under bf16 autocast.
    reference = build_model(_settings())
    hw, mem = (SIZE // 16) ** 2, 2 * (SIZE // 16) ** 2 + 4
    g = torch.Generator().manual_seed(1)
    curr, curr_pos = torch.randn(hw, 1, 256, generator=g), torch.randn(hw, 1, 256, generator=g)
    memory, memory_pos = torch.randn(mem, 1, 64, generator=g), torch.randn(mem, 1, 64, generator=g)
    with torch.inference_mode(), torch.autocast("cpu", dtype=torch.bfloat16):
        a = reference.memory_attention(curr, memory, curr_pos, memory_pos, num_obj_ptr_tokens=4)
        b = model.memory_attention(curr, memory, curr_pos, memory_pos, num_obj_ptr_tokens=4)
    rel = float((a.float() - b.float()).abs().max() / a.float().abs().max())
    assert 0.0 < rel < 0.05, rel


@pytest.mark.skipif(
    not cpu_has_native_bf16(), reason="this CPU has no native bfloat16 (avx512_bf16/amx_bf16)"
)
def test_engine_installs_the_fast_paths() -> None:
    from tracker.engines.sam2.engine import Sam2Engine

    engine = Sam2Engine.from_options(
        {"random_weights": "true", "image_size": str(SIZE), "device": "cpu", "dtype": "bfloat16"}
    )
    layer = engine.model.memory_attention.layers[0]
    assert isinstance(layer.cross_attn_image, RealRoPEAttention)
    assert isinstance(engine.model.image_encoder.neck.position_encoding, CachedPositionEncoding)
