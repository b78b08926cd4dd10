"""A session's inbox: where its requests, verdicts and computed frames meet. Free of gRPC.

Three kinds of thread post here. The *receiving* thread decodes requests as
they arrive and posts them to the :class:`SessionInbox`; a *scheduler worker*
(:mod:`tracker.server.scheduler`) posts the outcome of the frame it computed;
the session's *answering* loop (:class:`tracker.server.runner.SessionRunner`)
takes work and answers from the inbox. While one of its frames is being
computed, a session takes no new frame or prompt update (its engine state is
the worker's), but verdicts decided meanwhile (``DROPPED``, ``LATE``, ``ERROR``)
go out at once rather than behind that frame.

The inbox enforces the waiting side of each budget policy (``LATEST`` and
``DEGRADE``: one frame waits, a newer one replaces it and the replaced frame is
answered ``DROPPED``; ``STRICT``: frames queue, up to a bound); the policies as a
whole are described in :mod:`tracker.server.runner`. The budget runs from the
frame's acquisition time when the client gives one (:class:`AcquisitionClock`),
otherwise from its arrival. Everything a session
holds is bounded: waiting frames, pending prompt updates, and answers not yet
sent (when the client stops reading, the receiving side stops taking requests
and gRPC flow control pushes back on the sender).
"""

from __future__ import annotations

import logging
import threading
import time
from collections import deque
from dataclasses import dataclass, field
from typing import Any

from tracker.gating.types import GatingDecision
from tracker.types import (
    BudgetPolicy,
    Frame,
    FrameResult,
    FrameStatus,
    FrameTiming,
    PromptAck,
    PromptUpdate,
    TimestampClock,
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


class SessionWorkerLost(Exception):
    """The compute worker holding this session's frame died or hung; the frame was answered ERROR."""


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
    """Everything the answering loop should do next, in this order."""

    answers: list[Outgoing] = field(default_factory=list)  # ready to send as they are
    computed: Any = None  # the outcome of the frame in flight, posted by a scheduler worker
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
        self._in_flight = False  # a frame of this session is with the scheduler
        self._computed: Any = None
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

    def start_compute(self) -> None:
        """A frame went to the scheduler: hand out no frame or update until it is computed."""
        with self._cond:
            self._in_flight = True

    def computed(self, outcome: Any) -> None:
        """The frame in flight is computed (called on a scheduler worker)."""
        with self._cond:
            self._in_flight = False
            self._computed = outcome
            self._cond.notify_all()

    def take_computed(self) -> Any:
        """The computed outcome waiting here, if any, leaving everything else in place."""
        with self._cond:
            computed, self._computed = self._computed, None
            return computed

    @property
    def in_flight(self) -> bool:
        return self._in_flight

    @property
    def cancelled(self) -> bool:
        return self._cancelled

    def take(self, timeout_s: float | None = None) -> Batch | None:
        """The next batch of work; None when cancelled, :class:`SessionIdle` on timeout.

        While a frame is in flight only answers, its outcome and failures come out.
        """
        with self._cond:

            def ready() -> bool:
                if self._cancelled or self._failure is not None or self._answers:
                    return True
                if self._computed is not None:
                    return True
                if self._in_flight:
                    return False
                return bool(self._shutdown is not None or self._finished or self._updates or self._frames)

            if not self._cond.wait_for(ready, timeout=timeout_s):
                raise SessionIdle(f"no request for {timeout_s:.0f} s")
            if self._cancelled:
                return None
            batch = Batch(self._answers, self._computed, failure=self._failure)
            self._answers, self._computed = [], None
            if not self._in_flight:
                # Every pending update applies to the next frame processed (see PromptUpdate).
                batch.frame = self._frames.popleft() if self._frames else None
                batch.updates, self._updates = self._updates, []
                batch.finished = self._finished and not self._frames
                if self._shutdown is not None and not self._frames:
                    batch.shutdown = self._shutdown
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
