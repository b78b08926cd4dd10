"""The ``openvino`` engine: the exported SAM 2.1 graphs run by OpenVINO Runtime on the CPU.

Same model wiring as the ``onnx`` engine (:func:`tracker.engines.onnx.runtime.build_onnx_model`
with an OpenVINO graph factory), so streaming, memory, prompts and cross-stream batching are
the ``sam2`` engine's. Each ONNX graph of the export is compiled by OpenVINO for one device
and one inference precision:

* ``precision=auto`` picks ``bf16`` where the device lists ``BF16`` among its optimisation
  capabilities (a CPU with AMX or avx512_bf16) and ``f32`` elsewhere; ``bf16`` on a CPU
  without native bf16 is refused, never emulated. The precision is always set explicitly:
  OpenVINO's own CPU default is bf16 on such CPUs, so ``f32`` must be asked for.
* Compiled graphs are cached on disk (OpenVINO's model cache), in one folder per graph and
  precision named by the graph's SHA-256 from the manifest, so a re-exported graph can
  never be served from a stale cache; a restart imports the compiled graph instead of
  compiling it. A cache folder that cannot be written costs a compile per start, with a
  warning.

OpenVINO is optional: without it, start-up fails with :data:`NOT_INSTALLED`, never a
silent fallback to another runtime.
"""

from __future__ import annotations

import argparse
import dataclasses
import logging
import os
import threading
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from tracker.engines.availability import import_or_explain
from tracker.engines.onnx.engine import OnnxEngine
from tracker.engines.onnx.manifest import Manifest
from tracker.engines.onnx.options import ExportOptions, OnnxOptions, OvOptions, parse_openvino_options

if TYPE_CHECKING:
    import torch

logger = logging.getLogger(__name__)

NOT_INSTALLED = "OpenVINO is not installed: pip install 'rt-tracker[openvino]' (the CPU image has it)"


def import_openvino() -> Any:
    """``openvino``, or RuntimeError with :data:`NOT_INSTALLED`."""
    return import_or_explain("openvino", NOT_INSTALLED)


def parse_options(options: Mapping[str, str]) -> OvOptions:
    """Validate string options (see :class:`OvOptions`); ValueError names the bad one. No OpenVINO import."""
    return parse_openvino_options(options)


@dataclass(frozen=True)
class DeviceChoice:
    """The device and precision the graphs are compiled for, as GetInfo reports them."""

    device: str  # OpenVINO's device name ("CPU")
    full_name: str  # the device's own name ("Intel(R) Xeon(R) ...")
    precision: str  # "bf16" | "f32"
    threads: int  # inference threads per graph
    version: str  # OpenVINO's version


def choose_device(core: Any, opts: OvOptions) -> DeviceChoice:
    """Check the device exists and resolve ``precision=auto``; RuntimeError says what is wrong."""
    ov = import_openvino()
    available = list(core.available_devices)
    if opts.ov_device not in available:
        raise RuntimeError(
            f"openvino engine: device {opts.ov_device!r} is not available (OpenVINO {ov.__version__}"
            f" sees: {', '.join(available) or 'none'})"
        )
    caps = [str(c).upper() for c in core.get_property(opts.ov_device, "OPTIMIZATION_CAPABILITIES")]
    native_bf16 = "BF16" in caps
    precision = opts.precision
    if precision == "auto":
        precision = "bf16" if native_bf16 else "f32"
    elif precision == "bf16" and not native_bf16:
        raise RuntimeError(
            f"openvino engine: precision=bf16 needs a device that computes bf16 natively; {opts.ov_device}"
            f" lists {', '.join(caps)} (use precision=f32 or auto)"
        )
    threads = opts.threads or (os.cpu_count() or 1)
    full_name = str(core.get_property(opts.ov_device, "FULL_DEVICE_NAME"))
    return DeviceChoice(opts.ov_device, full_name, precision, threads, ov.__version__)


def compile_config(choice: DeviceChoice, cache_dir: Path | None) -> dict[str, str]:
    """OpenVINO properties for every graph: one latency-oriented stream, the chosen precision."""
    config = {
        "INFERENCE_PRECISION_HINT": choice.precision,  # "bf16" | "f32", OpenVINO's own names
        "PERFORMANCE_HINT": "LATENCY",
        "NUM_STREAMS": "1",
        "INFERENCE_NUM_THREADS": str(choice.threads),
    }
    if cache_dir is not None:
        config["CACHE_DIR"] = str(cache_dir)
    return config


def writable_cache(folder: Path) -> bool:
    """Create ``folder`` if needed; False (with a warning) where it cannot be written.

    The cache only saves start-up time, so an unwritable one (a read-only model volume)
    costs a compile at every start, said in the log, and does not stop the server.
    """
    try:
        folder.mkdir(parents=True, exist_ok=True)
        probe = folder / ".write-probe"
        probe.write_bytes(b"")
        probe.unlink()
    except OSError as exc:
        logger.warning(
            "openvino: compiled graphs are not cached (%s); every start compiles them again."
            " Set the engine option cache_dir to a writable folder",
            exc,
        )
        return False
    return True


def graph_cache_dir(cache_dir: Path, graph: str, onnx_sha256: str, precision: str) -> Path:
    """One cache folder per graph file and precision: a new export never meets an old compiled graph."""
    return Path(cache_dir) / f"{graph}-{onnx_sha256[:24]}-{precision}"


