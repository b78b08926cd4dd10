"""``OverseenEngine``: any engine, watched by an overseer that re-prompts it.

Why a wrapper: the overseer must compose with every engine (``flow`` today,
``sam2`` tomorrow) and stay out of the server code. :class:`OverseenSession`
is an :class:`~tracker.engines.base.EngineSession` around an inner session; per frame
it

1. forwards the queued prompt updates (the client's and its own) to the inner
   session and steps it. The inner session (and the drift guard's reference
   session) share this session's :class:`~tracker.objects.ObjectRegistry`: one
   list of objects, changed here, that all three read;
2. asks the :class:`~tracker.overseer.policy.RunTrigger` whether the overseer
   runs on this frame (every k frames, or on an abrupt change);
3. runs detector + policy *inline* when that fits the frame budget, else on a
   single worker thread whose decisions are picked up on a later frame (the
   per-frame path never waits for the detector);
4. queues the decisions as prompt updates for the next frame (``apply`` on
   itself, so ``label_of``/``object_ids`` and the client see the new objects)
   and records them as :class:`~tracker.types.RepromptEvent` s, which this
   frame's :class:`~tracker.engines.base.StepOutput` carries to the server.

Execution: ``inline`` (detector on the frame path: fast detectors, the
oracle), ``thread`` (always beside it) or ``auto`` (the first run goes to the
worker and is timed; later runs are inline while the measured detector time
plus the engine's step time fits in half the session's latency budget).
Decisions from an async run are re-validated against the current objects
(objects removed meanwhile are skipped; an ADD onto a tracked object is
dropped), but their masks are one or more frames old: with fast motion a
correction lands slightly off, and the next drift check fixes it.

Drift-guard mode (cine-MRI, no classes): instead of a detector, a ``flow``
session is prompted with the same prompts and stepped on every frame as the
reference; :class:`~tracker.overseer.policy.DriftGuardPolicy` re-anchors an
object from it when the main engine's answer jumps implausibly. Cost: the
flow step (two flows per object) on every frame, inline.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, replace
from typing import Literal

import numpy as np

from tracker.engines.base import Engine, EngineInfo, EngineSession
from tracker.engines.flow import FlowEngine
from tracker.overseer.policy import (
    Decision,
    DriftGuardPolicy,
    GuardConfig,
    PolicyConfig,
    RepromptPolicy,
    RunTrigger,
    mask_iou,
)
from tracker.overseer.types import Detection, Detector, TrackView
from tracker.types import (
    Frame,
    MaskPrompt,
    ObjectTrack,
    PromptError,
    PromptUpdate,
    RepromptEvent,
    SessionConfig,
    UpdateAction,
)

logger = logging.getLogger(__name__)

Execution = Literal["inline", "thread", "auto"]
OPTION_PREFIX = "overseer."  # session engine options for the overseer; never passed to the inner engine
DetectorFactory = Callable[[SessionConfig], Detector]


@dataclass
class _AsyncRun:
    future: Future[list[Decision]]
    observed_frame: int


class OverseenSession(EngineSession):
    """An inner engine session plus its overseer (see the module docstring)."""

    def __init__(
        self,
        config: SessionConfig,
        inner: EngineSession,
        detector: Detector | None,
        policy_config: PolicyConfig,
        execution: Execution = "auto",
        guard: EngineSession | None = None,
        guard_config: GuardConfig | None = None,
    ) -> None:
        self._inner = inner
        self._detector = detector
        self._guard_session = guard
        self._guard = DriftGuardPolicy(guard_config) if guard is not None else None
        self._policy = RepromptPolicy(policy_config)
        self._trigger = RunTrigger(policy_config)
        self._execution: Execution = execution
        self._pool: ThreadPoolExecutor | None = None
        self._running: _AsyncRun | None = None
        self._events: list[RepromptEvent] = []
        self._events_lock = threading.Lock()
        self._detect_ms: float | None = None  # exponential mean of the detector + policy time
        self._step_ms: float | None = None  # exponential mean of the inner step time
        self.runs = 0
        self.async_runs = 0
        super().__init__(config)
        inner.attach(self.objects)  # one list of objects: this session changes it, all three read it
        if guard is not None:
            guard.attach(self.objects)

    def degradations(self) -> tuple[str, ...]:
        # The overseer is the first thing to give up under load (the DEGRADE policy), then the inner
        # engine's own steps.
        return ("skip the overseer", *self._inner.degradations())

    def set_degradation(self, level: int) -> None:
        super().set_degradation(level)
        self._inner.set_degradation(max(0, level - 1))

    # -- public ---------------------------------------------------------------------------

    def _step_events(self) -> list[RepromptEvent]:
        """The re-prompt events decided since the last step (returned with this frame's output)."""
        with self._events_lock:
            events, self._events = self._events, []
        return events

    @property
    def inner(self) -> EngineSession:
        return self._inner

    # -- EngineSession --------------------------------------------------------------------

    def _step(self, frame: Frame, updates: list[PromptUpdate]) -> list[ObjectTrack]:
        for update in updates:  # already in the shared registry (self.apply recorded them)
            self._inner.forward(update)
            if self._guard_session is not None:
                self._guard_session.forward(update)
            if update.action is not UpdateAction.ADD and self._guard is not None:
                self._guard.forget(update.object_id)
        start = time.perf_counter()
        inner = self._inner.step(frame)
        tracks = inner.tracks
        for stage, ms in inner.stages_ms.items():  # the inner engine's stages, as they are
            self.timer.add(stage, ms)
        self._step_ms = _ema(self._step_ms, (time.perf_counter() - start) * 1000.0)
        if self.degradation_level >= 1:  # DEGRADE policy: the overseer is skipped
            return tracks
        views = [TrackView(t.object_id, self._label(t.object_id), t.mask, t.score) for t in tracks]

        overseer_start = time.perf_counter()
        decisions: list[Decision] = []
        if self._guard is not None and self._guard_session is not None:
            references = {t.object_id: t.mask for t in self._guard_session.step(frame).tracks}
            decisions += self._guard.decide(frame.index, views, references)
        if self._detector is not None:
            decisions += self._collect()
            reason = self._trigger.check(views)
            if reason is not None:
                decisions += self._run(frame, views, reason)
        self._enact(decisions, frame.index, views)
        self.timer.add("overseer", (time.perf_counter() - overseer_start) * 1000.0)
        return tracks

    def _close(self) -> None:
        if self._pool is not None:
            self._pool.shutdown(wait=False, cancel_futures=True)
            self._pool = None
        self._running = None
        self._inner.close()
        if self._guard_session is not None:
            self._guard_session.close()

    # -- overseer runs --------------------------------------------------------------------

    def _label(self, object_id: int) -> str:
        try:
            return self.label_of(object_id)
        except KeyError:
            return ""

    def _fits_inline(self) -> bool:
        if self._execution == "inline":
            return True
        if self._execution == "thread" or self._detect_ms is None:
            return False
        return self._detect_ms + (self._step_ms or 0.0) <= 0.5 * self.config.latency_budget_ms

    def _detect_and_decide(self, frame: Frame, views: list[TrackView]) -> list[Decision]:
        assert self._detector is not None
        start = time.perf_counter()
        detections: list[Detection] = self._detector.detect(frame)
        # New objects get ids no object has now, tracked yet or only queued.
        decisions = self._policy.decide(frame.index, views, detections, reserved=self.objects.ids())
        self._detect_ms = _ema(self._detect_ms, (time.perf_counter() - start) * 1000.0)
        return decisions

    def _run(self, frame: Frame, views: list[TrackView], reason: str) -> list[Decision]:
        if self._running is not None:
            return []  # one pass at a time: the worker is still busy with an earlier frame
        self.runs += 1
        if self._fits_inline():
            return self._detect_and_decide(frame, views)
        if self._pool is None:
            self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="overseer")
        # Copies: the client may reuse its frame buffer and the engine its masks.
        snapshot = Frame(frame.index, np.array(frame.pixels, copy=True), frame.timestamp_s)
        copies = [TrackView(v.object_id, v.label, v.mask.copy(), v.score) for v in views]
        self.async_runs += 1
        logger.debug("overseer run on frame %d (%s) goes to the worker", frame.index, reason)
        self._running = _AsyncRun(self._pool.submit(self._detect_and_decide, snapshot, copies), frame.index)
        return []

    def _collect(self) -> list[Decision]:
        run = self._running
        if run is None or not run.future.done():
            return []
        self._running = None
        try:
            return run.future.result()
        except Exception:  # a detector fault must not cost the tracking
            logger.exception("overseer run on frame %d failed", run.observed_frame)
            return []

    def wait_idle(self, timeout_s: float = 30.0) -> None:
        """Block until an async run in flight has finished (tests, end of a replay)."""
        run = self._running
        if run is not None:
            run.future.exception(timeout=timeout_s)

    def _enact(self, decisions: list[Decision], frame_index: int, views: list[TrackView]) -> None:
        events = []
        for d in decisions:
            known = d.object_id in self.objects
            if d.action is not UpdateAction.ADD and not known:
                continue  # removed meanwhile (by the client or an earlier decision)
            if d.action is UpdateAction.ADD:
                assert d.mask is not None
                if known or any(
                    mask_iou(d.mask, v.mask) >= self._policy.config.duplicate_iou
                    for v in views
                    if v.object_id in self.objects
                ):
                    continue  # stale: the object is tracked by now
            update = PromptUpdate(
                d.action,
                d.object_id,
                MaskPrompt(d.mask) if d.mask is not None and d.action is not UpdateAction.REMOVE else None,
                d.label,
            )
            try:
                self.apply(update)
            except PromptError as exc:
                logger.warning("overseer decision on object %d skipped: %s", d.object_id, exc)
                continue
            events.append(
                RepromptEvent(
                    object_id=d.object_id,
                    label=d.label,
                    reason=d.reason,
                    action=d.action.value,
                    observed_frame=d.observed_frame,
                    score=float(d.score),
                    iou=float(d.iou),
                    message=d.message,
                )
            )
            logger.info(
                "frame %d: overseer %s object %d (%s, %s, seen on frame %d)",
                frame_index,
                d.action.value,
                d.object_id,
                d.label or "-",
                d.reason,
                d.observed_frame,
            )
        if events:
            with self._events_lock:
                self._events.extend(events)


