"""The blocking failover session: :class:`FailoverSession`, on threads.

``TrackerClient.open_session(config, failover=True)`` returns one. Every rule
and decision (frames in flight, last good masks, ``LOST`` answers with
``BEAM_HOLD``, when to re-open, events) is
:class:`~tracker.client.failover.FailoverCore`, shared with the asyncio flavour
in :mod:`tracker.client.aio_failover`; this module runs the answer pump thread,
sleeps between attempts and opens the sessions.
"""

from __future__ import annotations

import logging
import threading
import time
from typing import Any, Protocol

import numpy as np

from tracker.client.core import Answer, OpenRequest
from tracker.client.errors import TrackerError
from tracker.client.failover import WATCHDOG_TICK_S, FailoverViews
from tracker.client.sync_session import AnswerQueue, BlockingCalls, StreamSession
from tracker.types import PromptAck, PromptUpdate, SessionConfig

logger = logging.getLogger(__name__)


class SessionOpener(Protocol):
    """What a failover session needs of its client (:class:`~tracker.client.TrackerClient`)."""

    def open_request(self, request: OpenRequest) -> StreamSession: ...

    def reconnect(self) -> None: ...


class FailoverSession(FailoverViews, BlockingCalls):
    """A :class:`~tracker.client.StreamSession` look-alike that re-opens itself after a fault.

    Same sending/receiving vocabulary (``send_frame``, ``recv``, ``recv_frame``,
    ``results``, ``add_object`` ..., ``close``, ``cancel``); answers include
    ``LOST`` frames; :attr:`events` lists the failovers so far.
    """

    def __init__(self, client: SessionOpener, request: OpenRequest) -> None:
        super().__init__(client, request)
        self._lock = threading.Lock()  # guards the core
        self._answers = AnswerQueue()
        self._sessions: list[StreamSession] = []  # every session so far, the current one last
        self._primed = 0  # priming frames sent (not the caller's)
        # the first open's errors go to the caller
        self._inner = self._open(request.config, request.timeout_s)
        self._core.session_started(self._inner.started.latency_budget_ms, time.monotonic())
        self._pump = threading.Thread(target=self._run, name="tracker-failover", daemon=True)
        self._pump.start()

    def _open(self, config: SessionConfig, timeout_s: float) -> StreamSession:
        session = self._client.open_request(self._inner_request(config, timeout_s))
        assert isinstance(session, StreamSession)
        self._sessions.append(session)
        return session

    # -- what callers read (more in FailoverViews) --------------------------------------------

    def _session(self) -> StreamSession:
        return self._inner

    @property
    def frames_sent(self) -> int:
        """The caller's frames that went out, over every session (priming frames not counted)."""
        return sum(s.frames_sent for s in self._sessions) - self._primed

    @property
    def frames_skipped(self) -> int:
        return sum(s.frames_skipped for s in self._sessions)

    # -- the pump: answers from the current session, failover on its end ---------------------

    def _run(self) -> None:
        try:
            self._pump_answers()
        except Exception as exc:  # a bug or a closed client: end the session loudly, never hang recv
            logger.exception("failover: the session's answer pump failed")
            self._end(TrackerError(None, f"failover failed: {type(exc).__name__}: {exc}"))

    def _next(self, inner: StreamSession) -> Any:
        """The current session's next answer; AnswerTimeout when it stopped answering (the watchdog)."""
        while True:
            with self._lock:
                wait = self._core.watchdog_wait(time.monotonic())
            try:
                # Wake at least every tick: a frame sent meanwhile starts the watchdog's clock.
                return inner.recv(
                    timeout_s=WATCHDOG_TICK_S if wait is None else min(max(wait, 0.0), WATCHDOG_TICK_S)
                )
            except TimeoutError:
                with self._lock:
                    lost = self._core.overdue(time.monotonic(), inner.session_id)
                if lost is not None:
                    inner.cancel()  # the server, if it is still there, frees the session
                    raise lost from None

    def _pump_answers(self) -> None:
        while True:
            inner = self._inner
            try:
                item = self._next(inner)
            except TrackerError as exc:
                with self._lock:
                    out, reopen = self._core.ended(exc, inner.session_id, time.monotonic())
                self._answers.put(*out)
                if reopen and self._reopen(exc):
                    continue
                return
            if item is None:
                self._end(None)
                return
            with self._lock:
                self._core.heard(item, time.monotonic())
                passed = self._core.route(item)
            if passed:
                self._answers.put(item)

    def _reopen(self, cause: TrackerError) -> bool:
        last = cause
        for attempt, delay in self._core.attempts():
            time.sleep(delay)
            with self._lock:
                plan = self._core.next_attempt()
            if plan is None:  # the caller closed meanwhile
                self._end(None)
                return False
            config, prime = plan
            session = None
            try:
                self._client.reconnect()
                session = self._open(config, self.policy.open_timeout_s)
                if prime is not None:
                    session.send_frame(prime[1], prime[0])  # no timestamp: its budget runs from arrival
                    self._primed += 1
                    # On the wire before any caller's frame, which would otherwise replace it in a
                    # "latest" send slot and be prompted with the older frame's masks.
                    deadline = time.monotonic() + self.policy.open_timeout_s
                    while session.frames_sent < 1 and time.monotonic() < deadline:
                        time.sleep(0.001)
            except TrackerError as exc:
                if session is not None:  # opened, then died at once: free it before the next try
                    session.cancel()
                last = exc
                if self._core.attempt_failed(exc, attempt):
                    continue
                break
            with self._lock:
                self._inner = session
                self._core.session_started(session.started.latency_budget_ms, time.monotonic())
                self._core.reopened(session.session_id, attempt, prime[0] if prime is not None else None)
                closing = self._core.closing
            if closing:
                session.done_writing()
            return True
        self._end(self._core.gave_up(cause, last))
        return False

    def _end(self, failure: TrackerError | None) -> None:
        with self._lock:
            out = self._core.finish(failure, self._inner.session_id, time.monotonic())
        self._answers.put(*out)

    # -- sending -----------------------------------------------------------------------------

    def send_frame(self, pixels: np.ndarray, index: int, timestamp_s: float | None = None) -> None:
        """Send a frame to the current session, or answer it ``LOST`` at once during a gap."""
        with self._lock:
            lost = self._core.admit_frame(index, time.monotonic(), pixels)
            inner = self._inner
        if lost is not None:
            self._answers.put(lost)
            return
        try:
            inner.send_frame(pixels, index, timestamp_s)
        except TrackerError as exc:
            with self._lock:
                self._core.not_sent(index, exc)

    def _for_update(self, update: PromptUpdate) -> tuple[StreamSession, PromptUpdate]:
        """The current session and the update under its id (booked by the core for a re-open)."""
        with self._lock:
            self._core.check_update(self._inner.session_id)
            inner = self._inner
            return inner, self._core.book_update(update, inner.allocate_update_id(update.update_id))

    def send_update(self, update: PromptUpdate) -> int:
        """Queue a prompt update (not during a gap: it would be lost with the session)."""
        inner, update = self._for_update(update)
        return inner.send_update(update)

    def update(self, update: PromptUpdate, timeout_s: float | None = 30.0) -> PromptAck:
        inner, update = self._for_update(update)
        ack = inner.update(update, timeout_s)  # raises on refusal: the core keeps the old prompt
        with self._lock:
            self._core.acked(ack)
        return ack

    # -- receiving ---------------------------------------------------------------------------

    def recv(self, timeout_s: float | None = 60.0) -> Answer | None:
        """The next answer (``LOST`` ones included); None at the end; raises if failover gave up."""
        return self._answers.get(timeout_s)

    # -- ending ------------------------------------------------------------------------------

    def done_writing(self) -> None:
        with self._lock:
            self._core.closing = True
            inner = self._inner
        inner.done_writing()

    def close(self) -> list[Any]:
        """Half-close: every frame sent is answered (by the server, or LOST); returns the rest."""
        return super().close()

    def cancel(self) -> None:
        with self._lock:
            self._core.closing = True
            inner = self._inner
        inner.cancel()
