"""The asyncio transport's session: :class:`AsyncStreamSession`, on ``grpc.aio``.

Sending only queues (one writer task feeds the stream as the transport
accepts messages), so ``await session.send_frame(...)`` returns at once and a
producer is never held up by a slow server; ``send_policy="latest"`` bounds
that queue to one unsent frame, as in the blocking client. The session's state
and rules are :class:`~tracker.client.core.SessionCore`, shared with the
blocking client.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import AsyncIterator, Callable
from types import TracebackType
from typing import Any

import grpc
import grpc.aio
import numpy as np

from tracker.client import core
from tracker.client.core import END, Answer, SendPolicy, SessionCore, SessionViews
from tracker.client.errors import LOST_CODES, PromptRefusedError, TrackerError, error_from_rpc
from tracker.client.messages import ClientResult, SessionStarted
from tracker.types import Prompt, PromptAck, PromptUpdate, SessionConfig
from tracker.v1 import tracker_pb2 as pb
from tracker.v1 import tracker_pb2_grpc as pb_grpc

logger = logging.getLogger(__name__)

__all__ = ["AsyncCalls", "AsyncStreamSession", "next_answer"]


class AsyncCalls:
    """The calls an asyncio session builds on ``update`` and ``recv`` (shared with failover)."""

    async def update(self, update: PromptUpdate, timeout_s: float | None = 30.0) -> PromptAck:
        raise NotImplementedError

    async def recv(self, timeout_s: float | None = 60.0) -> Any:
        raise NotImplementedError

    async def add_object(
        self, object_id: int, prompt: Prompt, label: str = "", timeout_s: float | None = 30.0
    ) -> PromptAck:
        return await self.update(core.add_update(object_id, prompt, label), timeout_s)

    async def remove_object(self, object_id: int, timeout_s: float | None = 30.0) -> PromptAck:
        return await self.update(core.remove_update(object_id), timeout_s)

    async def correct_object(
        self, object_id: int, prompt: Prompt, label: str = "", timeout_s: float | None = 30.0
    ) -> PromptAck:
        return await self.update(core.correct_update(object_id, prompt, label), timeout_s)

    async def recv_frame(self, timeout_s: float | None = 60.0) -> ClientResult:
        while (frame := core.frame_of(await self.recv(timeout_s))) is None:
            pass
        return frame

    async def results(self, timeout_s: float | None = 60.0) -> AsyncIterator[ClientResult]:
        while (item := await self.recv(timeout_s)) is not None:
            if isinstance(item, ClientResult):
                yield item

    async def done_writing(self) -> None:
        raise NotImplementedError

    async def cancel(self) -> None:
        raise NotImplementedError

    async def _collect(self) -> list[Any]:
        """Half-close and collect the remaining answers."""
        await self.done_writing()
        rest: list[Any] = []
        while (item := await self.recv(timeout_s=None)) is not None:
            rest.append(item)
        return rest

    async def __aenter__(self) -> Any:
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        if exc_type is None:
            await self.close()  # type: ignore[attr-defined]
        else:
            await self.cancel()


async def next_answer(answers: asyncio.Queue[object], timeout_s: float | None) -> Any:
    """The next queued answer (None at the end, which stays queued; a queued error is raised)."""
    try:
        item = await asyncio.wait_for(answers.get(), timeout_s)
    except TimeoutError:
        raise TimeoutError(f"no answer from the server within {timeout_s} s") from None
    if item is END:
        answers.put_nowait(END)
    return core.unwrap(item)


class AsyncStreamSession(SessionViews, AsyncCalls):
    """One open session (asyncio). Obtain it from :meth:`AsyncTrackerClient.open_session`."""

    def __init__(
        self,
        stub: pb_grpc.TrackerStub,
        config: SessionConfig,
        send_policy: SendPolicy,
        metadata: tuple[tuple[str, str], ...],
        on_lost: Callable[[], None],
        max_answer_age_ms: float | None = None,
    ) -> None:
        self.config = config
        self._stub = stub
        self._metadata = metadata
        self._on_lost = on_lost
        self._core: SessionCore[asyncio.Future[PromptAck]] = SessionCore(
            config, send_policy, max_answer_age_ms
        )
        self._outbox_ready = asyncio.Event()
        self._answers: asyncio.Queue[object] = asyncio.Queue()
        self._call: grpc.aio.StreamStreamCall | None = None
        self._tasks: list[asyncio.Task[None]] = []

    async def _start(self, mask_encoding: int, timeout_s: float) -> None:
        self._call = self._stub.Track(metadata=self._metadata)
        self._core.open(mask_encoding)
        try:
            await self._call.write(self._core.next_request())
            first = await asyncio.wait_for(self._call.read(), timeout_s)
        except grpc.aio.AioRpcError as exc:
            error = error_from_rpc(exc)
            if error.code in LOST_CODES:
                self._on_lost()
            raise error from None
        except TimeoutError:
            self._call.cancel()
            raise TrackerError(
                grpc.StatusCode.DEADLINE_EXCEEDED, f"no session start within {timeout_s} s"
            ) from None
        try:
            self.started: SessionStarted = self._core.accept_first(None if first is grpc.aio.EOF else first)
        except TrackerError:
            self._call.cancel()
            raise
        self._tasks = [
            asyncio.create_task(self._write_loop(), name="tracker-aio-send"),
            asyncio.create_task(self._read_loop(), name="tracker-aio-recv"),
        ]

    # -- plumbing ----------------------------------------------------------------------

    async def _write_loop(self) -> None:
        assert self._call is not None
        try:
            while True:
                request = self._core.next_request()
                if request is None:
                    self._outbox_ready.clear()
                    await self._outbox_ready.wait()
                elif request is END:
                    await self._call.done_writing()
                    return
                else:
                    await self._call.write(request)
        except (grpc.aio.AioRpcError, asyncio.InvalidStateError) as exc:
            logger.debug("send path ended: %s", exc)  # the read loop reports the stream's status

    async def _read_loop(self) -> None:
        assert self._call is not None
        try:
            while (response := await self._call.read()) is not grpc.aio.EOF:
                waiter, answer = self._core.route(response, time.monotonic())
                if waiter is not None and not waiter.done():
                    waiter.set_result(answer)  # type: ignore[arg-type]
                elif answer is not None:
                    self._answers.put_nowait(answer)
        except grpc.aio.AioRpcError as exc:
            error = self._core.stream_error(exc.code(), exc.details())
            if error is not None:
                self._fail(error)
        except asyncio.CancelledError:
            pass
        waiters, error = self._core.orphans()
        for waiter in waiters:
            if not waiter.done():
                waiter.set_exception(error)
        self._answers.put_nowait(END)

    def _fail(self, failure: TrackerError) -> None:
        if self._core.fail(failure):
            self._on_lost()
        self._answers.put_nowait(failure)
        self._end_writing()

    def _end_writing(self) -> None:
        if self._core.end_writing():
            self._outbox_ready.set()

    def allocate_update_id(self, requested: int = 0) -> int:
        return self._core.allocate_update_id(requested)

    # -- sending -----------------------------------------------------------------------

    async def send_frame(self, pixels: np.ndarray, index: int, timestamp_s: float | None = None) -> None:
        """Queue one frame; returns at once (see the module docstring)."""
        skipped = self._core.push_frame(pixels, index, timestamp_s, time.monotonic())
        self._outbox_ready.set()
        if skipped is not None:
            self._answers.put_nowait(skipped)

    async def send_update(self, update: PromptUpdate) -> int:
        """Queue a prompt update; its ack comes through :meth:`recv`. Returns its update id."""
        update = self._core.push_update(update)
        self._outbox_ready.set()
        return update.update_id

    async def send_raw(self, request: pb.TrackRequest) -> None:
        self._core.push_raw(request)
        self._outbox_ready.set()

    async def update(self, update: PromptUpdate, timeout_s: float | None = 30.0) -> PromptAck:
        """Send a prompt update and await its ack; :class:`PromptRefusedError` if refused."""
        waiter: asyncio.Future[PromptAck] = asyncio.get_running_loop().create_future()
        update = self._core.push_update(update, waiter)
        self._outbox_ready.set()
        try:
            ack = await asyncio.wait_for(waiter, timeout_s)
        except TimeoutError:
            raise TimeoutError(f"no ack for prompt update {update.update_id} within {timeout_s} s") from None
        finally:
            self._core.waiters.pop(update.update_id, None)
        if not ack.accepted:
            raise PromptRefusedError(ack)
        return ack

    # -- receiving ---------------------------------------------------------------------

    async def recv(self, timeout_s: float | None = 60.0) -> Answer | None:
        """The next answer; None at the end of the stream; raises as the blocking ``recv``."""
        return await next_answer(self._answers, timeout_s)

    # -- ending ------------------------------------------------------------------------

    async def done_writing(self) -> None:
        self._end_writing()

    async def close(self) -> list[Any]:
        """Half-close, collect the remaining answers, wait for the stream to end."""
        rest = await self._collect()
        self._core.closed = True
        await asyncio.gather(*self._tasks, return_exceptions=True)
        return rest

    async def cancel(self) -> None:
        self._core.closed = True
        if self._call is not None:
            self._call.cancel()
        self._end_writing()
        for task in self._tasks:
            task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await asyncio.gather(*self._tasks, return_exceptions=True)
