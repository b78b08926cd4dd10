"""The blocking client: :class:`TrackerClient` opens plain sessions (:mod:`~tracker.client.sync_session`)
and self-re-opening ones (:mod:`~tracker.client.sync_failover`) on its channel.
"""

from __future__ import annotations

import logging

import grpc

from tracker.client.connect import ChannelOwner
from tracker.client.core import OpenRequest
from tracker.client.errors import TrackerError, error_from_rpc
from tracker.client.messages import ServerInfo
from tracker.client.sync_failover import FailoverSession
from tracker.client.sync_session import BlockingCalls, StreamSession
from tracker.v1 import tracker_pb2 as pb

logger = logging.getLogger(__name__)


class TrackerClient(ChannelOwner):
    """A connection to one tracker server (blocking flavour).

    ``TrackerClient("host:50051")`` is plaintext; give ``root_certificates``
    (PEM bytes or a path), or ``tls=True`` for the system trust store, to use
    TLS; ``private_key``/``certificate_chain`` add a client certificate; a
    ``token`` is sent as ``authorization: Bearer <token>`` on every call.
    """

    def wait_ready(self, timeout_s: float = 10.0) -> None:
        """Block until the channel is connected; TrackerError(UNAVAILABLE) after ``timeout_s``."""
        try:
            grpc.channel_ready_future(self._channel).result(timeout=timeout_s)
        except grpc.FutureTimeoutError:
            raise TrackerError(
                grpc.StatusCode.UNAVAILABLE, f"no connection to {self.address} within {timeout_s} s"
            ) from None

    def info(self, timeout_s: float = 10.0) -> ServerInfo:
        """The server's versions, engines and limits."""
        stub = self._fresh_stub()
        try:
            msg = stub.GetInfo(
                pb.GetInfoRequest(), timeout=timeout_s, metadata=self.connect_options.metadata()
            )
        except grpc.RpcError as exc:
            raise error_from_rpc(exc) from None
        return ServerInfo.from_proto(msg)

    def open_request(self, request: OpenRequest) -> BlockingCalls:
        """Open as asked: a :class:`StreamSession`, or a ``FailoverSession`` (both :class:`BlockingCalls`)."""
        if request.failover:
            return FailoverSession(self, request)
        return StreamSession(
            self._fresh_stub(),
            request.config,
            request.mask_encoding,
            request.timeout_s,
            metadata=self.connect_options.metadata(),
            send_policy=request.send_policy,
            on_lost=self._mark_stale,
            max_answer_age_ms=request.max_answer_age_ms,
        )

    def close(self) -> None:
        for channel in self._take_channels():
            channel.close()

    def __enter__(self) -> TrackerClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
