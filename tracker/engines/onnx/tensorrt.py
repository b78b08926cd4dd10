"""The ``tensorrt`` engine: the exported SAM 2.1 graphs as TensorRT engines.

Same model wiring as the ``onnx`` engine (:func:`tracker.engines.onnx.runtime.build_onnx_model`
with a TensorRT graph factory), so streaming, memory and prompts are still the ``sam2``
engine's. Each ONNX graph is compiled with the TensorRT Python API (FP32 or FP16, one
optimisation profile covering the dynamic memory length and point count) and the
serialized engine is cached on disk under a key of GPU model, TensorRT version, ONNX
SHA-256, precision and profile, because building takes minutes and is only valid for that
exact combination. Each session thread gets its own execution context and CUDA stream
(contexts are not thread-safe; streams keep sessions from serialising on one queue).

TensorRT is optional: without it, start-up fails with :data:`NOT_INSTALLED`.
Written against the TensorRT 10 API (``execute_async_v3``, named I/O tensors); 8.6's
explicit-batch network flag is handled.
"""

from __future__ import annotations

import argparse
import dataclasses
import hashlib
import json
import logging
import threading
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from tracker.engines.availability import import_or_explain
from tracker.engines.onnx.manifest import Manifest
from tracker.engines.onnx.options import ExportOptions, OnnxOptions, TrtOptions, parse_tensorrt_options

if TYPE_CHECKING:
    import torch

    from tracker.engines.onnx.engine import OnnxEngine

logger = logging.getLogger(__name__)

NOT_INSTALLED = "TensorRT is not installed: pip install tensorrt from NVIDIA's index"
CACHE_FORMAT = 1


def import_tensorrt() -> Any:
    """``tensorrt``, or RuntimeError with :data:`NOT_INSTALLED`."""
    return import_or_explain("tensorrt", NOT_INSTALLED)


def parse_options(options: Mapping[str, str]) -> TrtOptions:
    """Validate string options (see :class:`TrtOptions`); ValueError names the bad one. No TensorRT import."""
    return parse_tensorrt_options(options)


# -- cache -------------------------------------------------------------------------------------

Profile = dict[str, tuple[tuple[int, ...], tuple[int, ...], tuple[int, ...]]]  # input -> (min, opt, max)


def cache_key(gpu_name: str, trt_version: str, onnx_sha256: str, precision: str, profile: Profile) -> str:
    """Hex key of a built engine: it is valid only for exactly these inputs.

    A serialized TensorRT engine is specific to the GPU model and TensorRT version it was
    built with, and of course to the graph, precision and shape profile.
    """
    payload = {
        "format": CACHE_FORMAT,
        "gpu": gpu_name.strip(),
        "tensorrt": trt_version.strip(),
        "onnx_sha256": onnx_sha256.lower(),
        "precision": precision,
        "profile": {k: [list(v) for v in profile[k]] for k in sorted(profile)},
    }
    return hashlib.sha256(json.dumps(payload, sort_keys=True).encode()).hexdigest()


def cache_path(cache_dir: Path, graph: str, key: str) -> Path:
    return Path(cache_dir) / f"{graph}-{key[:24]}.engine"


def profile_for(
    graph: str, inputs: list[dict[str, Any]], opts: TrtOptions, hw: int, ptr_tokens: int
) -> Profile:
    """Shape ranges for the dynamic inputs of ``graph`` (from the manifest's I/O specs).

    Memory: from one token (a no-memory token) to ``max_memory_frames`` frames plus all
    pointer tokens; optimised for SAM 2.1's usual 7 frames + 16 pointers. Points: 1 to
    ``max_points``, optimised for 2 (a box). Image-encoder batch (exports with a dynamic
    batch axis, see Sam2Session.step_batch): 1 to ``max_batch``, optimised for ``max_batch`` (under
    load the scheduler fills batches). Written against TensorRT's documented
    ``IOptimizationProfile.set_shape``; not yet run on a GPU.
    """
    out: Profile = {}
    for t in inputs:
        shape = t["shape"]
        if not any(isinstance(d, str) for d in shape):
            continue

        def dims(sym: dict[str, int], shape: list[Any] = shape) -> tuple[int, ...]:
            return tuple(sym[d] if isinstance(d, str) else int(d) for d in shape)

        lo = {"num_memory_tokens": 1, "num_points": 1, "batch": 1}
        opt = {"num_memory_tokens": 7 * hw + ptr_tokens, "num_points": 2, "batch": opts.max_batch}
        hi = {
            "num_memory_tokens": opts.max_memory_frames * hw + ptr_tokens,
            "num_points": opts.max_points,
            "batch": opts.max_batch,
        }
        out[t["name"]] = (dims(lo), dims(opt), dims(hi))
    return out


