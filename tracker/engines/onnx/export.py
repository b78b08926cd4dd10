"""Export SAM 2.1's per-frame graphs to ONNX, verify each against torch, write the manifest.

Uses the TorchScript exporter (``dynamo=False``): it handles sam2's modules as they are
(after the RoPE rewrite in :mod:`tracker.engines.sam2.rope`) and gives plain opset-17 graphs that
ONNX Runtime and TensorRT both take. Every graph is run once under ONNX Runtime on random
inputs and compared with its torch module before the manifest is written, so a directory
with a manifest holds graphs that were checked.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Any

import numpy as np

from tracker.engines.onnx.graphs import GRAPH_NAMES, GraphSpec, example_inputs, graph_module, graph_specs
from tracker.engines.onnx.manifest import RANDOM_WEIGHTS, GraphRecord, Manifest, WeightsRecord, sha256_file

logger = logging.getLogger(__name__)

DEFAULT_OPSET = 17
VERIFY_TOLERANCE = 1e-3  # max abs diff, fp32 on random inputs (measured: ~1e-5)


@dataclass(frozen=True)
class GraphCheck:
    name: str
    max_abs_diff: float


def _export_one(module: Any, spec: GraphSpec, path: Path, opset: int) -> None:
    import torch

    inputs = example_inputs(spec)
    with torch.no_grad():
        torch.onnx.export(
            module,
            inputs,
            str(path),
            input_names=[t.name for t in spec.inputs],
            output_names=[t.name for t in spec.outputs],
            dynamic_axes=spec.dynamic_axes(),
            opset_version=opset,
            do_constant_folding=True,
            dynamo=False,
        )


def verify_graph(module: Any, spec: GraphSpec, path: Path, seed: int = 1) -> float:
    """Max abs difference between the ONNX graph (ORT, CPU) and its torch module.

    Uses inputs with a memory length (and, for the image encoder, a batch size) other
    than the traced one, so a dynamic axis that was baked in fails here rather than in a
    session.
    """
    import onnxruntime as ort
    import torch

    sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    inputs = example_inputs(spec, seed=seed, num_memory_frames=3, batch=2)
    if spec.name == "sam_heads":  # also exercise a different point count and the no-mask branch
        inputs = (
            *inputs[:3],
            torch.rand(1, 3, 2) * 50,
            torch.tensor([[1, 1, 0]], dtype=torch.int32),
            inputs[5],
            torch.tensor(False),
        )
    feeds = {t.name: x.numpy() for t, x in zip(spec.inputs, inputs, strict=True)}
    got = sess.run([t.name for t in spec.outputs], feeds)
    with torch.no_grad():
        want = module(*inputs)
    if isinstance(want, torch.Tensor):
        want = (want,)
    diff = 0.0
    for t, a, b in zip(spec.outputs, got, want, strict=True):
        if tuple(a.shape) != tuple(b.shape):
            raise RuntimeError(
                f"graph {spec.name} output {t.name}: shape {a.shape} vs torch {tuple(b.shape)}"
            )
        diff = max(diff, float(np.abs(a - b.numpy()).max()))
    return diff


def export_model(
    model: Any,
    out_dir: Path,
    *,
    model_name: str,
    config: str,
    weights: WeightsRecord,
    opset: int = DEFAULT_OPSET,
    graphs: tuple[str, ...] = GRAPH_NAMES,
) -> tuple[Manifest, list[GraphCheck]]:
    """Export ``graphs`` of the built ``model`` into ``out_dir`` and write its manifest.

    Raises RuntimeError if a graph disagrees with its torch module by more than
    :data:`VERIFY_TOLERANCE` (no manifest is written then).
    """
    import torch

    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    specs = graph_specs(model)
    manifest = Manifest(
        model=model_name,
        config=config,
        image_size=int(model.image_size),
        opset=opset,
        weights=weights,
        exporter={"torch": torch.__version__, "sam2": _version("sam2"), "onnx": _version("onnx")},
    )
    checks: list[GraphCheck] = []
    for name in graphs:
        spec = specs[name]
        module = graph_module(name, model)
        path = out_dir / f"{name}.onnx"
        logger.info("exporting %s -> %s", name, path)
        _export_one(module, spec, path, opset)
        diff = verify_graph(module, spec, path)
        logger.info("graph %s: max abs diff vs torch %.3g", name, diff)
        if not diff <= VERIFY_TOLERANCE:
            raise RuntimeError(f"graph {name} differs from torch by {diff:.3g} > {VERIFY_TOLERANCE}")
        checks.append(GraphCheck(name, diff))
        manifest.graphs[name] = GraphRecord(
            file=path.name,
            sha256=sha256_file(path),
            inputs=[_spec_dict(t) for t in spec.inputs],
            outputs=[_spec_dict(t) for t in spec.outputs],
        )
    manifest.write(out_dir)
    return manifest, checks


def weights_record(checkpoint: str | None, seed: int, sharpen_logits: float | None = None) -> WeightsRecord:
    if checkpoint:
        return WeightsRecord(
            source="checkpoint", sha256=sha256_file(Path(checkpoint)), path=str(Path(checkpoint).resolve())
        )
    return WeightsRecord(
        source=RANDOM_WEIGHTS, sha256=RANDOM_WEIGHTS, seed=seed, sharpen_logits=sharpen_logits
    )


def _spec_dict(t: Any) -> dict[str, Any]:
    return {"name": t.name, "shape": list(t.shape), "dtype": t.dtype}


def _version(pkg: str) -> str:
    try:
        return version(pkg)
    except PackageNotFoundError:
        return "unknown"
