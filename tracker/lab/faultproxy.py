"""A userspace TCP fault proxy for tests and benchmarks: latency, bandwidth, black holes, stalls, resets.

This kernel has no ``netem``, so faults are made in userspace: :class:`FaultProxy` listens on a
loopback port, opens one connection to ``target`` for each client it accepts and forwards
bytes both ways in an asyncio loop on its own daemon thread. :meth:`FaultProxy.apply` changes
what happens to the traffic, at once, for the connections open now (including those still
connecting upstream) and for new ones; :attr:`FaultProxy.stats` counts what it did:

* ``DELAY``: each chunk read is forwarded ``delay_ms`` ± ``jitter_ms`` later; a chunk never
  overtakes the one before it (the byte stream stays in order, as TCP keeps it);
* ``BANDWIDTH``: each direction of each connection is paced to ``bits_per_s`` of payload;
* ``BLACKHOLE``: bytes read in the affected direction are dropped (and counted); no reset, and a
  sender's EOF is held back until the fault is cleared;
* ``STALL``: the proxy stops reading in the affected direction, so TCP flow control pushes back
  on the sender; everything held flows again when the fault is cleared;
* ``RESET`` (an event): every open connection is closed with an RST on both sides;
* ``HALF_CLOSE`` (an event): the proxy shuts down its write side toward the affected side(s)
  (``UP``: the server reads EOF from the client; ``DOWN``: the client reads EOF from the server).

What it can stand in for, and what not. It works on the byte stream above TCP, so there is no
packet loss, reordering or duplication at the IP level, no retransmission and no congestion
control to watch. The proxy reads what the sender writes, so the sender's kernel sees its bytes
acknowledged at the TCP level even while they are black-holed: it does not retransmit and never
times the connection out by itself. A dead path must therefore be noticed by the application or
by HTTP/2 (keepalive PINGs, deadlines), which is exactly what these faults exist to test. Unlike
a real outage, which TCP repairs by retransmitting once the path is back, a ``BLACKHOLE`` leaves a
gap in the byte stream: a connection that lost bytes is usually broken for its protocol (HTTP/2
sees garbage and closes it) and the client has to reconnect; use ``STALL`` for an outage that the
connection survives. New connections are accepted (the listening socket does the handshake)
and connected upstream whatever the fault; the fault then applies to their bytes. ``DELAY`` and
``BANDWIDTH`` act on chunks of at most 16 KiB as they are read, not on packets.
"""

from __future__ import annotations

import asyncio
import contextlib
import enum
import logging
import math
import random
import socket
import struct
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass
from types import TracebackType

log = logging.getLogger(__name__)

CHUNK = 16 * 1024  # read size: small enough that pacing and delays stay smooth
QUEUE_CHUNKS = 64  # chunks in flight per direction (≤ 1 MiB) before the proxy stops reading
PACE_S = 0.02  # under BANDWIDTH, bytes go out in pieces of 20 ms worth of the rate
_Pair = tuple[asyncio.StreamReader, asyncio.StreamWriter]


class FaultKind(enum.Enum):
    DELAY = "delay"
    BANDWIDTH = "bandwidth"
    BLACKHOLE = "blackhole"
    STALL = "stall"
    RESET = "reset"
    HALF_CLOSE = "half_close"


class Direction(enum.Enum):
    UP = "up"  # client -> server
    DOWN = "down"  # server -> client
    BOTH = "both"


EVENTS = (FaultKind.RESET, FaultKind.HALF_CLOSE)  # done once on apply; the fault then returns to None
_PARAMS = {"delay_ms": FaultKind.DELAY, "jitter_ms": FaultKind.DELAY, "bits_per_s": FaultKind.BANDWIDTH}


