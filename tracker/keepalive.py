"""HTTP/2 keepalive on both ends of a session: a connection that dies without a reset is noticed.

A switch that drops packets, a cable pulled or a host that froze sends no TCP reset, so
without pings neither end learns the connection is gone: the client keeps waiting for
answers and the server keeps a session slot for a client that will never read again.
Both ends ping every :attr:`Keepalive.time_ms` and close the connection when a ping is
not acknowledged within :attr:`Keepalive.timeout_ms` (gRPC core enforces that through
``grpc.http2.ping_timeout_ms``, which must be set too: ``keepalive_timeout_ms`` alone is
not acted on); the server then ends every session
on that connection and frees its slot, the client's stream ends ``UNAVAILABLE``.

The server accepts pings as often as the client sends them (gRPC's default would answer
a client pinging more than once per 5 minutes without data with ``GOAWAY
too_many_pings``), and both ends ping with no data in flight too, so a session that is
waiting for its next frame is watched as well.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Keepalive:
    """Ping interval and acknowledgement timeout; a dead link is noticed within their sum."""

    time_ms: int = 2000
    timeout_ms: int = 2000

    def __post_init__(self) -> None:
        if self.time_ms < 100 or self.timeout_ms < 100:
            raise ValueError(
                f"keepalive time and timeout must be >= 100 ms, got {self.time_ms} and {self.timeout_ms}"
            )

    def _common_args(self) -> list[tuple[str, int]]:
        return [
            ("grpc.keepalive_time_ms", self.time_ms),
            ("grpc.keepalive_timeout_ms", self.timeout_ms),
            ("grpc.http2.ping_timeout_ms", self.timeout_ms),
            ("grpc.keepalive_permit_without_calls", 1),
            ("grpc.http2.max_pings_without_data", 0),
        ]

    def server_args(self) -> list[tuple[str, int]]:
        """gRPC server arguments: ping clients, and accept their pings at their pace."""
        return [
            *self._common_args(),
            ("grpc.http2.min_ping_interval_without_data_ms", min(self.time_ms, 1000)),
            ("grpc.http2.max_ping_strikes", 0),
        ]

    def channel_args(self) -> list[tuple[str, int]]:
        """gRPC channel arguments of every client channel."""
        return self._common_args()
