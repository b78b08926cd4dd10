"""One session's serving logic, free of gRPC so it can be tested on its own.

Two threads meet here. The *receiving* thread decodes requests as they arrive
and posts them to a :class:`SessionInbox`; the *processing* loop
(:meth:`SessionRunner.run`) takes work from the inbox and runs the pipeline
stages: preprocess and inference (the engine's ``step``, which times its own
stages), then postprocess (masks to boxes, centroids and millimetres).

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
(:class:`AcquisitionClock`), otherwise from its arrival. Everything a session
holds is bounded: waiting frames, pending prompt updates, and answers not yet
sent (when the client stops reading, the receiving side stops taking requests
and gRPC flow control pushes back on the sender).
"""

from __future__ import annotations

import logging
import threading
import time
from collections import deque
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field

from engines.base import EngineSession
from tracker.gating.gate import Gate, GatingDecision
from tracker.masks import describe
from tracker.types import (
    BudgetPolicy,
    Frame,
    FrameError,
    FrameResult,
    FrameStatus,
    FrameTiming,
    PromptAck,
    PromptError,
    PromptUpdate,
    SessionConfig,
    TimestampClock,
    UpdateAction,
)

logger = logging.getLogger(__name__)

Outgoing = FrameResult | PromptAck | GatingDecision

STRICT_MAX_WAITING_FRAMES = 8
MAX_PENDING_ANSWERS = 256


class SessionFailed(Exception):
    """The session's state is unusable; the stream must end with this message."""


class SessionIdle(Exception):
    """No request arrived within the idle timeout."""


class SessionShutdown(Exception):
    """The server is shutting down; frames already waiting have been answered."""


@dataclass
class Arrival:
    """A decoded frame, when it reached the server and when it was acquired."""

    frame: Frame
    received_mono: float  # time.monotonic() at arrival, for durations
    received_wall: float  # time.time() at arrival, reported to the client
    decode_ms: float = 0.0
    acquired_mono: float | None = None  # acquisition time on the monotonic clock, when known

    @property
    def deadline_origin(self) -> float:
        """Where the budget starts: acquisition when known, else arrival."""
        return self.acquired_mono if self.acquired_mono is not None else self.received_mono


class AcquisitionClock:
    """Maps a client's acquisition timestamps onto this server's monotonic clock.

    With ``UNIX`` timestamps the clocks are taken as synchronised. With
    ``RELATIVE`` ones (any client clock), the offset is the smallest
    ``arrival - timestamp`` seen so far: the fastest frame is assumed to have
    had no delay, so later frames are charged for every extra millisecond they
    spent in the client, the network or the server. That under-counts a constant
    transport delay, never the queueing the budget is about.
    """

    def __init__(self, mode: TimestampClock) -> None:
        self.mode = mode
        self._offset_s: float | None = None

    def acquired_mono(
        self, timestamp_s: float | None, received_mono: float, received_wall: float
    ) -> float | None:
        if timestamp_s is None:
            return None
        if self.mode is TimestampClock.UNIX:
            age_s = max(0.0, received_wall - timestamp_s)
        else:
            offset = received_mono - timestamp_s
            if self._offset_s is None or offset < self._offset_s:
                self._offset_s = offset
            age_s = offset - self._offset_s
        return received_mono - age_s


@dataclass
class Batch:
    """Everything the processing loop should do next, in this order."""

    answers: list[Outgoing] = field(default_factory=list)  # ready to send as they are
    updates: list[PromptUpdate] = field(default_factory=list)  # apply before the frame
    frame: Arrival | None = None
    finished: bool = False  # the client closed its side; nothing more will come
    failure: str | None = None  # end the session with this message
    shutdown: str | None = None  # the server is draining: end with this message once the frame is answered


