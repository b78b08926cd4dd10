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
(:mod:`tracker.failover`, docs/scale-out.md).

The asyncio flavour with the same vocabulary is :mod:`tracker.aio_client`.
"""

from __future__ import annotations

import collections
import ipaddress
import logging
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import Future
from concurrent.futures import TimeoutError as FutureTimeout
from dataclasses import dataclass, field, replace
from pathlib import Path
from types import TracebackType
from typing import TYPE_CHECKING, Literal

import grpc
import numpy as np

from tracker import convert
from tracker.types import (
    BudgetPolicy,
    FrameResult,
    FrameStatus,
    FrameTiming,
    Geometry,
    Modality,
    ObjectPrompt,
    ObjectResult,
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
    from tracker.failover import FailoverPolicy
    from tracker.failover_session import FailoverSession

logger = logging.getLogger(__name__)

SendPolicy = Literal["queue", "latest"]

_END = object()

# Status codes that mean the transport went away under a live session (server stopped or
# restarted, network dropped, proxy reset). Anything else is the server's own decision.
_LOST_CODES = (grpc.StatusCode.UNAVAILABLE,)
_LOST_TEXT = ("stream removed", "socket closed", "rst_stream", "connection reset", "goaway")


# -- errors --------------------------------------------------------------------------------


class TrackerError(RuntimeError):
    """The server refused a call or ended the session; ``code`` and ``details`` say why.

    ``details`` is the server's own message (e.g. ``cannot open session: ...``
    for an INVALID_ARGUMENT open). ``code`` is None for refusals that travel
    inside the stream rather than as a gRPC status (see :class:`PromptRefusedError`).
    """

    def __init__(self, code: grpc.StatusCode | None, details: str) -> None:
        super().__init__(f"{code.name}: {details}" if code is not None else details)
        self.code = code
        self.details = details


class PromptRefusedError(TrackerError):
    """The server answered a prompt update with ``accepted = false``; the session goes on."""

    def __init__(self, ack: PromptAck) -> None:
        super().__init__(None, f"prompt update {ack.update_id} refused: {ack.message}")
        self.ack = ack


class SessionLostError(TrackerError):
    """The connection dropped under an open session; its server-side state is gone.

    Sessions are never resumed: the tracker's state (reference frames, object
    memory) lived on the server and was discarded with the stream. Open a new
    session with fresh prompts; the client re-creates its channel for it.
    """

    def __init__(self, code: grpc.StatusCode | None, details: str, session_id: str = "") -> None:
        name = f"session {session_id}" if session_id else "the session"
        super().__init__(
            code,
            f"connection lost ({details}); the server-side state of {name} is gone:"
            " open a new session with fresh prompts (sessions are not resumed)",
        )
        self.cause_details = details
        self.session_id = session_id


def is_connection_loss(code: grpc.StatusCode | None, details: str) -> bool:
    """Whether a stream's end status means the transport dropped (not a server refusal)."""
    if code in _LOST_CODES:
        return True
    text = (details or "").lower()
    return code in (grpc.StatusCode.UNKNOWN, grpc.StatusCode.INTERNAL) and any(t in text for t in _LOST_TEXT)


def error_from_rpc(exc: grpc.RpcError, session_id: str = "", *, in_session: bool = False) -> TrackerError:
    """The exception a failed call should surface as: the server's code and message kept."""
    code = exc.code() if hasattr(exc, "code") else grpc.StatusCode.UNKNOWN
    details = (exc.details() if hasattr(exc, "details") else str(exc)) or ""
    if in_session and is_connection_loss(code, details):
        return SessionLostError(code, details, session_id)
    return TrackerError(code, details)


# -- plain-data views of protocol messages -------------------------------------------------


