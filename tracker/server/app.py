"""Assemble and run the gRPC server: tracker service, health checking, reflection.

Health is ``NOT_SERVING`` until every engine has answered a warm-up frame (the
first SAM2 frame on a GPU pays for CUDA context creation and kernel selection,
which no real frame should), ``SERVING`` after, and ``NOT_SERVING`` again as
soon as a shutdown begins, so that a load balancer stops sending new sessions.
"""

from __future__ import annotations

import ipaddress
import logging
import signal
import threading
import time
from concurrent import futures
from dataclasses import dataclass, field
from pathlib import Path

import grpc
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection

from tracker.convert import Limits
from tracker.engines import availability, create_engine
from tracker.engines.base import Engine
from tracker.keepalive import Keepalive
from tracker.overseer.build import wrap_engine
from tracker.overseer.policy import PolicyConfig
from tracker.server.host import SessionHost
from tracker.server.scheduler import SchedulerConfig
from tracker.server.security import BearerTokenInterceptor, TlsFiles
from tracker.server.servicer import TrackerServicer, add_to_server
from tracker.server.telemetry import AccessLogInterceptor, Telemetry
from tracker.v1 import tracker_pb2 as pb

logger = logging.getLogger(__name__)

SERVICE_NAME = pb.DESCRIPTOR.services_by_name["Tracker"].full_name  # "tracker.v1.Tracker"


@dataclass(frozen=True)
class ServerOptions:
    host: str = "127.0.0.1"
    port: int = 0  # 0: a free port
    limits: Limits = field(default_factory=Limits)
    idle_timeout_s: float | None = 60.0  # long enough for 1 Hz cine with pauses
    tls: TlsFiles | None = None
    auth_tokens: tuple[str, ...] = ()
    metrics_port: int | None = None  # Prometheus /metrics; None: off, 0: a free port
    metrics_host: str = "127.0.0.1"  # 0.0.0.0 in a container, where a scraper connects from outside
    warm_up: bool = True
    allow_insecure_remote: bool = False
    scheduler: SchedulerConfig = field(default_factory=SchedulerConfig)
    keepalive: Keepalive = field(default_factory=Keepalive)


@dataclass
class RunningServer:
    server: grpc.Server
    port: int
    host: SessionHost
    health: health.HealthServicer
    telemetry: Telemetry
    metrics_port: int | None = None
    ready: threading.Event = field(default_factory=threading.Event)

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    def drain_and_stop(self, grace_s: float = 10.0, linger_s: float = 1.0) -> None:
        """Health NOT_SERVING, refuse new sessions, let open ones answer what they hold, stop.

        The listener stays up while sessions drain, and for ``linger_s`` after the last
        one ended (within the grace period), so health probes see NOT_SERVING rather than
        a refused connection, and a session a proxy still routes here before its next
        health check gets a clear UNAVAILABLE (which the client fails over on) instead of
        a stream cut by a closing listener.
        """
        self.health.enter_graceful_shutdown()
        self.host.drain("the server is shutting down")
        deadline = time.monotonic() + grace_s
        while self.host.slots.open and time.monotonic() < deadline:
            time.sleep(0.02)
        time.sleep(max(0.0, min(linger_s, deadline - time.monotonic())))
        self.server.stop(1.0).wait()
        self._release()

    def stop(self, grace_s: float | None = 1.0) -> None:
        self.health.enter_graceful_shutdown()
        self.server.stop(grace_s).wait()
        self._release()

    def _release(self) -> None:
        self.host.close()
        for engine in self.host.engines.values():
            engine.close()
        self.telemetry.close()


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def start_server(
    engines: dict[str, Engine],
    host: str = "127.0.0.1",
    port: int = 0,
    default_engine: str | None = None,
    limits: Limits | None = None,
    idle_timeout_s: float | None = 60.0,
    options: ServerOptions | None = None,
) -> RunningServer:
    """Start serving ``engines`` and return at once; health turns SERVING after warm-up.

    ``options`` carries everything; the keyword arguments are shorthands for tests.
    """
    if options is None:
        options = ServerOptions(
            host=host, port=port, limits=limits or Limits(), idle_timeout_s=idle_timeout_s
        )
    if not engines:
        raise ValueError("at least one engine is needed")
    if options.tls is None and not is_loopback(options.host) and not options.allow_insecure_remote:
        raise ValueError(
            f"refusing plaintext on {options.host}: give TLS files, or allow insecure remote explicitly"
        )
    limits = options.limits
    default_engine = default_engine or next(iter(engines))
    telemetry = Telemetry()
    host = SessionHost(
        engines,
        default_engine,
        limits.max_sessions,
        limits.max_objects_per_session,
        options.idle_timeout_s,
        telemetry,
        options.scheduler,
    )
    servicer = TrackerServicer(host, limits)
    interceptors: list[grpc.ServerInterceptor] = [AccessLogInterceptor()]
    if options.auth_tokens:
        interceptors.insert(0, BearerTokenInterceptor(options.auth_tokens))
    # Each open session holds one pool thread for its processing loop (the receiving
    # side runs on its own thread), so the pool must exceed max_sessions or new
    # streams would queue silently; the margin serves GetInfo and health checks.
    server = grpc.server(
        futures.ThreadPoolExecutor(max_workers=limits.max_sessions + 8, thread_name_prefix="rpc"),
        interceptors=interceptors,
        maximum_concurrent_rpcs=limits.max_sessions + 8,
        options=[
            ("grpc.max_receive_message_length", limits.max_message_bytes),
            ("grpc.max_send_message_length", limits.max_message_bytes),
            *options.keepalive.server_args(),
        ],
    )
    add_to_server(servicer, server)
    health_servicer = health.HealthServicer()
    health_pb2_grpc.add_HealthServicer_to_server(health_servicer, server)
    reflection.enable_server_reflection(
        (SERVICE_NAME, health_pb2.DESCRIPTOR.services_by_name["Health"].full_name, reflection.SERVICE_NAME),
        server,
    )
    address = f"{options.host}:{options.port}"
    if options.tls is not None:
        bound = server.add_secure_port(address, options.tls.credentials())
    else:
        bound = server.add_insecure_port(address)
    if bound == 0:
        raise OSError(f"cannot listen on {address}")
    for name in ("", SERVICE_NAME):
        health_servicer.set(name, health_pb2.HealthCheckResponse.NOT_SERVING)
    server.start()
    metrics_port = None
    if options.metrics_port is not None:
        metrics_port = telemetry.serve_http(options.metrics_port, options.metrics_host)
    running = RunningServer(server, bound, host, health_servicer, telemetry, metrics_port)

    def warm_up() -> None:
        for name, engine in engines.items():
            if options.warm_up:
                start = time.monotonic()
                engine.warm_up()
                logger.info("engine %s warmed up in %.0f ms", name, (time.monotonic() - start) * 1000.0)
        for name in ("", SERVICE_NAME):
            health_servicer.set(name, health_pb2.HealthCheckResponse.SERVING)
        running.ready.set()

    threading.Thread(target=warm_up, name="warm-up", daemon=True).start()
    logger.info(
        "serving %s on %s:%d (%s%s; engines: %s)",
        SERVICE_NAME, options.host, bound, "TLS" if options.tls else "plaintext",
        ", mutual TLS" if options.tls and options.tls.client_ca else "", ", ".join(engines),
    )  # fmt: skip
    return running


