"""The ``onnx`` engine: the ``sam2`` engine's streaming code over ONNX Runtime graphs.

Only the compute backend differs from ``sam2``: :func:`tracker.engines.onnx.runtime.build_onnx_model`
returns a SAM2 model whose heavy submodules run in ONNX Runtime, and
:class:`tracker.engines.sam2.engine.Sam2Engine` drives it unchanged (memory bank, prompts,
objects, crop, degradation, per-stage timings). Graphs come from ``tracker export``;
the export directory's manifest must match (model, image size, file and checkpoint
hashes) or start-up fails.
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Callable, Hashable
from pathlib import Path
from typing import Any

from tracker.engines.base import EngineSession
from tracker.engines.sam2.engine import Sam2Engine
from tracker.engines.sam2.options import OPTION_HELP as SAM2_OPTION_HELP
from tracker.engines.sam2.options import parse_options as parse_sam2_options
from tracker.types import Frame

logger = logging.getLogger(__name__)

ENGINE_VERSION = "0.1.0"

OPTION_HELP: dict[str, str] = {
    "export_dir": "directory written by `tracker export` (graphs + manifest.json); required",
    "providers": "comma list of tensorrt | cuda | cpu, in priority order (default cpu); each must start",
    "intra_op_threads": "ONNX Runtime threads per session, an integer >= 0 (0: ORT default)",
    "optimization": "basic | extended | all (ORT graph optimisation level; default all)",
    "model": "must match the export (checked); " + SAM2_OPTION_HELP["model"],
    "image_size": "must match the export (checked); " + SAM2_OPTION_HELP["image_size"],
    "checkpoint": "SAM 2.1 checkpoint the export was made from"
    " (default: the path in the manifest; hash checked)",
    "device": "cpu | cuda: where the small torch parts and tensors live (cuda needs providers cuda/tensorrt)",
    "crop_margin_px": SAM2_OPTION_HELP["crop_margin_px"],
}


@dataclasses.dataclass(frozen=True)
class OnnxOptions:
    export_dir: Path
    providers: tuple[str, ...]
    intra_op_threads: int
    optimization: str
    model: str | None
    image_size: int | None
    checkpoint: str | None
    device: str
    crop_margin_px: int | None


def parse_options(options: dict[str, str]) -> OnnxOptions:
    """Validate string options; ValueError names the bad one. No torch/ORT import."""
    from tracker.engines.onnx.runtime import parse_providers

    unknown = sorted(set(options) - set(OPTION_HELP))
    if unknown:
        raise ValueError(
            f"unknown onnx engine option(s) {', '.join(unknown)}; known: {', '.join(sorted(OPTION_HELP))}"
        )
    export_dir = options.get("export_dir", "").strip()
    if not export_dir:
        raise ValueError("onnx engine needs export_dir=DIR (made by `tracker export`)")
    providers = parse_providers(options.get("providers", "cpu"))
    try:
        threads = int(options.get("intra_op_threads", "0"))
    except ValueError:
        raise ValueError(
            f"onnx engine option intra_op_threads={options['intra_op_threads']!r} is not an integer"
        ) from None
    if threads < 0:
        raise ValueError("onnx engine option intra_op_threads must be >= 0")
    optimization = options.get("optimization", "all").strip().lower()
    if optimization not in ("basic", "extended", "all"):
        raise ValueError(
            f"onnx engine option optimization={optimization!r}; allowed: {OPTION_HELP['optimization']}"
        )
    # Reuse the sam2 engine's validation for the shared options (random_weights only to pass
    # its "needs weights" rule; the weights really come from the manifest).
    sam2_opts = {k: options[k] for k in ("model", "image_size", "crop_margin_px") if k in options}
    device = options.get("device", "cpu").strip().lower()
    if device not in ("cpu", "cuda"):
        raise ValueError(f"onnx engine option device={device!r}; allowed: {OPTION_HELP['device']}")
    if device == "cuda" and providers == ("CPUExecutionProvider",):
        raise ValueError("onnx engine: device=cuda needs providers=cuda or tensorrt")
    s = parse_sam2_options({**sam2_opts, "random_weights": "true", "device": "cpu"}, cuda_available=False)
    return OnnxOptions(
        export_dir=Path(export_dir),
        providers=providers,
        intra_op_threads=threads,
        optimization=optimization,
        model=s.model if "model" in options else None,
        image_size=s.image_size if "image_size" in options else None,
        checkpoint=options.get("checkpoint", "").strip() or None,
        device=device,
        crop_margin_px=s.crop_margin_px,
    )


class OnnxEngine(Sam2Engine):
    """``Sam2Engine`` over an ONNX-Runtime-backed model (see module docstring)."""

    def __init__(
        self,
        opts: OnnxOptions,
        *,
        make_graph: Callable[[str, Path], Any] | None = None,
        name: str = "onnx",
        backend: str | None = None,
    ) -> None:
        """``make_graph``/``name``/``backend``: another runtime for the same graphs (TensorRT)."""
        from tracker.engines.onnx.manifest import Manifest
        from tracker.engines.onnx.runtime import OnnxModelSpec, RuntimeOptions, build_onnx_model, settings_for

        manifest = Manifest.read(opts.export_dir)
        manifest.verify(
            opts.export_dir,
            model=opts.model,
            image_size=opts.image_size,
            checkpoint=opts.checkpoint if opts.checkpoint else None,
            graph_names=("image_encoder", "memory_attention", "memory_encoder", "sam_heads"),
        )
        spec = OnnxModelSpec(
            export_dir=opts.export_dir,
            runtime=RuntimeOptions(opts.providers, opts.intra_op_threads, opts.optimization),
            device=opts.device,
            checkpoint=opts.checkpoint,
        )
        settings = settings_for(manifest, spec, opts.crop_margin_px)
        if settings.checkpoint and not opts.checkpoint:
            manifest.verify(opts.export_dir, checkpoint=settings.checkpoint)  # the recorded file, re-hashed
        model = build_onnx_model(manifest, spec, settings, make_graph)
        if manifest.weights.sharpen_logits:
            logger.warning(
                "onnx engine: export made with sharpened random logits (x%g): for tests/benchmarks only",
                manifest.weights.sharpen_logits,
            )
        super().__init__(settings, model=model)
        self.manifest = manifest
        if backend is None:
            import onnxruntime as ort

            backend = f"onnxruntime {ort.__version__}, {'/'.join(opts.providers)}"
        self.info = dataclasses.replace(
            self.info,
            name=name,
            version=(
                f"{ENGINE_VERSION} ({manifest.model} @{manifest.image_size}px, {backend},"
                f" export opset {manifest.opset})"
            ),
            device=opts.device,
        )

    @property
    def encoder_batches(self) -> bool:
        """Whether the exported image encoder takes a batch (exports before issue #13: batch 1)."""
        image = self.manifest.graphs["image_encoder"].inputs[0]
        return isinstance(image["shape"][0], str)

    def batch_key(self, session: EngineSession, frame: Frame) -> Hashable | None:
        if not self.encoder_batches:
            return None  # an old export: one frame per call (export again to batch)
        return super().batch_key(session, frame)

    @classmethod
    def from_options(cls, options: dict[str, str]) -> OnnxEngine:  # type: ignore[override]
        return cls(parse_options(options))


def make_engine(options: dict[str, Any]) -> OnnxEngine:
    """Registry factory: ``ENGINE_FACTORIES["onnx"]``."""
    return OnnxEngine.from_options(options)