@dataclass(frozen=True)
class EngineInfo:
    """What the server says about one engine (``tracker.v1.EngineInfo``)."""

    name: str
    version: str = ""
    capabilities: tuple[str, ...] = ()
    device: str = ""
    random_weights: bool = False  # True: NOT for clinical use; results are meaningless
    scheduler: str = ""  # "edf" or "per-session" (tracker serve --scheduler)
    workers: int = 0
    max_batch: int = 1
    max_queue_delay_ms: float = 0.0
    threads_per_worker: int = 0

    @classmethod
    def from_proto(cls, msg: pb.EngineInfo) -> EngineInfo:
        return cls(
            msg.name,
            msg.version,
            tuple(msg.capabilities),
            msg.device,
            msg.random_weights,
            msg.scheduler,
            msg.workers,
            msg.max_batch,
            msg.max_queue_delay_ms,
            msg.threads_per_worker,
        )


@dataclass(frozen=True)
class SessionStarted:
    """The server's first answer on a session (``tracker.v1.SessionStarted``)."""

    session_id: str
    server_version: str
    engine: EngineInfo
    latency_budget_ms: float
    warnings: tuple[str, ...] = ()
    protocol_version: str = ""

    @classmethod
    def from_proto(cls, msg: pb.SessionStarted) -> SessionStarted:
        return cls(
            msg.session_id,
            msg.server_version,
            EngineInfo.from_proto(msg.engine),
            msg.latency_budget_ms,
            tuple(msg.warnings),
            msg.protocol_version,
        )


@dataclass(frozen=True)
class ServerInfo:
    """What a server runs and allows (``tracker.v1.ServerInfo``)."""

    server_version: str
    protocol_version: str
    default_engine: str
    engines: tuple[EngineInfo, ...]
    active_sessions: int
    max_sessions: int
    max_frame_pixels: int
    max_objects_per_session: int

    @classmethod
    def from_proto(cls, msg: pb.ServerInfo) -> ServerInfo:
        return cls(
            msg.server_version,
            msg.protocol_version,
            msg.default_engine,
            tuple(EngineInfo.from_proto(e) for e in msg.engines),
            msg.active_sessions,
            msg.max_sessions,
            msg.max_frame_pixels,
            msg.max_objects_per_session,
        )


@dataclass
class ClientResult:
    """A frame's answer with the client's view of its latency.

    ``local`` is True for frames the client itself answered ``DROPPED`` because
    a newer frame replaced them before they were sent (``send_policy="latest"``).
    """

    result: FrameResult
    sent_mono: float  # time.monotonic() when send_frame was called
    received_mono: float  # time.monotonic() when the answer arrived
    local: bool = False

    @property
    def end_to_end_ms(self) -> float:
        return (self.received_mono - self.sent_mono) * 1000.0

    @property
    def frame_index(self) -> int:
        return self.result.frame_index

    @property
    def status(self) -> FrameStatus:
        return self.result.status

    @property
    def objects(self) -> list[ObjectResult]:
        return self.result.objects


def skipped_result(index: int, newer_index: int, sent_mono: float) -> ClientResult:
    """The local answer for a frame replaced in the client's send slot before it went out."""
    now = time.monotonic()
    waited_ms = (now - sent_mono) * 1000.0
    result = FrameResult(
        frame_index=index,
        status=FrameStatus.DROPPED,
        message=(
            f"skipped on the client: frame {newer_index} replaced it before it was sent (latest frame wins)"
        ),
        timing=FrameTiming(queue_ms=waited_ms, total_ms=waited_ms),
    )
    return ClientResult(result, sent_mono, now, local=True)


# -- connection options --------------------------------------------------------------------


def channel_options(max_message_bytes: int = 256 * 1024 * 1024) -> list[tuple[str, int]]:
    """Channel arguments of every client channel.

    A local subchannel pool makes :meth:`TrackerClient.reconnect` mean it: with
    gRPC's process-wide pool a new channel would inherit the old connection's
    back-off and keep failing for seconds after the server is back.
    """
    return [
        ("grpc.max_receive_message_length", max_message_bytes),
        ("grpc.max_send_message_length", max_message_bytes),
        ("grpc.use_local_subchannel_pool", 1),
    ]


def _read_pem(value: bytes | str | Path | None) -> bytes | None:
    """PEM bytes from bytes, a path, or PEM text (strings starting with ``-----BEGIN``)."""
    if value is None or isinstance(value, bytes):
        return value
    if isinstance(value, str) and value.lstrip().startswith("-----BEGIN"):
        return value.encode()
    return Path(value).read_bytes()


