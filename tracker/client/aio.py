"""The asyncio client: :class:`AsyncTrackerClient` and :class:`AsyncStreamSession`, on ``grpc.aio``.

Same vocabulary as the blocking client, awaited::

    async with AsyncTrackerClient("127.0.0.1:50051") as client:
        async with await client.open_session(config) as session:
            await session.send_frame(pixels, 0)
            answer = await session.recv_frame()
            await session.add_object(7, BoxPrompt(10, 10, 40, 40), "grasper")

Errors are the blocking client's: :class:`~tracker.client.TrackerError` with the server's
message, :class:`~tracker.client.PromptRefusedError`, :class:`~tracker.client.SessionLostError`.
Sessions: :mod:`~tracker.client.aio_session` (plain) and :mod:`~tracker.client.aio_failover`
(re-opening themselves behind a proxy).
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any, ClassVar

import grpc
import grpc.aio

from tracker.client.aio_failover import AsyncFailoverSession
from tracker.client.aio_session import AsyncCalls, AsyncStreamSession
from tracker.client.connect import ChannelOwner
from tracker.client.core import OpenRequest
from tracker.client.errors import TrackerError, error_from_rpc
from tracker.client.messages import ServerInfo
from tracker.v1 import tracker_pb2 as pb

logger = logging.getLogger(__name__)

__all__ = ["AsyncStreamSession", "AsyncTrackerClient"]


class AsyncTrackerClient(ChannelOwner):
    """A connection to one tracker server (asyncio); options as :class:`~tracker.client.TrackerClient`.

    Create it inside a running event loop (``grpc.aio`` channels belong to one loop).
    """

    channel_module: ClassVar[Any] = grpc.aio

    async def wait_ready(self, timeout_s: float = 10.0) -> None:
        try:
            await asyncio.wait_for(self._channel.channel_ready(), timeout_s)
        except TimeoutError:
            raise TrackerError(
                grpc.StatusCode.UNAVAILABLE, f"no connection to {self.address} within {timeout_s} s"
            ) from None

    async def info(self, timeout_s: float = 10.0) -> ServerInfo:
        stub = self._fresh_stub()
        try:
            msg = await stub.GetInfo(
                pb.GetInfoRequest(), timeout=timeout_s, metadata=self.connect_options.metadata()
            )
        except grpc.aio.AioRpcError as exc:
            raise error_from_rpc(exc) from None
        return ServerInfo.from_proto(msg)

    async def open_request(self, request: OpenRequest) -> AsyncCalls:
        """Open as asked: an :class:`AsyncStreamSession`, or an ``AsyncFailoverSession`` (both
        :class:`AsyncCalls`)."""
        if request.failover:
            failover_session = AsyncFailoverSession(self, request)
            await failover_session._start()
            return failover_session
        session = AsyncStreamSession(
            self._fresh_stub(),
            request.config,
            request.send_policy,
            self.connect_options.metadata(),
            self._mark_stale,
            request.max_answer_age_ms,
        )
        await session._start(request.mask_encoding, request.timeout_s)
        return session

    async def close(self) -> None:
        for channel in self._take_channels():
            await channel.close()

    async def __aenter__(self) -> AsyncTrackerClient:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()