class SessionInbox:
    """Bounded hand-off from the receiving thread to the processing loop."""

    def __init__(
        self,
        policy: BudgetPolicy = BudgetPolicy.LATEST,
        max_pending_updates: int = 64,
        max_pending_answers: int = MAX_PENDING_ANSWERS,
    ) -> None:
        self.policy = policy
        self._max_frames = STRICT_MAX_WAITING_FRAMES if policy is BudgetPolicy.STRICT else 1
        self._cond = threading.Condition()
        self._answers: list[Outgoing] = []
        self._updates: list[PromptUpdate] = []
        self._frames: deque[Arrival] = deque()
        self._finished = False
        self._cancelled = False
        self._failure: str | None = None
        self._shutdown: str | None = None
        self._max_pending_updates = max_pending_updates
        self._max_pending_answers = max_pending_answers
        self.frames_dropped = 0

    def _wait_for_room(self) -> None:
        # Back-pressure: a client that does not read its answers stops being read.
        self._cond.wait_for(lambda: self._cancelled or len(self._answers) < self._max_pending_answers)

    def put_frame(self, arrival: Arrival) -> None:
        with self._cond:
            self._wait_for_room()
            if self._shutdown is not None:
                self._answers.append(
                    unprocessed_result(arrival, FrameStatus.ERROR, f"not processed: {self._shutdown}")
                )
                self._cond.notify_all()
                return
            if len(self._frames) >= self._max_frames:
                stale = self._frames.popleft()
                if self.policy is BudgetPolicy.STRICT:
                    self._answers.append(
                        unprocessed_result(
                            stale,
                            FrameStatus.LATE,
                            f"not processed: {self._max_frames} frames were already waiting (strict policy)",
                        )
                    )
                else:
                    self.frames_dropped += 1
                    self._answers.append(
                        unprocessed_result(
                            stale,
                            FrameStatus.DROPPED,
                            f"skipped: frame {arrival.frame.index} arrived while this one was waiting"
                            " (latest frame wins)",
                        )
                    )
            self._frames.append(arrival)
            self._cond.notify_all()

    def put_update(self, update: PromptUpdate) -> None:
        with self._cond:
            self._wait_for_room()
            if len(self._updates) >= self._max_pending_updates:
                self._answers.append(
                    PromptAck(
                        update.update_id,
                        False,
                        f"more than {self._max_pending_updates} prompt updates are waiting for a frame;"
                        " send a frame before further updates",
                    )
                )
            else:
                self._updates.append(update)
            self._cond.notify_all()

    def put_answer(self, answer: Outgoing) -> None:
        """An answer that needs no processing, e.g. an ERROR for an undecodable frame."""
        with self._cond:
            self._wait_for_room()
            self._answers.append(answer)
            self._cond.notify_all()

    def fail(self, message: str) -> None:
        with self._cond:
            self._failure = message
            self._cond.notify_all()

    def drain(self, message: str) -> None:
        """The server is stopping: answer what is waiting, refuse new frames, then end."""
        with self._cond:
            self._shutdown = message
            self._cond.notify_all()

    def finish(self) -> None:
        """The client closed its side: process what is waiting, then end."""
        with self._cond:
            self._finished = True
            self._cond.notify_all()

    def cancel(self) -> None:
        """The client is gone: end now without processing what is waiting."""
        with self._cond:
            self._cancelled = True
            self._cond.notify_all()

    @property
    def cancelled(self) -> bool:
        return self._cancelled

    def take(self, timeout_s: float | None = None) -> Batch | None:
        """The next batch of work; None when cancelled, :class:`SessionIdle` on timeout."""
        with self._cond:
            ready = self._cond.wait_for(
                lambda: (
                    self._cancelled
                    or self._failure is not None
                    or self._shutdown is not None
                    or self._finished
                    or self._answers
                    or self._updates
                    or self._frames
                ),
                timeout=timeout_s,
            )
            if self._cancelled:
                return None
            if not ready:
                raise SessionIdle(f"no request for {timeout_s:.0f} s")
            frame = self._frames.popleft() if self._frames else None
            # Every pending update applies to the next frame processed (see PromptUpdate).
            batch = Batch(
                self._answers, self._updates, frame, self._finished and not self._frames, self._failure
            )
            if self._shutdown is not None and not self._frames:
                batch.shutdown = self._shutdown
            self._answers, self._updates = [], []
            self._cond.notify_all()
            return batch


def unprocessed_result(arrival: Arrival, status: FrameStatus, message: str) -> FrameResult:
    now = time.monotonic()
    waited_ms = (now - arrival.received_mono) * 1000.0
    return FrameResult(
        frame_index=arrival.frame.index,
        status=status,
        message=message,
        timing=FrameTiming(
            receive_time_s=arrival.received_wall,
            queue_ms=waited_ms,
            total_ms=waited_ms,
            since_acquisition_ms=(now - arrival.acquired_mono) * 1000.0 if arrival.acquired_mono else 0.0,
        ),
    )


def error_result(frame_index: int, message: str, received_wall: float, received_mono: float) -> FrameResult:
    elapsed_ms = (time.monotonic() - received_mono) * 1000.0
    return FrameResult(
        frame_index=frame_index,
        status=FrameStatus.ERROR,
        message=message,
        timing=FrameTiming(receive_time_s=received_wall, total_ms=elapsed_ms),
    )


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