def _is_loopback_address(address: str) -> bool:
    host = address.rsplit(":", 1)[0].strip("[]")
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


@dataclass(frozen=True)
class ConnectOptions:
    """How to reach a server: address, TLS material, bearer token.

    TLS is used when ``tls`` is True or any certificate material is given;
    ``root_certificates`` None then means the system's trust store. The token
    travels as ``authorization: Bearer <token>`` metadata on every call.
    """

    address: str
    tls: bool = False
    root_certificates: bytes | None = None
    private_key: bytes | None = None  # client certificate (mutual TLS), PEM
    certificate_chain: bytes | None = None
    token: str | None = None
    server_name_override: str | None = None  # TLS name to check when it differs from the address
    options: tuple[tuple[str, object], ...] = field(default_factory=lambda: tuple(channel_options()))

    @property
    def secure(self) -> bool:
        return self.tls or any(
            v is not None for v in (self.root_certificates, self.private_key, self.certificate_chain)
        )

    def credentials(self) -> grpc.ChannelCredentials:
        return grpc.ssl_channel_credentials(
            root_certificates=self.root_certificates,
            private_key=self.private_key,
            certificate_chain=self.certificate_chain,
        )

    def channel_args(self) -> list[tuple[str, object]]:
        args = list(self.options)
        if self.server_name_override:
            args.append(("grpc.ssl_target_name_override", self.server_name_override))
        return args

    def metadata(self) -> tuple[tuple[str, str], ...]:
        return (("authorization", f"Bearer {self.token}"),) if self.token else ()

    def warn_if_exposed(self) -> None:
        if self.token and not self.secure and not _is_loopback_address(self.address):
            logger.warning(
                "sending a bearer token in plaintext to %s: use TLS (root_certificates / tls=True)",
                self.address,
            )


def make_connect_options(
    address: str,
    *,
    tls: bool = False,
    root_certificates: bytes | str | Path | None = None,
    private_key: bytes | str | Path | None = None,
    certificate_chain: bytes | str | Path | None = None,
    token: str | None = None,
    server_name_override: str | None = None,
    max_message_bytes: int = 256 * 1024 * 1024,
) -> ConnectOptions:
    return ConnectOptions(
        address=address,
        tls=tls,
        root_certificates=_read_pem(root_certificates),
        private_key=_read_pem(private_key),
        certificate_chain=_read_pem(certificate_chain),
        token=token,
        server_name_override=server_name_override,
        options=tuple(channel_options(max_message_bytes)),
    )


def build_session_config(
    config: SessionConfig | None,
    *,
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
) -> SessionConfig:
    """``config`` (default: :class:`SessionConfig`) with the given fields replaced."""
    changes: dict[str, object] = {
        key: value
        for key, value in {
            "modality": modality,
            "engine": engine,
            "engine_options": dict(engine_options) if engine_options is not None else None,
            "objects": tuple(objects) if objects is not None else None,
            "latency_budget_ms": latency_budget_ms,
            "frame_rate_hz": frame_rate_hz,
            "geometry": geometry,
            "image_size": image_size,
            "client_name": client_name,
            "budget_policy": budget_policy,
            "timestamp_clock": timestamp_clock,
        }.items()
        if value is not None
    }
    return replace(config or SessionConfig(), **changes)  # type: ignore[arg-type]


# -- the send path ---------------------------------------------------------------------------


@dataclass
class _Pending:
    request: pb.TrackRequest
    frame_index: int | None = None  # set for frames
    sent_mono: float = 0.0


