"""Observability: Prometheus metrics, an access-log interceptor, JSON logs.

Metrics use a registry per server (not the process-global default) so that
several servers in one process, as in tests, do not collide.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable, Mapping
from typing import Any

import grpc
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, Info, start_http_server

from tracker import __version__

logger = logging.getLogger(__name__)

# Stage latencies span 0.05 ms (decode) to seconds (SAM2 on CPU): log-spaced buckets in seconds.
STAGE_BUCKETS_S = (
    0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0,
)  # fmt: skip


class Telemetry:
    """The server's metrics, updated by the servicer as frames are answered."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.frames = Counter(
            "tracker_frames", "Frames answered, by status", ["engine", "status"], registry=self.registry
        )
        self.stage_seconds = Histogram(
            "tracker_stage_seconds",
            "Per-stage latency of answered frames",
            ["engine", "stage"],
            buckets=STAGE_BUCKETS_S,
            registry=self.registry,
        )
        self.total_seconds = Histogram(
            "tracker_frame_total_seconds",
            "Arrival to answer, per frame",
            ["engine"],
            buckets=STAGE_BUCKETS_S,
            registry=self.registry,
        )
        self.sessions_open = Gauge("tracker_sessions_open", "Sessions open now", registry=self.registry)
        self.sessions_total = Counter(
            "tracker_sessions", "Sessions opened, by how they ended", ["outcome"], registry=self.registry
        )
        self.prompt_updates = Counter(
            "tracker_prompt_updates", "Prompt updates, by outcome", ["accepted"], registry=self.registry
        )
        self.batch_size = Histogram(
            "tracker_batch_size",
            "Frames (of any sessions) per engine call",
            ["engine"],
            buckets=(1, 2, 3, 4, 6, 8, 12, 16, 32),
            registry=self.registry,
        )
        self.workers_replaced = Counter(
            "tracker_workers_replaced",
            "Compute workers that died or hung and were replaced (their sessions ended UNAVAILABLE)",
            ["engine"],
            registry=self.registry,
        )
        self.engine_info = Info("tracker_engine", "Engines served", ["engine"], registry=self.registry)
        self.server_info = Info("tracker_server", "Server version", registry=self.registry)
        self.server_info.info({"version": __version__})
        self._http: Any = None

    def describe_engine(self, name: str, version: str, device: str, random_weights: bool) -> None:
        self.engine_info.labels(engine=name).info(
            {"version": version, "device": device, "random_weights": str(random_weights).lower()}
        )

    def observe_frame(
        self, engine: str, status: str, total_ms: float, stages_ms: Mapping[str, float]
    ) -> None:
        self.frames.labels(engine=engine, status=status).inc()
        if total_ms:
            self.total_seconds.labels(engine=engine).observe(total_ms / 1000.0)
        for stage, ms in stages_ms.items():
            self.stage_seconds.labels(engine=engine, stage=stage).observe(ms / 1000.0)

    def serve_http(self, port: int, host: str = "127.0.0.1") -> int:
        """Expose ``/metrics`` on ``host:port`` (port 0: a free one); return the port."""
        server, _thread = start_http_server(port, addr=host, registry=self.registry)
        self._http = server
        bound = int(server.server_address[1])
        logger.info("Prometheus metrics on http://%s:%d/metrics", host, bound)
        return bound

    def close(self) -> None:
        if self._http is not None:
            self._http.shutdown()
            self._http = None


class AccessLogInterceptor(grpc.ServerInterceptor):
    """Logs each call's method, peer, duration and status code when it ends."""

    def intercept_service(
        self,
        continuation: Callable[[grpc.HandlerCallDetails], grpc.RpcMethodHandler | None],
        handler_call_details: grpc.HandlerCallDetails,
    ) -> grpc.RpcMethodHandler | None:
        handler = continuation(handler_call_details)
        if handler is None:
            return None
        method = handler_call_details.method

        def log_end(context: grpc.ServicerContext, start: float) -> None:
            code = context.code() if hasattr(context, "code") else None
            logger.info(
                "rpc %s from %s ended %s after %.1f ms",
                method,
                context.peer(),
                getattr(code, "name", code) or "OK",
                (time.monotonic() - start) * 1000.0,
                extra={"rpc": method},
            )

        def wrap(behaviour: Callable[..., Any], streaming_response: bool) -> Callable[..., Any]:
            if streaming_response:

                def stream(request: Any, context: grpc.ServicerContext) -> Any:
                    start = time.monotonic()
                    context.add_callback(lambda: log_end(context, start))
                    yield from behaviour(request, context)

                return stream

            def unary(request: Any, context: grpc.ServicerContext) -> Any:
                start = time.monotonic()
                context.add_callback(lambda: log_end(context, start))
                return behaviour(request, context)

            return unary

        if handler.request_streaming and handler.response_streaming:
            return grpc.stream_stream_rpc_method_handler(
                wrap(handler.stream_stream, True), handler.request_deserializer, handler.response_serializer
            )
        if handler.unary_unary is not None:
            return grpc.unary_unary_rpc_method_handler(
                wrap(handler.unary_unary, False), handler.request_deserializer, handler.response_serializer
            )
        return handler  # unary-stream / stream-unary: not used by this service


class JsonLogFormatter(logging.Formatter):
    """One JSON object per line, with ``session_id`` and other ``extra=`` fields when present."""

    _STANDARD = set(logging.LogRecord("", 0, "", 0, "", (), None).__dict__) | {"message", "asctime"}

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "time": self.formatTime(record, "%Y-%m-%dT%H:%M:%S") + f".{int(record.msecs):03d}Z",
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        for key, value in record.__dict__.items():
            if key not in self._STANDARD and not key.startswith("_"):
                entry[key] = value
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        return json.dumps(entry, default=str)
