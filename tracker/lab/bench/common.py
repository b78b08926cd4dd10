"""What every benchmark shares: the machine record, ping-pong playback and the shared clips.

Latency summaries are :func:`tracker.timing.percentiles` (replay and the live view use them
too); provenance is :func:`tracker.lab.provenance.provenance`.
"""

from __future__ import annotations

import contextlib
import json
import os
from collections.abc import Mapping
from importlib import metadata
from pathlib import Path
from typing import Any

from tracker.engines.sam2.options import cpu_has_native_bf16  # torch-free
from tracker.lab.provenance import REPO_ROOT
from tracker.lab.provenance import machine_info as provenance_machine_info


def machine_info(torch_threads: bool = False) -> dict[str, Any]:
    """The provenance machine record plus what the engines' speed depends on.

    ``torch_threads`` also records torch's intra-op threads and sam2's version (imports torch:
    only for benchmarks that run SAM2 in this process).
    """

    info: dict[str, Any] = {**provenance_machine_info(), "cpu_native_bf16": cpu_has_native_bf16()}
    with contextlib.suppress(metadata.PackageNotFoundError):
        info["torch"] = metadata.version("torch")
    if torch_threads:
        import torch

        from tracker.engines.sam2.engine import _sam2_version

        info["torch_threads"] = torch.get_num_threads()
        info["sam2"] = _sam2_version()
    return info


def write_json(report: Mapping[str, Any], path: Path) -> None:
    """Write a benchmark's report to ``path`` as indented JSON, making its folder first."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(report, indent=2))


def ping_pong_index(i: int, length: int) -> int:
    """Frame ``i`` of a sequence of ``length`` played forwards and backwards without a jump."""
    if length < 1:
        raise ValueError(f"cannot play an empty sequence (length {length})")
    if length == 1:
        return 0
    period = 2 * (length - 1)
    k = i % period
    return k if k < length else period - k


def ping_pong(length: int, n: int) -> list[int]:
    """Source indices 0, 1, ..., length-1, length-2, ..., 1, 0, 1, ... of ``n`` frames."""
    return [ping_pong_index(i, length) for i in range(n)]


def shared_data() -> Path:
    """``$TRACKER_SHARED_DATA``, else ``shared/data`` beside the checkout."""
    env = os.environ.get("TRACKER_SHARED_DATA")
    return Path(env) if env else REPO_ROOT.parent / "shared" / "data"


def davis_clip(name: str = "blackswan") -> Path:
    """A DAVIS-2016 sequence folder in the shared data (it may be absent: callers check)."""
    return shared_data() / "davis2016" / name
