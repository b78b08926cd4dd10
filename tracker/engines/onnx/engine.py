"""The ``onnx`` engine: the ``sam2`` engine's streaming code over ONNX Runtime graphs.

Only the compute backend differs from ``sam2``: :func:`tracker.engines.onnx.runtime.build_onnx_model`
returns a SAM2 model whose heavy submodules run in ONNX Runtime, and
:class:`tracker.engines.sam2.engine.Sam2Engine` drives it unchanged (memory bank, prompts,
objects, crop, degradation, per-stage timings). Graphs come from ``tracker export``;
the export directory's manifest must match (model, image size, file and checkpoint
hashes) or start-up fails.
"""

from __future__ import annotations

import argparse
import dataclasses
import logging
from collections.abc import Callable, Hashable, Mapping
from pathlib import Path
from typing import Any

from tracker.engines.base import EngineSession
from tracker.engines.onnx.manifest import Manifest
from tracker.engines.onnx.options import OnnxOptions, parse_onnx_options
from tracker.engines.sam2.engine import Sam2Engine
from tracker.types import Frame

logger = logging.getLogger(__name__)

ENGINE_VERSION = "0.1.0"


def parse_options(options: Mapping[str, str]) -> OnnxOptions:
    """Validate string options (see :class:`OnnxOptions`); ValueError names the bad one."""
    return parse_onnx_options(options)


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
        """Whether the exported image encoder takes a batch (older exports: batch 1 only)."""
        image = self.manifest.graphs["image_encoder"].inputs[0]
        return isinstance(image["shape"][0], str)

    def batch_key(self, session: EngineSession, frame: Frame) -> Hashable | None:
        if not self.encoder_batches:
            return None  # an old export: one frame per call (export again to batch)
        return super().batch_key(session, frame)

    @classmethod
    def from_options(cls, options: dict[str, str]) -> OnnxEngine:  # type: ignore[override]
        return cls(parse_options(options))


def prebuild(
    parser: argparse.ArgumentParser, argv: list[str] | None, make: Callable[[dict[str, str]], Any], what: str
) -> int:
    """Build an exported engine once, so its compiled artefacts are cached before a server starts.

    ``parser`` has the runtime's own flags, named as its engine options; this adds
    ``--export-dir`` and ``--cache-dir``. A bad option or a missing runtime exits 2 with its message.
    """
    parser.add_argument("--export-dir", required=True, help="a `tracker export` directory")
    parser.add_argument("--cache-dir", default="", help=f"where {what} go (default: inside the export)")
    args = parser.parse_args(argv)
    options = {key: str(value) for key, value in vars(args).items() if value not in ("", None)}
    try:
        engine = make(options)
    except (ValueError, RuntimeError, FileNotFoundError) as exc:
        parser.error(str(exc))
    logger.info("%s ready: %s", what, engine.info.version)
    return 0


def make_engine(options: dict[str, Any]) -> OnnxEngine:
    """Registry factory: ``ENGINE_FACTORIES["onnx"]``."""
    return OnnxEngine.from_options(options)
