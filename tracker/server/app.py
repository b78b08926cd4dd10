"""Assemble and run the gRPC server: tracker service, health checking, reflection."""

from __future__ import annotations

import logging
import signal
import threading
from concurrent import futures
from dataclasses import dataclass

import grpc
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection

from engines import create_engine
from engines.base import Engine
from tracker.convert import Limits
from tracker.server.servicer import TrackerServicer
from tracker.v1 import tracker_pb2 as pb
from tracker.v1 import tracker_pb2_grpc as pb_grpc

logger = logging.getLogger(__name__)

SERVICE_NAME = pb.DESCRIPTOR.services_by_name["Tracker"].full_name  # "tracker.v1.Tracker"


@dataclass
class RunningServer:
    server: grpc.Server
    port: int
    servicer: TrackerServicer
    health: health.HealthServicer

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    def stop(self, grace_s: float | None = 1.0) -> None:
        self.health.enter_graceful_shutdown()
        self.server.stop(grace_s).wait()
        for engine in self.servicer.engines.values():
            engine.close()


def start_server(
    engines: dict[str, Engine],
    host: str = "127.0.0.1",
    port: int = 0,
    default_engine: str | None = None,
    limits: Limits | None = None,
    idle_timeout_s: float | None = None,
) -> RunningServer:
    """Start serving ``engines`` on ``host:port`` (port 0: a free port) and return at once."""
    if not engines:
        raise ValueError("at least one engine is needed")
    limits = limits or Limits()
    default_engine = default_engine or next(iter(engines))
    servicer = TrackerServicer(engines, default_engine, limits, idle_timeout_s)
    # Each open session holds one pool thread for its processing loop (the receiving
    # side runs on its own thread), so the pool must exceed max_sessions or new
    # streams would queue silently; the margin serves GetInfo and health checks.
    server = grpc.server(
        futures.ThreadPoolExecutor(max_workers=limits.max_sessions + 8, thread_name_prefix="rpc"),
        maximum_concurrent_rpcs=limits.max_sessions + 8,
        options=[
            ("grpc.max_receive_message_length", limits.max_message_bytes),
            ("grpc.max_send_message_length", limits.max_message_bytes),
        ],
    )
    pb_grpc.add_TrackerServicer_to_server(servicer, server)
    health_servicer = health.HealthServicer()
    health_pb2_grpc.add_HealthServicer_to_server(health_servicer, server)
    reflection.enable_server_reflection(
        (SERVICE_NAME, health_pb2.DESCRIPTOR.services_by_name["Health"].full_name, reflection.SERVICE_NAME),
        server,
    )
    bound = server.add_insecure_port(f"{host}:{port}")
    if bound == 0:
        raise OSError(f"cannot listen on {host}:{port}")
    server.start()
    for name in ("", SERVICE_NAME):
        health_servicer.set(name, health_pb2.HealthCheckResponse.SERVING)
    logger.info("serving %s on %s:%d (engines: %s)", SERVICE_NAME, host, bound, ", ".join(engines))
    return RunningServer(server, bound, servicer, health_servicer)


def serve(
    engine_names: list[str],
    engine_options: dict[str, str],
    host: str,
    port: int,
    limits: Limits | None = None,
    idle_timeout_s: float | None = None,
) -> None:
    """Run until SIGINT/SIGTERM; then stop taking sessions and let open frames finish."""
    engines = {name: create_engine(name, engine_options) for name in engine_names}
    running = start_server(engines, host, port, limits=limits, idle_timeout_s=idle_timeout_s)
    stop = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stop.set())
    stop.wait()
    logger.info("shutting down: health NOT_SERVING, finishing in-flight frames")
    running.stop(grace_s=5.0)