class Outbox:
    """Requests waiting for the transport, in order; not thread-safe (callers lock).

    ``policy="queue"`` keeps every frame. ``policy="latest"`` keeps at most one
    unsent frame: a newer frame replaces it (moving to the end, so prompt
    updates queued meanwhile still precede it) and :meth:`push_frame` returns
    the replaced one so the caller can answer it locally.
    """

    def __init__(self, policy: SendPolicy = "queue") -> None:
        if policy not in ("queue", "latest"):
            raise ValueError(f"send policy must be 'queue' or 'latest', got {policy!r}")
        self.policy = policy
        self._items: collections.deque[_Pending | object] = collections.deque()
        self._frame: _Pending | None = None  # the unsent frame, under "latest"

    def push_frame(self, item: _Pending) -> _Pending | None:
        replaced = None
        if self.policy == "latest" and self._frame is not None:
            replaced = self._frame
            self._items.remove(replaced)
        self._items.append(item)
        if self.policy == "latest":
            self._frame = item
        return replaced

    def push(self, item: _Pending | object) -> None:
        self._items.append(item)

    def pop(self) -> _Pending | object | None:
        if not self._items:
            return None
        item = self._items.popleft()
        if item is self._frame:
            self._frame = None
        return item

    def __len__(self) -> int:
        return len(self._items)


# -- the blocking client -------------------------------------------------------------------


