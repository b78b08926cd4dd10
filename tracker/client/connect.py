"""How a client reaches a server: channel options, TLS material, token; the channel both clients own."""

from __future__ import annotations

import ipaddress
import logging
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar, TypedDict, Unpack

import grpc
import grpc.aio

from tracker.client.core import OpenRequest, SendPolicy, build_session_config
from tracker.keepalive import Keepalive
from tracker.types import SessionConfig
from tracker.v1 import tracker_pb2 as pb
from tracker.v1 import tracker_pb2_grpc as pb_grpc

if TYPE_CHECKING:
    from tracker.client.failover import FailoverPolicy

logger = logging.getLogger(__name__)


def channel_options(
    max_message_bytes: int = 256 * 1024 * 1024, keepalive: Keepalive | None = None
) -> list[tuple[str, int]]:
    """Channel arguments of every client channel.

    A local subchannel pool makes :meth:`TrackerClient.reconnect` mean it: with
    gRPC's process-wide pool a new channel would inherit the old connection's
    back-off and keep failing for seconds after the server is back. Keepalive pings
    notice a connection that died without a reset (:mod:`tracker.keepalive`).
    """
    return [
        ("grpc.max_receive_message_length", max_message_bytes),
        ("grpc.max_send_message_length", max_message_bytes),
        ("grpc.use_local_subchannel_pool", 1),
        *(keepalive or Keepalive()).channel_args(),
    ]


def read_pem(value: bytes | str | Path | None) -> bytes | None:
    """PEM bytes from bytes, a path, or PEM text (strings starting with ``-----BEGIN``)."""
    if value is None or isinstance(value, bytes):
        return value
    if isinstance(value, str) and value.lstrip().startswith("-----BEGIN"):
        return value.encode()
    return Path(value).read_bytes()


def is_loopback_address(address: str) -> bool:
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
        if self.token and not self.secure and not is_loopback_address(self.address):
            logger.warning(
                "sending a bearer token in plaintext to %s: use TLS (root_certificates / tls=True)",
                self.address,
            )


class ConnectSettings(TypedDict, total=False):
    """How to reach a server, as keywords of both clients (see :class:`ConnectOptions`)."""

    tls: bool
    root_certificates: bytes | str | Path | None  # PEM bytes, PEM text or a path
    private_key: bytes | str | Path | None
    certificate_chain: bytes | str | Path | None
    token: str | None
    server_name_override: str | None
    max_message_bytes: int
    keepalive: Keepalive


def make_connect_options(address: str, **settings: Unpack[ConnectSettings]) -> ConnectOptions:
    """:class:`ConnectOptions` from the clients' keywords; PEM material read from paths."""
    unknown = sorted(set(settings) - set(ConnectSettings.__annotations__))
    if unknown:
        raise TypeError(
            f"unknown connection setting(s) {unknown}; known: {list(ConnectSettings.__annotations__)}"
        )
    return ConnectOptions(
        address=address,
        tls=settings.get("tls", False),
        root_certificates=read_pem(settings.get("root_certificates")),
        private_key=read_pem(settings.get("private_key")),
        certificate_chain=read_pem(settings.get("certificate_chain")),
        token=settings.get("token"),
        server_name_override=settings.get("server_name_override"),
        options=tuple(
            channel_options(settings.get("max_message_bytes", 256 * 1024 * 1024), settings.get("keepalive"))
        ),
    )


class ChannelOwner:
    """What both clients share: the connect options, the current channel and the retired ones.

    A subclass names its gRPC flavour in ``channel_module`` (``grpc`` or
    ``grpc.aio``; their channel constructors take the same arguments). Creating
    a channel does not connect: gRPC connects on the first call.
    """

    channel_module: ClassVar[Any] = grpc

    def __init__(self, address: str, **settings: Unpack[ConnectSettings]) -> None:
        self.connect_options = make_connect_options(address, **settings)
        self.connect_options.warn_if_exposed()
        self._lock = threading.Lock()
        self._retired: list[Any] = []
        self._stale = False
        self._closed = False
        self._channel, self._stub = self._new_channel()

    @property
    def address(self) -> str:
        return self.connect_options.address

    def _new_channel(self) -> tuple[Any, pb_grpc.TrackerStub]:
        opts, module = self.connect_options, self.channel_module
        if opts.secure:
            channel = module.secure_channel(opts.address, opts.credentials(), options=opts.channel_args())
        else:
            channel = module.insecure_channel(opts.address, options=opts.channel_args())
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

    def _fresh_stub(self) -> pb_grpc.TrackerStub:
        """The stub for a new call, on a new channel if the last session lost its connection."""
        if self._stale:
            self.reconnect()
        return self._stub

    def open_session(
        self,
        config: SessionConfig | None = None,
        mask_encoding: int = pb.RLE,
        timeout_s: float = 60.0,
        *,
        send_policy: SendPolicy = "queue",
        failover: bool = False,
        failover_policy: FailoverPolicy | None = None,
        max_answer_age_ms: float | None = None,
        **overrides: Any,
    ) -> Any:
        """Open a Track stream and wait for the server's ``started`` answer (awaitable on asyncio).

        Give a :class:`~tracker.types.SessionConfig`, or its fields as keywords
        (they replace those of ``config`` when both are given). Raises
        :class:`~tracker.client.TrackerError` with the server's message when it
        refuses (INVALID_ARGUMENT for a bad prompt or engine, RESOURCE_EXHAUSTED
        at its session limit); TypeError for a keyword that is no session field.

        ``failover=True`` returns a failover session: when the stream ends
        UNAVAILABLE or the connection drops, it re-opens through the same address
        (a proxy) from each object's last good mask and answers the frames of the
        gap ``LOST`` (see :mod:`tracker.client.failover`).

        ``max_answer_age_ms`` (default: the session's latency budget): an answer that
        comes later than this after its frame was sent is marked stale and its
        ``BEAM_ON`` held (see :class:`~tracker.client.core.Freshness`).
        """
        request = OpenRequest(
            build_session_config(config, **overrides),
            mask_encoding,
            timeout_s,
            send_policy,
            failover,
            failover_policy,
            max_answer_age_ms,
        )
        return self.open_request(request)

    def open_request(self, request: OpenRequest) -> Any:
        """Open a session as ``request`` says: a session, or (asyncio) a coroutine that gives one."""
        raise NotImplementedError

    def _take_channels(self) -> list[Any]:
        """Mark the client closed and hand over every channel it made, for the flavour to close."""
        with self._lock:
            self._closed = True
            channels = [*self._retired, self._channel]
            self._retired.clear()
        return channels
