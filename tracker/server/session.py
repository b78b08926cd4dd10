"""One client stream on this server, and the pipeline every one of its frames goes through.

A :class:`Session` owns everything of one stream: its :class:`~tracker.server.inbox.Inbox`
(requests from the receiving thread), its budget state, its engine session, its gate and
how it ended. Threads hand work over once each way:

* the **receiving thread** (:meth:`Session.receive`) decodes requests as they arrive and
  posts them to the inbox;
* the **answering loop** (:meth:`Session.answers`, on the servicer's thread) takes them
  and runs each frame through the stages below, in this order;
* the engine's **scheduler** computes the frame on a worker and returns a future; the
  worker never calls session code (the future only wakes the inbox).

The pipeline of a frame, each stage one method of :class:`Session`:

1. **updates** (:meth:`Session.apply_updates`): prompt updates taken with the frame are
   applied to the engine session and acknowledged;
2. **admit** (:meth:`Session.admit`): the budget policy may answer the frame at once
   (``STRICT``: it cannot make its deadline) or adjust the degradation level (``DEGRADE``);
3. **infer** (:meth:`Session.infer`): the frame goes to the scheduler with its deadline;
   the engine's ``step`` (alone or batched with other sessions' frames) returns one
   :class:`~tracker.engines.base.StepOutput`;
4. **describe** (:meth:`Session.describe`): masks to boxes, centroids and millimetres;
5. **verdict** (:meth:`Session.verdict`): timing totals, and ``OK`` turned ``LATE`` when the
   answer comes after the budget;
6. **gate** (:meth:`Session.gated`): the gating decision attached (gating sessions);
7. **answer**: yielded to the servicer, which converts it.

When frames come faster than they can be answered, the session's budget policy decides:

* ``LATEST``: at most one frame waits. A newer one replaces it and the replaced frame is
  answered ``DROPPED`` at once: no unbounded queue, no silent loss.
* ``DEGRADE``: as ``LATEST``, and when answers approach the budget the session steps
  through its engine's accuracy-for-time trades (:class:`~tracker.server.budget.DegradeController`);
  every degraded answer lists the steps in force and why.
* ``STRICT``: frames are never replaced by newer ones. A frame that cannot be answered
  within its budget (by the running estimate of compute time) is answered ``LATE`` without
  being processed, so it does not hold the next one.

How a session ended is a value, :attr:`Session.end` (:class:`SessionEnd`), which the
servicer maps to the stream's status.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import Future
from dataclasses import dataclass
from enum import Enum

from tracker.engines.base import EngineSession
from tracker.gating.gate import Gate
from tracker.gating.types import GatingDecision
from tracker.masks import describe
from tracker.server.budget import AcquisitionClock, Arrival, DegradeController, unprocessed_result
from tracker.server.inbox import IdleTimeout, Inbox, Outgoing, Requests
from tracker.server.scheduler import Completion, InlineScheduler, Job, Scheduler, WorkerLost
from tracker.types import (
    BudgetPolicy,
    Frame,
    FrameError,
    FrameResult,
    FrameStatus,
    FrameTiming,
    ObjectResult,
    PromptAck,
    PromptError,
    PromptUpdate,
    SessionConfig,
    UpdateAction,
)

logger = logging.getLogger(__name__)

# How long closing a session waits for a frame still being computed, before it frees the
# engine session anyway (a worker that returns later finds the session closed).
CLOSE_WAIT_S = 30.0


class EndKind(Enum):
    """How a session ended (also its telemetry outcome)."""

    COMPLETED = "completed"  # the client closed its side; every frame was answered
    CANCELLED = "cancelled"  # the client went away
    FAILED = "failed"  # the stream broke the protocol, or its objects cannot be tracked
    IDLE = "idle"  # no request within the idle timeout
    SHUTDOWN = "shutdown"  # the server drained; every frame received was answered
    WORKER_LOST = "worker_lost"  # the worker computing its frame died or hung; that frame was answered ERROR


@dataclass(frozen=True)
class SessionEnd:
    kind: EndKind
    message: str = ""


@dataclass(frozen=True)
class Received:
    """A decoded frame as it came off the wire."""

    frame: Frame
    received_mono: float
    received_wall: float
    decode_ms: float


@dataclass(frozen=True)
class Refused:
    """A request answered without processing: an undecodable frame, a malformed update."""

    answer: FrameResult | PromptAck


@dataclass(frozen=True)
class Violation:
    """The stream broke the protocol; the session ends with this message."""

    message: str


Incoming = Received | PromptUpdate | Refused | Violation


@dataclass
class InFlight:
    """The session's frame with the scheduler."""

    arrival: Arrival
    update_ids: list[int]  # prompt updates that applied to this frame
    submitted_mono: float
    future: Future[Completion]


