"""Options of the ``sam2`` engine: string map in, validated :class:`Sam2Settings` out.

Kept free of torch/sam2 imports so that validating a command line or a config file
costs nothing and fails before any weights are touched.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

# model name -> (canonical name, sam2 Hydra config)
_MODELS: dict[str, tuple[str, str]] = {}
for _canon, _short, _cfg in (
    ("sam2.1_hiera_tiny", ("t", "tiny"), "configs/sam2.1/sam2.1_hiera_t.yaml"),
    ("sam2.1_hiera_small", ("s", "small"), "configs/sam2.1/sam2.1_hiera_s.yaml"),
    ("sam2.1_hiera_base_plus", ("b+", "base_plus", "base+"), "configs/sam2.1/sam2.1_hiera_b+.yaml"),
    ("sam2.1_hiera_large", ("l", "large"), "configs/sam2.1/sam2.1_hiera_l.yaml"),
):
    for _alias in (_canon, *_short):
        _MODELS[_alias] = (_canon, _cfg)

# SAM2's Hiera trunk downsamples by 32 (stride-16 features after the FPN's scalp), so the
# square model input must be a multiple of 32; below 256 the 16x16 top-level feature map is
# smaller than Hiera's 14-token attention windows and nothing was validated there.
_MIN_IMAGE_SIZE = 256
_MAX_IMAGE_SIZE = 2048

OPTION_HELP: dict[str, str] = {
    "model": "sam2.1_hiera_tiny | sam2.1_hiera_small | sam2.1_hiera_base_plus | sam2.1_hiera_large"
    " (or t | s | b+ | l, tiny | small | base_plus | large)",
    "checkpoint": "path to a SAM 2.1 checkpoint (.pt) matching the model",
    "random_weights": "true | false (true: untrained weights, for tests and benchmarks only)",
    "seed": "an integer >= 0 (initialises random weights reproducibly)",
    "image_size": f"a multiple of 32 in [{_MIN_IMAGE_SIZE}, {_MAX_IMAGE_SIZE}]"
    " (default 1024 on cuda, 512 on cpu)",
    "device": "cpu | cuda (default cuda when available)",
    "dtype": "float32 | bfloat16 (bfloat16 autocast; on cpu only where the CPU has native bfloat16,"
    " i.e. avx512_bf16 or amx_bf16)",
    "crop_margin_px": "an integer >= 0 (track in a square crop around the prompts plus this margin), or off",
}

_TRUE = ("1", "true", "yes", "on")
_FALSE = ("0", "false", "no", "off")


@dataclass(frozen=True)
class Sam2Settings:
    """The engine's validated options (see :func:`parse_options`)."""

    model: str = "sam2.1_hiera_tiny"
    config: str = "configs/sam2.1/sam2.1_hiera_t.yaml"
    checkpoint: str | None = None
    random_weights: bool = False
    seed: int = 0
    image_size: int = 512
    device: str = "cpu"
    dtype: str = "float32"
    crop_margin_px: int | None = None  # None: no crop, the whole frame goes to the model


def _bad(name: str, text: str, why: str) -> ValueError:
    return ValueError(f"sam2 engine option {name}={text!r} {why}; allowed: {OPTION_HELP[name]}")


def _parse_bool(name: str, text: str) -> bool:
    value = text.strip().lower()
    if value in _TRUE:
        return True
    if value in _FALSE:
        return False
    raise _bad(name, text, "is not a boolean")


def _parse_int(name: str, text: str) -> int:
    try:
        value = float(text.strip())
    except ValueError:
        raise _bad(name, text, "is not an integer") from None
    if not math.isfinite(value) or value != int(value):
        raise _bad(name, text, "is not an integer")
    return int(value)


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
    options: dict[str, str], *, cuda_available: bool | None = None, cpu_bf16: bool | None = None
) -> Sam2Settings:
    """Validate string options into :class:`Sam2Settings`; ValueError names the bad option.

    ``cuda_available`` and ``cpu_bf16`` are for tests; by default torch is asked (which
    imports torch) only when ``device`` is not given or is ``cuda``, and /proc/cpuinfo only
    when bfloat16 is asked for on the CPU.
    """
    unknown = sorted(set(options) - set(OPTION_HELP))
    if unknown:
        raise ValueError(
            f"unknown sam2 engine option(s) {', '.join(unknown)}; known: {', '.join(sorted(OPTION_HELP))}"
        )

    model_text = options.get("model", "sam2.1_hiera_tiny")
    try:
        model, config = _MODELS[model_text.strip().lower()]
    except KeyError:
        raise _bad("model", model_text, "is not a known model") from None

    checkpoint = options.get("checkpoint", "").strip() or None
    random_weights = _parse_bool("random_weights", options.get("random_weights", "false"))
    if checkpoint and random_weights:
        raise ValueError(
            "sam2 engine options checkpoint and random_weights=true exclude each other; give one of them"
        )
    if not checkpoint and not random_weights:
        raise ValueError(
            "sam2 engine needs weights: give checkpoint=PATH (a SAM 2.1 .pt file) or, for tests and"
            " benchmarks only, random_weights=true"
        )

    seed = _parse_int("seed", options.get("seed", "0"))
    if seed < 0:
        raise _bad("seed", options["seed"], "is negative")

    device_text = options.get("device")
    if device_text is None:
        has_cuda = _cuda_available() if cuda_available is None else cuda_available
        device = "cuda" if has_cuda else "cpu"
    else:
        device = device_text.strip().lower()
        if device not in ("cpu", "cuda"):
            raise _bad("device", device_text, "is not allowed")
        if device == "cuda":
            has_cuda = _cuda_available() if cuda_available is None else cuda_available
            if not has_cuda:
                raise _bad("device", device_text, "is not available on this machine (no CUDA device)")

    dtype_text = options.get("dtype", "float32")
    dtype = {"float32": "float32", "fp32": "float32", "bfloat16": "bfloat16", "bf16": "bfloat16"}.get(
        dtype_text.strip().lower(), ""
    )
    if not dtype:
        raise _bad("dtype", dtype_text, "is not allowed")
    if dtype == "bfloat16" and device == "cpu":
        native = cpu_has_native_bf16() if cpu_bf16 is None else cpu_bf16
        if not native:
            raise _bad(
                "dtype",
                dtype_text,
                "needs device=cuda or a CPU with native bfloat16 (avx512_bf16 or amx_bf16); this CPU"
                " would emulate it, slower than float32",
            )

    size_text = options.get("image_size")
    if size_text is None:
        image_size = 1024 if device == "cuda" else 512
    else:
        image_size = _parse_int("image_size", size_text)
        if image_size % 32 or not _MIN_IMAGE_SIZE <= image_size <= _MAX_IMAGE_SIZE:
            raise _bad("image_size", size_text, "is out of range")

    crop_text = options.get("crop_margin_px", "off")
    crop_margin: int | None
    if crop_text.strip().lower() in ("", "off", "none", "false"):
        crop_margin = None
    else:
        crop_margin = _parse_int("crop_margin_px", crop_text)
        if crop_margin < 0:
            raise _bad("crop_margin_px", crop_text, "is negative")

    return Sam2Settings(
        model=model,
        config=config,
        checkpoint=checkpoint,
        random_weights=random_weights,
        seed=seed,
        image_size=image_size,
        device=device,
        dtype=dtype,
        crop_margin_px=crop_margin,
    )