MODEL_FILE_OPTIONS = ("checkpoint",)  # engine options that name a model file to load


def verified_engine_options(engine_options: dict[str, str], model_dirs: list[Path]) -> dict[str, str]:
    """``engine_options`` with every model file checked against its directory's manifest.

    A server loads checkpoints only from its model directories (the weights cache and
    each ``--model-dir``), and only files whose SHA-256 matches the manifest there;
    anything else is refused before an engine starts (see tracker.weights.verify_model_file).
    """
    from tracker.weights import default_weights_dir, verify_model_file

    allowed = [default_weights_dir(), *model_dirs]
    checked = dict(engine_options)
    for key in MODEL_FILE_OPTIONS:
        if key in checked:
            checked[key] = str(verify_model_file(Path(checked[key]), allowed))
    if "export_dir" in checked:  # ONNX exports: the engine checks every file against its manifest
        export_dir = Path(checked["export_dir"]).resolve()
        if not any(export_dir.is_relative_to(Path(d).resolve()) for d in allowed):
            raise ValueError(
                f"export directory {export_dir} is outside the model directories"
                f" ({', '.join(str(Path(d).resolve()) for d in allowed)}); serve with --model-dir"
            )
        checked["export_dir"] = str(export_dir)
    return checked


def serve(
    engine_names: list[str],
    engine_options: dict[str, str],
    options: ServerOptions,
    overseer: str = "",
    overseer_options: dict[str, str] | None = None,
    model_dirs: list[Path] | None = None,
) -> int:
    """Run until SIGINT/SIGTERM; then drain: finish what sessions hold, refuse new ones, exit 0."""
    # Engines whose libraries are missing are left out here, with a logged reason, rather
    # than failing at import (or worse, at the first session).
    selection = availability.select(engine_names)
    engine_options = verified_engine_options(engine_options, list(model_dirs or []))
    engines = {name: create_engine(name, engine_options) for name in selection.serve}
    availability.log_report(list(engines), selection.absent)
    if overseer:
        if overseer == "oracle":
            raise ValueError(
                "the oracle overseer reads local annotations: use it with `tracker replay --overseer`"
            )
        policy = PolicyConfig.from_options(overseer_options or {})
        engines = {name: wrap_engine(engine, overseer, policy) for name, engine in engines.items()}
    running = start_server(engines, options=options)
    stop = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stop.set())
    # Python runs signal handlers on the main thread, between bytecodes. When the kernel delivers
    # SIGTERM to another thread (gRPC's own), an untimed wait here is never woken to run it, and
    # the server would not stop; waking twice a second lets the handler run.
    while not stop.wait(0.5):
        pass
    logger.info("shutting down: health NOT_SERVING, refusing new sessions, answering in-flight frames")
    running.drain_and_stop(grace_s=10.0)
    logger.info("stopped")
    return 0
