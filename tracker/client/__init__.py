"""A typed, blocking Python client for the ``tracker.v1`` protocol.

Console integrators use this instead of hand-written gRPC plumbing: open a
session with :meth:`TrackerClient.open_session`, send NumPy frames with
:meth:`StreamSession.send_frame`, read answers as plain dataclasses
(:class:`ClientResult` wrapping :class:`~tracker.types.FrameResult`: masks as
bool arrays, centroids in px and mm, status, per-stage timings), and add,
remove or correct objects with :meth:`StreamSession.add_object` and friends,
which wait for the server's :class:`~tracker.types.PromptAck` and raise
:class:`PromptRefusedError` with the server's message when it refuses.

Sending never waits for results, so a caller can pace frames by acquisition
time (open loop) while the answers are collected on a background thread. With
``send_policy="latest"`` the client never queues frames without bound either:
an unsent frame is replaced by a newer one and answered locally as
``DROPPED`` (counted in :attr:`StreamSession.frames_skipped`), mirroring the
server's latest-frame-wins rule, so every frame sent still gets one answer.

Sessions are never resumed silently: when the connection drops, the server
has already thrown the session's tracking state away, so the session raises
:class:`SessionLostError` and the next :meth:`TrackerClient.open_session`
starts over on a fresh channel (or call :meth:`TrackerClient.reconnect`).
Behind a proxy, ``open_session(..., failover=True)`` does that for you: a new
session from the last masks, the frames of the gap answered ``LOST``
(:mod:`tracker.client.failover`, docs/scale-out.md).

The asyncio flavour with the same vocabulary is :mod:`tracker.client.aio`.

Layout (docs/client.md): one core without I/O (:mod:`~tracker.client.core`:
request building, update ids, outbox, answer routing;
:mod:`~tracker.client.errors`: error mapping; :mod:`~tracker.client.failover`:
the failover rules and decisions) and two thin transports, threads
(:mod:`~tracker.client.sync` the client, :mod:`~tracker.client.sync_session` and
:mod:`~tracker.client.sync_failover` its sessions) and asyncio (:mod:`~tracker.client.aio`,
:mod:`~tracker.client.aio_session`, :mod:`~tracker.client.aio_failover`). This
package re-exports the blocking API.
"""

from tracker.client.connect import ConnectOptions, channel_options, make_connect_options
from tracker.client.core import Outbox, Pending, SendPolicy, SessionCore, build_session_config
from tracker.client.errors import (
    PromptRefusedError,
    SessionLostError,
    TrackerError,
    error_from_rpc,
    error_from_status,
    is_connection_loss,
)
from tracker.client.messages import ClientResult, EngineInfo, ServerInfo, SessionStarted, skipped_result
from tracker.client.sync import TrackerClient
from tracker.client.sync_failover import FailoverSession
from tracker.client.sync_session import StreamSession

__all__ = [
    "ClientResult",
    "ConnectOptions",
    "EngineInfo",
    "FailoverSession",
    "Outbox",
    "Pending",
    "PromptRefusedError",
    "SendPolicy",
    "ServerInfo",
    "SessionCore",
    "SessionLostError",
    "SessionStarted",
    "StreamSession",
    "TrackerClient",
    "TrackerError",
    "build_session_config",
    "channel_options",
    "error_from_rpc",
    "error_from_status",
    "is_connection_loss",
    "make_connect_options",
    "skipped_result",
]
