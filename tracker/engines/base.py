"""The engine interface every tracking backend implements.

An :class:`Engine` is stateless with respect to tracking: it holds what all
sessions share (model weights, compiled graphs, a flow algorithm's settings).
Each client stream gets its own :class:`EngineSession`, which owns all of that
stream's tracking state. Closing a session releases that state.

Prompts never act behind the engine's back: :meth:`EngineSession.apply`
validates an update and queues it; the next :meth:`EngineSession.step` applies
every queued update to its frame (so a correction drawn on frame *t* conditions
frame *t*'s answer) before tracking the remaining objects. The initial objects
of a session are applied the same way, on the first frame.

Which objects a session tracks, their labels and slots live in its
:class:`~tracker.objects.ObjectRegistry` (``session.objects``), created with the session
and read by everything else that needs them (the answering loop, the gate, an overseer).
A wrapping session shares its registry with the sessions it wraps (:meth:`EngineSession.attach`),
which then take the wrapper's updates with :meth:`EngineSession.forward`.

A step returns everything it found out about the frame in one
:class:`StepOutput` (tracks, per-stage times, overseer events): nothing is read
from the session afterwards. An engine that can run frames of several sessions
in one call (the SAM2 image encoder on a batch) declares how many in
:attr:`Engine.max_batch_size` (Triton's ``max_batch_size``) and overrides
:meth:`Engine.step_batch` and :meth:`Engine.batch_key`; the scheduler
(:mod:`tracker.server.scheduler`) groups frames by that key, at most that many.
Its sessions build their batched step from :meth:`EngineSession._begin_step` and
:meth:`EngineSession._finish_step`, the two halves of :meth:`EngineSession.step`.
"""

from __future__ import annotations

import abc
from collections.abc import Hashable, Sequence
from dataclasses import dataclass, field

import numpy as np

from tracker.objects import ObjectRegistry
from tracker.timing import StageTimer
from tracker.types import (
    BoxPrompt,
    Frame,
    FrameError,
    MaskPrompt,
    ObjectPrompt,
    ObjectTrack,
    PointsPrompt,
    PromptError,
    PromptUpdate,
    RepromptEvent,
    SessionConfig,
    UpdateAction,
)

# The prompt kinds and prompt updates an engine accepts, as it names them in EngineInfo.capabilities.
PROMPT_CAPABILITIES: tuple[str, ...] = (
    "mask_prompt",
    "box_prompt",
    "points_prompt",
    "add_object",
    "remove_object",
    "correct_object",
)


@dataclass(frozen=True)
class EngineInfo:
    name: str
    version: str
    capabilities: tuple[str, ...] = ()  # e.g. ("mask_prompt", "box_prompt", "add_object")
    device: str = "cpu"
    random_weights: bool = False
    warnings: tuple[str, ...] = ()


@dataclass
class StepOutput:
    """Everything one step found out about one frame."""

    tracks: list[ObjectTrack]  # one per tracked object, in the session's object order
    stages_ms: dict[str, float] = field(default_factory=dict)  # the engine's own stages ("encoder", ...)
    events: list[RepromptEvent] = field(default_factory=list)  # overseer decisions taken on this frame
    # Frames that shared this frame's batched engine call (Engine.step_batch); its batched
    # stages ("encoder" for SAM2) report this frame's share, the call's time / batch_size.
    batch_size: int = 1


@dataclass
class PendingPrompts:
    """Prompt updates accepted since the last step, applied in arrival order."""

    updates: list[PromptUpdate] = field(default_factory=list)