def _ema(previous: float | None, value: float, alpha: float = 0.3) -> float:
    return value if previous is None else (1 - alpha) * previous + alpha * value


class OverseenEngine(Engine):
    """Wraps ``inner``; each session gets a detector from ``detector_factory`` (or a flow drift guard).

    ``detector_factory`` is called once per session with its config (minus the
    inner engine's view of ``overseer.*`` options); a detector shared between
    sessions (model weights) is returned by the factory each time, a per-session
    one (the oracle of one sequence) is built there. Session options
    ``overseer.<policy knob>=value`` override ``policy_config`` per session.
    """

    def __init__(
        self,
        inner: Engine,
        detector_factory: DetectorFactory | None,
        policy_config: PolicyConfig | None = None,
        execution: Execution = "auto",
        *,
        guard: bool = False,
        guard_config: GuardConfig | None = None,
        description: str = "",
    ) -> None:
        if detector_factory is None and not guard:
            raise ValueError("an overseen engine needs a detector or the drift guard")
        self.inner = inner
        self.detector_factory = detector_factory
        self.policy_config = policy_config or PolicyConfig()
        self.execution: Execution = execution
        self.guard = guard
        self.guard_config = guard_config
        kind = description or ("drift guard" if guard else "detector")
        info = inner.info
        self.info = EngineInfo(
            name=info.name,
            version=f"{info.version} + overseer ({kind}, {execution})",
            capabilities=(*info.capabilities, "overseer"),
            device=info.device,
            random_weights=info.random_weights,
            warnings=info.warnings,
        )
        self._guard_engine: Engine | None = None
        if guard:
            self._guard_engine = FlowEngine()

    def default_workers(self, cores: int) -> int:
        return self.inner.default_workers(cores)

    def set_intra_op_threads(self, threads: int) -> None:
        self.inner.set_intra_op_threads(threads)

    def open_session(self, config: SessionConfig) -> OverseenSession:
        own = {
            k[len(OPTION_PREFIX) :]: v
            for k, v in config.engine_options.items()
            if k.startswith(OPTION_PREFIX)
        }
        rest = {k: v for k, v in config.engine_options.items() if not k.startswith(OPTION_PREFIX)}
        policy_options = {k: v for k, v in own.items() if k not in ("oracle",)}
        try:
            policy = PolicyConfig.from_options(policy_options, base=self.policy_config)
        except ValueError as exc:
            raise PromptError(str(exc)) from None
        inner_config = replace(config, objects=(), engine_options=rest)
        detector = self.detector_factory(config) if self.detector_factory is not None else None
        inner = self.inner.open_session(inner_config)
        guard = self._guard_engine.open_session(inner_config) if self._guard_engine is not None else None
        return OverseenSession(
            config, inner, detector, policy, self.execution, guard=guard, guard_config=self.guard_config
        )

    def warm_up(self) -> None:
        """Warm the inner engine only: a synthetic session has no annotations for an oracle."""
        warm = getattr(self.inner, "warm_up", None)
        if warm is not None:
            warm()

    def close(self) -> None:
        self.inner.close()
