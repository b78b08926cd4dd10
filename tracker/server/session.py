"""One session's serving logic, free of gRPC so it can be tested on its own.

Two threads meet here. The *receiving* thread decodes requests as they arrive
and posts them to a :class:`SessionInbox`; the *processing* loop
(:meth:`SessionRunner.run`) takes work from the inbox and runs the pipeline
stages: preprocess and inference (the engine's ``step``), then postprocess
(masks to boxes, centroids and millimetres).

Latest frame wins: the inbox holds at most one waiting frame. When a newer one
arrives, the waiting one is answered ``DROPPED`` at once, so a slow engine
never builds an unbounded queue and a stale frame is never silently lost.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field

from engines.base import EngineSession
from tracker.masks import describe
from tracker.types import (
    Frame,
    FrameError,
    FrameResult,
    FrameStatus,
    FrameTiming,
    PromptAck,
    PromptError,
    PromptUpdate,
    SessionConfig,
)

logger = logging.getLogger(__name__)

Outgoing = FrameResult | PromptAck


class SessionFailed(Exception):
    """The session's state is unusable; the stream must end with this message."""


class SessionIdle(Exception):
    """No request arrived within the idle timeout."""


@dataclass
class Arrival:
    """A decoded frame and when it reached the server."""

    frame: Frame
    received_mono: float  # time.monotonic() at arrival, for durations
    received_wall: float  # time.time() at arrival, reported to the client
    decode_ms: float = 0.0


@dataclass
class Batch:
    """Everything the processing loop should do next, in this order."""

    answers: list[Outgoing] = field(default_factory=list)  # ready to send as they are
    updates: list[PromptUpdate] = field(default_factory=list)  # apply before the frame
    frame: Arrival | None = None
    finished: bool = False  # the client closed its side; nothing more will come
    failure: str | None = None  # end the session with this message


class SessionInbox:
    """Bounded hand-off from the receiving thread to the processing loop."""

    def __init__(self, max_pending_updates: int = 64) -> None:
        self._cond = threading.Condition()
        self._answers: list[Outgoing] = []
        self._updates: list[PromptUpdate] = []
        self._frame: Arrival | None = None
        self._finished = False
        self._cancelled = False
        self._failure: str | None = None
        self._max_pending_updates = max_pending_updates
        self.frames_dropped = 0

    def put_frame(self, arrival: Arrival) -> None:
        with self._cond:
            stale = self._frame
            self._frame = arrival
            if stale is not None:
                self.frames_dropped += 1
                self._answers.append(dropped_result(stale, arrival.frame.index))
            self._cond.notify()

    def put_update(self, update: PromptUpdate) -> None:
        with self._cond:
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
            self._cond.notify()

    def put_answer(self, answer: Outgoing) -> None:
        """An answer that needs no processing, e.g. an ERROR for an undecodable frame."""
        with self._cond:
            self._answers.append(answer)
            self._cond.notify()

    def fail(self, message: str) -> None:
        with self._cond:
            self._failure = message
            self._cond.notify()

    def finish(self) -> None:
        """The client closed its side: process what is waiting, then end."""
        with self._cond:
            self._finished = True
            self._cond.notify()

    def cancel(self) -> None:
        """The client is gone: end now without processing what is waiting."""
        with self._cond:
            self._cancelled = True
            self._cond.notify()

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
                    or self._finished
                    or self._answers
                    or self._updates
                    or self._frame is not None
                ),
                timeout=timeout_s,
            )
            if self._cancelled:
                return None
            if not ready:
                raise SessionIdle(f"no request for {timeout_s:.0f} s")
            batch = Batch(self._answers, self._updates, self._frame, self._finished, self._failure)
            self._answers, self._updates, self._frame = [], [], None
            return batch


def dropped_result(arrival: Arrival, newer_index: int) -> FrameResult:
    waited_ms = (time.monotonic() - arrival.received_mono) * 1000.0
    return FrameResult(
        frame_index=arrival.frame.index,
        status=FrameStatus.DROPPED,
        message=f"skipped: frame {newer_index} arrived while this one was waiting (latest frame wins)",
        timing=FrameTiming(receive_time_s=arrival.received_wall, queue_ms=waited_ms, total_ms=waited_ms),
    )