class SessionRunner:
    """The processing loop of one session: updates, then frames, through the pipeline."""

    def __init__(
        self,
        engine_session: EngineSession,
        config: SessionConfig,
        inbox: SessionInbox,
        idle_timeout_s: float | None = None,
        clock: Callable[[], float] = time.monotonic,
        max_objects: int | None = None,
    ) -> None:
        self.engine_session = engine_session
        self.max_objects = max_objects
        self.config = config
        self.inbox = inbox
        self.idle_timeout_s = idle_timeout_s
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
        self.gate = Gate(config.gating, config.geometry) if config.gating is not None else None
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
            if batch.failure is not None:
                raise SessionFailed(batch.failure)
            applied: list[int] = []
            for update in batch.updates:
                if (
                    update.action is UpdateAction.ADD
                    and self.max_objects is not None
                    and len(self.engine_session.object_ids) >= self.max_objects
                ):
                    message = (
                        f"cannot add object {update.object_id}:"
                        f" the limit is {self.max_objects} objects per session"
                    )
                    yield PromptAck(update.update_id, False, message)
                    continue
                try:
                    self.engine_session.apply(update)
                except PromptError as exc:
                    yield PromptAck(update.update_id, False, str(exc))
                else:
                    applied.append(update.update_id)
                    self._update_gate(update)
                    yield PromptAck(update.update_id, True, "applies to the next frame processed")
            if batch.frame is not None:
                yield self._gated(self.process(batch.frame, applied), batch.frame)
            else:
                self._carry_over.extend(applied)
            if batch.finished:
                return
            if batch.shutdown is not None:
                raise SessionShutdown(batch.shutdown)

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
        if self.gate is None:
            return
        if update.action is UpdateAction.REMOVE:
            self.gate.forget(update.object_id)
        elif update.reference_mm is not None:
            self.gate.set_reference(update.object_id, update.reference_mm)

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

    def process(self, arrival: Arrival, applied_update_ids: list[int] | None = None) -> FrameResult:
        """Run one frame through preprocess/inference and postprocess; never raises for frame faults."""
        frame = arrival.frame
        start = self._clock()
        update_ids = self._carry_over + list(applied_update_ids or [])
        self._carry_over = []
        timing = FrameTiming(
            receive_time_s=arrival.received_wall, queue_ms=(start - arrival.received_mono) * 1000.0
        )
        skip_reason = self._cannot_make_it(arrival, start)
        if skip_reason is not None:
            self._carry_over = update_ids  # they apply to the next frame actually processed
            result = FrameResult(frame.index, FrameStatus.LATE, message=skip_reason)
            return self._finish(result, arrival, start, timing)
        if self.degrade is not None:
            dropped_now = self.inbox.frames_dropped - self._dropped_seen
            self._dropped_seen = self.inbox.frames_dropped
            if dropped_now:
                self._set_degradation(self.degrade.update(frame.index, 0.0, dropped_now))
        try:
            out = self.engine_session.step(frame)
            inferred = self._clock()
            objects = [
                describe(t, self.engine_session.label_of(t.object_id), self.config.geometry)
                for t in out.tracks
            ]
        except FrameError as exc:
            result = FrameResult(frame.index, FrameStatus.ERROR, message=str(exc))
            return self._finish(result, arrival, start, timing)
        except PromptError as exc:
            # Only prompts queued before the frame size was known can fail here; the
            # objects they define cannot be tracked, so the session cannot go on.
            raise SessionFailed(f"frame {frame.index}: {exc}") from exc
        except Exception as exc:  # an engine fault must cost one frame, not the server
            logger.exception("engine failed on frame %d", frame.index)
            message = f"engine failed on this frame: {type(exc).__name__}: {exc}"
            result = FrameResult(frame.index, FrameStatus.ERROR, message=message)
            return self._finish(result, arrival, start, timing)
        done = self._clock()
        engine_stages = out.stages_ms
        timing.stages_ms = {
            "queue": timing.queue_ms,
            "decode": arrival.decode_ms,
            **(engine_stages or {"inference": (inferred - start) * 1000.0}),
            "postprocess": (done - inferred) * 1000.0,
        }
        self.frames_processed += 1
        compute_ms = (done - start) * 1000.0
        self._compute_ms_estimate = (
            compute_ms
            if self._compute_ms_estimate is None
            else 0.8 * self._compute_ms_estimate + 0.2 * compute_ms
        )
        result = FrameResult(
            frame.index, FrameStatus.OK, objects=objects, applied_update_ids=update_ids, reprompts=out.events
        )
        result = self._finish(result, arrival, start, timing)
        if self.degrade is not None:
            if self.degrade.active:
                result.degradations = self.degrade.active
                result.degradation_reason = self.degrade.reason
            self._set_degradation(self.degrade.update(frame.index, timing.total_ms, 0))
        return result

    def _set_degradation(self, changed: bool) -> None:
        if changed and self.degrade is not None:
            logger.info("degradation level %d: %s", self.degrade.level, self.degrade.reason)
            self.engine_session.set_degradation(self.degrade.level)

    def _finish(
        self, result: FrameResult, arrival: Arrival, start: float, timing: FrameTiming
    ) -> FrameResult:
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