class TrackerClient:
    """A connection to one tracker server (blocking flavour).

    ``TrackerClient("host:50051")`` is plaintext; give ``root_certificates``
    (PEM bytes or a path), or ``tls=True`` for the system trust store, to use
    TLS; ``private_key``/``certificate_chain`` add a client certificate; a
    ``token`` is sent as ``authorization: Bearer <token>`` on every call.
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
        self._lock = threading.Lock()
        self._retired: list[grpc.Channel] = []
        self._stale = False
        self._closed = False
        self._channel, self._stub = self._new_channel()

    @property
    def address(self) -> str:
        return self.connect_options.address

    def _new_channel(self) -> tuple[grpc.Channel, pb_grpc.TrackerStub]:
        opts = self.connect_options
        if opts.secure:
            channel = grpc.secure_channel(opts.address, opts.credentials(), options=opts.channel_args())
        else:
            channel = grpc.insecure_channel(opts.address, options=opts.channel_args())
        return channel, pb_grpc.TrackerStub(channel)

    def reconnect(self) -> None:
        """Use a fresh channel for new calls (no reconnect back-off); open sessions are not moved.

        The old channel is closed with the client, so sessions still running on
        it are not cut off here.
        """
        with self._lock:
            if self._closed:
                raise RuntimeError("the client is closed")
            self._retired.append(self._channel)
            self._channel, self._stub = self._new_channel()
            self._stale = False
        logger.info("re-created the channel to %s", self.address)

    def _mark_stale(self) -> None:
        """A session on this channel lost its connection: re-create the channel before the next one."""
        self._stale = True

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
        if self._stale:
            self.reconnect()
        try:
            msg = self._stub.GetInfo(
                pb.GetInfoRequest(), timeout=timeout_s, metadata=self.connect_options.metadata()
            )
        except grpc.RpcError as exc:
            raise error_from_rpc(exc) from None
        return ServerInfo.from_proto(msg)

    def open_session(
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
    ) -> StreamSession | FailoverSession:
        """Open a Track stream and wait for the server's ``started`` answer.

        ``failover=True`` returns a :class:`~tracker.failover_session.FailoverSession`: when
        the stream ends UNAVAILABLE or the connection drops, it re-opens through the
        same address (a proxy) from each object's last good mask and answers the
        frames of the gap ``LOST`` (see :mod:`tracker.failover`).

        Give a :class:`SessionConfig`, or its fields as keywords (they replace
        those of ``config`` when both are given). Raises :class:`TrackerError`
        with the server's message when it refuses (INVALID_ARGUMENT for a bad
        prompt or engine, RESOURCE_EXHAUSTED at its session limit).
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
            from tracker.failover_session import FailoverSession

            return FailoverSession(
                self,
                config,
                mask_encoding=mask_encoding,
                send_policy=send_policy,
                policy=failover_policy,
                timeout_s=timeout_s,
            )
        if self._stale:
            self.reconnect()
        return StreamSession(
            self._stub,
            config,
            mask_encoding,
            timeout_s,
            metadata=self.connect_options.metadata(),
            send_policy=send_policy,
            on_lost=self._mark_stale,
        )

    def close(self) -> None:
        with self._lock:
            self._closed = True
            for channel in [*self._retired, self._channel]:
                channel.close()
            self._retired.clear()

    def __enter__(self) -> TrackerClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class StreamSession:
    """One open session. ``send_*`` never block on the server; ``recv`` returns answers in order.

    Answers are :class:`ClientResult` (one per frame sent) and
    :class:`~tracker.types.PromptAck` (one per update sent with
    :meth:`send_update`; acks of :meth:`update` / :meth:`add_object` /
    :meth:`remove_object` / :meth:`correct_object` go to their caller instead).
    """

    def __init__(
        self,
        stub: pb_grpc.TrackerStub,
        config: SessionConfig,
        mask_encoding: int = pb.RLE,
        timeout_s: float = 60.0,
        *,
        metadata: tuple[tuple[str, str], ...] = (),
        send_policy: SendPolicy = "queue",
        on_lost: Callable[[], None] | None = None,
    ) -> None:
        self.config = config
        self._cond = threading.Condition()
        self._outbox = Outbox(send_policy)
        self._answers: collections.deque[object] = collections.deque()
        self._answers_cond = threading.Condition()
        self._sent_at: dict[int, float] = {}
        self._waiters: dict[int, Future[PromptAck]] = {}
        self._next_update_id = 1
        self._closed = False
        self._writing_done = False
        self._failure: TrackerError | None = None
        self._on_lost = on_lost
        self.frames_sent = 0
        self.frames_skipped = 0
        self._outbox.push(pb.TrackRequest(open=convert.session_open_to_proto(config, mask_encoding)))
        self._call = stub.Track(self._request_stream(), metadata=metadata)
        first_box: list[object] = []
        opener = threading.Thread(target=lambda: first_box.append(self._first()), daemon=True)
        opener.start()
        opener.join(timeout_s)
        if not first_box:
            self._call.cancel()
            raise TrackerError(grpc.StatusCode.DEADLINE_EXCEEDED, f"no session start within {timeout_s} s")
        first = first_box[0]
        if isinstance(first, TrackerError):
            self._end_writing()
            if first.code in _LOST_CODES and on_lost is not None:
                on_lost()  # no connection: the next session starts on a fresh channel
            raise first
        assert isinstance(first, pb.TrackResponse)
        if first.WhichOneof("kind") != "started":
            self._call.cancel()
            raise TrackerError(
                grpc.StatusCode.INTERNAL, f"expected `started`, got `{first.WhichOneof('kind')}`"
            )
        self.started = SessionStarted.from_proto(first.started)
        if self.started.engine.random_weights:
            logger.warning(
                "the server runs %s with RANDOM WEIGHTS: not for clinical use", self.started.engine.name
            )
        for warning in self.started.warnings:
            logger.warning("server: %s", warning)
        self._receiver = threading.Thread(target=self._receive, name="tracker-recv", daemon=True)
        self._receiver.start()

    # -- plumbing ----------------------------------------------------------------------

    def _first(self) -> pb.TrackResponse | TrackerError:
        try:
            return next(self._call)
        except grpc.RpcError as exc:
            return error_from_rpc(exc)
        except StopIteration:
            return TrackerError(grpc.StatusCode.UNAVAILABLE, "the server ended the stream without answering")

    @property
    def session_id(self) -> str:
        return self.started.session_id if hasattr(self, "started") else ""

    @property
    def send_policy(self) -> SendPolicy:
        return self._outbox.policy

    def _request_stream(self) -> Iterator[pb.TrackRequest]:
        while True:
            with self._cond:
                self._cond.wait_for(lambda: len(self._outbox) > 0)
                item = self._outbox.pop()
            if item is _END:
                return
            if isinstance(item, _Pending):
                if item.frame_index is not None:
                    self.frames_sent += 1
                yield item.request
            else:
                yield item  # type: ignore[misc]

    def _put_answer(self, item: object) -> None:
        with self._answers_cond:
            self._answers.append(item)
            self._answers_cond.notify_all()

    def _receive(self) -> None:
        try:
            for response in self._call:
                received = time.monotonic()
                kind = response.WhichOneof("kind")
                if kind == "frame":
                    result = convert.frame_result_from_proto(response.frame)
                    with self._cond:
                        sent = self._sent_at.pop(result.frame_index, received)
                    self._put_answer(ClientResult(result, sent, received))
                elif kind == "prompt_ack":
                    msg = response.prompt_ack
                    ack = PromptAck(msg.update_id, msg.accepted, msg.message)
                    with self._cond:
                        waiter = self._waiters.pop(ack.update_id, None)
                    if waiter is not None:
                        waiter.set_result(ack)
                    else:
                        self._put_answer(ack)
                elif kind == "gating":  # a beam HOLD sent because the stream stalled
                    self._put_answer(convert.gating_decision_from_proto(response.gating))
        except grpc.RpcError as exc:
            if exc.code() == grpc.StatusCode.CANCELLED:
                if not self._closed:  # cancelled, but not by us: the stream is gone all the same
                    self._fail(SessionLostError(exc.code(), exc.details() or "cancelled", self.session_id))
            else:
                self._fail(error_from_rpc(exc, self.session_id, in_session=True))
        with self._cond:
            waiters, self._waiters = self._waiters, {}
        for waiter in waiters.values():
            waiter.set_exception(
                self._failure or TrackerError(None, "the session ended before the prompt update was answered")
            )
        self._put_answer(_END)

    def _fail(self, failure: TrackerError) -> None:
        self._failure = failure
        if isinstance(failure, SessionLostError):
            logger.warning("%s", failure)
            if self._on_lost is not None:
                self._on_lost()
        self._put_answer(failure)
        self._end_writing()

    def _check_open(self) -> None:
        if self._failure is not None:
            raise self._failure
        if self._writing_done:
            raise TrackerError(None, "the session is closed for sending; open a new session")

    def _end_writing(self) -> None:
        with self._cond:
            if not self._writing_done:
                self._writing_done = True
                self._outbox.push(_END)
                self._cond.notify_all()

    # -- sending -----------------------------------------------------------------------

    def send_frame(self, pixels: np.ndarray, index: int, timestamp_s: float | None = None) -> None:
        """Queue one frame (``(H, W)`` or ``(H, W, 3)``; uint8, uint16, int16 or float32).

        Never waits for the server. Raises :class:`SessionLostError` once the
        connection has dropped, ValueError for arrays the protocol cannot carry.
        """
        self._check_open()
        message = convert.frame_to_proto(pixels, index, timestamp_s)
        now = time.monotonic()
        with self._cond:
            self._sent_at[index] = now
            replaced = self._outbox.push_frame(_Pending(pb.TrackRequest(frame=message), index, now))
            self._cond.notify_all()
            if replaced is not None:
                self._sent_at.pop(replaced.frame_index, None)  # type: ignore[arg-type]
        if replaced is not None:
            self.frames_skipped += 1
            self._put_answer(skipped_result(replaced.frame_index, index, replaced.sent_mono))  # type: ignore[arg-type]

    def _allocate_update_id(self, requested: int = 0) -> int:
        with self._cond:
            if requested:
                self._next_update_id = max(self._next_update_id, requested + 1)
                return requested
            update_id = self._next_update_id
            self._next_update_id += 1
            return update_id

    def send_update(self, update: PromptUpdate) -> int:
        """Queue a prompt update; its ack comes back through :meth:`recv`. Returns its update id.

        An ``update_id`` of 0 is replaced by the next unused id, so acks can be matched.
        """
        self._check_open()
        update_id = self._allocate_update_id(update.update_id)
        if update_id != update.update_id:
            update = replace(update, update_id=update_id)
        self._push(pb.TrackRequest(prompt_update=convert.prompt_update_to_proto(update)))
        return update_id

    def _push(self, request: pb.TrackRequest) -> None:
        with self._cond:
            self._outbox.push(request)
            self._cond.notify_all()

    def send_raw(self, request: pb.TrackRequest) -> None:
        """Send a request as it is (for tests of the server's input checks)."""
        self._check_open()
        self._push(request)

    def update(self, update: PromptUpdate, timeout_s: float | None = 30.0) -> PromptAck:
        """Send a prompt update and wait for its ack; :class:`PromptRefusedError` if refused.

        The ack means the update applies to the next frame the server processes.
        """
        self._check_open()
        update_id = self._allocate_update_id(update.update_id)
        update = replace(update, update_id=update_id)
        waiter: Future[PromptAck] = Future()
        with self._cond:
            self._waiters[update_id] = waiter
        try:
            self._push(pb.TrackRequest(prompt_update=convert.prompt_update_to_proto(update)))
            ack = waiter.result(timeout=timeout_s)
        except FutureTimeout:
            raise TimeoutError(f"no ack for prompt update {update_id} within {timeout_s} s") from None
        finally:
            with self._cond:
                self._waiters.pop(update_id, None)
        if not ack.accepted:
            raise PromptRefusedError(ack)
        return ack

    def add_object(
        self, object_id: int, prompt: Prompt, label: str = "", timeout_s: float | None = 30.0
    ) -> PromptAck:
        """Start tracking a new object from ``prompt`` on the next frame."""
        return self.update(PromptUpdate(UpdateAction.ADD, object_id, prompt, label), timeout_s)

    def remove_object(self, object_id: int, timeout_s: float | None = 30.0) -> PromptAck:
        """Stop tracking ``object_id``."""
        return self.update(PromptUpdate(UpdateAction.REMOVE, object_id), timeout_s)

    def correct_object(
        self, object_id: int, prompt: Prompt, label: str = "", timeout_s: float | None = 30.0
    ) -> PromptAck:
        """Replace an object's prompt; it becomes the object's new reference from the next frame."""
        return self.update(PromptUpdate(UpdateAction.CORRECT, object_id, prompt, label), timeout_s)

    # -- receiving ---------------------------------------------------------------------

    def recv(self, timeout_s: float | None = 60.0) -> ClientResult | PromptAck | None:
        """The next answer; None when the stream has ended.

        Raises :class:`SessionLostError` when the connection dropped,
        :class:`TrackerError` for another error status, TimeoutError when
        nothing arrives within ``timeout_s``.
        """
        with self._answers_cond:
            if not self._answers_cond.wait_for(lambda: bool(self._answers), timeout=timeout_s):
                raise TimeoutError(f"no answer from the server within {timeout_s} s")
            item = self._answers[0]
            if item is not _END:  # keep answering None at the end
                self._answers.popleft()
        if item is _END:
            return None
        if isinstance(item, TrackerError):
            raise item
        return item  # type: ignore[return-value]

    def recv_frame(self, timeout_s: float | None = 60.0) -> ClientResult:
        """The next frame answer, skipping prompt acknowledgements."""
        while True:
            item = self.recv(timeout_s)
            if item is None:
                raise TrackerError(
                    grpc.StatusCode.UNAVAILABLE, "the stream ended before the frame was answered"
                )
            if isinstance(item, ClientResult):
                return item

    def results(self, timeout_s: float | None = 60.0) -> Iterator[ClientResult]:
        """Frame answers until the stream ends (after :meth:`done_writing` or a server end)."""
        while (item := self.recv(timeout_s)) is not None:
            if isinstance(item, ClientResult):
                yield item

    # -- ending ------------------------------------------------------------------------

    def done_writing(self) -> None:
        """Half-close: no more requests; queued ones still go out and are answered."""
        self._end_writing()

    def close(self) -> list[ClientResult | PromptAck]:
        """Half-close: the server answers what it has, then ends; returns the remaining answers."""
        self._end_writing()
        rest: list[ClientResult | PromptAck] = []
        while (item := self.recv(timeout_s=None)) is not None:
            rest.append(item)
        self._closed = True
        return rest

    def cancel(self) -> None:
        """End now: the server frees the session without answering what is waiting."""
        self._closed = True
        self._call.cancel()
        self._end_writing()

    def __enter__(self) -> StreamSession:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        if exc_type is None:
            self.close()
        else:
            self.cancel()
