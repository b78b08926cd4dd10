"""One session's answering loop: updates, then frames, through one explicit pipeline.

The pipeline of a frame, each stage testable alone:

1. **admit** (:meth:`SessionRunner.submit`): prompt updates taken with the frame
   are applied to the engine session and acknowledged; the budget policy may
   answer the frame at once (``STRICT``: it cannot make its deadline) or adjust
   the degradation level (``DEGRADE``); otherwise the frame goes to the engine's
   scheduler with its deadline.
2. **infer** (a scheduler worker): the engine's ``step`` (alone or batched with
   other sessions' frames) returns one :class:`~tracker.engines.base.StepOutput`: tracks,
   stage times and overseer events together.
3. **postprocess** (the same worker, :func:`postprocess`): masks to boxes,
   centroids and millimetres.
4. **answer** (:meth:`SessionRunner.answer`): the :class:`FrameResult` is built
   once from the outcome, its budget verdict (``OK``/``LATE``) decided, then
   gated.

What happens when frames come faster than they can be answered is the
session's budget policy:

* ``LATEST``: at most one frame waits. A newer one replaces it and the replaced
  frame is answered ``DROPPED`` at once: no unbounded queue, no silent loss.
* ``DEGRADE``: as ``LATEST``, and when answers approach the budget the session
  steps through its engine's accuracy-for-time trades (:class:`DegradeController`);
  every degraded answer lists the steps in force and why.
* ``STRICT``: frames are never replaced by newer ones. A frame that cannot be
  answered within its budget (by the running estimate of compute time) is
  answered ``LATE`` without being processed, so it does not hold the next one.

The budget runs from the frame's acquisition time when the client gives one
(:class:`~tracker.server.session.AcquisitionClock`), otherwise from its arrival.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field

from tracker.engines.base import EngineSession
from tracker.gating.gate import Gate
from tracker.gating.types import GatingDecision
from tracker.masks import describe
from tracker.server.scheduler import Completion, InlineScheduler, Job, Scheduler, WorkerLost
from tracker.server.session import (
    Arrival,
    Batch,
    Outgoing,
    SessionFailed,
    SessionIdle,
    SessionInbox,
    SessionShutdown,
    SessionWorkerLost,
)
from tracker.types import (
    BudgetPolicy,
    FrameError,
    FrameResult,
    FrameStatus,
    FrameTiming,
    ObjectResult,
    PromptAck,
    PromptError,
    PromptUpdate,
    RepromptEvent,
    SessionConfig,
    UpdateAction,
)

logger = logging.getLogger(__name__)


@dataclass
class DegradeController:
    """Chooses how many of an engine's degradation steps are in force.

    Escalates one step when an answer uses more than ``high`` of the budget (or a
    frame had to be dropped); relaxes one step after ``patience`` answers in a row
    under ``low`` of it. The hysteresis keeps it from flapping on every frame.
    """

    steps: tuple[str, ...]
    budget_ms: float
    high: float = 0.85
    low: float = 0.5
    patience: int = 10
    level: int = 0
    reason: str = ""
    _calm: int = 0

    def update(self, frame_index: int, total_ms: float, dropped: int) -> bool:
        """Record one answer; return True when the level changed."""
        if total_ms > self.high * self.budget_ms or dropped:
            self._calm = 0
            if self.level < len(self.steps):
                self.level += 1
                cause = f"{dropped} frame(s) dropped" if dropped else f"{total_ms:.1f} ms"
                self.reason = (
                    f"frame {frame_index}: {cause} against a budget of {self.budget_ms:.1f} ms;"
                    f" now: {self.steps[self.level - 1]}"
                )
                return True
            return False
        if total_ms < self.low * self.budget_ms and self.level > 0:
            self._calm += 1
            if self._calm >= self.patience:
                self._calm = 0
                self.level -= 1
                self.reason = (
                    f"frame {frame_index}: {self.patience} answers under {self.low:.0%} of the budget;"
                    f" relaxed to level {self.level}"
                )
                return True
        else:
            self._calm = 0
        return False

    @property
    def active(self) -> list[str]:
        return list(self.steps[: self.level])


@dataclass
class Computed:
    """A frame's outcome as a scheduler worker leaves it for the answering loop."""

    arrival: Arrival
    update_ids: list[int]  # prompt updates that applied to this frame
    submitted_mono: float
    completion: Completion
    objects: list[ObjectResult] = field(default_factory=list)  # postprocessed on the worker
    events: list[RepromptEvent] = field(default_factory=list)
    postprocess_ms: float = 0.0