@dataclass(frozen=True)
class Fault:
    """What the proxy does to traffic in one or both directions."""

    kind: FaultKind
    direction: Direction = Direction.BOTH
    delay_ms: float = 0.0  # DELAY: added one-way latency per chunk
    jitter_ms: float = 0.0  # DELAY: uniform ± jitter (the order of bytes within a connection is kept)
    bits_per_s: float = 0.0  # BANDWIDTH: cap per direction per connection

    def __post_init__(self) -> None:
        if not isinstance(self.kind, FaultKind):
            raise ValueError(f"kind must be a FaultKind, not {self.kind!r}")
        if not isinstance(self.direction, Direction):
            raise ValueError(f"direction must be a Direction, not {self.direction!r}")
        for name, kind in _PARAMS.items():
            value = getattr(self, name)
            if not isinstance(value, int | float) or not math.isfinite(value) or value < 0:
                raise ValueError(f"{name} must be a finite number >= 0, not {value!r}")
            if value and self.kind is not kind:
                raise ValueError(f"{name} applies to {kind.name} only, not to {self.kind.name}")
        if self.jitter_ms > self.delay_ms:
            raise ValueError(f"jitter_ms ({self.jitter_ms}) must not exceed delay_ms ({self.delay_ms})")
        if self.kind is FaultKind.BANDWIDTH and self.bits_per_s <= 0:
            raise ValueError("BANDWIDTH needs bits_per_s > 0")
        if self.kind is FaultKind.RESET and self.direction is not Direction.BOTH:
            raise ValueError("RESET closes whole connections: its direction must be BOTH")

    def affects(self, direction: Direction) -> bool:
        return self.direction is Direction.BOTH or self.direction is direction


@dataclass(frozen=True)
class ProxyStats:
    """Counters since start; ``resets`` counts connections the proxy closed with an RST."""

    connections_opened: int = 0
    connections_open: int = 0
    bytes_forwarded_up: int = 0
    bytes_forwarded_down: int = 0
    bytes_discarded_up: int = 0
    bytes_discarded_down: int = 0
    resets: int = 0


def _rst(writer: asyncio.StreamWriter) -> None:
    """Close with an RST: SO_LINGER on with a timeout of 0, then close at once."""
    sock = writer.get_extra_info("socket")
    if sock is not None:
        with contextlib.suppress(OSError):
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    writer.transport.abort()


class _Pump:
    """One direction of one connection: a reader task feeding a writer task through a queue."""

    def __init__(
        self, proxy: FaultProxy, direction: Direction, src: asyncio.StreamReader, dst: asyncio.StreamWriter
    ) -> None:
        self.proxy, self.direction, self.src, self.dst = proxy, direction, src, dst
        self.queue: asyncio.Queue[tuple[float, bytes]] = asyncio.Queue(QUEUE_CHUNKS)
        self.shut = False  # HALF_CLOSE done: later bytes are discarded
        self.last_at = 0.0  # when the previous chunk is due (chunks never overtake it)
        self.pace_at = 0.0  # under BANDWIDTH, when the next piece may go

    async def read_loop(self) -> None:
        proxy, d, loop = self.proxy, self.direction, asyncio.get_running_loop()
        while True:
            await proxy._wait_while(FaultKind.STALL, d)
            data = await self.src.read(CHUNK)
            await proxy._wait_while(FaultKind.STALL, d)  # hold a chunk read just before a stall
            if not data:  # a black hole keeps the EOF (no FIN gets through) until it clears
                await proxy._wait_while(FaultKind.BLACKHOLE, d)
            fault = proxy._fault
            if data and (self.shut or (fault and fault.kind is FaultKind.BLACKHOLE and fault.affects(d))):
                proxy._count(f"bytes_discarded_{d.value}", len(data))
                continue
            delay = 0.0
            if fault and fault.kind is FaultKind.DELAY and fault.affects(d):
                delay = (fault.delay_ms + proxy._rng.uniform(-fault.jitter_ms, fault.jitter_ms)) / 1000
            self.last_at = max(self.last_at, loop.time() + max(0.0, delay))
            await self.queue.put((self.last_at, data))  # b"" (EOF) goes in order behind the data
            if not data:
                return

    async def write_loop(self) -> None:
        proxy, d, loop = self.proxy, self.direction, asyncio.get_running_loop()
        while True:
            due, data = await self.queue.get()
            if due > loop.time():
                await asyncio.sleep(due - loop.time())
            if not data:
                if not self.shut and not self.dst.is_closing() and self.dst.can_write_eof():
                    self.dst.write_eof()
                return
            await proxy._wait_while(FaultKind.STALL, d)
            view = memoryview(data)
            while view and not self.shut:
                fault, now, size = proxy._fault, loop.time(), len(view)
                if fault and fault.kind is FaultKind.BANDWIDTH and fault.affects(d):
                    if self.pace_at > now:
                        await asyncio.sleep(self.pace_at - now)
                        continue  # the fault may have changed meanwhile
                    size = max(512, int(fault.bits_per_s / 8 * PACE_S))
                    self.pace_at = max(self.pace_at, now) + min(size, len(view)) * 8 / fault.bits_per_s
                piece, view = view[:size], view[size:]
                proxy._count(f"bytes_forwarded_{d.value}", len(piece))  # before the peer can see them
                self.dst.write(piece)
                await self.dst.drain()
            if view:  # shut by HALF_CLOSE
                proxy._count(f"bytes_discarded_{d.value}", len(view))


