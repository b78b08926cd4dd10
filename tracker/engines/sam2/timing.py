"""Per-stage timing inside SAM2's own methods, without editing the installed package.

``track_step`` runs memory attention, the SAM heads and (optionally) the memory
encoder in one call. To report those stages separately, :func:`instrument` wraps
the model's methods once, on the instance, with wrappers that time into the
*calling thread's* current :class:`~tracker.timing.StageTimer`. The model is
shared by every session of a server and each session runs on its own thread, so a
thread-local keeps sessions' timings apart. The wrappers only measure: the
arguments and results pass through untouched, so outputs stay bit-identical.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

from tracker.timing import StageTimer

# SAM2Base method -> pipeline stage. _forward_sam_heads is also called inside
# _use_mask_as_output (mask prompts), so only it is wrapped for the decoder.
STAGE_OF_METHOD = {
    "_prepare_memory_conditioned_features": "memory_attention",
    "_forward_sam_heads": "decoder",
    "_encode_new_memory": "memory_encoder",
}

_local = threading.local()


@contextmanager
def timing_into(timer: StageTimer) -> Iterator[None]:
    """Within the block, this thread's instrumented SAM2 calls are timed into ``timer``."""
    previous = getattr(_local, "timer", None)
    _local.timer = timer
    try:
        yield
    finally:
        _local.timer = previous


def _timed(method: Callable[..., Any], stage: str) -> Callable[..., Any]:
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        timer: StageTimer | None = getattr(_local, "timer", None)
        if timer is None:
            return method(*args, **kwargs)
        with timer.stage(stage):
            return method(*args, **kwargs)

    wrapper.__wrapped__ = method  # type: ignore[attr-defined]
    return wrapper


def instrument(model: Any) -> Any:
    """Wrap ``model``'s stage methods once (idempotent); returns the model."""
    if getattr(model, "_tracker_instrumented", False):
        return model
    for name, stage in STAGE_OF_METHOD.items():
        setattr(model, name, _timed(getattr(model, name), stage))
    model._tracker_instrumented = True
    return model
