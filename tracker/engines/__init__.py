"""Tracking engines behind one small interface (see :mod:`tracker.engines.base`).

Engines are chosen by name, explicitly: an unknown or unavailable engine is an
error at start-up, never a silent fallback to another one.
"""

from __future__ import annotations

from collections.abc import Callable

from tracker.engines import onnx as onnx_engines
from tracker.engines import sam2 as sam2_engines
from tracker.engines.base import Engine, EngineInfo, EngineSession
from tracker.engines.flow import FlowEngine

# Importing the sam2 and onnx packages loads no torch, sam2, onnxruntime or openvino:
# their factories do, when an engine of theirs is built.


# name -> factory taking string options (from the command line or a config file)
ENGINE_FACTORIES: dict[str, Callable[[dict[str, str]], Engine]] = {
    "flow": FlowEngine.from_options,
    "sam2": sam2_engines.make_engine,
    "onnx": onnx_engines.make_engine,
    "openvino": onnx_engines.make_openvino_engine,
    "tensorrt": onnx_engines.make_tensorrt_engine,
}


def create_engine(name: str, options: dict[str, str] | None = None) -> Engine:
    """Build the engine called ``name``; raise ValueError naming the known ones otherwise."""
    try:
        factory = ENGINE_FACTORIES[name]
    except KeyError:
        raise ValueError(
            f"unknown engine {name!r}; available: {', '.join(sorted(ENGINE_FACTORIES))}"
        ) from None
    return factory(dict(options or {}))


__all__ = ["ENGINE_FACTORIES", "Engine", "EngineInfo", "EngineSession", "create_engine"]
