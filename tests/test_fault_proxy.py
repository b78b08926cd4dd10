"""The userspace TCP fault proxy (tracker.lab.faultproxy) on real loopback sockets, and under gRPC."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Callable, Iterator
from concurrent import futures
from typing import NamedTuple

import grpc
import pytest
from grpc_health.v1 import health, health_pb2, health_pb2_grpc

from tracker.lab.faultproxy import Direction, Fault, FaultKind, FaultProxy, ProxyStats

pytestmark = pytest.mark.timeout(60)


class Upstream:
    """A listening socket behind the proxy; the test accepts and drives the server side itself."""

    def __init__(self) -> None:
        self.sock = socket.create_server(("127.0.0.1", 0))
        self.sock.settimeout(5)
        self.address = f"127.0.0.1:{self.sock.getsockname()[1]}"
        self.accepted: list[socket.socket] = []

    def accept(self) -> socket.socket:
        conn, _ = self.sock.accept()
        conn.settimeout(5)
        self.accepted.append(conn)
        return conn

    def close(self) -> None:
        for s in [*self.accepted, self.sock]:
            s.close()


class EchoServer(Upstream):
    """A plain TCP echo server, one thread per connection."""

    def __init__(self) -> None:
        super().__init__()
        threading.Thread(target=self._serve, daemon=True).start()

    def _serve(self) -> None:
        while True:
            try:
                conn = self.accept()
            except OSError:
                return
            threading.Thread(target=self._echo, args=(conn,), daemon=True).start()

    @staticmethod
    def _echo(conn: socket.socket) -> None:
        with conn:
            try:
                while data := conn.recv(65536):
                    conn.sendall(data)
            except OSError:
                pass


@pytest.fixture
def upstream() -> Iterator[Upstream]:
    up = Upstream()
    yield up
    up.close()


@pytest.fixture
def echo() -> Iterator[EchoServer]:
    server = EchoServer()
    yield server
    server.close()


@pytest.fixture
def make_proxy() -> Iterator[Callable[[str], FaultProxy]]:
    proxies: list[FaultProxy] = []

    def make(target: str) -> FaultProxy:
        proxies.append(FaultProxy(target, seed=1).start())
        return proxies[-1]

    yield make
    for p in proxies:
        p.stop()


class Link(NamedTuple):
    """A proxy to :class:`Upstream` and one connection through it."""

    proxy: FaultProxy
    client: socket.socket  # the connection's end at the client
    server: socket.socket  # its end that the upstream accepted


@pytest.fixture
def link(upstream: Upstream, make_proxy: Callable[[str], FaultProxy]) -> Iterator[Link]:
    proxy = make_proxy(upstream.address)
    with connect(proxy) as c:
        yield Link(proxy, c, upstream.accept())


def connect(proxy: FaultProxy) -> socket.socket:
    host, port = proxy.address.rsplit(":", 1)
    s = socket.create_connection((host, int(port)), timeout=5)
    s.settimeout(5)
    return s


def assert_relayed(src: socket.socket, dst: socket.socket, data: bytes) -> None:
    """``data`` sent on ``src`` arrives whole, and as sent, on ``dst``."""
    src.sendall(data)
    assert recv_exactly(dst, len(data)) == data


def recv_exactly(s: socket.socket, n: int) -> bytes:
    buf = bytearray()
    while len(buf) < n:
        data = s.recv(n - len(buf))
        if not data:
            raise AssertionError(f"EOF after {len(buf)} of {n} bytes")
        buf += data
    return bytes(buf)


def wait_for(cond: Callable[[], bool], timeout: float = 3.0) -> None:
    end = time.monotonic() + timeout
    while not cond():
        if time.monotonic() > end:
            raise AssertionError("condition not met in time")
        time.sleep(0.01)


def assert_silent(s: socket.socket, seconds: float) -> None:
    """Nothing arrives on ``s`` for ``seconds``: no bytes, no EOF, no reset."""
    s.settimeout(seconds)
    try:
        data = s.recv(1024)
    except TimeoutError:
        return
    finally:
        s.settimeout(5)
    raise AssertionError(f"expected silence, got {len(data)} bytes: {data[:32]!r}")


def test_fault_validation() -> None:
    with pytest.raises(ValueError, match="delay_ms"):
        Fault(FaultKind.DELAY, delay_ms=-1)
    with pytest.raises(ValueError, match="jitter_ms"):
        Fault(FaultKind.DELAY, delay_ms=10, jitter_ms=20)
    with pytest.raises(ValueError, match="bits_per_s"):
        Fault(FaultKind.BANDWIDTH)
    with pytest.raises(ValueError, match="bits_per_s"):
        Fault(FaultKind.BANDWIDTH, bits_per_s=float("inf"))
    with pytest.raises(ValueError, match="applies to DELAY only"):
        Fault(FaultKind.BLACKHOLE, delay_ms=5)
    with pytest.raises(ValueError, match="BOTH"):
        Fault(FaultKind.RESET, direction=Direction.UP)
    with pytest.raises(ValueError, match="Direction"):
        Fault(FaultKind.STALL, direction="up")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="host:port"):
        FaultProxy("localhost")


def test_start_fails_on_a_port_in_use(upstream: Upstream) -> None:
    port = int(upstream.address.rsplit(":", 1)[1])
    with pytest.raises(RuntimeError, match="could not listen"):
        FaultProxy(upstream.address, listen_port=port).start()


def test_pass_through_echo(echo: EchoServer, make_proxy: Callable[[str], FaultProxy]) -> None:
    proxy = make_proxy(echo.address)
    payload = bytes(range(256)) * 400
    with connect(proxy) as s:
        assert_relayed(s, s, payload)
        wait_for(lambda: proxy.stats.bytes_forwarded_down == len(payload))
        assert proxy.stats == ProxyStats(1, 1, len(payload), len(payload), 0, 0, 0)
    wait_for(lambda: proxy.stats.connections_open == 0)
    proxy.stop()
    proxy.stop()  # idempotent


def test_delay_adds_latency_each_way(link: Link) -> None:
    proxy, c, server = link
    proxy.apply(Fault(FaultKind.DELAY, delay_ms=200))
    t0 = time.monotonic()
    assert_relayed(c, server, b"ping")
    assert_relayed(server, c, b"pong")
    rtt = time.monotonic() - t0
    assert 0.38 <= rtt < 1.5, rtt
    proxy.apply(None)
    t0 = time.monotonic()
    c.sendall(b"ping")
    recv_exactly(server, 4)
    assert time.monotonic() - t0 < 0.1


def test_jitter_keeps_byte_order(upstream: Upstream, make_proxy: Callable[[str], FaultProxy]) -> None:
    proxy = make_proxy(upstream.address)
    records = b"".join(b"%06d" % i for i in range(300))
    with connect(proxy) as c:
        c.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        server = upstream.accept()
        proxy.apply(Fault(FaultKind.DELAY, delay_ms=50, jitter_ms=40))
        for i in range(0, len(records), 6):
            c.sendall(records[i : i + 6])
            time.sleep(0.001)
        assert recv_exactly(server, len(records)) == records


def test_bandwidth_caps_rate(link: Link) -> None:
    proxy, c, server = link
    payload = b"b" * 250_000
    proxy.apply(Fault(FaultKind.BANDWIDTH, direction=Direction.UP, bits_per_s=1e6))
    t0 = time.monotonic()
    sender = threading.Thread(target=c.sendall, args=(payload,), daemon=True)
    sender.start()
    assert recv_exactly(server, len(payload)) == payload
    elapsed = time.monotonic() - t0
    sender.join(5)
    assert 1.6 <= elapsed <= 3.5, elapsed
    t0 = time.monotonic()  # the other direction is not limited
    server.sendall(payload)
    recv_exactly(c, len(payload))
    assert time.monotonic() - t0 < 1.0


def test_blackhole_up(link: Link) -> None:
    proxy, c, server = link
    assert_relayed(c, server, b"before")
    proxy.apply(Fault(FaultKind.BLACKHOLE, direction=Direction.UP))
    c.sendall(b"lost bytes")
    assert_silent(server, 1.0)
    assert proxy.stats.bytes_discarded_up == 10
    assert_silent(c, 0.05)  # no EOF, no reset at the client
    assert_relayed(server, c, b"down")  # the other direction still flows
    proxy.apply(None)
    assert_relayed(c, server, b"after")
    assert proxy.stats.bytes_forwarded_up == 11
    proxy.apply(Fault(FaultKind.BLACKHOLE, direction=Direction.UP))
    c.shutdown(socket.SHUT_WR)  # no FIN gets through a black hole either...
    assert_silent(server, 0.3)
    proxy.apply(None)
    assert server.recv(16) == b""  # ...until it clears
    assert proxy.stats.resets == 0


def test_stall_down_holds_then_delivers(link: Link) -> None:
    proxy, c, server = link
    payload = bytes(range(256)) * 65536  # 16 MiB: more than the kernel's buffers hold
    proxy.apply(Fault(FaultKind.STALL, direction=Direction.DOWN))
    sender = threading.Thread(target=server.sendall, args=(payload,), daemon=True)
    sender.start()
    assert_silent(c, 0.7)
    assert proxy.stats.bytes_forwarded_down == 0
    assert sender.is_alive()  # flow control pushes back: the proxy stopped reading
    assert_relayed(c, server, b"up")  # only DOWN is stalled
    proxy.apply(None)
    assert recv_exactly(c, len(payload)) == payload
    sender.join(5)
    assert proxy.stats.bytes_discarded_down == 0


def test_reset(echo: EchoServer, make_proxy: Callable[[str], FaultProxy]) -> None:
    proxy = make_proxy(echo.address)
    with connect(proxy) as c:
        assert_relayed(c, c, b"hi")
        proxy.apply(Fault(FaultKind.RESET))
        assert proxy.fault is None  # an event, not a state
        with pytest.raises(ConnectionResetError):
            c.recv(16)
    assert proxy.stats.resets == 1
    with connect(proxy) as c:
        assert_relayed(c, c, b"again")


def test_half_close_down(link: Link) -> None:
    proxy, c, server = link
    assert_relayed(server, c, b"first")
    proxy.apply(Fault(FaultKind.HALF_CLOSE, direction=Direction.DOWN))
    assert c.recv(16) == b""  # EOF from the server, as the client sees it
    assert_relayed(c, server, b"still up")  # the server side is still open
    assert_silent(server, 0.1)
    assert proxy.fault is None


def test_half_close_up(link: Link) -> None:
    proxy, c, server = link
    proxy.apply(Fault(FaultKind.HALF_CLOSE, direction=Direction.UP))
    assert server.recv(16) == b""  # EOF from the client, as the server sees it
    assert_relayed(server, c, b"still down")
    c.sendall(b"lost")  # after the server saw EOF, the client's bytes have nowhere to go
    wait_for(lambda: proxy.stats.bytes_discarded_up == 4)


def test_run_script(upstream: Upstream, make_proxy: Callable[[str], FaultProxy]) -> None:
    proxy = make_proxy(upstream.address)
    blackhole = Fault(FaultKind.BLACKHOLE, direction=Direction.UP)
    stall = Fault(FaultKind.STALL)
    with connect(proxy) as c:
        upstream.accept()
        t0 = time.monotonic()
        thread = proxy.run_script([(0.6, stall), (0.3, blackhole), (2.0, blackhole)], max_s=0.9)
        seen = []
        for at in (0.15, 0.45, 0.75, 1.2, 2.2):
            time.sleep(max(0.0, t0 + at - time.monotonic()))
            seen.append(proxy.fault)
            if at == 0.45:
                c.sendall(b"dropped")
        assert seen == [None, blackhole, stall, None, None]
        assert proxy.stats.bytes_discarded_up == 7
        thread.join(1)
        assert not thread.is_alive()


def test_run_script_stops_with_proxy(upstream: Upstream, make_proxy: Callable[[str], FaultProxy]) -> None:
    proxy = make_proxy(upstream.address)
    thread = proxy.run_script([(0.0, Fault(FaultKind.STALL))], max_s=30)
    wait_for(lambda: proxy.fault is not None)
    proxy.stop()
    thread.join(2)
    assert not thread.is_alive()
    assert proxy.fault is None


def test_grpc_health_through_blackhole(make_proxy: Callable[[str], FaultProxy]) -> None:
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=2))
    servicer = health.HealthServicer()
    servicer.set("", health_pb2.HealthCheckResponse.SERVING)
    health_pb2_grpc.add_HealthServicer_to_server(servicer, server)
    port = server.add_insecure_port("127.0.0.1:0")
    server.start()
    proxy = make_proxy(f"127.0.0.1:{port}")
    try:
        with grpc.insecure_channel(proxy.address) as channel:
            stub = health_pb2_grpc.HealthStub(channel)
            request = health_pb2.HealthCheckRequest()
            assert stub.Check(request, timeout=5).status == health_pb2.HealthCheckResponse.SERVING
            proxy.apply(Fault(FaultKind.BLACKHOLE))
            with pytest.raises(grpc.RpcError) as caught:
                stub.Check(request, timeout=0.5)
            assert caught.value.code() == grpc.StatusCode.DEADLINE_EXCEEDED
            assert proxy.stats.resets == 0
            proxy.apply(None)
            end, answer = time.monotonic() + 5, None
            while answer is None and time.monotonic() < end:
                try:
                    answer = stub.Check(request, timeout=1)
                except grpc.RpcError:
                    time.sleep(0.1)
            assert answer is not None and answer.status == health_pb2.HealthCheckResponse.SERVING
    finally:
        server.stop(None)