class _Connection:
    """One client's connection and its connection to the target: two pumps."""

    def __init__(self, proxy: FaultProxy, client: _Pair, server: _Pair) -> None:
        self.proxy, self.client, self.server = proxy, client[1], server[1]
        self.up = _Pump(proxy, Direction.UP, client[0], server[1])
        self.down = _Pump(proxy, Direction.DOWN, server[0], client[1])
        self.task: asyncio.Task[None] | None = None
        self.reset = False  # an RST was sent: once per connection

    async def run(self) -> None:
        try:
            async with asyncio.TaskGroup() as tg:
                for pump in (self.up, self.down):
                    tg.create_task(pump.read_loop())
                    tg.create_task(pump.write_loop())
        except* OSError:  # one side reset or broke: pass it on to the other side as an RST
            self.send_rst()
        finally:
            for w in (self.client, self.server):
                w.close()

    def send_rst(self) -> None:
        if not self.reset:
            self.reset = True
            _rst(self.client)
            _rst(self.server)
            self.proxy._count("resets", 1)


class FaultProxy:
    """Forwards TCP from :attr:`address` to ``target`` ("host:port"), doing what the current fault says."""

    def __init__(
        self, target: str, *, listen_host: str = "127.0.0.1", listen_port: int = 0, seed: int = 0
    ) -> None:
        host, sep, port = target.rpartition(":")
        if not sep or not host or not port.isdigit():
            raise ValueError(f"target must be 'host:port', not {target!r}")
        self.target = target
        self._target = (host.strip("[]"), int(port))
        self._listen = (listen_host, listen_port)
        self._rng = random.Random(seed)
        self._fault: Fault | None = None
        self._counts = dict.fromkeys(ProxyStats.__dataclass_fields__, 0)
        self._lock = threading.Lock()
        self._stopped = threading.Event()
        self._ready = threading.Event()
        self._thread: threading.Thread | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stop_requested: asyncio.Event | None = None
        self._changed: asyncio.Event | None = None
        self._conns: set[_Connection] = set()
        self._events: list[Fault] = []  # RESET and HALF_CLOSE, in order
        self._port: int | None = None
        self._error: BaseException | None = None

    @property
    def address(self) -> str:
        if self._port is None:
            raise RuntimeError("the proxy has no address before start()")
        return f"{self._listen[0]}:{self._port}"

    @property
    def fault(self) -> Fault | None:
        return self._fault

    @property
    def stats(self) -> ProxyStats:
        with self._lock:
            return ProxyStats(**self._counts)

    def start(self) -> FaultProxy:
        if self._thread is not None or self._stopped.is_set():
            raise RuntimeError("a proxy starts once: this one was started already")
        self._thread = threading.Thread(
            target=lambda: asyncio.run(self._main()), name="fault-proxy", daemon=True
        )
        self._thread.start()
        if not self._ready.wait(10) or self._error is not None or self._port is None:
            raise RuntimeError(f"the fault proxy could not listen on {self._listen}") from self._error
        log.info("fault proxy %s -> %s", self.address, self.target)
        return self

    def stop(self) -> None:
        if self._stopped.is_set():
            return
        self._stopped.set()
        loop, ev = self._loop, self._stop_requested
        if loop is not None and ev is not None:
            with contextlib.suppress(RuntimeError):  # the loop has ended already
                loop.call_soon_threadsafe(ev.set)
        if self._thread is not None:
            self._thread.join(timeout=10)

    def __enter__(self) -> FaultProxy:
        return self.start() if self._thread is None else self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()

    def apply(self, fault: Fault | None) -> None:
        """Set (or clear, with None) the fault now, for open and new connections; returns once in force."""
        loop, done = self._loop, threading.Event()
        if loop is None or threading.current_thread() is self._thread:
            self._set(fault)
            return

        def run() -> None:
            try:
                self._set(fault)
            finally:
                done.set()

        try:
            loop.call_soon_threadsafe(run)
        except RuntimeError:  # the loop has ended: nothing is left to act on
            self._fault = None if fault is None or fault.kind in EVENTS else fault
            return
        while not done.wait(0.05) and self._thread is not None and self._thread.is_alive():
            pass  # the loop may end before running it (stop() from another thread)

    def run_script(self, steps: Sequence[tuple[float, Fault | None]], *, max_s: float) -> threading.Thread:
        """Apply each (seconds from now, fault) in the background; at ``max_s`` clear the fault, always.

        Steps due at or after ``max_s`` are skipped (with a warning). The thread ends at ``max_s``,
        or early when the proxy stops.
        """
        if not math.isfinite(max_s) or max_s <= 0:
            raise ValueError(f"max_s must be a finite number > 0, not {max_s!r}")
        for at, fault in steps:
            if not math.isfinite(at) or at < 0:
                raise ValueError(f"a step's time must be a finite number >= 0, not {at!r}")
            if fault is not None and not isinstance(fault, Fault):
                raise ValueError(f"a step's fault must be a Fault or None, not {fault!r}")
        plan = sorted(steps, key=lambda step: step[0])
        t0 = time.monotonic()

        def script() -> None:
            try:
                for at, fault in plan:
                    if at >= max_s:
                        log.warning(
                            "fault script: steps from %.3f s on are past max_s=%.3f s: skipped", at, max_s
                        )
                        break
                    if self._stopped.wait(max(0.0, t0 + at - time.monotonic())):
                        return
                    self.apply(fault)
                self._stopped.wait(max(0.0, t0 + max_s - time.monotonic()))
            finally:
                self.apply(None)

        thread = threading.Thread(target=script, name="fault-script", daemon=True)
        thread.start()
        return thread

    # -- the loop's side -------------------------------------------------------------------------

    def _count(self, name: str, n: int) -> None:
        with self._lock:
            self._counts[name] += n

    def _set(self, fault: Fault | None) -> None:
        if fault is None:
            log.info("fault cleared (was %s)", self._fault)
        else:
            log.info("fault applied: %s", fault)
        self._fault = None if fault is None or fault.kind in EVENTS else fault
        if fault is not None and fault.kind in EVENTS:
            self._events.append(fault)  # replayed on connections that were still being set up
            for conn in list(self._conns):
                self._perform(fault, conn)
        if self._changed is not None:
            old, self._changed = self._changed, asyncio.Event()
            old.set()

    def _perform(self, event: Fault, conn: _Connection) -> None:
        if event.kind is FaultKind.RESET:
            conn.send_rst()
            if conn.task is not None:
                conn.task.cancel()
            return
        for pump in (conn.up, conn.down):
            if event.affects(pump.direction) and not pump.shut:
                pump.shut = True
                if not pump.dst.is_closing() and pump.dst.can_write_eof():
                    with contextlib.suppress(OSError):
                        pump.dst.write_eof()

    async def _wait_while(self, kind: FaultKind, direction: Direction) -> None:
        while (f := self._fault) is not None and f.kind is kind and f.affects(direction):
            assert self._changed is not None
            await self._changed.wait()

    async def _main(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._stop_requested, self._changed = asyncio.Event(), asyncio.Event()
        try:
            server = await asyncio.start_server(self._handle, *self._listen, limit=CHUNK)
            self._port = server.sockets[0].getsockname()[1]
        except OSError as e:
            self._error = e
            return
        finally:
            self._ready.set()
        async with server:
            await self._stop_requested.wait()
            server.close()
            for conn in list(self._conns):
                conn.client.transport.abort()
                conn.server.transport.abort()
                if conn.task is not None:
                    conn.task.cancel()
            await asyncio.sleep(0)

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self._count("connections_opened", 1)
        self._count("connections_open", 1)
        seen = len(self._events)
        try:
            upstream = await asyncio.open_connection(*self._target, limit=CHUNK)
        except OSError as e:
            log.warning("fault proxy: cannot connect to %s: %s", self.target, e)
            writer.close()
            self._count("connections_open", -1)
            return
        conn = _Connection(self, (reader, writer), upstream)
        self._conns.add(conn)
        conn.task = asyncio.create_task(conn.run())
        for event in self._events[seen:]:  # RESET or HALF_CLOSE while connecting upstream
            self._perform(event, conn)
        try:  # a cancelled handler task is logged as an error by 3.11's asyncio.streams: never let it be
            await conn.task
        except asyncio.CancelledError:
            pass
        finally:
            self._conns.discard(conn)
            self._count("connections_open", -1)
