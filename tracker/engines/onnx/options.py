"""Options of the ``onnx``, ``openvino`` and ``tensorrt`` engines: the export, then each runtime's knobs.

All three engines run the graphs of one ``tracker export`` directory, so the options that
name and check the export (:class:`ExportOptions`) are declared once and shared; the
``model``, ``image_size`` and ``crop_margin_px`` options are the ``sam2`` engine's own.
No torch, onnxruntime, OpenVINO or TensorRT import (hence the providers' parser lives here, not in
:mod:`tracker.engines.onnx.runtime`): a bad option fails before anything is loaded.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from tracker.engines.sam2.options import crop_margin_option, image_size_option, model_option
from tracker.options import check_values, opt
from tracker.options import parse_options as parse_into

ONNX_OWNER = "onnx engine"
TENSORRT_OWNER = "tensorrt engine"
OPENVINO_OWNER = "openvino engine"
_MUST_MATCH = "must match the export, which is checked"

PROVIDER_NAMES = {
    "tensorrt": "TensorrtExecutionProvider",
    "cuda": "CUDAExecutionProvider",
    "cpu": "CPUExecutionProvider",
}


def parse_providers(text: str) -> tuple[str, ...]:
    """``"cuda,cpu"`` -> ORT provider names, in order.

    ValueError on an empty list, an unknown or a repeated name; its text says why, to follow
    ``providers='...'`` in the option error (see :func:`tracker.options.opt`).
    """
    names = [p.strip().lower() for p in text.split(",") if p.strip()]
    if not names:
        raise ValueError("is empty")
    bad = [n for n in names if n not in PROVIDER_NAMES]
    if bad:
        raise ValueError(f"names unknown provider(s) {', '.join(bad)}")
    if len(set(names)) != len(names):
        raise ValueError("names a provider twice")
    return tuple(PROVIDER_NAMES[n] for n in names)


@dataclass(frozen=True)
class ExportOptions:
    """The export both engines run, and what to check it against (the manifest's records)."""

    export_dir: Path = opt(help="directory written by `tracker export`, with graphs and manifest.json")
    model: str | None = model_option(None, help=_MUST_MATCH)
    image_size: int | None = image_size_option(None, help=_MUST_MATCH)
    checkpoint: str | None = opt(
        None,
        help="SAM 2.1 checkpoint the export was made from (default: the path in the manifest; hash checked)",
    )
    crop_margin_px: int | None = crop_margin_option()


@dataclass(frozen=True)
class OnnxOptions(ExportOptions):
    """The ``onnx`` engine's options: the export plus how ONNX Runtime runs it."""

    providers: tuple[str, ...] = opt(
        ("CPUExecutionProvider",),
        parse=parse_providers,
        allowed=f"a comma list of {' | '.join(PROVIDER_NAMES)}, in priority order",
        help="default cpu; each must start",
    )
    intra_op_threads: int = opt(0, minimum=0, help="ONNX Runtime threads per session; 0: ORT default")
    optimization: Literal["basic", "extended", "all"] = opt("all", help="ORT graph optimisation level")
    device: Literal["cpu", "cuda"] = opt(
        "cpu", help="where the small torch parts and tensors live (cuda needs providers cuda/tensorrt)"
    )

    def __post_init__(self) -> None:
        check_values(self, owner=ONNX_OWNER)
        if self.device == "cuda" and self.providers == ("CPUExecutionProvider",):
            raise ValueError("onnx engine: device=cuda needs providers=cuda or tensorrt")


@dataclass(frozen=True)
class TrtOptions(ExportOptions):
    """The ``tensorrt`` engine's options: the export plus how its TensorRT plans are built."""

    precision: Literal["fp32", "fp16"] = opt("fp16")
    cache_dir: Path | None = opt(
        None, help="where built engines are cached (default EXPORT_DIR/tensorrt_cache)"
    )
    max_memory_frames: int = opt(16, minimum=1, help="largest number of memory frames in one attention call")
    max_points: int = opt(16, minimum=1, help="largest number of prompt points")
    max_batch: int = opt(
        8, minimum=1, help="largest image-encoder batch, frames of several sessions in one call"
    )
    workspace_mb: int = opt(4096, minimum=1, help="TensorRT builder workspace in MiB")

    def __post_init__(self) -> None:
        check_values(self, owner=TENSORRT_OWNER)


@dataclass(frozen=True)
class OvOptions(ExportOptions):
    """The ``openvino`` engine's options: the export plus how OpenVINO Runtime compiles it."""

    precision: Literal["auto", "bf16", "f32"] = opt(
        "auto",
        help="inference precision of the graphs; auto: bf16 where the CPU multiplies bf16 natively"
        " (AMX or avx512_bf16), f32 elsewhere; bf16 where it does not is refused",
    )
    ov_device: str = opt("CPU", help="OpenVINO device that runs the graphs (only CPU is tested)")
    threads: int = opt(0, minimum=0, help="OpenVINO inference threads per graph; 0: one per core")
    cache_dir: Path | None = opt(
        None, help="where compiled graphs are cached (default EXPORT_DIR/openvino_cache)"
    )

    def __post_init__(self) -> None:
        check_values(self, owner=OPENVINO_OWNER)
        if not self.ov_device.strip():
            raise ValueError("openvino engine: ov_device is empty")


def parse_onnx_options(options: Mapping[str, str]) -> OnnxOptions:
    """Validate the ``onnx`` engine's string options; ValueError names the bad one."""
    return parse_into(OnnxOptions, options, owner=ONNX_OWNER)


def parse_tensorrt_options(options: Mapping[str, str]) -> TrtOptions:
    """Validate the ``tensorrt`` engine's string options; ValueError names the bad one."""
    return parse_into(TrtOptions, options, owner=TENSORRT_OWNER)


def parse_openvino_options(options: Mapping[str, str]) -> OvOptions:
    """Validate the ``openvino`` engine's string options; ValueError names the bad one."""
    return parse_into(OvOptions, options, owner=OPENVINO_OWNER)