class Session:
    """One stream: its inbox, budget, engine session and gate, and its frames' pipeline."""

    def __init__(
        self,
        engine_session: EngineSession,
        config: SessionConfig,
        scheduler: Scheduler | None = None,
        *,
        session_id: str = "",
        engine_name: str = "",
        idle_timeout_s: float | None = None,
        max_objects: int | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.id = session_id
        self.engine_name = engine_name
        self.engine_session = engine_session
        self.config = config
        self.scheduler = scheduler or InlineScheduler()
        self.idle_timeout_s = idle_timeout_s
        self.max_objects = max_objects
        self.inbox = Inbox(config.budget_policy)
        self.acquisition = AcquisitionClock(config.timestamp_clock)
        self.end: SessionEnd | None = None
        self.frames_processed = 0
        self._clock = clock
        self._in_flight: InFlight | None = None
        # Ids of updates accepted while no frame was waiting; reported with the frame they apply to.
        self._carry_over: list[int] = []
        self.degrade = (
            DegradeController(engine_session.degradations(), config.latency_budget_ms)
            if config.budget_policy is BudgetPolicy.DEGRADE
            else None
        )
        self._dropped_seen = 0
        self._compute_ms_estimate: float | None = None  # running estimate for the STRICT policy
        self.objects = engine_session.objects  # the session's one registry: the gate reads it too
        self.gate = Gate(config.gating, config.geometry, self.objects) if config.gating is not None else None
        if self.gate is not None:
            for obj in config.objects:
                if obj.reference_mm is not None:
                    self.gate.set_reference(obj.object_id, obj.reference_mm)
        self._last_answer_mono = clock()
        self._closed = False

    @property
    def log(self) -> dict[str, str]:
        return {"session_id": self.id}

    # -- the receiving thread ---------------------------------------------------------------

    def receive(
        self, items: Iterator[Incoming], broken: type[Exception] | tuple[type[Exception], ...] = ()
    ) -> None:
        """Post each request to the inbox as it arrives (the receiving thread's whole job).

        An exception of a ``broken`` type from ``items`` is a protocol violation (its
        message ends the session); any other means the stream is gone.
        """
        try:
            for item in items:
                if isinstance(item, Received):
                    acquired = self.acquisition.acquired_mono(
                        item.frame.timestamp_s, item.received_mono, item.received_wall
                    )
                    arrival = Arrival(
                        item.frame, item.received_mono, item.received_wall, item.decode_ms, acquired
                    )
                    self.inbox.put_frame(arrival)
                elif isinstance(item, PromptUpdate):
                    self.inbox.put_update(item)
                elif isinstance(item, Refused):
                    self.inbox.put_answer(item.answer)
                else:
                    self.inbox.fail(item.message)
                    return
        except broken as exc:
            self.inbox.fail(str(exc))
            return
        except Exception as exc:  # the stream broke (cancelled, disconnected)
            logger.debug("request stream ended: %s", exc, extra=self.log)
            self.inbox.cancel()
            return
        self.inbox.finish()

    def start_receiving(
        self, items: Iterator[Incoming], broken: type[Exception] | tuple[type[Exception], ...] = ()
    ) -> None:
        threading.Thread(
            target=self.receive, args=(items, broken), name=f"recv-{self.id}", daemon=True
        ).start()

    # -- the answering loop -----------------------------------------------------------------

    def answers(self) -> Iterator[Outgoing]:
        """Every answer of the session, in order; :attr:`end` says how it ended.

        ``end`` stays None only when the loop itself failed (a fault of this code, logged by the
        caller): the host then records the session's outcome as ``error``.
        """
        try:
            yield from self._loop()
        finally:
            if self.end is None and self.inbox.cancelled:  # the client left while an answer was on its way
                self.end = SessionEnd(EndKind.CANCELLED)
            if self.end is not None and self.end.kind in (EndKind.COMPLETED, EndKind.CANCELLED):
                logger.info(
                    "session %s ended: %d frames processed, %d dropped%s",
                    self.id, self.frames_processed, self.inbox.frames_dropped,
                    " (client cancelled)" if self.end.kind is EndKind.CANCELLED else "", extra=self.log,
                )  # fmt: skip

    def _loop(self) -> Iterator[Outgoing]:
        while True:
            try:
                requests = self._take()
            except IdleTimeout as exc:
                yield from self._end(EndKind.IDLE, str(exc), None)
                return
            if isinstance(requests, GatingDecision):  # the stream stalled: hold the beam
                yield requests
                continue
            if requests is None:  # cancelled: the client is gone, nobody to answer
                self.end = SessionEnd(EndKind.CANCELLED)
                return
            for answer in requests.answers:
                yield self.gated(answer)
            if self._in_flight is not None and self._in_flight.future.done():
                in_flight, self._in_flight = self._in_flight, None
                completion = in_flight.future.result()
                try:
                    result = self.answer(in_flight, completion)
                except PromptError as exc:
                    # Only prompts queued before the frame size was known fail here; the objects
                    # they define cannot be tracked, so the session cannot go on. The frame is
                    # answered, then the session ends with the same reason.
                    reason = f"frame {in_flight.arrival.frame.index}: {exc}"
                    yield self.gated(self._unanswerable(in_flight.arrival, reason), in_flight.arrival)
                    yield from self._end(EndKind.FAILED, reason, requests.frame)
                    return
                yield self.gated(result, in_flight.arrival)
                if isinstance(completion.error, WorkerLost):
                    yield from self._end(EndKind.WORKER_LOST, str(completion.error), requests.frame)
                    return
            if requests.failure is not None:
                yield from self._end(EndKind.FAILED, requests.failure, requests.frame)
                return
            if self._in_flight is not None:
                continue
            acks, applied = self.apply_updates(requests.updates)
            yield from acks
            if requests.frame is not None:
                verdict = self.admit(requests.frame, applied)
                if verdict is not None:
                    yield self.gated(verdict, requests.frame)
                continue  # the end of the stream is reported again once this frame is answered
            self._carry_over.extend(applied)
            if requests.finished:
                self.end = SessionEnd(EndKind.COMPLETED)
                return
            if requests.shutdown is not None:
                self.end = SessionEnd(EndKind.SHUTDOWN, requests.shutdown)
                return

    def _end(self, kind: EndKind, reason: str, taken: Arrival | None) -> Iterator[Outgoing]:
        """End the session; every frame it has not answered yet is answered first.

        A frame still computing is waited for (at most :data:`CLOSE_WAIT_S`) and answered as it
        came out; frames still waiting are answered ERROR without being processed.
        """
        self.end = SessionEnd(kind, reason)
        in_flight, self._in_flight = self._in_flight, None
        if in_flight is not None:
            try:
                result = self.answer(in_flight, in_flight.future.result(CLOSE_WAIT_S))
            except (PromptError, TimeoutError) as exc:
                result = self._unanswerable(in_flight.arrival, f"not processed: {reason} ({exc})")
            yield self.gated(result, in_flight.arrival)
        waiting = ([taken] if taken is not None else []) + self.inbox.take_waiting_frames()
        for arrival in waiting:
            yield self.gated(
                unprocessed_result(arrival, FrameStatus.ERROR, f"not processed: {reason}"), arrival
            )

    def _unanswerable(self, arrival: Arrival, reason: str) -> FrameResult:
        """The answer of a frame whose prompts cannot be tracked (the session ends after it)."""
        now = self._clock()
        timing = FrameTiming(
            receive_time_s=arrival.received_wall, queue_ms=(now - arrival.received_mono) * 1000.0
        )
        return self.verdict(
            FrameResult(arrival.frame.index, FrameStatus.ERROR, message=reason), arrival, now, timing
        )

    def process(self, arrival: Arrival, applied_update_ids: list[int] | None = None) -> FrameResult:
        """One frame through the whole pipeline, waiting for its answer (tests and tools).

        The serving loop (:meth:`answers`) does not wait: it answers other things while
        the frame is computed.
        """
        verdict = self.admit(arrival, applied_update_ids)
        if verdict is not None:
            return verdict
        in_flight, self._in_flight = self._in_flight, None
        assert in_flight is not None
        return self.answer(in_flight, in_flight.future.result())

    # -- stage 1: prompt updates ------------------------------------------------------------

    def apply_updates(self, updates: list[PromptUpdate]) -> tuple[list[PromptAck], list[int]]:
        """Apply each update to the engine session; an ack for each, and the ids that applied."""
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

    # -- stage 2: admit ---------------------------------------------------------------------

    def admit(self, arrival: Arrival, applied_update_ids: list[int] | None = None) -> FrameResult | None:
        """Send the frame on to :meth:`infer`; or answer it at once when the policy says so."""
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
            return self.verdict(
                FrameResult(frame.index, FrameStatus.LATE, message=skip_reason), arrival, now, timing
            )
        if self.degrade is not None:
            dropped_now = self.inbox.frames_dropped - self._dropped_seen
            self._dropped_seen = self.inbox.frames_dropped
            if dropped_now:
                self._set_degradation(self.degrade.update(frame.index, 0.0, dropped_now))
        self.infer(arrival, update_ids, now)
        return None

    # -- stage 3: infer, on a scheduler worker -----------------------------------------------

    def infer(self, arrival: Arrival, update_ids: list[int], now: float) -> None:
        """Hand the frame to the scheduler; its future wakes the loop when it is computed."""
        deadline = arrival.deadline_origin + self.config.latency_budget_ms / 1000.0
        try:
            future = self.scheduler.submit(Job(deadline, 0, self.engine_session, arrival.frame))
        except RuntimeError as exc:  # the scheduler is closed: the server is stopping
            t = self._clock()
            future = Future()
            future.set_result(Completion(None, RuntimeError(f"not processed: {exc}"), t, t, 0))
        self._in_flight = InFlight(arrival, update_ids, now, future)
        future.add_done_callback(self.inbox.wake)

    # -- stages 4 and 5: describe and verdict ------------------------------------------------

    def describe(self, completion: Completion) -> list[ObjectResult]:
        """Tracks to answers: masks to boxes, centroids and millimetres."""
        assert completion.output is not None
        geometry = self.config.geometry
        return [
            describe(t, self.engine_session.label_of(t.object_id), geometry) for t in completion.output.tracks
        ]

    def answer(self, in_flight: InFlight, c: Completion) -> FrameResult:
        """The frame's result, built once from its outcome, with its budget verdict.

        Raises PromptError when the frame's prompts turned out unusable (the session ends).
        """
        arrival = in_flight.arrival
        index = arrival.frame.index
        timing = FrameTiming(
            receive_time_s=arrival.received_wall,
            queue_ms=(c.started_mono - arrival.received_mono) * 1000.0,
            batch_size=c.batch_size,
        )
        objects: list[ObjectResult] = []
        postprocess_ms = 0.0
        if c.error is None and c.output is not None:
            start = self._clock()
            try:
                objects = self.describe(c)
            except Exception as exc:
                c = Completion(None, exc, c.started_mono, c.finished_mono, c.batch_size)
            postprocess_ms = (self._clock() - start) * 1000.0
        if c.error is not None or c.output is None:
            error = c.error or RuntimeError("no output")
            if isinstance(error, PromptError):
                raise error
            if isinstance(error, FrameError | WorkerLost):
                message = str(error)
            else:  # an engine fault costs one frame, not the session or the server
                logger.error("engine failed on frame %d", index, exc_info=error)
                message = f"engine failed on this frame: {type(error).__name__}: {error}"
            result = FrameResult(
                index, FrameStatus.ERROR, message=message, applied_update_ids=in_flight.update_ids
            )
            return self.verdict(result, arrival, c.started_mono, timing)
        engine_ms = (c.finished_mono - c.started_mono) * 1000.0
        timing.stages_ms = {
            "queue": (in_flight.submitted_mono - arrival.received_mono) * 1000.0,
            "schedule": (c.started_mono - in_flight.submitted_mono) * 1000.0,
            "decode": arrival.decode_ms,
            **(c.output.stages_ms or {"inference": engine_ms}),
            "postprocess": postprocess_ms,
        }
        self.frames_processed += 1
        # What a frame costs from submission, scheduling wait included (the STRICT estimate).
        cost_ms = (c.finished_mono - in_flight.submitted_mono) * 1000.0 + postprocess_ms
        self._compute_ms_estimate = (
            cost_ms if self._compute_ms_estimate is None else 0.8 * self._compute_ms_estimate + 0.2 * cost_ms
        )
        result = FrameResult(
            index,
            FrameStatus.OK,
            objects=objects,
            applied_update_ids=in_flight.update_ids,
            reprompts=c.output.events,
        )
        result = self.verdict(result, arrival, c.started_mono, timing)
        if self.degrade is not None:
            if self.degrade.active:
                result.degradations = self.degrade.active
                result.degradation_reason = self.degrade.reason
            self._set_degradation(self.degrade.update(index, timing.total_ms, 0))
        return result

    def verdict(
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

    # -- stage 6: gate ----------------------------------------------------------------------

    def gated(self, answer: Outgoing, arrival: Arrival | None = None) -> Outgoing:
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

    # -- the rest ---------------------------------------------------------------------------

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

    def _take(self) -> Requests | GatingDecision | None:
        """The next requests; with gating, a HOLD whenever the stream stays silent past the stall timeout."""
        computing = self._in_flight.future if self._in_flight is not None else None
        if self.gate is None:
            return self.inbox.take(self.idle_timeout_s, computing)
        stall_s = self.gate.config.stall_timeout_ms / 1000.0
        while True:
            silent_s = self._clock() - self._last_answer_mono
            held = self.gate.last_decision is not None and self.gate.last_decision.frame_index is None
            waits = [] if held else [stall_s - silent_s]
            if self.idle_timeout_s is not None:
                waits.append(self.idle_timeout_s - silent_s)
            try:
                return self.inbox.take(max(0.0, min(waits)) if waits else None, computing)
            except IdleTimeout:
                silent_s = self._clock() - self._last_answer_mono
                if self.idle_timeout_s is not None and silent_s >= self.idle_timeout_s:
                    raise IdleTimeout(f"no request for {self.idle_timeout_s:.0f} s") from None
                hold = self.gate.stalled(silent_s * 1000.0)
                if hold is not None:
                    return hold

    def _update_gate(self, update: PromptUpdate) -> None:
        # The plan's reference only: which objects exist (a REMOVE), the gate reads from the registry.
        if self.gate is None or update.action is UpdateAction.REMOVE or update.reference_mm is None:
            return
        self.gate.set_reference(update.object_id, update.reference_mm)

    def wait_idle(self, timeout_s: float) -> bool:
        """Wait until no frame of this session is being computed (before closing its engine session)."""
        in_flight = self._in_flight
        if in_flight is None:
            return True
        try:
            in_flight.future.result(timeout_s)
        except TimeoutError:
            return False
        return True

    def close(self) -> None:
        """Free everything the session holds. Idempotent."""
        if self._closed:
            return
        self._closed = True
        self.inbox.cancel()
        if not self.wait_idle(CLOSE_WAIT_S):
            logger.error("session %s: a frame was still computing after %.0f s", self.id, CLOSE_WAIT_S)
        self.engine_session.close()
