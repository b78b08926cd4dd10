"""The ``onnx`` (ONNX Runtime), ``openvino`` and ``tensorrt`` engines: SAM 2.1 per-frame graphs.

Importing this package imports neither torch, sam2, onnxruntime nor openvino; building an engine does.
See :mod:`tracker.engines.onnx.engine` (the engine), :mod:`tracker.engines.onnx.export` (``tracker export``)
and :mod:`tracker.engines.sam2.rope` (the complex-free rotary attention).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from tracker.engines.base import Engine


def make_engine(options: dict[str, str]) -> Engine:
    """Registry factory for ``tracker.engines.ENGINE_FACTORIES["onnx"]``."""
    from tracker.engines.onnx.engine import OnnxEngine

    return OnnxEngine.from_options(options)


def make_openvino_engine(options: dict[str, str]) -> Engine:
    """Registry factory for ``tracker.engines.ENGINE_FACTORIES["openvino"]``."""
    from tracker.engines.onnx.openvino import make_engine as make_ov

    return make_ov(options)


def make_tensorrt_engine(options: dict[str, str]) -> Engine:
    """Registry factory for ``tracker.engines.ENGINE_FACTORIES["tensorrt"]``."""
    from tracker.engines.onnx.tensorrt import make_engine as make_trt

    return make_trt(options)


__all__ = ["make_engine", "make_openvino_engine", "make_tensorrt_engine"]
