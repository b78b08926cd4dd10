"""The asyncio flavour of :mod:`tracker.client`, on ``grpc.aio``.

Same vocabulary, awaited::

    async with AsyncTrackerClient("127.0.0.1:50051") as client:
        async with await client.open_session(config) as session:
            await session.send_frame(pixels, 0)
            answer = await session.recv_frame()
            await session.add_object(7, BoxPrompt(10, 10, 40, 40), "grasper")

Sending only queues (one writer task feeds the stream as the transport
accepts messages), so ``await session.send_frame(...)`` returns at once and a
producer is never held up by a slow server; ``send_policy="latest"`` bounds
that queue to one unsent frame, as in the blocking client. Errors are the
blocking client's: :class:`~tracker.client.TrackerError` with the server's
message, :class:`~tracker.client.PromptRefusedError`,
:class:`~tracker.client.SessionLostError`.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import replace
from pathlib import Path
from types import TracebackType
from typing import TYPE_CHECKING

import grpc
import grpc.aio
import numpy as np

from tracker import convert
from tracker.client import (
    _END,
    _LOST_CODES,
    ClientResult,
    Outbox,
    PromptRefusedError,
    SendPolicy,
    ServerInfo,
    SessionLostError,
    SessionStarted,
    TrackerError,
    _Pending,
    build_session_config,
    error_from_rpc,
    make_connect_options,
    skipped_result,
)
from tracker.types import (
    BudgetPolicy,
    Geometry,
    Modality,
    ObjectPrompt,
    Prompt,
    PromptAck,
    PromptUpdate,
    SessionConfig,
    TimestampClock,
    UpdateAction,
)
from tracker.v1 import tracker_pb2 as pb
from tracker.v1 import tracker_pb2_grpc as pb_grpc

if TYPE_CHECKING:
    from tracker.aio_failover import AsyncFailoverSession
    from tracker.failover import FailoverPolicy

logger = logging.getLogger(__name__)

__all__ = ["AsyncStreamSession", "AsyncTrackerClient"]


class AsyncTrackerClient:
    """A connection to one tracker server (asyncio); options as :class:`~tracker.client.TrackerClient`.

    Create it inside a running event loop (``grpc.aio`` channels belong to one loop).
    """

    def __init__(
        self,
        address: str,
        *,
        tls: bool = False,
        root_certificates: bytes | str | Path | None = None,
        private_key: bytes | str | Path | None = None,
        certificate_chain: bytes | str | Path | None = None,
        token: str | None = None,
        server_name_override: str | None = None,
        max_message_bytes: int = 256 * 1024 * 1024,
    ) -> None:
        self.connect_options = make_connect_options(
            address,
            tls=tls,
            root_certificates=root_certificates,
            private_key=private_key,
            certificate_chain=certificate_chain,
            token=token,
            server_name_override=server_name_override,
            max_message_bytes=max_message_bytes,
        )
        self.connect_options.warn_if_exposed()
        self._retired: list[grpc.aio.Channel] = []
        self._stale = False
        self._channel, self._stub = self._new_channel()

    @property
    def address(self) -> str:
        return self.connect_options.address

    def _new_channel(self) -> tuple[grpc.aio.Channel, pb_grpc.TrackerStub]:
        opts = self.connect_options
        if opts.secure:
            channel = grpc.aio.secure_channel(opts.address, opts.credentials(), options=opts.channel_args())
        else:
            channel = grpc.aio.insecure_channel(opts.address, options=opts.channel_args())
        return channel, pb_grpc.TrackerStub(channel)

    def reconnect(self) -> None:
        """Use a fresh channel for new calls; open sessions stay on theirs until the client closes."""
        self._retired.append(self._channel)
        self._channel, self._stub = self._new_channel()
        self._stale = False
        logger.info("re-created the channel to %s", self.address)

    def _mark_stale(self) -> None:
        self._stale = True

    async def wait_ready(self, timeout_s: float = 10.0) -> None:
        try:
            await asyncio.wait_for(self._channel.channel_ready(), timeout_s)
        except TimeoutError:
            raise TrackerError(
                grpc.StatusCode.UNAVAILABLE, f"no connection to {self.address} within {timeout_s} s"
            ) from None

    async def info(self, timeout_s: float = 10.0) -> ServerInfo:
        if self._stale:
            self.reconnect()
        try:
            msg = await self._stub.GetInfo(
                pb.GetInfoRequest(), timeout=timeout_s, metadata=self.connect_options.metadata()
            )
        except grpc.aio.AioRpcError as exc:
            raise error_from_rpc(exc) from None
        return ServerInfo.from_proto(msg)

    async def open_session(
        self,
        config: SessionConfig | None = None,
        mask_encoding: int = pb.RLE,
        timeout_s: float = 60.0,
        *,
        send_policy: SendPolicy = "queue",
        modality: Modality | None = None,
        engine: str | None = None,
        engine_options: dict[str, str] | None = None,
        objects: tuple[ObjectPrompt, ...] | list[ObjectPrompt] | None = None,
        latency_budget_ms: float | None = None,
        frame_rate_hz: float | None = None,
        geometry: Geometry | None = None,
        image_size: tuple[int, int] | None = None,
        client_name: str | None = None,
        budget_policy: BudgetPolicy | None = None,
        timestamp_clock: TimestampClock | None = None,
        failover: bool = False,
        failover_policy: FailoverPolicy | None = None,
    ) -> AsyncStreamSession | AsyncFailoverSession:
        """Open a Track stream and wait for ``started``; TrackerError with the server's message if refused.

        ``failover=True``: an :class:`~tracker.aio_failover.AsyncFailoverSession`
        that re-opens through the same address after a fault (see :mod:`tracker.failover`).
        """
        config = build_session_config(
            config,
            modality=modality,
            engine=engine,
            engine_options=engine_options,
            objects=objects,
            latency_budget_ms=latency_budget_ms,
            frame_rate_hz=frame_rate_hz,
            geometry=geometry,
            image_size=image_size,
            client_name=client_name,
            budget_policy=budget_policy,
            timestamp_clock=timestamp_clock,
        )
        if failover:
            from tracker.aio_failover import AsyncFailoverSession

            failover_session = AsyncFailoverSession(
                self, config, mask_encoding=mask_encoding, send_policy=send_policy, policy=failover_policy
            )
            await failover_session._start(timeout_s)
            return failover_session
        if self._stale:
            self.reconnect()
        session = AsyncStreamSession(
            self._stub, config, send_policy, self.connect_options.metadata(), self._mark_stale
        )
        await session._start(mask_encoding, timeout_s)
        return session

    async def close(self) -> None:
        for channel in [*self._retired, self._channel]:
            await channel.close()
        self._retired.clear()

    async def __aenter__(self) -> AsyncTrackerClient:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()


class AsyncStreamSession:
    """One open session (asyncio). Obtain it from :meth:`AsyncTrackerClient.open_session`."""

    def __init__(
        self,
        stub: pb_grpc.TrackerStub,
        config: SessionConfig,
        send_policy: SendPolicy,
        metadata: tuple[tuple[str, str], ...],
        on_lost: Callable[[], None],
    ) -> None:
        self.config = config
        self._stub = stub
        self._metadata = metadata
        self._on_lost = on_lost
        self._outbox = Outbox(send_policy)
        self._outbox_ready = asyncio.Event()
        self._answers: asyncio.Queue[object] = asyncio.Queue()
        self._sent_at: dict[int, float] = {}
        self._waiters: dict[int, asyncio.Future[PromptAck]] = {}
        self._next_update_id = 1
        self._closed = False
        self._writing_done = False
        self._ended = False
        self._failure: TrackerError | None = None
        self.frames_sent = 0
        self.frames_skipped = 0
        self._call: grpc.aio.StreamStreamCall | None = None
        self._tasks: list[asyncio.Task[None]] = []

    async def _start(self, mask_encoding: int, timeout_s: float) -> None:
        self._call = self._stub.Track(metadata=self._metadata)
        try:
            await self._call.write(
                pb.TrackRequest(open=convert.session_open_to_proto(self.config, mask_encoding))
            )
            first = await asyncio.wait_for(self._call.read(), timeout_s)
        except grpc.aio.AioRpcError as exc:
            error = error_from_rpc(exc)
            if error.code in _LOST_CODES:
                self._on_lost()
            raise error from None
        except TimeoutError:
            self._call.cancel()
            raise TrackerError(
                grpc.StatusCode.DEADLINE_EXCEEDED, f"no session start within {timeout_s} s"
            ) from None
        if first is grpc.aio.EOF or first.WhichOneof("kind") != "started":
            self._call.cancel()
            kind = "end of stream" if first is grpc.aio.EOF else f"`{first.WhichOneof('kind')}`"
            raise TrackerError(grpc.StatusCode.INTERNAL, f"expected `started`, got {kind}")
        self.started = SessionStarted.from_proto(first.started)
        if self.started.engine.random_weights:
            logger.warning(
                "the server runs %s with RANDOM WEIGHTS: not for clinical use", self.started.engine.name
            )
        self._tasks = [
            asyncio.create_task(self._write_loop(), name="tracker-aio-send"),
            asyncio.create_task(self._read_loop(), name="tracker-aio-recv"),
        ]

    @property
    def session_id(self) -> str:
        return self.started.session_id

    # -- plumbing ----------------------------------------------------------------------

    async def _write_loop(self) -> None:
        assert self._call is not None
        try:
            while True:
                item = self._outbox.pop()
                if item is None:
                    self._outbox_ready.clear()
                    await self._outbox_ready.wait()
                    continue
                if item is _END:
                    await self._call.done_writing()
                    return
                assert isinstance(item, _Pending)
                if item.frame_index is not None:
                    self.frames_sent += 1
                await self._call.write(item.request)
        except (grpc.aio.AioRpcError, asyncio.InvalidStateError) as exc:
            logger.debug("send path ended: %s", exc)  # the read loop reports the stream's status

    async def _read_loop(self) -> None:
        assert self._call is not None
        try:
            while True:
                response = await self._call.read()
                if response is grpc.aio.EOF:
                    break
                received = time.monotonic()
                kind = response.WhichOneof("kind")
                if kind == "frame":
                    result = convert.frame_result_from_proto(response.frame)
                    sent = self._sent_at.pop(result.frame_index, received)
                    self._answers.put_nowait(ClientResult(result, sent, received))
                elif kind == "prompt_ack":
                    msg = response.prompt_ack
                    ack = PromptAck(msg.update_id, msg.accepted, msg.message)
                    waiter = self._waiters.pop(ack.update_id, None)
                    if waiter is not None and not waiter.done():
                        waiter.set_result(ack)
                    else:
                        self._answers.put_nowait(ack)
                elif kind == "gating":  # a beam HOLD sent because the stream stalled
                    self._answers.put_nowait(convert.gating_decision_from_proto(response.gating))
        except grpc.aio.AioRpcError as exc:
            if exc.code() == grpc.StatusCode.CANCELLED:
                if not self._closed:
                    self._fail(SessionLostError(exc.code(), exc.details() or "cancelled", self.session_id))
            else:
                self._fail(error_from_rpc(exc, self.session_id, in_session=True))
        except asyncio.CancelledError:
            pass
        for waiter in self._waiters.values():
            if not waiter.done():
                waiter.set_exception(
                    self._failure or TrackerError(None, "the session ended before the update was answered")
                )
        self._waiters.clear()
        self._ended = True
        self._answers.put_nowait(_END)

    def _fail(self, failure: TrackerError) -> None:
        self._failure = failure
        if isinstance(failure, SessionLostError):
            logger.warning("%s", failure)
            self._on_lost()
        self._answers.put_nowait(failure)
        self._end_writing()

    def _end_writing(self) -> None:
        if not self._writing_done:
            self._writing_done = True
            self._outbox.push(_END)
            self._outbox_ready.set()

    def _check_open(self) -> None:
        if self._failure is not None:
            raise self._failure
        if self._writing_done:
            raise TrackerError(None, "the session is closed for sending; open a new session")

    def _allocate_update_id(self, requested: int = 0) -> int:
        if requested:
            self._next_update_id = max(self._next_update_id, requested + 1)
            return requested
        update_id = self._next_update_id
        self._next_update_id += 1
        return update_id

    # -- sending -----------------------------------------------------------------------

    async def send_frame(self, pixels: np.ndarray, index: int, timestamp_s: float | None = None) -> None:
        """Queue one frame; returns at once (see the module docstring)."""
        self._check_open()
        message = convert.frame_to_proto(pixels, index, timestamp_s)
        now = time.monotonic()
        self._sent_at[index] = now
        replaced = self._outbox.push_frame(_Pending(pb.TrackRequest(frame=message), index, now))
        self._outbox_ready.set()
        if replaced is not None and replaced.frame_index is not None:
            self._sent_at.pop(replaced.frame_index, None)
            self.frames_skipped += 1
            self._answers.put_nowait(skipped_result(replaced.frame_index, index, replaced.sent_mono))

    async def send_update(self, update: PromptUpdate) -> int:
        """Queue a prompt update; its ack comes through :meth:`recv`. Returns its update id."""
        self._check_open()
        update = replace(update, update_id=self._allocate_update_id(update.update_id))
        self._outbox.push(_Pending(pb.TrackRequest(prompt_update=convert.prompt_update_to_proto(update))))
        self._outbox_ready.set()
        return update.update_id

    async def send_raw(self, request: pb.TrackRequest) -> None:
        self._check_open()
        self._outbox.push(_Pending(request))
        self._outbox_ready.set()

    async def update(self, update: PromptUpdate, timeout_s: float | None = 30.0) -> PromptAck:
        """Send a prompt update and await its ack; :class:`PromptRefusedError` if refused."""
        self._check_open()
        update = replace(update, update_id=self._allocate_update_id(update.update_id))
        waiter: asyncio.Future[PromptAck] = asyncio.get_running_loop().create_future()
        self._waiters[update.update_id] = waiter
        self._outbox.push(_Pending(pb.TrackRequest(prompt_update=convert.prompt_update_to_proto(update))))
        self._outbox_ready.set()
        try:
            ack = await asyncio.wait_for(waiter, timeout_s)
        except TimeoutError:
            raise TimeoutError(f"no ack for prompt update {update.update_id} within {timeout_s} s") from None
        finally:
            self._waiters.pop(update.update_id, None)
        if not ack.accepted:
            raise PromptRefusedError(ack)
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

    # -- receiving ---------------------------------------------------------------------

    async def recv(self, timeout_s: float | None = 60.0) -> ClientResult | PromptAck | None:
        """The next answer; None at the end of the stream; raises as the blocking ``recv``."""
        try:
            item = await asyncio.wait_for(self._answers.get(), timeout_s)
        except TimeoutError:
            raise TimeoutError(f"no answer from the server within {timeout_s} s") from None
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

    # -- ending ------------------------------------------------------------------------

    async def done_writing(self) -> None:
        self._end_writing()

    async def close(self) -> list[ClientResult | PromptAck]:
        """Half-close, collect the remaining answers, wait for the stream to end."""
        self._end_writing()
        rest: list[ClientResult | PromptAck] = []
        while (item := await self.recv(timeout_s=None)) is not None:
            rest.append(item)
        self._closed = True
        await asyncio.gather(*self._tasks, return_exceptions=True)
        return rest

    async def cancel(self) -> None:
        self._closed = True
        if self._call is not None:
            self._call.cancel()
        self._end_writing()
        for task in self._tasks:
            task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await asyncio.gather(*self._tasks, return_exceptions=True)

    async def __aenter__(self) -> AsyncStreamSession:
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        if exc_type is None:
            await self.close()
        else:
            await self.cancel()
