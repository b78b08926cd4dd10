"""The blocking failover session: :class:`FailoverSession` (rules in :mod:`tracker.failover`).

``TrackerClient.open_session(config, failover=True)`` returns one. The
bookkeeping (frames in flight, last good masks, ``LOST`` answers with
``BEAM_HOLD``, events) is :class:`~tracker.failover.FailoverCore`, shared with
the asyncio flavour in :mod:`tracker.aio_failover`.
"""

from __future__ import annotations

import collections
import logging
import threading
import time
from collections.abc import Iterator
from dataclasses import replace
from typing import TYPE_CHECKING

import grpc
import numpy as np

from tracker.failover import (
    FailoverCore,
    FailoverEvent,
    FailoverPolicy,
    is_retryable_reopen,
    triggers_failover,
)
from tracker.gating.gate import GatingDecision
from tracker.types import Prompt, PromptAck, PromptUpdate, SessionConfig, UpdateAction

if TYPE_CHECKING:
    from tracker.client import (
        ClientResult,
        SendPolicy,
        SessionStarted,
        StreamSession,
        TrackerClient,
        TrackerError,
    )

logger = logging.getLogger(__name__)

_END = object()


class FailoverSession:
    """A :class:`~tracker.client.StreamSession` look-alike that re-opens itself after a fault.

    Same sending/receiving vocabulary (``send_frame``, ``recv``, ``recv_frame``,
    ``results``, ``add_object`` ..., ``close``, ``cancel``); answers include
    ``LOST`` frames; :attr:`events` lists the failovers so far.
    """

    def __init__(
        self,
        client: TrackerClient,
        config: SessionConfig,
        *,
        mask_encoding: int,
        send_policy: SendPolicy,
        policy: FailoverPolicy | None = None,
        timeout_s: float = 60.0,
    ) -> None:
        self._client = client
        self._mask_encoding = mask_encoding
        self._send_policy: SendPolicy = send_policy
        self.policy = policy or FailoverPolicy()
        self._core = FailoverCore(config)
        self._lock = threading.Condition()
        self._answers: collections.deque[object] = collections.deque()
        self._closing = False
        self._failure: TrackerError | None = None
        self.reopen_attempts = 0  # over all failovers, failed attempts included
        self._sessions: list[StreamSession] = []  # every session so far, the current one last
        self._primed = 0  # priming frames sent (not the caller's)
        self._inner = self._open(config, timeout_s)  # the first open's errors go to the caller
        self._pump = threading.Thread(target=self._run, name="tracker-failover", daemon=True)
        self._pump.start()

    def _open(self, config: SessionConfig, timeout_s: float) -> StreamSession:
        session = self._client.open_session(
            config, self._mask_encoding, timeout_s, send_policy=self._send_policy, failover=False
        )
        assert not isinstance(session, FailoverSession)
        self._sessions.append(session)
        return session

    # -- what callers read -------------------------------------------------------------------

    @property
    def config(self) -> SessionConfig:
        return self._core.config

    @property
    def started(self) -> SessionStarted:
        """The current session's ``started`` (a new one after each failover)."""
        return self._inner.started

    @property
    def session_id(self) -> str:
        return self._inner.session_id

    @property
    def events(self) -> list[FailoverEvent]:
        with self._lock:
            return list(self._core.events)

    @property
    def frames_lost(self) -> int:
        return self._core.frames_lost

    @property
    def frames_sent(self) -> int:
        """The caller's frames that went out, over every session (priming frames not counted)."""
        return sum(s.frames_sent for s in self._sessions) - self._primed

    @property
    def frames_skipped(self) -> int:
        return sum(s.frames_skipped for s in self._sessions)

    @property
    def in_gap(self) -> bool:
        with self._lock:
            return self._core.in_gap

    # -- the pump: answers from the current session, failover on its end ---------------------

    def _put(self, *items: object) -> None:
        with self._lock:
            self._answers.extend(items)
            self._lock.notify_all()

    def _run(self) -> None:
        from tracker.client import TrackerError

        try:
            self._pump_answers()
        except Exception as exc:  # a bug or a closed client: end the session loudly, never hang recv
            logger.exception("failover: the session's answer pump failed")
            self._finish(TrackerError(None, f"failover failed: {type(exc).__name__}: {exc}"))

    def _pump_answers(self) -> None:
        from tracker.client import ClientResult, TrackerError

        while True:
            inner = self._inner
            try:
                item = inner.recv(timeout_s=None)
            except TrackerError as exc:
                if not triggers_failover(exc):
                    self._finish(exc)
                    return
                with self._lock:
                    lost = self._core.fault(
                        f"{exc.code.name if exc.code else '?'}", inner.session_id, time.monotonic()
                    )
                    closing = self._closing
                self._put(*lost)
                if closing:  # nothing more to send: no new session
                    self._finish(None)
                    return
                if not self._reopen(exc):
                    return
                continue
            if item is None:
                self._finish(None)
                return
            with self._lock:
                passed = True
                if isinstance(item, ClientResult):
                    passed = self._core.answered(item)
                elif isinstance(item, PromptAck):
                    self._core.acked(item)
            if passed:
                self._put(item)

    def _reopen(self, cause: TrackerError) -> bool:
        from tracker.client import TrackerError

        last: TrackerError = cause
        for attempt, delay in enumerate(self.policy.delays(), start=1):
            if delay:
                time.sleep(delay)
            with self._lock:
                if self._closing:
                    self._finish(None)
                    return False
                config = self._core.resume_config()
                prime = self._core.prime_frame()
                self.reopen_attempts += 1
            session = None
            try:
                self._client.reconnect()
                session = self._open(config, self.policy.open_timeout_s)
                if prime is not None:
                    session.send_frame(prime[1], prime[0])  # no timestamp: its budget runs from arrival
                    self._primed += 1
            except TrackerError as exc:
                if session is not None:  # opened, then died at once: free it before the next try
                    session.cancel()
                last = exc
                logger.warning("failover attempt %d/%d: %s", attempt, self.policy.max_attempts, exc)
                if not is_retryable_reopen(exc, self.policy):
                    break
                continue
            with self._lock:
                self._inner = session
                self._core.reopened(session.session_id, attempt, prime[0] if prime is not None else None)
                closing = self._closing
            if closing:
                session.done_writing()
            return True
        failure = TrackerError(
            last.code,
            f"failover gave up after the session ended ({cause.details}): {last.details}",
        )
        self._finish(failure)
        return False

    def _finish(self, failure: TrackerError | None) -> None:
        with self._lock:
            self._failure = failure
            lost = []
            if failure is not None:  # nothing will answer what is in flight now
                lost = self._core.fault(
                    failure.code.name if failure.code else "?", self.session_id, time.monotonic()
                )
            self._answers.extend(lost)
            if failure is not None:
                self._answers.append(failure)
            self._answers.append(_END)
            self._lock.notify_all()

    # -- sending -----------------------------------------------------------------------------

    def send_frame(self, pixels: np.ndarray, index: int, timestamp_s: float | None = None) -> None:
        """Send a frame to the current session, or answer it ``LOST`` at once during a gap."""
        from tracker.client import TrackerError

        now = time.monotonic()
        with self._lock:
            if self._failure is not None:
                raise self._failure
            if self._closing:
                raise TrackerError(None, "the session is closed for sending; open a new session")
            if self._core.in_gap:
                self._answers.append(self._core.lost_in_gap(index, now))
                self._lock.notify_all()
                return
            inner = self._inner
            self._core.sent(index, now, pixels)
        try:
            inner.send_frame(pixels, index, timestamp_s)
        except TrackerError as exc:
            if not triggers_failover(exc):
                with self._lock:
                    self._core.inflight.pop(index, None)
                raise
            # the stream just ended: the pump answers this frame LOST with the rest in flight

    def send_update(self, update: PromptUpdate) -> int:
        """Queue a prompt update (not during a gap: it would be lost with the session)."""
        inner = self._current_for_update()
        update_id = inner._allocate_update_id(update.update_id)
        update = replace(update, update_id=update_id)
        with self._lock:
            self._core.update_sent(update)
        return inner.send_update(update)

    def update(self, update: PromptUpdate, timeout_s: float | None = 30.0) -> PromptAck:
        inner = self._current_for_update()
        update = replace(update, update_id=inner._allocate_update_id(update.update_id))
        with self._lock:
            self._core.update_sent(update)
        ack = inner.update(update, timeout_s)  # raises on refusal: the core keeps the old prompt
        with self._lock:
            self._core.acked(ack)
        return ack

    def _current_for_update(self) -> StreamSession:
        from tracker.client import SessionLostError

        with self._lock:
            if self._failure is not None:
                raise self._failure
            if self._core.in_gap:
                raise SessionLostError(
                    grpc.StatusCode.UNAVAILABLE, "failing over to a new session", self._inner.session_id
                )
            return self._inner

    def add_object(
        self, object_id: int, prompt: Prompt, label: str = "", timeout_s: float | None = 30.0
    ) -> PromptAck:
        return self.update(PromptUpdate(UpdateAction.ADD, object_id, prompt, label), timeout_s)

    def remove_object(self, object_id: int, timeout_s: float | None = 30.0) -> PromptAck:
        return self.update(PromptUpdate(UpdateAction.REMOVE, object_id), timeout_s)

    def correct_object(
        self, object_id: int, prompt: Prompt, label: str = "", timeout_s: float | None = 30.0
    ) -> PromptAck:
        return self.update(PromptUpdate(UpdateAction.CORRECT, object_id, prompt, label), timeout_s)

    # -- receiving ---------------------------------------------------------------------------

    def recv(self, timeout_s: float | None = 60.0) -> ClientResult | PromptAck | GatingDecision | None:
        """The next answer (``LOST`` ones included); None at the end; raises if failover gave up."""
        from tracker.client import TrackerError

        with self._lock:
            if not self._lock.wait_for(lambda: bool(self._answers), timeout=timeout_s):
                raise TimeoutError(f"no answer within {timeout_s} s")
            item = self._answers[0]
            if item is not _END:
                self._answers.popleft()
        if item is _END:
            return None
        if isinstance(item, TrackerError):
            raise item
        return item  # type: ignore[return-value]

    def recv_frame(self, timeout_s: float | None = 60.0) -> ClientResult:
        from tracker.client import ClientResult, TrackerError

        while True:
            item = self.recv(timeout_s)
            if item is None:
                raise TrackerError(
                    grpc.StatusCode.UNAVAILABLE, "the stream ended before the frame was answered"
                )
            if isinstance(item, ClientResult):
                return item

    def results(self, timeout_s: float | None = 60.0) -> Iterator[ClientResult]:
        from tracker.client import ClientResult

        while (item := self.recv(timeout_s)) is not None:
            if isinstance(item, ClientResult):
                yield item

    # -- ending ------------------------------------------------------------------------------

    def done_writing(self) -> None:
        with self._lock:
            self._closing = True
            inner = self._inner
        inner.done_writing()

    def close(self) -> list[object]:
        """Half-close: every frame sent is answered (by the server, or LOST); returns the rest."""
        self.done_writing()
        rest: list[object] = []
        while (item := self.recv(timeout_s=None)) is not None:
            rest.append(item)
        return rest

    def cancel(self) -> None:
        with self._lock:
            self._closing = True
            inner = self._inner
        inner.cancel()

    def __enter__(self) -> FailoverSession:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, *exc: object) -> None:
        if exc_type is None:
            self.close()
        else:
            self.cancel()