def postprocess(session: EngineSession, config: SessionConfig, completion: Completion) -> list[ObjectResult]:
    """Tracks to answers: masks to boxes, centroids and millimetres (runs on the worker)."""
    assert completion.output is not None
    return [describe(t, session.label_of(t.object_id), config.geometry) for t in completion.output.tracks]


class SessionRunner:
    """The answering loop of one session (see the module docstring for the pipeline)."""

    def __init__(
        self,
        engine_session: EngineSession,
        config: SessionConfig,
        inbox: SessionInbox,
        idle_timeout_s: float | None = None,
        clock: Callable[[], float] = time.monotonic,
        max_objects: int | None = None,
        scheduler: Scheduler | None = None,
    ) -> None:
        self.engine_session = engine_session
        self.max_objects = max_objects
        self.config = config
        self.inbox = inbox
        self.idle_timeout_s = idle_timeout_s
        self.scheduler = scheduler or InlineScheduler()
        self._clock = clock
        self.frames_processed = 0
        # Ids of updates accepted while no frame was waiting; reported with the frame they apply to.
        self._carry_over: list[int] = []
        self.degrade = (
            DegradeController(engine_session.degradations(), config.latency_budget_ms)
            if config.budget_policy is BudgetPolicy.DEGRADE
            else None
        )
        self._dropped_seen = 0
        self._compute_ms_estimate: float | None = None  # running estimate for the STRICT policy
        self._idle = threading.Event()  # no frame of this session is with the scheduler
        self._idle.set()
        self.objects = engine_session.objects  # the session's one registry: the gate reads it too
        self.gate = Gate(config.gating, config.geometry, self.objects) if config.gating is not None else None
        if self.gate is not None:
            for obj in config.objects:
                if obj.reference_mm is not None:
                    self.gate.set_reference(obj.object_id, obj.reference_mm)
        self._last_answer_mono = clock()

    def run(self) -> Iterator[Outgoing]:
        """Yield every answer until the client finishes or cancels.

        Raises :class:`SessionFailed` when the session cannot go on and
        :class:`SessionIdle` after ``idle_timeout_s`` without a request.
        """
        while True:
            batch = self._take()
            if isinstance(batch, GatingDecision):  # the stream stalled: hold the beam
                yield batch
                continue
            if batch is None:  # cancelled: the client is gone, nobody to answer
                return
            for answer in batch.answers:
                yield self._gated(answer)
            if batch.computed is not None:
                yield self._gated(self.answer(batch.computed), batch.computed.arrival)
                if isinstance(batch.computed.completion.error, WorkerLost):
                    raise SessionWorkerLost(str(batch.computed.completion.error))
            if batch.failure is not None:
                raise SessionFailed(batch.failure)
            if self.inbox.in_flight:
                continue
            acks, applied = self._apply(batch.updates)
            yield from acks
            if batch.frame is not None:
                verdict = self.submit(batch.frame, applied)
                if verdict is not None:
                    yield self._gated(verdict, batch.frame)
                continue  # the end of the stream is reported again once this frame is answered
            self._carry_over.extend(applied)
            if batch.finished:
                return
            if batch.shutdown is not None:
                raise SessionShutdown(batch.shutdown)

    def process(self, arrival: Arrival, applied_update_ids: list[int] | None = None) -> FrameResult:
        """One frame through the whole pipeline, waiting for its answer (tests and tools).

        The serving loop (:meth:`run`) does not wait: it answers other things
        while the frame is computed.
        """
        verdict = self.submit(arrival, applied_update_ids)
        if verdict is not None:
            return verdict
        self._idle.wait()
        computed = self.inbox.take_computed()
        assert isinstance(computed, Computed)
        return self.answer(computed)

    def wait_idle(self, timeout_s: float) -> bool:
        """Wait until no frame of this session is being computed (before closing its engine session)."""
        return self._idle.wait(timeout_s)

    # -- stage 1: admit ----------------------------------------------------------------

    def _apply(self, updates: list[PromptUpdate]) -> tuple[list[PromptAck], list[int]]:
        acks: list[PromptAck] = []
        applied: list[int] = []
        for update in updates:
            if (
                update.action is UpdateAction.ADD
                and self.max_objects is not None
                and len(self.objects) >= self.max_objects
            ):
                message = (
                    f"cannot add object {update.object_id}:"
                    f" the limit is {self.max_objects} objects per session"
                )
                acks.append(PromptAck(update.update_id, False, message))
                continue
            try:
                self.engine_session.apply(update)
            except PromptError as exc:
                acks.append(PromptAck(update.update_id, False, str(exc)))
            else:
                applied.append(update.update_id)
                self._update_gate(update)
                acks.append(PromptAck(update.update_id, True, "applies to the next frame processed"))
        return acks, applied

    def submit(self, arrival: Arrival, applied_update_ids: list[int] | None = None) -> FrameResult | None:
        """Hand the frame to the scheduler; or answer it at once when the policy says so."""
        frame = arrival.frame
        now = self._clock()
        update_ids = self._carry_over + list(applied_update_ids or [])
        self._carry_over = []
        skip_reason = self._cannot_make_it(arrival, now)
        if skip_reason is not None:
            self._carry_over = update_ids  # they apply to the next frame actually processed
            timing = FrameTiming(
                receive_time_s=arrival.received_wall, queue_ms=(now - arrival.received_mono) * 1000.0
            )
            return self._verdict(
                FrameResult(frame.index, FrameStatus.LATE, message=skip_reason), arrival, now, timing
            )
        if self.degrade is not None:
            dropped_now = self.inbox.frames_dropped - self._dropped_seen
            self._dropped_seen = self.inbox.frames_dropped
            if dropped_now:
                self._set_degradation(self.degrade.update(frame.index, 0.0, dropped_now))
        deadline = arrival.deadline_origin + self.config.latency_budget_ms / 1000.0
        self._idle.clear()
        self.inbox.start_compute()

        def done(completion: Completion) -> None:
            self._computed(arrival, update_ids, now, completion)

        try:
            self.scheduler.submit(Job(deadline, 0, self.engine_session, frame, done))
        except RuntimeError as exc:  # the scheduler is closed: the server is stopping
            t = self._clock()
            done(Completion(None, RuntimeError(f"not processed: {exc}"), t, t, 0))
        return None

    # -- stages 2 and 3: infer and postprocess, on a scheduler worker ---------------------

    def _computed(
        self, arrival: Arrival, update_ids: list[int], submitted: float, completion: Completion
    ) -> None:
        computed = Computed(arrival, update_ids, submitted, completion)
        if completion.output is not None:
            start = self._clock()
            try:
                computed.objects = postprocess(self.engine_session, self.config, completion)
                computed.events = completion.output.events
            except Exception as exc:
                completion.output, completion.error = None, exc
            computed.postprocess_ms = (self._clock() - start) * 1000.0
        self.inbox.computed(computed)
        self._idle.set()

    # -- stage 4: answer ---------------------------------------------------------------

    def answer(self, computed: Computed) -> FrameResult:
        """The frame's result, built once from its outcome, with its budget verdict."""
        arrival, c = computed.arrival, computed.completion
        index = arrival.frame.index
        timing = FrameTiming(
            receive_time_s=arrival.received_wall,
            queue_ms=(c.started_mono - arrival.received_mono) * 1000.0,
            batch_size=c.batch_size,
        )
        if c.error is not None or c.output is None:
            error = c.error or RuntimeError("no output")
            if isinstance(error, PromptError):
                # Only prompts queued before the frame size was known can fail here; the
                # objects they define cannot be tracked, so the session cannot go on.
                raise SessionFailed(f"frame {index}: {error}") from error
            if isinstance(error, FrameError | WorkerLost):
                message = str(error)
            else:  # an engine fault costs one frame, not the session or the server
                logger.error("engine failed on frame %d", index, exc_info=error)
                message = f"engine failed on this frame: {type(error).__name__}: {error}"
            result = FrameResult(
                index, FrameStatus.ERROR, message=message, applied_update_ids=computed.update_ids
            )
            return self._verdict(result, arrival, c.started_mono, timing)
        engine_ms = (c.finished_mono - c.started_mono) * 1000.0
        timing.stages_ms = {
            "queue": (computed.submitted_mono - arrival.received_mono) * 1000.0,
            "schedule": (c.started_mono - computed.submitted_mono) * 1000.0,
            "decode": arrival.decode_ms,
            **(c.output.stages_ms or {"inference": engine_ms}),
            "postprocess": computed.postprocess_ms,
        }
        self.frames_processed += 1
        # What a frame costs from submission, scheduling wait included (the STRICT estimate).
        cost_ms = (c.finished_mono - computed.submitted_mono) * 1000.0 + computed.postprocess_ms
        self._compute_ms_estimate = (
            cost_ms if self._compute_ms_estimate is None else 0.8 * self._compute_ms_estimate + 0.2 * cost_ms
        )
        result = FrameResult(
            index,
            FrameStatus.OK,
            objects=computed.objects,
            applied_update_ids=computed.update_ids,
            reprompts=computed.events,
        )
        result = self._verdict(result, arrival, c.started_mono, timing)
        if self.degrade is not None:
            if self.degrade.active:
                result.degradations = self.degrade.active
                result.degradation_reason = self.degrade.reason
            self._set_degradation(self.degrade.update(index, timing.total_ms, 0))
        return result

    def _verdict(
        self, result: FrameResult, arrival: Arrival, start: float, timing: FrameTiming
    ) -> FrameResult:
        """Timing totals, and OK turned LATE when the answer comes after the budget."""
        end = self._clock()
        timing.compute_ms = (end - start) * 1000.0 + arrival.decode_ms
        timing.total_ms = (end - arrival.received_mono) * 1000.0
        if arrival.acquired_mono is not None:
            timing.since_acquisition_ms = (end - arrival.acquired_mono) * 1000.0
        result.timing = timing
        elapsed_ms = (end - arrival.deadline_origin) * 1000.0
        if result.status is FrameStatus.OK and elapsed_ms > self.config.latency_budget_ms:
            origin = "acquisition" if arrival.acquired_mono is not None else "arrival"
            result.status = FrameStatus.LATE
            result.message = (
                f"answered {elapsed_ms:.1f} ms after {origin}, over the session budget of"
                f" {self.config.latency_budget_ms:.0f} ms"
            )
        return result

    def _set_degradation(self, changed: bool) -> None:
        if changed and self.degrade is not None:
            logger.info("degradation level %d: %s", self.degrade.level, self.degrade.reason)
            self.engine_session.set_degradation(self.degrade.level)

    def _cannot_make_it(self, arrival: Arrival, start: float) -> str | None:
        """STRICT policy: why this frame would miss its budget if processed now (None: it may not)."""
        if self.config.budget_policy is not BudgetPolicy.STRICT or self._compute_ms_estimate is None:
            return None
        elapsed_ms = (start - arrival.deadline_origin) * 1000.0
        expected_ms = elapsed_ms + self._compute_ms_estimate
        if expected_ms <= self.config.latency_budget_ms:
            return None
        return (
            f"not processed: {elapsed_ms:.1f} ms already elapsed and ~{self._compute_ms_estimate:.1f} ms"
            f" of compute would exceed the budget of {self.config.latency_budget_ms:.1f} ms (strict policy)"
        )

    def _take(self) -> Batch | GatingDecision | None:
        """The next batch; with gating, a HOLD whenever the stream stays silent past the stall timeout."""
        if self.gate is None:
            return self.inbox.take(self.idle_timeout_s)
        stall_s = self.gate.config.stall_timeout_ms / 1000.0
        while True:
            silent_s = self._clock() - self._last_answer_mono
            held = self.gate.last_decision is not None and self.gate.last_decision.frame_index is None
            waits = [] if held else [stall_s - silent_s]
            if self.idle_timeout_s is not None:
                waits.append(self.idle_timeout_s - silent_s)
            try:
                return self.inbox.take(max(0.0, min(waits)) if waits else None)
            except SessionIdle:
                silent_s = self._clock() - self._last_answer_mono
                if self.idle_timeout_s is not None and silent_s >= self.idle_timeout_s:
                    raise SessionIdle(f"no request for {self.idle_timeout_s:.0f} s") from None
                hold = self.gate.stalled(silent_s * 1000.0)
                if hold is not None:
                    return hold

    def _gated(self, answer: Outgoing, arrival: Arrival | None = None) -> Outgoing:
        """Attach the gating decision to a frame's answer (gating sessions only)."""
        if isinstance(answer, FrameResult):
            self._last_answer_mono = self._clock()
            if self.gate is not None:
                timing = answer.timing
                latency_ms = timing.since_acquisition_ms or timing.total_ms
                if arrival is not None and arrival.frame.timestamp_s is not None:
                    acquired_s = arrival.frame.timestamp_s
                else:
                    acquired_s = timing.receive_time_s
                answer.gating = self.gate.observe(answer, acquired_s, latency_ms)
        return answer

    def _update_gate(self, update: PromptUpdate) -> None:
        # The plan's reference only: which objects exist (a REMOVE), the gate reads from the registry.
        if self.gate is None or update.action is UpdateAction.REMOVE or update.reference_mm is None:
            return
        self.gate.set_reference(update.object_id, update.reference_mm)
