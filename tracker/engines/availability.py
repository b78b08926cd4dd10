"""Which engines this installation can serve, and why not the others.

A bare ``pip install rt-tracker`` has the ``flow`` engine only; ``sam2``, ``onnx``,
``openvino`` and ``tensorrt`` need extra libraries (see pyproject's extras and the Dockerfile's ``gpu``
target). The server asks here before building an engine, so that a missing library is a
logged reason at start-up and the engine is absent from ``GetInfo``, never an ImportError
at the first session. Finding a module uses :func:`importlib.util.find_spec`, which does
not import it: a flow-only server never loads torch or onnxruntime.
"""

from __future__ import annotations

import importlib.metadata
import importlib.util
import logging
import os
import sys
from dataclasses import dataclass, field
from typing import Any

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class EngineRequirement:
    """The import modules an engine needs and where they come from."""

    modules: tuple[str, ...]  # top-level import names
    install_hint: str  # what to install when one is missing


# The onnx, openvino and tensorrt engines reuse the sam2 engine's streaming, memory and prompt code
# (torch and sam2) around their exported graphs.
REQUIREMENTS: dict[str, EngineRequirement] = {
    "flow": EngineRequirement((), "nothing: part of the base install"),
    "sam2": EngineRequirement(("torch", "torchvision", "sam2"), "pip install 'rt-tracker[sam2]'"),
    "onnx": EngineRequirement(
        ("torch", "sam2", "onnxruntime"),
        "pip install 'rt-tracker[sam2,onnx]' (onnxruntime-gpu instead of onnxruntime on a GPU host)",
    ),
    "openvino": EngineRequirement(
        ("torch", "sam2", "openvino"),
        "pip install 'rt-tracker[sam2,openvino]' (the CPU image has it)",
    ),
    "tensorrt": EngineRequirement(
        ("torch", "sam2", "tensorrt"),
        "pip install 'rt-tracker[sam2]' tensorrt-cu13 (NVIDIA's wheels; the rt-tracker gpu image has them)",
    ),
}

# import name -> the rt-tracker extra that installs it (for clear errors outside serve)
MODULE_EXTRAS: dict[str, str] = {
    "SimpleITK": "io",
    "pydicom": "io",
    "torch": "sam2",
    "torchvision": "sam2",
    "sam2": "sam2",
    "onnx": "onnx",
    "onnxruntime": "onnx",
    "openvino": "openvino",
    "pycocotools": "overseer",
    "pynvml": "bench",
}


def import_or_explain(name: str, message: str) -> Any:
    """Import the optional module ``name``, or raise RuntimeError(``message``): what to install."""
    try:
        return importlib.import_module(name)
    except ImportError as exc:
        raise RuntimeError(message) from exc


def missing_module_message(exc: ModuleNotFoundError) -> str | None:
    """What to install for a missing optional module, or None when it is not one of ours."""
    top = (exc.name or "").partition(".")[0]
    extra = MODULE_EXTRAS.get(top)
    if extra is None:
        return None
    return f"this needs the Python package {top!r}, not installed here: pip install 'rt-tracker[{extra}]'"


# distribution names whose versions the start-up report gives, when installed
REPORTED_DISTRIBUTIONS = (
    "rt-tracker",
    "grpcio",
    "numpy",
    "opencv-python-headless",
    "torch",
    "torchvision",
    "sam2",
    "onnxruntime",
    "onnxruntime-gpu",
    "openvino",
    "tensorrt",
    "tensorrt-cu12",
    "tensorrt-cu13",
)


@dataclass(frozen=True)
class Availability:
    engine: str
    missing: tuple[str, ...] = ()  # import names not found
    hint: str = ""

    @property
    def available(self) -> bool:
        return not self.missing

    @property
    def reason(self) -> str:
        if self.available:
            return ""
        return f"missing Python package(s) {', '.join(self.missing)}; install with: {self.hint}"


def module_present(name: str) -> bool:
    """True when ``name`` can be imported, without importing it."""
    if name in sys.modules:
        return True
    try:
        return importlib.util.find_spec(name) is not None
    except (ImportError, ValueError):  # a broken parent package, or a stub with no spec
        return False


