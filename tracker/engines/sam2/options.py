"""Options of the ``sam2`` engine: string map in, validated :class:`Sam2Settings` out.

Kept free of torch/sam2 imports so that validating a command line or a config file
costs nothing and fails before any weights are touched.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, replace
from typing import Any, Literal

from tracker.options import check_values, opt, option_help
from tracker.options import parse_options as parse_into

# canonical model name -> sam2 Hydra config, and the short names accepted for each model
MODEL_CONFIGS: dict[str, str] = {
    "sam2.1_hiera_tiny": "configs/sam2.1/sam2.1_hiera_t.yaml",
    "sam2.1_hiera_small": "configs/sam2.1/sam2.1_hiera_s.yaml",
    "sam2.1_hiera_base_plus": "configs/sam2.1/sam2.1_hiera_b+.yaml",
    "sam2.1_hiera_large": "configs/sam2.1/sam2.1_hiera_l.yaml",
}
MODEL_ALIASES: dict[str, str] = {
    **dict.fromkeys(("t", "tiny"), "sam2.1_hiera_tiny"),
    **dict.fromkeys(("s", "small"), "sam2.1_hiera_small"),
    **dict.fromkeys(("b+", "base_plus", "base+"), "sam2.1_hiera_base_plus"),
    **dict.fromkeys(("l", "large"), "sam2.1_hiera_large"),
}

# SAM2's Hiera trunk downsamples by 32 (stride-16 features after the FPN's scalp), so the
# square model input must be a multiple of 32; below 256 the 16x16 top-level feature map is
# smaller than Hiera's 14-token attention windows and nothing was validated there.
_MIN_IMAGE_SIZE = 256
_MAX_IMAGE_SIZE = 2048

OWNER = "sam2 engine"  # names the options in error messages


def model_option(default: str | None, help: str = "") -> Any:
    """The ``model`` option (canonical names and aliases); the onnx engines declare theirs with it."""
    return opt(default, choices=tuple(MODEL_CONFIGS), aliases=MODEL_ALIASES, help=help)


def image_size_option(default: int | None, help: str) -> Any:
    """The ``image_size`` option: a multiple of 32 in the validated range."""
    return opt(default, minimum=_MIN_IMAGE_SIZE, maximum=_MAX_IMAGE_SIZE, multiple_of=32, help=help)


def crop_margin_option() -> Any:
    """The ``crop_margin_px`` option: a margin in pixels, or off (no crop: the whole frame)."""
    return opt(
        None,
        minimum=0,
        none=("off", "", "none", "false"),
        help="track in a square crop around the prompts plus this margin",
    )


@dataclass(frozen=True)
class Sam2Settings:
    """The engine's validated options (see :func:`parse_options`); each field but ``config`` is one."""

    model: str = model_option("sam2.1_hiera_tiny")
    checkpoint: str | None = opt(None, help="path to a SAM 2.1 checkpoint (.pt) matching the model")
    random_weights: bool = opt(False, help="true: untrained weights, for tests and benchmarks only")
    seed: int = opt(0, minimum=0, help="initialises random weights reproducibly")
    image_size: int = image_size_option(512, "default 1024 on cuda, 512 on cpu")
    device: Literal["cpu", "cuda"] = opt("cpu", help="default cuda when available")
    dtype: Literal["float32", "bfloat16"] = opt(
        "float32",
        aliases={"fp32": "float32", "bf16": "bfloat16"},
        help="bfloat16 autocast; on cpu only where the CPU has native bfloat16, i.e. avx512_bf16 or amx_bf16",
    )
    crop_margin_px: int | None = crop_margin_option()  # None: no crop, the whole frame goes to the model

    def __post_init__(self) -> None:
        check_values(self, owner=OWNER)
        if self.checkpoint and self.random_weights:
            raise ValueError(
                "sam2 engine options checkpoint and random_weights=true exclude each other; give one of them"
            )
        if not self.checkpoint and not self.random_weights:
            raise ValueError(
                "sam2 engine needs weights: give checkpoint=PATH (a SAM 2.1 .pt file) or, for tests and"
                " benchmarks only, random_weights=true"
            )

    @property
    def config(self) -> str:
        """The sam2 Hydra config of :attr:`model`."""
        return MODEL_CONFIGS[self.model]


def _bad(name: str, text: str, why: str) -> ValueError:
    return ValueError(f"{OWNER} option {name}={text!r} {why}; allowed: {option_help(Sam2Settings)[name]}")


def _cuda_available() -> bool:
    import torch

    return bool(torch.cuda.is_available())


# CPU flags (Linux /proc/cpuinfo names) of instructions that compute in bfloat16 natively.
_NATIVE_BF16_FLAGS = frozenset({"avx512_bf16", "amx_bf16"})


def cpu_has_native_bf16(cpuinfo: str | None = None) -> bool:
    """Whether this CPU multiplies bfloat16 in hardware (AVX512-BF16 or AMX-BF16).

    Without those instructions oneDNN emulates bfloat16 with float32 arithmetic plus
    conversions, so bfloat16 autocast would cost accuracy *and* time; the option refuses
    it there instead. Read from /proc/cpuinfo (Linux); elsewhere the answer is False.
    """
    if cpuinfo is None:
        try:
            with open("/proc/cpuinfo", encoding="utf-8", errors="replace") as fh:
                cpuinfo = fh.read()
        except OSError:
            return False
    for line in cpuinfo.splitlines():
        if line.startswith("flags"):
            return bool(_NATIVE_BF16_FLAGS & set(line.split(":", 1)[-1].split()))
    return False


def parse_options(
    options: Mapping[str, str], *, cuda_available: bool | None = None, cpu_bf16: bool | None = None
) -> Sam2Settings:
    """Validate string options into :class:`Sam2Settings`; ValueError names the bad option.

    What this machine can run is checked here, not in the settings: ``device`` (default
    cuda when available) and ``image_size`` (default 1024 on cuda, 512 on cpu) follow it,
    and bfloat16 on the CPU needs native instructions. ``cuda_available`` and ``cpu_bf16``
    are for tests; by default torch is asked (which imports torch) only when ``device`` is
    not given or is ``cuda``, and /proc/cpuinfo only when bfloat16 is asked for on the CPU.
    """
    settings = parse_into(Sam2Settings, options, owner=OWNER)

    def has_cuda() -> bool:
        return _cuda_available() if cuda_available is None else cuda_available

    if "device" not in options:
        settings = replace(settings, device="cuda" if has_cuda() else "cpu")
    elif settings.device == "cuda" and not has_cuda():
        raise _bad("device", options["device"], "is not available on this machine (no CUDA device)")
    if "image_size" not in options and settings.device == "cuda":
        settings = replace(settings, image_size=1024)
    if settings.dtype == "bfloat16" and settings.device == "cpu":
        native = cpu_has_native_bf16() if cpu_bf16 is None else cpu_bf16
        if not native:
            raise _bad(
                "dtype",
                options.get("dtype", settings.dtype),
                "needs device=cuda or a CPU with native bfloat16 (avx512_bf16 or amx_bf16); this CPU"
                " would emulate it, slower than float32",
            )
    return settings
