"""Per-stage timing of one frame: monotonic clocks on CPU, CUDA events on GPU.

On a GPU, kernels run asynchronously: a host clock around ``model(x)`` measures
the launch, not the work. CUDA events recorded on the stream around each stage
measure the work itself; they are read once at the end of the frame (one
synchronisation, which the frame needs anyway to hand its masks to the CPU).
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import numpy as np

# The stages a frame can pass through, in pipeline order. Engines report the ones they have.
PIPELINE_STAGES = (
    "receive",
    "queue",
    "schedule",
    "decode",
    "preprocess",
    "encoder",
    "memory_attention",
    "decoder",
    "memory_encoder",
    "overseer",
    "postprocess",
    "encode",
)


@dataclass
class StageTimer:
    """Collects ``stage -> milliseconds`` for one frame; reset before each frame."""

    cuda_device: Any = None  # a torch.device of type cuda: time with CUDA events
    _cpu_ms: dict[str, float] = field(default_factory=dict)
    _events: list[tuple[str, Any, Any]] = field(default_factory=list)

    def reset(self) -> None:
        self._cpu_ms = {}
        self._events = []

    @contextmanager
    def stage(self, name: str) -> Iterator[None]:
        if self.cuda_device is not None:
            import torch

            start = torch.cuda.Event(enable_timing=True)
            end = torch.cuda.Event(enable_timing=True)
            start.record()
            try:
                yield
            finally:
                end.record()
                self._events.append((name, start, end))
            return
        t0 = time.perf_counter()
        try:
            yield
        finally:
            self.add(name, (time.perf_counter() - t0) * 1000.0)

    def add(self, name: str, ms: float) -> None:
        """Add ``ms`` to stage ``name`` (a stage entered twice in a frame sums)."""
        self._cpu_ms[name] = self._cpu_ms.get(name, 0.0) + ms

    def elapsed(self, name: str) -> float:
        """Milliseconds recorded so far for ``name`` on the CPU clock (0 if none)."""
        return self._cpu_ms.get(name, 0.0)

    def results(self) -> dict[str, float]:
        """Milliseconds per stage; synchronises once when CUDA events are pending."""
        if self._events:
            self._events[-1][2].synchronize()
            for name, start, end in self._events:
                self.add(name, float(start.elapsed_time(end)))
            self._events = []
        return dict(self._cpu_ms)


def percentiles(
    values: Iterable[float], quantiles: Iterable[float] = (50, 95, 99)
) -> dict[str, float | None]:
    """``{"p50": ..., "p95": ..., "p99": ..., "max": ...}`` of ``values``; None for each when empty.

    Keys are ``p`` plus the quantile, with ``.`` written ``_`` (99.9 -> ``p99_9``). The one
    latency summary of replay, the live view and every benchmark.
    """
    arr = np.asarray(list(values), dtype=float)
    qs = tuple(quantiles)
    keys = [f"p{q:g}".replace(".", "_") for q in qs]
    if arr.size == 0:
        return {**dict.fromkeys(keys), "max": None}
    out: dict[str, float | None] = {k: float(np.percentile(arr, q)) for k, q in zip(keys, qs, strict=True)}
    out["max"] = float(arr.max())
    return out
