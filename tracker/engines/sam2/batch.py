"""Frames of several sessions through one SAM2 image-encoder call (issue #13, item 2).

The scheduler hands :meth:`~tracker.engines.sam2.engine.Sam2Engine.step_batch` one frame from each
of up to ``--max-batch`` distinct sessions whose :meth:`~tracker.engines.sam2.engine.Sam2Engine.batch_key`
is equal. :func:`step_batch` runs, for ``B`` such items:

1. per session: ``begin_step`` (frame size check), ``_prepare`` (prompt inputs and crop
   window; a PromptError is raised here, before the session's state changes) and the
   preprocessing of its frame to the (1, 3, S, S) model input;
2. once: ``forward_image`` + ``_prepare_backbone_features`` on the stacked (B, 3, S, S)
   tensor, sliced back per item (:func:`tracker.engines.sam2.engine.encode_images`);
3. per session: memory attention, SAM heads and memory encoder for each of its objects,
   exactly as a one-frame step does.

An item that fails in 1 or 3 gets its exception in its place; its batch-mates go on. If the
shared encoder call itself fails, every item of the batch gets that exception (each
session's frame counter has then advanced, as it would have in a one-frame step).

Stage times: each item's ``encoder`` stage is the batched call's time divided by ``B``
(its share of the device), and :attr:`~tracker.engines.base.StepOutput.batch_size` says ``B``.

Not batched: memory attention, the SAM heads and the memory encoder run per object, as
in SAM2's own video predictor. Each object attends to its own memory bank, whose token
count depends on its history (conditioning frames, prompts, the pruning window, skipped
memory under DEGRADE), and ``track_step`` interleaves those stages with Python control
flow on that history; batching them would mean re-implementing SAM2's memory selection
outside sam2, for a part that is a minor share of a frame at one or two objects.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

from tracker.engines.base import EngineSession, StepOutput
from tracker.engines.sam2.timing import timing_into
from tracker.timing import StageTimer
from tracker.types import Frame

if TYPE_CHECKING:
    import torch

    from tracker.engines.sam2.engine import Sam2Engine, Sam2Session, _StepPlan

logger = logging.getLogger(__name__)


@dataclass
class _Item:
    """One work item that passed its per-session preparation."""

    index: int  # position in the caller's work list
    session: Sam2Session
    plan: _StepPlan
    image: torch.Tensor  # (1, 3, S, S) model input


def step_batch(
    engine: Sam2Engine, work: Sequence[tuple[EngineSession, Frame]]
) -> list[StepOutput | Exception]:
    """One outcome per item, in order: its :class:`StepOutput` or the exception it raised."""
    import torch

    from tracker.engines.sam2.engine import Sam2Session

    outcomes: list[StepOutput | Exception | None] = [None] * len(work)
    seen: set[int] = set()
    items: list[_Item] = []
    for i, (session, frame) in enumerate(work):
        try:
            if not isinstance(session, Sam2Session) or session._engine is not engine:
                raise TypeError(f"work item {i}: the session was not opened by this engine")
            if id(session) in seen:
                raise ValueError(f"work item {i}: session appears twice in one batch (frame order)")
            seen.add(id(session))
            updates = session.begin_step(frame)
            plan = session._prepare(frame, updates)
            with torch.inference_mode(), session._autocast():
                image = session._model_input(frame.pixels)
            items.append(_Item(i, session, plan, image))
        except Exception as exc:
            outcomes[i] = exc
    chunk = engine.max_encoder_batch or len(items) or 1
    for start in range(0, len(items), chunk):
        _encode_and_track(engine, items[start : start + chunk], outcomes)
    assert all(o is not None for o in outcomes)
    return outcomes  # type: ignore[return-value]


def _encode_and_track(
    engine: Sam2Engine, items: list[_Item], outcomes: list[StepOutput | Exception | None]
) -> None:
    import torch

    from tracker.engines.sam2.engine import encode_images

    b = len(items)
    lead = items[0].session
    timer = StageTimer(cuda_device=lead.timer.cuda_device)
    try:
        with torch.inference_mode(), lead._autocast(), timer.stage("encoder"):
            images = items[0].image if b == 1 else torch.cat([it.image for it in items])
            features = encode_images(engine.model, images)
        encoder_ms = timer.results()["encoder"]
    except Exception as exc:
        logger.exception("sam2 batched image encoder failed for %d frames", b)
        for it in items:
            outcomes[it.index] = exc
        return
    for it, ff in zip(items, features, strict=True):
        session = it.session
        try:
            session.timer.add("encoder", encoder_ms / b)
            with torch.inference_mode(), session._autocast(), timing_into(session.timer):
                tracks = session._track(it.plan, ff)
            out = session.finish_step(tracks)
            out.batch_size = b
            outcomes[it.index] = out
        except Exception as exc:
            outcomes[it.index] = exc