def check(engine: str) -> Availability:
    """Whether ``engine``'s libraries are installed; ValueError for an unknown engine name."""
    try:
        requirement = REQUIREMENTS[engine]
    except KeyError:
        raise ValueError(f"unknown engine {engine!r}; known: {', '.join(sorted(REQUIREMENTS))}") from None
    missing = tuple(m for m in requirement.modules if not module_present(m))
    return Availability(engine, missing, requirement.install_hint if missing else "")


def check_all() -> dict[str, Availability]:
    return {name: check(name) for name in REQUIREMENTS}


def library_versions() -> dict[str, str]:
    """Installed versions of the libraries that decide what can be served (from metadata, no import)."""
    versions = {}
    for dist in REPORTED_DISTRIBUTIONS:
        try:
            versions[dist] = importlib.metadata.version(dist)
        except importlib.metadata.PackageNotFoundError:
            continue
    return versions


def nvml_gpus() -> list[str]:
    """GPUs the NVIDIA driver reports (via nvidia-ml-py, when installed), whatever the engines load."""
    if not module_present("pynvml"):
        return []
    try:
        import pynvml

        pynvml.nvmlInit()
    except Exception:  # no driver, or no GPU: nothing to list
        return []
    try:
        gpus = []
        driver = pynvml.nvmlSystemGetDriverVersion()
        for index in range(pynvml.nvmlDeviceGetCount()):
            handle = pynvml.nvmlDeviceGetHandleByIndex(index)
            name = pynvml.nvmlDeviceGetName(handle)
            name = name.decode() if isinstance(name, bytes) else str(name)
            memory_gib = pynvml.nvmlDeviceGetMemoryInfo(handle).total / 2**30
            gpus.append(f"gpu{index} {name} ({memory_gib:.0f} GiB, driver {driver})")
        return gpus
    finally:
        pynvml.nvmlShutdown()


def devices() -> list[str]:
    """Compute devices seen by the libraries already loaded (never imports torch or onnxruntime)."""
    found = [f"cpu ({os.cpu_count()} cores)"]
    found += nvml_gpus()
    torch = sys.modules.get("torch")
    if torch is not None:
        try:
            for index in range(torch.cuda.device_count()):
                found.append(f"cuda:{index} {torch.cuda.get_device_name(index)} (torch)")
        except Exception as exc:  # a driver problem is worth a line, not a failed start
            found.append(f"cuda: torch cannot query it ({exc})")
    ort = sys.modules.get("onnxruntime")
    if ort is not None:
        found.append(f"onnxruntime providers: {', '.join(ort.get_available_providers())}")
    return found


@dataclass
class EngineSelection:
    """The requested engines split into those to build and those left out, with reasons."""

    serve: list[str] = field(default_factory=list)
    absent: dict[str, str] = field(default_factory=dict)  # engine -> reason


def select(requested: list[str]) -> EngineSelection:
    """Split ``requested`` by whether their libraries are installed.

    An engine with missing libraries is left out with its reason. The first engine is the
    default for sessions that name none: if it is missing, or if nothing is left, this raises
    ValueError rather than quietly serving something else as the default.
    """
    if not requested:
        raise ValueError("no engine requested")
    selection = EngineSelection()
    for name in requested:
        availability = check(name)
        if availability.available:
            selection.serve.append(name)
        else:
            selection.absent[name] = availability.reason
    first = requested[0]
    if first in selection.absent:
        raise ValueError(f"cannot serve engine {first!r} (the default): {selection.absent[first]}")
    return selection


def log_report(served: list[str], absent: dict[str, str]) -> None:
    """One start-up report: engines served, engines left out and why, devices, library versions."""
    for name, reason in absent.items():
        logger.warning("engine %s is not served: %s", name, reason)
    others = {name: a for name, a in check_all().items() if name not in served and name not in absent}
    logger.info(
        "engines served: %s; also installed: %s; not installed: %s",
        ", ".join(served),
        ", ".join(n for n, a in others.items() if a.available) or "none",
        "; ".join(f"{n} ({a.reason})" for n, a in others.items() if not a.available) or "none",
    )
    logger.info("devices: %s", "; ".join(devices()))
    logger.info("versions: %s", ", ".join(f"{k} {v}" for k, v in library_versions().items()))