class OvGraph:
    """One compiled graph, called like :class:`tracker.engines.onnx.runtime.OrtGraph` (CPU tensors).

    Each calling thread has its own infer request (requests are not thread-safe). Inputs
    are shared with OpenVINO, not copied (the call is synchronous, so they outlive it);
    outputs are copied out, because an infer request reuses its output buffers on the next
    call while SAM2 keeps outputs across calls (a frame's features, an object's logits).
    """

    def __init__(self, compiled: Any, name: str) -> None:
        self.compiled = compiled
        self.name = name
        self.input_names = [_port_name(p) for p in compiled.inputs]
        self.output_names = [_port_name(p) for p in compiled.outputs]
        self._local = threading.local()

    def _request(self) -> Any:
        request = getattr(self._local, "request", None)
        if request is None:
            request = self.compiled.create_infer_request()
            self._local.request = request
        return request

    def __call__(self, *inputs: torch.Tensor) -> list[torch.Tensor]:
        import torch

        # (np.ascontiguousarray would turn a 0-d flag into shape (1,), which the graph refuses.)
        feeds = [np.require(x.detach().cpu().numpy(), requirements="C") for x in inputs]
        result = self._request().infer(feeds, share_inputs=True, share_outputs=False)
        return [torch.from_numpy(result[i]) for i in range(len(self.output_names))]


def _port_name(port: Any) -> str:
    """The ONNX name of a graph input or output.

    OpenVINO gives a port every name its tensor had; an input that feeds a Cast also
    carries the exporter's internal name (``/layers.0/.../Cast_output_0``), which starts
    with a slash, unlike the names the export declares.
    """
    names = sorted(port.get_names())
    declared = [n for n in names if not n.startswith("/")]
    return (declared or names or [port.get_any_name()])[0]


def compile_graph(core: Any, onnx_path: Path, config: dict[str, str], device: str, name: str) -> OvGraph:
    """Compile (or import from the cache) one ONNX graph; RuntimeError names the graph on failure."""
    try:
        compiled = core.compile_model(str(onnx_path), device, config)
    except Exception as exc:
        raise RuntimeError(
            f"openvino engine: could not compile {onnx_path.name} for {device}: {exc}"
        ) from exc
    return OvGraph(compiled, name)


class OpenVinoEngine(OnnxEngine):
    """The ``onnx`` engine's model with OpenVINO graphs; its thread count is fixed when they compile."""

    def __init__(self, opts: OnnxOptions, choice: DeviceChoice, **kwargs: Any) -> None:
        super().__init__(opts, **kwargs)
        self.choice = choice

    def set_intra_op_threads(self, threads: int) -> None:
        """Torch's pools for the glue; OpenVINO's threads were set at compile time (option ``threads``)."""
        super().set_intra_op_threads(threads)
        if threads < self.choice.threads:
            logger.warning(
                "openvino engine: its graphs were compiled for %d threads but the scheduler gives each"
                " worker %d; with several workers set the engine option threads=%d so they do not"
                " oversubscribe the cores",
                self.choice.threads,
                threads,
                threads,
            )


def make_engine(options: dict[str, str]) -> OpenVinoEngine:
    """Registry factory: ``ENGINE_FACTORIES["openvino"]``. Fails loudly without OpenVINO."""
    opts = parse_options(options)
    ov = import_openvino()

    core = ov.Core()
    choice = choose_device(core, opts)
    manifest = Manifest.read(opts.export_dir)
    cache_dir = opts.cache_dir or opts.export_dir / "openvino_cache"
    # The same export checks as the onnx engine; the graphs run in OpenVINO, the glue in torch on the CPU.
    shared = {f.name: getattr(opts, f.name) for f in dataclasses.fields(ExportOptions)}
    onnx_opts = OnnxOptions(**shared, providers=(), device="cpu")

    def make_graph(name: str, path: Path) -> OvGraph:
        folder = graph_cache_dir(cache_dir, name, manifest.graphs[name].sha256, choice.precision)
        if not writable_cache(folder):
            return compile_graph(core, path, compile_config(choice, None), choice.device, name)
        cached = any(folder.iterdir())
        graph = compile_graph(core, path, compile_config(choice, folder), choice.device, name)
        logger.info("openvino: %s %s (%s)", "imported" if cached else "compiled and cached", name, folder)
        return graph

    engine = OpenVinoEngine(
        onnx_opts,
        choice,
        make_graph=make_graph,
        name="openvino",
        backend=f"OpenVINO {choice.version}, {choice.device} {choice.precision}, {choice.threads} threads",
    )
    device = f"{choice.device} ({choice.full_name}), {choice.precision}"
    engine.info = dataclasses.replace(engine.info, device=device)
    return engine


def main(argv: list[str] | None = None) -> int:
    """Compile (or find cached) the OpenVINO graphs of one export: engines/Makefile's ``openvino``."""

    from tracker.engines.onnx.engine import prebuild

    p = argparse.ArgumentParser(prog="python -m tracker.engines.onnx.openvino", description=main.__doc__)
    p.add_argument("--precision", default="auto", help="auto | bf16 | f32")
    return prebuild(p, argv, make_engine, "OpenVINO compiled graphs")


if __name__ == "__main__":
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(message)s")
    raise SystemExit(main())
