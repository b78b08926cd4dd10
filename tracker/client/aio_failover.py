"""The asyncio failover session: :class:`AsyncFailoverSession` (rules in :mod:`tracker.client.failover`).

``await AsyncTrackerClient.open_session(config, failover=True)`` returns one.
Every rule and decision is :class:`~tracker.client.failover.FailoverCore`,
shared with the blocking :class:`~tracker.client.sync_failover.FailoverSession`;
this module runs the answer pump task, sleeps between attempts and opens the sessions.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from typing import Any, Protocol

import numpy as np

from tracker.client.aio_session import AsyncCalls, AsyncStreamSession, next_answer
from tracker.client.core import Answer, OpenRequest
from tracker.client.errors import TrackerError
from tracker.client.failover import WATCHDOG_TICK_S, FailoverViews
from tracker.types import PromptAck, PromptUpdate, SessionConfig

logger = logging.getLogger(__name__)


class AsyncSessionOpener(Protocol):
    """What a failover session needs of its client (:class:`~tracker.client.aio.AsyncTrackerClient`)."""

    async def open_request(self, request: OpenRequest) -> AsyncStreamSession: ...

    def reconnect(self) -> None: ...


class AsyncFailoverSession(FailoverViews, AsyncCalls):
    """An :class:`~tracker.client.aio.AsyncStreamSession` look-alike that re-opens itself."""

    def __init__(self, client: AsyncSessionOpener, request: OpenRequest) -> None:
        super().__init__(client, request)
        self._lock = contextlib.nullcontext()  # one event loop: nothing to guard
        self._answers: asyncio.Queue[object] = asyncio.Queue()
        self._inner: AsyncStreamSession | None = None
        self._sessions: list[AsyncStreamSession] = []  # every session so far, the current one last
        self._pump: asyncio.Task[None] | None = None

    async def _start(self) -> None:
        # the first open's errors go to the caller
        self._inner = await self._open(self._request.config, self._request.timeout_s)
        self._core.session_started(self._inner.started.latency_budget_ms, time.monotonic())
        self._pump = asyncio.create_task(self._run(), name="tracker-failover")

    async def _open(self, config: SessionConfig, timeout_s: float) -> AsyncStreamSession:
        session = await self._client.open_request(self._inner_request(config, timeout_s))
        assert isinstance(session, AsyncStreamSession)
        self._sessions.append(session)
        return session

    def _session(self) -> AsyncStreamSession:
        return self._current

    @property
    def _current(self) -> AsyncStreamSession:
        assert self._inner is not None, "the session is not open yet"
        return self._inner

    # -- the pump ------------------------------------------------------------------------

    def _put(self, items: list[object]) -> None:
        for item in items:
            self._answers.put_nowait(item)

    async def _run(self) -> None:
        try:
            await self._pump_answers()
        except Exception as exc:  # a bug or a closed client: end the session loudly, never hang recv
            logger.exception("failover: the session's answer pump failed")
            self._put(
                self._core.finish(
                    TrackerError(None, f"failover failed: {type(exc).__name__}: {exc}"),
                    self.session_id,
                    time.monotonic(),
                )
            )

    async def _next(self, inner: AsyncStreamSession) -> Any:
        """The current session's next answer; AnswerTimeout when it stopped answering (the watchdog)."""
        while True:
            wait = self._core.watchdog_wait(time.monotonic())
            try:
                # Wake at least every tick: a frame sent meanwhile starts the watchdog's clock.
                tick = WATCHDOG_TICK_S if wait is None else min(max(wait, 0.0), WATCHDOG_TICK_S)
                return await inner.recv(timeout_s=tick)
            except TimeoutError:
                lost = self._core.overdue(time.monotonic(), inner.session_id)
                if lost is not None:
                    await inner.cancel()  # the server, if it is still there, frees the session
                    raise lost from None

    async def _pump_answers(self) -> None:
        while True:
            inner = self._current
            try:
                item = await self._next(inner)
            except TrackerError as exc:
                out, reopen = self._core.ended(exc, inner.session_id, time.monotonic())
                self._put(out)
                if reopen and await self._reopen(exc):
                    continue
                return
            if item is None:
                self._put(self._core.finish(None, inner.session_id, time.monotonic()))
                return
            self._core.heard(item, time.monotonic())
            if self._core.route(item):
                self._answers.put_nowait(item)

    async def _reopen(self, cause: TrackerError) -> bool:
        last = cause
        for attempt, delay in self._core.attempts():
            await asyncio.sleep(delay)
            plan = self._core.next_attempt()
            if plan is None:  # the caller closed meanwhile
                self._put(self._core.finish(None, self.session_id, time.monotonic()))
                return False
            config, prime = plan
            session = None
            try:
                self._client.reconnect()
                session = await self._open(config, self.policy.open_timeout_s)
                if prime is not None:
                    await session.send_frame(prime[1], prime[0])  # no timestamp: budget from arrival
                    # On the wire before any caller's frame (see the blocking transport).
                    deadline = time.monotonic() + self.policy.open_timeout_s
                    while session.frames_sent < 1 and time.monotonic() < deadline:
                        await asyncio.sleep(0.001)
            except TrackerError as exc:
                if session is not None:  # opened, then died at once: free it before the next try
                    await session.cancel()
                last = exc
                if self._core.attempt_failed(exc, attempt):
                    continue
                break
            self._inner = session
            self._core.session_started(session.started.latency_budget_ms, time.monotonic())
            self._core.reopened(session.session_id, attempt, prime[0] if prime is not None else None)
            if self._core.closing:
                await session.done_writing()
            return True
        self._put(self._core.finish(self._core.gave_up(cause, last), self.session_id, time.monotonic()))
        return False

    # -- sending -------------------------------------------------------------------------

    async def send_frame(self, pixels: np.ndarray, index: int, timestamp_s: float | None = None) -> None:
        """Send to the current session, or answer ``LOST`` at once during a gap."""
        lost = self._core.admit_frame(index, time.monotonic(), pixels)
        if lost is not None:
            self._answers.put_nowait(lost)
            return
        try:
            await self._current.send_frame(pixels, index, timestamp_s)
        except TrackerError as exc:
            self._core.not_sent(index, exc)

    def _for_update(self, update: PromptUpdate) -> tuple[AsyncStreamSession, PromptUpdate]:
        self._core.check_update(self.session_id)
        inner = self._current
        return inner, self._core.book_update(update, inner.allocate_update_id(update.update_id))

    async def send_update(self, update: PromptUpdate) -> int:
        inner, update = self._for_update(update)
        return await inner.send_update(update)

    async def update(self, update: PromptUpdate, timeout_s: float | None = 30.0) -> PromptAck:
        inner, update = self._for_update(update)
        ack = await inner.update(update, timeout_s)
        self._core.acked(ack)
        return ack

    # -- receiving -----------------------------------------------------------------------

    async def recv(self, timeout_s: float | None = 60.0) -> Answer | None:
        return await next_answer(self._answers, timeout_s)

    # -- ending --------------------------------------------------------------------------

    async def done_writing(self) -> None:
        self._core.closing = True
        await self._current.done_writing()

    async def close(self) -> list[Any]:
        """Half-close; every frame sent is answered (by the server, or LOST); returns the rest."""
        rest = await self._collect()
        if self._pump is not None:
            await asyncio.gather(self._pump, return_exceptions=True)
        return rest

    async def cancel(self) -> None:
        self._core.closing = True
        await self._current.cancel()
        if self._pump is not None:
            self._pump.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await asyncio.gather(self._pump, return_exceptions=True)
