"""Tracking engines behind one small interface (see :mod:`tracker.engines.base`).

Engines are chosen by name, explicitly: an unknown or unavailable engine is an
error at start-up, never a silent fallback to another one.
"""

from __future__ import annotations

from collections.abc import Callable

from tracker.engines.base import Engine, EngineInfo, EngineSession


def _make_flow(options: dict[str, str]) -> Engine:
    from tracker.engines.flow import FlowEngine

    return FlowEngine.from_options(options)


def _make_sam2(options: dict[str, str]) -> Engine:
    from tracker.engines.sam2 import make_engine

    return make_engine(options)


def _make_onnx(options: dict[str, str]) -> Engine:
    from tracker.engines.onnx import make_engine

    return make_engine(options)


def _make_openvino(options: dict[str, str]) -> Engine:
    from tracker.engines.onnx import make_openvino_engine

    return make_openvino_engine(options)


def _make_tensorrt(options: dict[str, str]) -> Engine:
    from tracker.engines.onnx import make_tensorrt_engine

    return make_tensorrt_engine(options)


# name -> factory taking string options (from the command line or a config file)
ENGINE_FACTORIES: dict[str, Callable[[dict[str, str]], Engine]] = {
    "flow": _make_flow,
    "sam2": _make_sam2,
    "onnx": _make_onnx,
    "openvino": _make_openvino,
    "tensorrt": _make_tensorrt,
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
