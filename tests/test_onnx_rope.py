"""tracker.engines.sam2.rope: the real-arithmetic RoPE equals sam2's complex RoPEAttention (GitHub #4)."""

from __future__ import annotations

import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("sam2")

from tracker.engines.sam2.rope import RealMemoryAttention, RealRoPEAttention  # noqa: E402

TOL = 1e-5


@pytest.fixture(scope="module")
def memory_attention():  # type: ignore[no-untyped-def]
    """The memory attention of SAM 2.1 tiny at 256 px (16x16 grid), random weights."""
    from tracker.engines.sam2.model import build_model
    from tracker.engines.sam2.options import parse_options

    model = build_model(parse_options({"random_weights": "true", "image_size": "256", "device": "cpu"}))
    return model.memory_attention


def _rand(*shape: int, seed: int = 0) -> torch.Tensor:
    return torch.randn(*shape, generator=torch.Generator().manual_seed(seed))


@pytest.mark.parametrize("frames,ptrs", [(1, 0), (2, 4), (7, 16), (3, 64)])
def test_cross_attention_matches_sam2(memory_attention, frames: int, ptrs: int) -> None:  # type: ignore[no-untyped-def]
    from sam2.modeling.sam.transformer import RoPEAttention

    orig = memory_attention.layers[0].cross_attn_image
    assert isinstance(orig, RoPEAttention) and orig.rope_k_repeat
    ours = RealRoPEAttention(orig)
    hw = orig.freqs_cis.shape[0]
    q = _rand(1, hw, 256, seed=1)
    k = _rand(1, frames * hw + ptrs, 64, seed=2)
    v = _rand(1, frames * hw + ptrs, 64, seed=3)
    with torch.no_grad():
        want = orig(q, k.clone(), v, num_k_exclude_rope=ptrs)
        got = ours(q, k, v, torch.tensor(ptrs))
    assert float((want - got).abs().max()) <= TOL


def test_self_attention_matches_sam2(memory_attention) -> None:  # type: ignore[no-untyped-def]
    orig = memory_attention.layers[1].self_attn
    ours = RealRoPEAttention(orig)
    hw = orig.freqs_cis.shape[0]
    x = _rand(1, hw, 256, seed=4)
    with torch.no_grad():
        assert float((orig(x, x, x) - ours(x, x, x)).abs().max()) <= TOL


def test_wrong_pointer_count_is_detected(memory_attention) -> None:  # type: ignore[no-untyped-def]
    """The comparison can fail: rotating the pointer tokens (exclusion ignored) is caught."""
    orig = memory_attention.layers[0].cross_attn_image
    ours = RealRoPEAttention(orig)
    hw = orig.freqs_cis.shape[0]
    q, k, v = _rand(1, hw, 256, seed=5), _rand(1, 2 * hw + 16, 64, seed=6), _rand(1, 2 * hw + 16, 64, seed=7)
    with torch.no_grad():
        want = orig(q, k.clone(), v, num_k_exclude_rope=16)
        got = ours(q, k, v, torch.tensor(0))
    assert float((want - got).abs().max()) > 10 * TOL


def test_whole_memory_attention_matches_sam2(memory_attention) -> None:  # type: ignore[no-untyped-def]
    ours = RealMemoryAttention(memory_attention).eval()
    hw = memory_attention.layers[0].cross_attn_image.freqs_cis.shape[0]
    curr, pos = _rand(hw, 1, 256, seed=8), _rand(hw, 1, 256, seed=9)
    for frames, ptrs in ((1, 0), (6, 16)):
        mem, mem_pos = _rand(frames * hw + ptrs, 1, 64, seed=10), _rand(frames * hw + ptrs, 1, 64, seed=11)
        with torch.no_grad():
            want = memory_attention(
                curr=[curr], curr_pos=[pos], memory=mem, memory_pos=mem_pos, num_obj_ptr_tokens=ptrs
            )
            got = ours(curr, mem, pos, mem_pos, torch.tensor(ptrs))
        assert float((want - got).abs().max()) <= TOL, (frames, ptrs)
