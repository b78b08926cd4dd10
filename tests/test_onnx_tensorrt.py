"""The tensorrt engine: cache-key logic (everywhere) and a GPU build-and-run (TensorRT only)."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest

from tracker.engines.onnx.tensorrt import (
    NOT_INSTALLED,
    TrtOptions,
    cache_key,
    cache_path,
    import_tensorrt,
    parse_options,
    profile_for,
)

HAS_TRT = importlib.util.find_spec("tensorrt") is not None
PROFILE = {"memory": ((1, 1, 64), (1856, 1, 64), (4160, 1, 64))}
SHA = "ab" * 32


def test_cache_key_depends_on_every_part() -> None:
    base = cache_key("NVIDIA H100 80GB HBM3", "10.3.0", SHA, "fp16", PROFILE)
    assert base == cache_key(" NVIDIA H100 80GB HBM3 ", "10.3.0", SHA.upper(), "fp16", dict(PROFILE))
    others = {
        cache_key("NVIDIA H200", "10.3.0", SHA, "fp16", PROFILE),
        cache_key("NVIDIA H100 80GB HBM3", "10.4.0", SHA, "fp16", PROFILE),
        cache_key("NVIDIA H100 80GB HBM3", "10.3.0", "cd" * 32, "fp16", PROFILE),
        cache_key("NVIDIA H100 80GB HBM3", "10.3.0", SHA, "fp32", PROFILE),
        cache_key("NVIDIA H100 80GB HBM3", "10.3.0", SHA, "fp16", {"memory": ((1, 1, 64),) * 3}),
    }
    assert base not in others and len(others) == 5
    assert cache_path(Path("/c"), "memory_attention", base).name == f"memory_attention-{base[:24]}.engine"


def test_profile_covers_dynamic_axes_only() -> None:
    opts = TrtOptions(export_dir=Path("x"), max_memory_frames=10, max_points=8, max_batch=4)
    inputs = [
        {"name": "curr", "shape": [256, 1, 256], "dtype": "float32"},
        {"name": "memory", "shape": ["num_memory_tokens", 1, 64], "dtype": "float32"},
        {"name": "point_coords", "shape": [1, "num_points", 2], "dtype": "float32"},
        {"name": "image", "shape": ["batch", 3, 512, 512], "dtype": "float32"},
    ]
    prof = profile_for("g", inputs, opts, hw=256, ptr_tokens=64)
    assert prof == {
        "memory": ((1, 1, 64), (7 * 256 + 64, 1, 64), (10 * 256 + 64, 1, 64)),
        "point_coords": ((1, 1, 2), (1, 2, 2), (1, 8, 2)),
        "image": ((1, 3, 512, 512), (4, 3, 512, 512), (4, 3, 512, 512)),
    }


def test_options() -> None:
    with pytest.raises(ValueError, match="export_dir"):
        parse_options({})
    with pytest.raises(ValueError, match="precision"):
        parse_options({"export_dir": "d", "precision": "int8"})
    assert parse_options({"export_dir": "d", "precision": "FP32"}).precision == "fp32"
    assert parse_options({"export_dir": "d"}).max_batch == 8
    with pytest.raises(ValueError, match="max_batch"):
        parse_options({"export_dir": "d", "max_batch": "0"})


@pytest.mark.skipif(HAS_TRT, reason="TensorRT is installed")
def test_missing_tensorrt_is_a_clear_error() -> None:
    from tracker.engines.onnx.tensorrt import make_engine

    with pytest.raises(RuntimeError, match="TensorRT is not installed"):
        import_tensorrt()
    with pytest.raises(RuntimeError, match="pip install tensorrt"):
        make_engine({"export_dir": "anything"})


@pytest.mark.slow
@pytest.mark.skipif(not HAS_TRT, reason=NOT_INSTALLED)
def test_tensorrt_engine_tracks_like_onnx(tmp_path: Path) -> None:
    """FP32 TensorRT vs the PyTorch engine on the GPU: same clip as the onnx parity test."""
    torch = pytest.importorskip("torch")
    if not torch.cuda.is_available():
        pytest.skip("no CUDA device")
    import numpy as np

    from tests.sam2_random import sharpened_random_engine
    from tests.test_onnx_parity import engine_parity
    from tracker.engines.export import export_main
    from tracker.engines.onnx.tensorrt import make_engine

    exp = tmp_path / "export"
    assert (
        export_main(["--random-weights", "--image-size", "256", "--out", str(exp), "--sharpen-logits", "40"])
        == 0
    )
    trt_engine = make_engine({"export_dir": str(exp), "precision": "fp32"})
    assert any((exp / "tensorrt_cache").glob("*.engine"))
    ref = sharpened_random_engine(256, device="cuda")
    stats, _ = engine_parity(ref, trt_engine, tmp_path / "clip")
    assert not stats.missing
    assert stats.min_iou >= 0.99, stats  # TF32/kernels differ from torch on GPU: looser than the CPU bound
    assert np.isfinite(stats.max_abs_logit_diff_low_res)