def error_result(frame_index: int, message: str, received_wall: float, received_mono: float) -> FrameResult:
    elapsed_ms = (time.monotonic() - received_mono) * 1000.0
    return FrameResult(
        frame_index=frame_index,
        status=FrameStatus.ERROR,
        message=message,
        timing=FrameTiming(receive_time_s=received_wall, total_ms=elapsed_ms),
    )


class SessionRunner:
    """The processing loop of one session: updates, then frames, through the pipeline."""

    def __init__(
        self,
        engine_session: EngineSession,
        config: SessionConfig,
        inbox: SessionInbox,
        idle_timeout_s: float | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.engine_session = engine_session
        self.config = config
        self.inbox = inbox
        self.idle_timeout_s = idle_timeout_s
        self._clock = clock
        self.frames_processed = 0
        # Ids of updates accepted while no frame was waiting; reported with the frame they apply to.
        self._carry_over: list[int] = []

    def run(self) -> Iterator[Outgoing]:
        """Yield every answer until the client finishes or cancels.

        Raises :class:`SessionFailed` when the session cannot go on and
        :class:`SessionIdle` after ``idle_timeout_s`` without a request.
        """
        while True:
            batch = self.inbox.take(self.idle_timeout_s)
            if batch is None:  # cancelled: the client is gone, nobody to answer
                return
            yield from batch.answers
            if batch.failure is not None:
                raise SessionFailed(batch.failure)
            applied: list[int] = []
            for update in batch.updates:
                try:
                    self.engine_session.apply(update)
                except PromptError as exc:
                    yield PromptAck(update.update_id, False, str(exc))
                else:
                    applied.append(update.update_id)
                    yield PromptAck(update.update_id, True, "applies to the next frame processed")
            if batch.frame is not None:
                yield self.process(batch.frame, applied)
            else:
                self._carry_over.extend(applied)
            if batch.finished:
                return

    def process(self, arrival: Arrival, applied_update_ids: list[int] | None = None) -> FrameResult:
        """Run one frame through preprocess/inference and postprocess; never raises for frame faults."""
        frame = arrival.frame
        start = self._clock()
        update_ids = self._carry_over + list(applied_update_ids or [])
        self._carry_over = []
        timing = FrameTiming(
            receive_time_s=arrival.received_wall, queue_ms=(start - arrival.received_mono) * 1000.0
        )
        try:
            tracks = self.engine_session.step(frame)
            inferred = self._clock()
            objects = [
                describe(t, self.engine_session.label_of(t.object_id), self.config.geometry) for t in tracks
            ]
        except FrameError as exc:
            return self._finish(
                FrameResult(frame.index, FrameStatus.ERROR, message=str(exc)), arrival, start, timing
            )
        except PromptError as exc:
            # Only prompts queued before the frame size was known can fail here; the
            # objects they define cannot be tracked, so the session cannot go on.
            raise SessionFailed(f"frame {frame.index}: {exc}") from exc
        except Exception as exc:  # an engine fault must cost one frame, not the server
            logger.exception("engine failed on frame %d", frame.index)
            message = f"engine failed on this frame: {type(exc).__name__}: {exc}"
            return self._finish(
                FrameResult(frame.index, FrameStatus.ERROR, message=message), arrival, start, timing
            )
        done = self._clock()
        timing.stages_ms = {
            "decode": arrival.decode_ms,
            "inference": (inferred - start) * 1000.0,
            "postprocess": (done - inferred) * 1000.0,
        }
        self.frames_processed += 1
        result = FrameResult(frame.index, FrameStatus.OK, objects=objects, applied_update_ids=update_ids)
        return self._finish(result, arrival, start, timing)

    def _finish(
        self, result: FrameResult, arrival: Arrival, start: float, timing: FrameTiming
    ) -> FrameResult:
        end = self._clock()
        timing.compute_ms = (end - start) * 1000.0 + arrival.decode_ms
        timing.total_ms = (end - arrival.received_mono) * 1000.0
        result.timing = timing
        if result.status is FrameStatus.OK and timing.total_ms > self.config.latency_budget_ms:
            result.status = FrameStatus.LATE
            result.message = (
                f"answered in {timing.total_ms:.1f} ms, over the session budget of"
                f" {self.config.latency_budget_ms:.0f} ms"
            )
        return result