class EngineSession(abc.ABC):
    """One stream's tracking state. Not thread-safe: one caller at a time."""

    def __init__(self, config: SessionConfig) -> None:
        self.config = config
        self.objects = ObjectRegistry()  # which objects exist, after the queued updates apply
        self._pending = PendingPrompts()
        self._image_size: tuple[int, int] | None = config.image_size
        self._stepped = False  # a frame has been accepted
        self._frame_index = -1  # client index of the frame being stepped
        # Engines time their own stages ("preprocess", "encoder", ...) with this; the
        # step returns what it collected. Reset at the start of every step.
        self.timer = StageTimer()
        self.degradation_level = 0
        for obj in config.objects:
            self.apply(PromptUpdate(UpdateAction.ADD, obj.object_id, obj.prompt, obj.label))

    # -- public API -------------------------------------------------------------------

    @property
    def object_ids(self) -> list[int]:
        """Client ids of the objects tracked after the queued updates apply."""
        return self.objects.ids()

    def label_of(self, object_id: int) -> str:
        return self.objects.label_of(object_id)

    def apply(self, update: PromptUpdate) -> None:
        """Validate ``update``, record it in the registry and queue it for the next frame.

        Raises PromptError if it is invalid (and then changes nothing).
        """
        self.objects.check(update)
        if update.action is not UpdateAction.REMOVE:
            if update.prompt is None:
                raise PromptError(f"{update.action.value} of object {update.object_id} needs a prompt")
            if self._image_size is not None:
                check_prompt_fits(update.prompt, self._image_size, update.object_id)
        self.objects.apply(update)
        self._pending.updates.append(update)

    def attach(self, objects: ObjectRegistry) -> None:
        """Track the objects of ``objects``, a registry a wrapping session owns and changes.

        For the sessions an overseer wraps: they see the wrapper's objects as they are, and
        take its updates with :meth:`forward` (not :meth:`apply`, which would record them
        twice). Only before any object or frame.
        """
        if len(self.objects) or self._pending.updates or self._stepped:
            raise ValueError("a session can share another's objects only before it has any of its own")
        self.objects = objects

    def forward(self, update: PromptUpdate) -> None:
        """Queue an update that the (shared) registry already records; see :meth:`attach`.

        Its prompt is checked against the frame when the next step begins.
        """
        self._pending.updates.append(update)

    def step(self, frame: Frame) -> StepOutput:
        """Apply the queued updates to ``frame``, track every object, return one entry each."""
        updates = self._begin_step(frame)
        return self._finish_step(self._step(frame, updates))

    def _begin_step(self, frame: Frame) -> list[PromptUpdate]:
        """Check ``frame`` against the session, reset the timer, hand over the queued updates.

        The first half of :meth:`step`, for sessions whose engine's :meth:`Engine.step_batch`
        runs parts of several sessions' steps together.
        """
        hw = frame.shape_hw
        if self._image_size is None:
            self._image_size = hw
        elif hw != self._image_size:
            expected = f"{self._image_size[0]}x{self._image_size[1]}"
            if not self._stepped:
                # The session was opened for another size (declared, or that of its mask
                # prompts): nothing it was asked to track fits any frame like this one.
                raise PromptError(
                    f"the first frame this session processes is {hw[0]}x{hw[1]} (height x width) but the"
                    " session was opened"
                    f" for {expected} frames (its declared size or its mask prompts' size)"
                )
            raise FrameError(
                f"frame is {hw[0]}x{hw[1]} (height x width) but this session's frames are {expected}"
            )
        self._stepped = True
        self._frame_index = frame.index
        self.timer.reset()
        updates, self._pending.updates = self._pending.updates, []
        for update in updates:
            if update.prompt is not None:
                check_prompt_fits(update.prompt, hw, update.object_id)
        return updates

    def _finish_step(self, tracks: list[ObjectTrack]) -> StepOutput:
        """The second half of :meth:`step`: tracks in object order, with the stage times and events."""
        order = {oid: i for i, oid in enumerate(self.objects.ids())}
        ordered = sorted((t for t in tracks if t.object_id in order), key=lambda t: order[t.object_id])
        for track in ordered:  # (once per object: later calls change nothing)
            self.objects.mark_first_frame(track.object_id, self._frame_index)
        return StepOutput(ordered, self.timer.results(), self._step_events())

    def _step_events(self) -> list[RepromptEvent]:
        """Events decided on the frame just stepped (the overseer has some)."""
        return []

    def degradations(self) -> tuple[str, ...]:
        """Ways this session can trade accuracy for time, mildest first (the DEGRADE policy).

        Level ``k`` of :meth:`set_degradation` puts the first ``k`` in force. Engines
        that have none return an empty tuple and the policy then only drops frames.
        """
        return ()

    def set_degradation(self, level: int) -> None:
        """Put the first ``level`` steps of :meth:`degradations` in force (0: none)."""
        if not 0 <= level <= len(self.degradations()):
            raise ValueError(f"degradation level {level} outside 0..{len(self.degradations())}")
        self.degradation_level = level

    def close(self) -> None:
        """Release all tracking state. Idempotent."""
        self.objects.clear()
        self._pending.updates.clear()
        self._close()

    # -- for implementations ----------------------------------------------------------

    @abc.abstractmethod
    def _step(self, frame: Frame, updates: list[PromptUpdate]) -> list[ObjectTrack]:
        """Apply ``updates`` (already validated, in order) on ``frame``, then track all objects."""

    def _close(self) -> None:  # noqa: B027 - optional hook
        """Release engine-specific state."""