def build_serialized(onnx_path: Path, precision: str, profile: Profile, workspace_mb: int) -> bytes:
    """Compile ``onnx_path`` with TensorRT; RuntimeError with the parser's errors."""
    trt = import_tensorrt()
    log = trt.Logger(trt.Logger.WARNING)
    builder = trt.Builder(log)
    major = int(trt.__version__.split(".")[0])
    flags = 0 if major >= 10 else 1 << int(trt.NetworkDefinitionCreationFlag.EXPLICIT_BATCH)
    network = builder.create_network(flags)
    parser = trt.OnnxParser(network, log)
    if not parser.parse_from_file(str(onnx_path)):
        errors = "; ".join(str(parser.get_error(i)) for i in range(parser.num_errors))
        raise RuntimeError(f"TensorRT could not parse {onnx_path.name}: {errors}")
    config = builder.create_builder_config()
    config.set_memory_pool_limit(trt.MemoryPoolType.WORKSPACE, workspace_mb << 20)
    if precision == "fp16":
        config.set_flag(trt.BuilderFlag.FP16)
    if profile:
        p = builder.create_optimization_profile()
        for i in range(network.num_inputs):
            inp = network.get_input(i)
            if inp.name not in profile:
                continue
            lo, opt, hi = profile[inp.name]
            if inp.is_shape_tensor:
                p.set_shape_input(inp.name, lo, opt, hi)
            else:
                p.set_shape(inp.name, lo, opt, hi)
        config.add_optimization_profile(p)
    serialized = builder.build_serialized_network(network, config)
    if serialized is None:
        raise RuntimeError(f"TensorRT failed to build an engine from {onnx_path.name} ({precision})")
    return bytes(serialized)


def load_or_build(
    graph: str, onnx_path: Path, onnx_sha256: str, opts: TrtOptions, profile: Profile, cache_dir: Path
) -> bytes:
    """The serialized engine from the cache, built (and cached atomically) on a miss."""
    import torch

    trt = import_tensorrt()
    key = cache_key(torch.cuda.get_device_name(), trt.__version__, onnx_sha256, opts.precision, profile)
    path = cache_path(cache_dir, graph, key)
    if path.is_file():
        logger.info("tensorrt: %s from cache %s", graph, path)
        return path.read_bytes()
    logger.info("tensorrt: building %s (%s); this takes a while, cached as %s", graph, opts.precision, path)
    data = build_serialized(onnx_path, opts.precision, profile, opts.workspace_mb)
    cache_dir.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    tmp.write_bytes(data)
    tmp.replace(path)
    return data


# -- runtime -----------------------------------------------------------------------------------


