"""The onnx engine's options, provider policy and manifest checks (fast; no export)."""

from __future__ import annotations

from pathlib import Path

import pytest

from tracker.engines.onnx.engine import parse_options
from tracker.engines.onnx.manifest import (
    RANDOM_WEIGHTS,
    GraphRecord,
    Manifest,
    ManifestError,
    WeightsRecord,
    sha256_file,
)
from tracker.engines.onnx.options import parse_providers

GRAPHS = ("image_encoder", "memory_attention", "memory_encoder", "sam_heads")


def _fake_export(d: Path, image_size: int = 256, weights: WeightsRecord | None = None) -> Manifest:
    """A manifest over placeholder files: enough for every check that runs before ORT."""
    d.mkdir(parents=True, exist_ok=True)
    m = Manifest(
        model="sam2.1_hiera_tiny",
        config="configs/sam2.1/sam2.1_hiera_t.yaml",
        image_size=image_size,
        opset=17,
        weights=weights or WeightsRecord(source=RANDOM_WEIGHTS, seed=0),
    )
    for name in GRAPHS:
        p = d / f"{name}.onnx"
        p.write_bytes(name.encode())
        m.graphs[name] = GraphRecord(p.name, sha256_file(p), [], [])
    m.write(d)
    return m


def test_import_is_light() -> None:
    import subprocess
    import sys

    code = "import sys, tracker.engines.onnx; print('torch' in sys.modules, 'onnxruntime' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.split() == ["False", "False"]


def test_providers_are_parsed_explicitly() -> None:
    assert parse_providers("cuda, cpu") == ("CUDAExecutionProvider", "CPUExecutionProvider")
    with pytest.raises(ValueError, match="unknown"):
        parse_providers("cpu,rocm")
    with pytest.raises(ValueError, match="empty"):
        parse_providers(" , ")
    with pytest.raises(ValueError, match="twice"):
        parse_providers("cpu,cpu")


def test_options_validation(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="export_dir"):
        parse_options({})
    with pytest.raises(ValueError, match="unknown onnx engine option"):
        parse_options({"export_dir": str(tmp_path), "random_weights": "true"})
    with pytest.raises(ValueError, match="needs providers"):
        parse_options({"export_dir": str(tmp_path), "device": "cuda"})
    o = parse_options({"export_dir": str(tmp_path), "providers": "cpu", "image_size": "512", "model": "t"})
    assert o.image_size == 512 and o.model == "sam2.1_hiera_tiny" and o.providers == ("CPUExecutionProvider",)


def test_manifest_round_trip_and_hashes(tmp_path: Path) -> None:
    m = _fake_export(tmp_path)
    back = Manifest.read(tmp_path)
    assert back == m
    back.verify(tmp_path, model="sam2.1_hiera_tiny", image_size=256, graph_names=GRAPHS)
    (tmp_path / "sam_heads.onnx").write_bytes(b"tampered")
    with pytest.raises(ManifestError, match=r"sam_heads.*SHA-256"):
        back.verify(tmp_path)


def test_engine_refuses_mismatching_exports(tmp_path: Path) -> None:
    from tracker.engines.onnx.engine import OnnxEngine

    _fake_export(tmp_path)
    with pytest.raises(ManifestError, match="image size 256, not 512"):
        OnnxEngine(parse_options({"export_dir": str(tmp_path), "image_size": "512"}))
    with pytest.raises(ManifestError, match=r"not sam2\.1_hiera_small"):
        OnnxEngine(parse_options({"export_dir": str(tmp_path), "model": "small"}))
    with pytest.raises(ManifestError, match=r"no manifest\.json"):
        OnnxEngine(parse_options({"export_dir": str(tmp_path / "nothing")}))
    ckpt = tmp_path / "other.pt"
    ckpt.write_bytes(b"not the checkpoint")
    with pytest.raises(ManifestError, match="random weights"):
        OnnxEngine(parse_options({"export_dir": str(tmp_path), "checkpoint": str(ckpt)}))


def test_engine_refuses_a_different_checkpoint(tmp_path: Path) -> None:
    from tracker.engines.onnx.engine import OnnxEngine

    ckpt = tmp_path / "a.pt"
    ckpt.write_bytes(b"weights A")
    _fake_export(tmp_path / "exp", weights=WeightsRecord("checkpoint", sha256_file(ckpt), str(ckpt)))
    other = tmp_path / "b.pt"
    other.write_bytes(b"weights B")
    with pytest.raises(ManifestError, match="export was made from one with"):
        OnnxEngine(parse_options({"export_dir": str(tmp_path / "exp"), "checkpoint": str(other)}))
    ckpt.write_bytes(b"weights A, edited")  # the recorded file itself changed
    with pytest.raises(ManifestError, match="export was made from one with"):
        OnnxEngine(parse_options({"export_dir": str(tmp_path / "exp")}))


def test_unavailable_provider_fails_loudly(tmp_path: Path) -> None:
    ort = pytest.importorskip("onnxruntime")
    from tracker.engines.onnx.engine import OnnxEngine

    if "CUDAExecutionProvider" in ort.get_available_providers():
        pytest.skip("this onnxruntime has CUDA")
    _fake_export(tmp_path)
    with pytest.raises(RuntimeError, match="CUDAExecutionProvider not available"):
        OnnxEngine(parse_options({"export_dir": str(tmp_path), "providers": "cuda,cpu"}))
