"""A session's inbox: requests from its receiving thread, taken by its answering loop. Free of gRPC.

The *receiving* thread decodes requests as they arrive and posts them here; the
session's answering loop (:class:`tracker.server.session.Session`) takes them. While
one of the session's frames is being computed the loop takes no new frame or prompt
update (its engine state is the worker's), but verdicts decided meanwhile
(``DROPPED``, ``LATE``, ``ERROR``) go out at once rather than behind that frame; the
computation's future wakes the loop (:meth:`Inbox.wake`) when it is done.

The inbox enforces the waiting side of each budget policy (``LATEST`` and ``DEGRADE``:
one frame waits, a newer one replaces it and the replaced frame is answered
``DROPPED``; ``STRICT``: frames queue, up to a bound). Everything it holds is bounded:
waiting frames, pending prompt updates, and answers not yet sent (when the client
stops reading, the receiving side stops taking requests and gRPC flow control pushes
back on the sender).
"""

from __future__ import annotations

import threading
from collections import deque
from concurrent.futures import Future
from dataclasses import dataclass, field
from typing import Any

from tracker.gating.types import GatingDecision
from tracker.server.budget import Arrival, unprocessed_result
from tracker.types import BudgetPolicy, FrameResult, FrameStatus, PromptAck, PromptUpdate

Outgoing = FrameResult | PromptAck | GatingDecision

STRICT_MAX_WAITING_FRAMES = 8
MAX_PENDING_ANSWERS = 256


class IdleTimeout(Exception):
    """No request arrived within the idle timeout."""


@dataclass
class Requests:
    """What the answering loop should do next, in this order."""

    answers: list[Outgoing] = field(default_factory=list)  # ready to send as they are
    updates: list[PromptUpdate] = field(default_factory=list)  # apply before the frame
    frame: Arrival | None = None
    finished: bool = False  # the client closed its side; nothing more will come
    failure: str | None = None  # end the session with this message
    shutdown: str | None = None  # the server is draining: end with this message once the frame is answered


class Inbox:
    """Bounded hand-off from the receiving thread to the answering loop."""

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

    def wake(self, _: Any = None) -> None:
        """Something the loop waits for changed outside the inbox (a computation finished)."""
        with self._cond:
            self._cond.notify_all()

    def take_waiting_frames(self) -> list[Arrival]:
        """Every frame still waiting, taken out (the session is ending and answers them)."""
        with self._cond:
            frames, self._frames = list(self._frames), deque()
            self._cond.notify_all()
            return frames

    @property
    def cancelled(self) -> bool:
        return self._cancelled

    @property
    def pending_answers(self) -> int:
        """Answers decided but not yet taken by the answering loop (at most the bound)."""
        with self._cond:
            return len(self._answers)

    def take(self, timeout_s: float | None = None, computing: Future[Any] | None = None) -> Requests | None:
        """The next requests; None when cancelled, :class:`IdleTimeout` on timeout.

        While ``computing`` (the session's frame with the scheduler) is not done, only
        answers and failures come out; the loop is woken when it is.
        """
        with self._cond:

            def ready() -> bool:
                if self._cancelled or self._failure is not None or self._answers:
                    return True
                if computing is not None:
                    return computing.done()
                return bool(self._shutdown is not None or self._finished or self._updates or self._frames)

            if not self._cond.wait_for(ready, timeout=timeout_s):
                raise IdleTimeout(f"no request for {timeout_s:.0f} s")
            if self._cancelled:
                return None
            requests = Requests(self._answers, failure=self._failure)
            self._answers = []
            if computing is None:
                # Every pending update applies to the next frame processed (see PromptUpdate).
                requests.frame = self._frames.popleft() if self._frames else None
                requests.updates, self._updates = self._updates, []
                requests.finished = self._finished and not self._frames
                if self._shutdown is not None and not self._frames:
                    requests.shutdown = self._shutdown
            self._cond.notify_all()
            return requests
