"""The asyncio flavour of :class:`tracker.failover.FailoverSession` (same rules, awaited).

``await AsyncTrackerClient.open_session(config, failover=True)`` returns an
:class:`AsyncFailoverSession`; the bookkeeping (frames in flight, last good
masks, ``LOST`` answers with ``BEAM_HOLD``, events) is
:class:`~tracker.failover.FailoverCore`, shared with the blocking client.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import AsyncIterator
from dataclasses import replace
from typing import TYPE_CHECKING

import grpc
import numpy as np

from tracker.client import ClientResult, SendPolicy, SessionLostError, SessionStarted, TrackerError
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
    from tracker.aio_client import AsyncStreamSession, AsyncTrackerClient

logger = logging.getLogger(__name__)

_END = object()


class AsyncFailoverSession:
    """An :class:`~tracker.aio_client.AsyncStreamSession` look-alike that re-opens itself."""

    def __init__(
        self,
        client: AsyncTrackerClient,
        config: SessionConfig,
        *,
        mask_encoding: int,
        send_policy: SendPolicy,
        policy: FailoverPolicy | None = None,
    ) -> None:
        self._client = client
        self._mask_encoding = mask_encoding
        self._send_policy: SendPolicy = send_policy
        self.policy = policy or FailoverPolicy()
        self._core = FailoverCore(config)
        self._answers: asyncio.Queue[object] = asyncio.Queue()
        self._closing = False
        self._failure: TrackerError | None = None
        self._inner: AsyncStreamSession | None = None
        self._pump: asyncio.Task[None] | None = None
        self.reopen_attempts = 0

    async def _start(self, timeout_s: float) -> None:
        self._inner = await self._open(self._core.config, timeout_s)  # first open: errors to the caller
        self._pump = asyncio.create_task(self._run(), name="tracker-failover")

    async def _open(self, config: SessionConfig, timeout_s: float) -> AsyncStreamSession:
        session = await self._client.open_session(
            config, self._mask_encoding, timeout_s, send_policy=self._send_policy, failover=False
        )
        return session  # type: ignore[return-value]

    @property
    def _current(self) -> AsyncStreamSession:
        assert self._inner is not None, "the session is not open yet"
        return self._inner

    @property
    def config(self) -> SessionConfig:
        return self._core.config

    @property
    def started(self) -> SessionStarted:
        return self._current.started

    @property
    def session_id(self) -> str:
        return self._current.session_id

    @property
    def events(self) -> list[FailoverEvent]:
        return list(self._core.events)

    @property
    def frames_lost(self) -> int:
        return self._core.frames_lost

    @property
    def in_gap(self) -> bool:
        return self._core.in_gap

    # -- the pump ------------------------------------------------------------------------

    async def _run(self) -> None:
        try:
            await self._pump_answers()
        except Exception as exc:  # a bug or a closed client: end the session loudly, never hang recv
            logger.exception("failover: the session's answer pump failed")
            self._finish(TrackerError(None, f"failover failed: {type(exc).__name__}: {exc}"))

    async def _pump_answers(self) -> None:
        while True:
            inner = self._current
            try:
                item = await inner.recv(timeout_s=None)
            except TrackerError as exc:
                if not triggers_failover(exc):
                    self._finish(exc)
                    return
                for lost in self._core.fault(
                    exc.code.name if exc.code else "?", inner.session_id, time.monotonic()
                ):
                    self._answers.put_nowait(lost)
                if self._closing:
                    self._finish(None)
                    return
                if not await self._reopen(exc):
                    return
                continue
            if item is None:
                self._finish(None)
                return
            passed = True
            if isinstance(item, ClientResult):
                passed = self._core.answered(item)
            elif isinstance(item, PromptAck):
                self._core.acked(item)
            if passed:
                self._answers.put_nowait(item)

    async def _reopen(self, cause: TrackerError) -> bool:
        last = cause
        for attempt, delay in enumerate(self.policy.delays(), start=1):
            if delay:
                await asyncio.sleep(delay)
            if self._closing:
                self._finish(None)
                return False
            config = self._core.resume_config()
            prime = self._core.prime_frame()
            self.reopen_attempts += 1
            session = None
            try:
                self._client.reconnect()
                session = await self._open(config, self.policy.open_timeout_s)
                if prime is not None:
                    await session.send_frame(prime[1], prime[0])  # no timestamp: budget from arrival
            except TrackerError as exc:
                if session is not None:  # opened, then died at once: free it before the next try
                    await session.cancel()
                last = exc
                logger.warning("failover attempt %d/%d: %s", attempt, self.policy.max_attempts, exc)
                if not is_retryable_reopen(exc, self.policy):
                    break
                continue
            self._inner = session
            self._core.reopened(session.session_id, attempt, prime[0] if prime is not None else None)
            if self._closing:
                await session.done_writing()
            return True
        self._finish(
            TrackerError(
                last.code, f"failover gave up after the session ended ({cause.details}): {last.details}"
            )
        )
        return False

    def _finish(self, failure: TrackerError | None) -> None:
        self._failure = failure
        if failure is not None:
            code = failure.code.name if failure.code else "?"
            for lost in self._core.fault(code, self.session_id, time.monotonic()):
                self._answers.put_nowait(lost)
            self._answers.put_nowait(failure)
        self._answers.put_nowait(_END)

    # -- sending -------------------------------------------------------------------------

    async def send_frame(self, pixels: np.ndarray, index: int, timestamp_s: float | None = None) -> None:
        """Send to the current session, or answer ``LOST`` at once during a gap."""
        now = time.monotonic()
        if self._failure is not None:
            raise self._failure
        if self._closing:
            raise TrackerError(None, "the session is closed for sending; open a new session")
        if self._core.in_gap:
            self._answers.put_nowait(self._core.lost_in_gap(index, now))
            return
        inner = self._current
        self._core.sent(index, now, pixels)
        try:
            await inner.send_frame(pixels, index, timestamp_s)
        except TrackerError as exc:
            if not triggers_failover(exc):
                self._core.inflight.pop(index, None)
                raise
            # the stream just ended: the pump answers this frame LOST with the rest in flight

    def _for_update(self) -> AsyncStreamSession:
        if self._failure is not None:
            raise self._failure
        if self._core.in_gap:
            raise SessionLostError(
                grpc.StatusCode.UNAVAILABLE, "failing over to a new session", self.session_id
            )
        return self._current

    async def send_update(self, update: PromptUpdate) -> int:
        inner = self._for_update()
        update = replace(update, update_id=inner._allocate_update_id(update.update_id))
        self._core.update_sent(update)
        return await inner.send_update(update)

    async def update(self, update: PromptUpdate, timeout_s: float | None = 30.0) -> PromptAck:
        inner = self._for_update()
        update = replace(update, update_id=inner._allocate_update_id(update.update_id))
        self._core.update_sent(update)
        ack = await inner.update(update, timeout_s)
        self._core.acked(ack)
        return ack

    async def add_object(
        self, object_id: int, prompt: Prompt, label: str = "", timeout_s: float | None = 30.0
    ) -> PromptAck:
        return await self.update(PromptUpdate(UpdateAction.ADD, object_id, prompt, label), timeout_s)

    async def remove_object(self, object_id: int, timeout_s: float | None = 30.0) -> PromptAck:
        return await self.update(PromptUpdate(UpdateAction.REMOVE, object_id), timeout_s)

    async def correct_object(
        self, object_id: int, prompt: Prompt, label: str = "", timeout_s: float | None = 30.0
    ) -> PromptAck:
        return await self.update(PromptUpdate(UpdateAction.CORRECT, object_id, prompt, label), timeout_s)

    # -- receiving -----------------------------------------------------------------------

    async def recv(self, timeout_s: float | None = 60.0) -> ClientResult | PromptAck | GatingDecision | None:
        try:
            item = await asyncio.wait_for(self._answers.get(), timeout_s)
        except TimeoutError:
            raise TimeoutError(f"no answer within {timeout_s} s") from None
        if item is _END:
            self._answers.put_nowait(_END)
            return None
        if isinstance(item, TrackerError):
            raise item
        return item  # type: ignore[return-value]

    async def recv_frame(self, timeout_s: float | None = 60.0) -> ClientResult:
        while True:
            item = await self.recv(timeout_s)
            if item is None:
                raise TrackerError(
                    grpc.StatusCode.UNAVAILABLE, "the stream ended before the frame was answered"
                )
            if isinstance(item, ClientResult):
                return item

    async def results(self, timeout_s: float | None = 60.0) -> AsyncIterator[ClientResult]:
        while (item := await self.recv(timeout_s)) is not None:
            if isinstance(item, ClientResult):
                yield item

    # -- ending --------------------------------------------------------------------------

    async def done_writing(self) -> None:
        self._closing = True
        await self._current.done_writing()

    async def close(self) -> list[object]:
        """Half-close; every frame sent is answered (by the server, or LOST); returns the rest."""
        await self.done_writing()
        rest: list[object] = []
        while (item := await self.recv(timeout_s=None)) is not None:
            rest.append(item)
        if self._pump is not None:
            await asyncio.gather(self._pump, return_exceptions=True)
        return rest

    async def cancel(self) -> None:
        self._closing = True
        await self._current.cancel()
        if self._pump is not None:
            self._pump.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await asyncio.gather(self._pump, return_exceptions=True)

    async def __aenter__(self) -> AsyncFailoverSession:
        return self

    async def __aexit__(self, exc_type: type[BaseException] | None, *exc: object) -> None:
        if exc_type is None:
            await self.close()
        else:
            await self.cancel()