class TrtGraph:
    """One TensorRT engine, called like :class:`tracker.engines.onnx.runtime.OrtGraph` (CUDA tensors).

    Execution context and CUDA stream are per thread, i.e. per session. The work is
    ordered after the caller's current stream and the caller's stream waits for it, so
    no host synchronisation is needed.
    """

    def __init__(self, serialized: bytes, name: str) -> None:
        trt = import_tensorrt()
        self.name = name
        self._trt = trt
        self._runtime = trt.Runtime(trt.Logger(trt.Logger.WARNING))
        self.engine = self._runtime.deserialize_cuda_engine(serialized)
        if self.engine is None:
            raise RuntimeError(
                f"TensorRT could not load the cached engine of {name} (rebuild: delete the cache)"
            )
        names = [self.engine.get_tensor_name(i) for i in range(self.engine.num_io_tensors)]
        inp = trt.TensorIOMode.INPUT
        self.input_names = [n for n in names if self.engine.get_tensor_mode(n) == inp]
        self.output_names = [n for n in names if self.engine.get_tensor_mode(n) != inp]
        self._local = threading.local()

    def _context(self) -> tuple[Any, Any]:
        import torch

        ctx = getattr(self._local, "ctx", None)
        if ctx is None:
            ctx = (self.engine.create_execution_context(), torch.cuda.Stream())
            self._local.ctx = ctx
        return ctx

    def _torch_dtype(self, name: str) -> torch.dtype:
        import torch

        trt = self._trt
        return {
            trt.float32: torch.float32,
            trt.float16: torch.float16,
            trt.int32: torch.int32,
            trt.int64: torch.int64,
            trt.bool: torch.bool,
        }[self.engine.get_tensor_dtype(name)]

    def __call__(self, *inputs: torch.Tensor) -> list[torch.Tensor]:
        import torch

        context, stream = self._context()
        caller = torch.cuda.current_stream()
        stream.wait_stream(caller)
        kept = []
        for name, x in zip(self.input_names, inputs, strict=True):
            x = x.to(device="cuda", dtype=self._torch_dtype(name)).contiguous()
            x.record_stream(stream)
            kept.append(x)
            if context.set_input_shape(name, tuple(x.shape)) is False:
                raise RuntimeError(
                    f"tensorrt {self.name}: input {name} of shape {tuple(x.shape)} is outside the engine's"
                    " optimisation profile (raise max_memory_frames / max_points / max_batch)"
                )
            context.set_tensor_address(name, x.data_ptr())
        outs = []
        with torch.cuda.stream(stream):
            for name in self.output_names:
                y = torch.empty(
                    tuple(context.get_tensor_shape(name)), dtype=self._torch_dtype(name), device="cuda"
                )
                context.set_tensor_address(name, y.data_ptr())
                outs.append(y)
        if not context.execute_async_v3(stream.cuda_stream):
            raise RuntimeError(f"TensorRT execution of {self.name} failed")
        caller.wait_stream(stream)
        for y in outs:
            y.record_stream(caller)
        return [y.float() if y.dtype == torch.float16 else y for y in outs]


def make_engine(options: dict[str, str]) -> OnnxEngine:
    """Registry factory: ``ENGINE_FACTORIES["tensorrt"]``. Fails loudly without TensorRT/CUDA."""
    opts = parse_options(options)
    trt = import_tensorrt()
    import torch

    if not torch.cuda.is_available():
        raise RuntimeError("the tensorrt engine needs a CUDA device; none is available")
    from tracker.engines.onnx.engine import OnnxEngine

    manifest = Manifest.read(opts.export_dir)
    # The same export checks as the onnx engine; the graphs run in TensorRT, the torch parts on cuda.
    shared = {f.name: getattr(opts, f.name) for f in dataclasses.fields(ExportOptions)}
    onnx_opts = OnnxOptions(**shared, providers=(), device="cuda")
    cache_dir = opts.cache_dir or opts.export_dir / "tensorrt_cache"
    hw = (manifest.image_size // 16) ** 2
    ptr_tokens = 64  # SAM 2.1: up to 16 pointers, each split into hidden_dim / mem_dim = 4 tokens

    def make_graph(name: str, path: Path) -> TrtGraph:
        rec = manifest.graphs[name]
        profile = profile_for(name, rec.inputs, opts, hw, ptr_tokens)
        return TrtGraph(load_or_build(name, path, rec.sha256, opts, profile, cache_dir), name)

    engine = OnnxEngine(
        onnx_opts,
        make_graph=make_graph,
        name="tensorrt",
        backend=f"TensorRT {trt.__version__} {opts.precision}",
    )
    engine.max_batch_size = opts.max_batch  # the profile's limit
    return engine


def main(argv: list[str] | None = None) -> int:
    """Build (or find cached) the TensorRT plans of one export: engines/Makefile's ``tensorrt``."""

    from tracker.engines.onnx.engine import prebuild

    p = argparse.ArgumentParser(prog="python -m tracker.engines.onnx.tensorrt", description=main.__doc__)
    p.add_argument("--precision", default="fp16", help="fp16 | fp32")
    p.add_argument(
        "--max-batch", dest="max_batch", default="8", help="largest encoder batch the profile allows"
    )
    return prebuild(p, argv, make_engine, "TensorRT plans")


if __name__ == "__main__":
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(message)s")
    raise SystemExit(main())