class Engine(abc.ABC):
    """Shared, stateless part of a backend; create one per server process."""

    info: EngineInfo
    # Most frames of distinct sessions one step_batch call takes; 1: the engine never batches
    # (its step has nothing to share across sessions). The scheduler batches at most this many.
    max_batch_size: int = 1

    @abc.abstractmethod
    def open_session(self, config: SessionConfig) -> EngineSession:
        """A fresh session; its initial objects apply on the first frame."""

    def default_workers(self, cores: int) -> int:
        """Scheduler workers for this engine on ``cores`` cores (``tracker serve --workers``).

        The default, one worker whose library thread pools get every core, suits
        engines that parallelise inside each call and batch across sessions.
        """
        return 1

    def set_intra_op_threads(self, threads: int) -> None:  # noqa: B027 - optional hook
        """Size the engine's library thread pools; called by each scheduler worker thread.

        Workers x threads must not exceed the cores, or every call oversubscribes them.
        """

    def batch_key(self, session: EngineSession, frame: Frame) -> Hashable | None:
        """Frames whose keys are equal (and not None) may share one :meth:`step_batch` call.

        Asked only of engines whose :attr:`max_batch_size` is above 1. None: this frame
        runs alone.
        """
        return None

    def step_batch(self, work: Sequence[tuple[EngineSession, Frame]]) -> list[StepOutput | Exception]:
        """Step one frame of each of several distinct sessions; one outcome per item, in order.

        An item's exception is returned in its place, so that one session's fault
        costs that session's frame and not its batch-mates'. The default steps the
        items one by one; batching engines override it and must give the same
        results as one by one (within their stated tolerance).
        """
        outcomes: list[StepOutput | Exception] = []
        for session, frame in work:
            try:
                outcomes.append(session.step(frame))
            except Exception as exc:
                outcomes.append(exc)
        return outcomes

    def warm_up(self) -> None:
        """Run two synthetic frames through a throwaway session before real traffic.

        First calls pay one-off costs (allocations, kernel selection, CUDA context
        creation) that no real frame should; the server reports NOT_SERVING until
        this has run. Engines with special needs override it.
        """
        rng = np.random.default_rng(0)
        image = (rng.random((128, 128)) * 255).astype(np.uint8)
        mask = np.zeros((128, 128), dtype=bool)
        mask[48:80, 48:80] = True
        session = self.open_session(SessionConfig(objects=(ObjectPrompt(1, MaskPrompt(mask)),)))
        try:
            session.step(Frame(0, image))
            session.step(Frame(1, image))
        finally:
            session.close()

    def close(self) -> None:  # noqa: B027 - optional hook
        """Release shared resources (weights, device memory)."""


def check_prompt_fits(prompt: object, image_hw: tuple[int, int], object_id: int) -> None:
    """Raise PromptError unless ``prompt`` is well-formed for an image of ``image_hw``."""
    h, w = image_hw
    if isinstance(prompt, MaskPrompt):
        if prompt.mask.shape != (h, w):
            raise PromptError(
                f"mask prompt for object {object_id} is {prompt.mask.shape[0]}x{prompt.mask.shape[1]}"
                f" but frames are {h}x{w}"
            )
        if not prompt.mask.any():
            raise PromptError(f"mask prompt for object {object_id} is empty")
        return
    if isinstance(prompt, BoxPrompt):
        coords = np.array([prompt.x0, prompt.y0, prompt.x1, prompt.y1], dtype=float)
        shown = "(" + ", ".join(f"{c:g}" for c in coords) + ")"  # plain numbers, not numpy reprs
        if not np.isfinite(coords).all():
            raise PromptError(f"box prompt for object {object_id} has a non-finite coordinate")
        if prompt.x1 <= prompt.x0 or prompt.y1 <= prompt.y0:
            raise PromptError(f"box prompt for object {object_id} has no area: {shown}")
        if prompt.x1 <= 0 or prompt.y1 <= 0 or prompt.x0 >= w or prompt.y0 >= h:
            raise PromptError(f"box prompt for object {object_id} lies outside the {h}x{w} image: {shown}")
        return
    if isinstance(prompt, PointsPrompt):
        pts = np.asarray(prompt.points, dtype=float)
        if pts.ndim != 2 or pts.shape[1] != 2 or len(pts) == 0:
            raise PromptError(f"points prompt for object {object_id} needs at least one (x, y) point")
        if not np.isfinite(pts).all():
            raise PromptError(f"points prompt for object {object_id} has a non-finite coordinate")
        if (
            (pts[:, 0] < 0).any()
            or (pts[:, 0] > w - 1).any()
            or (pts[:, 1] < 0).any()
            or (pts[:, 1] > h - 1).any()
        ):
            raise PromptError(f"points prompt for object {object_id} has a point outside the {h}x{w} image")
        if not (np.asarray(prompt.labels) == 1).any():
            raise PromptError(f"points prompt for object {object_id} needs at least one positive point")
        return
    raise PromptError(f"object {object_id} has an unsupported prompt type {type(prompt).__name__}")
