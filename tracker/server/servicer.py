"""The ``tracker.v1.Tracker`` servicer: protocol messages in, protocol messages out.

It only converts (``tracker.convert``) and wires threads; the serving logic is
in :mod:`tracker.server.session` and the tracking in the engines.
"""

from __future__ import annotations

import logging
import threading
import time
import uuid
from collections.abc import Iterator

import grpc
from google.protobuf.message import DecodeError

from engines.base import Engine, EngineInfo
from tracker import __version__, convert
from tracker.gating.gate import GatingDecision
from tracker.server.session import (
    AcquisitionClock,
    Arrival,
    SessionFailed,
    SessionIdle,
    SessionInbox,
    SessionRunner,
    SessionShutdown,
    error_result,
)
from tracker.server.telemetry import Telemetry
from tracker.types import FrameError, FrameResult, PromptAck, PromptError
from tracker.v1 import tracker_pb2 as pb
from tracker.v1 import tracker_pb2_grpc as pb_grpc

logger = logging.getLogger(__name__)


class MalformedRequest(ValueError):
    """Bytes on the stream that are not a ``tracker.v1.TrackRequest``."""


def parse_requests(raw: Iterator[bytes]) -> Iterator[pb.TrackRequest]:
    """Parse the stream's messages here rather than in gRPC, so garbage gets a clear error."""
    for number, data in enumerate(raw, start=1):
        try:
            yield pb.TrackRequest.FromString(data)
        except DecodeError as exc:
            raise MalformedRequest(
                f"request {number} ({len(data)} bytes) is not a valid tracker.v1.TrackRequest: {exc}"
            ) from None


def add_to_server(servicer: TrackerServicer, server: grpc.Server) -> None:
    """Register the service; ``Track`` takes raw bytes and parses them itself (see parse_requests)."""
    handlers = {
        "Track": grpc.stream_stream_rpc_method_handler(
            servicer.TrackRaw,
            request_deserializer=None,
            response_serializer=pb.TrackResponse.SerializeToString,
        ),
        "GetInfo": grpc.unary_unary_rpc_method_handler(
            servicer.GetInfo,
            request_deserializer=pb.GetInfoRequest.FromString,
            response_serializer=pb.ServerInfo.SerializeToString,
        ),
    }
    name = pb.DESCRIPTOR.services_by_name["Tracker"].full_name
    server.add_generic_rpc_handlers((grpc.method_handlers_generic_handler(name, handlers),))


def engine_info_to_proto(info: EngineInfo) -> pb.EngineInfo:
    return pb.EngineInfo(
        name=info.name,
        version=info.version,
        capabilities=list(info.capabilities),
        device=info.device,
        random_weights=info.random_weights,
    )


class SessionSlots:
    """Counts open sessions against the limit."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self._open = 0
        self._lock = threading.Lock()

    def try_acquire(self) -> bool:
        with self._lock:
            if self._open >= self.limit:
                return False
            self._open += 1
            return True

    def release(self) -> None:
        with self._lock:
            self._open -= 1

    @property
    def open(self) -> int:
        return self._open


class TrackerServicer(pb_grpc.TrackerServicer):
    def __init__(
        self,
        engines: dict[str, Engine],
        default_engine: str,
        limits: convert.Limits,
        idle_timeout_s: float | None = None,
        telemetry: Telemetry | None = None,
    ) -> None:
        if default_engine not in engines:
            raise ValueError(
                f"default engine {default_engine!r} is not among the loaded engines {sorted(engines)}"
            )
        self.engines = engines
        self.default_engine = default_engine
        self.limits = limits
        self.idle_timeout_s = idle_timeout_s
        self.slots = SessionSlots(limits.max_sessions)
        self.telemetry = telemetry or Telemetry()
        for engine in engines.values():
            info = engine.info
            self.telemetry.describe_engine(info.name, info.version, info.device, info.random_weights)
        self._draining: str | None = None
        self._open_inboxes: set[SessionInbox] = set()
        self._inbox_lock = threading.Lock()

    def drain(self, message: str = "the server is shutting down") -> None:
        """Refuse new sessions; let open ones answer their waiting frames, then end them."""
        with self._inbox_lock:
            self._draining = message
            inboxes = list(self._open_inboxes)
        for inbox in inboxes:
            inbox.drain(message)

    def GetInfo(self, request: pb.GetInfoRequest, context: grpc.ServicerContext) -> pb.ServerInfo:  # noqa: N802
        return pb.ServerInfo(
            server_version=__version__,
            protocol_version=convert.PROTOCOL_VERSION,
            default_engine=self.default_engine,
            engines=[engine_info_to_proto(e.info) for e in self.engines.values()],
            active_sessions=self.slots.open,
            max_sessions=self.limits.max_sessions,
            max_frame_pixels=self.limits.max_frame_pixels,
            max_objects_per_session=self.limits.max_objects_per_session,
        )

    def TrackRaw(  # noqa: N802
        self, raw_requests: Iterator[bytes], context: grpc.ServicerContext
    ) -> Iterator[pb.TrackResponse]:
        """``Track`` over unparsed bytes, so that undecodable input gets INVALID_ARGUMENT."""
        return self.Track(parse_requests(raw_requests), context)

    def Track(  # noqa: N802
        self, request_iterator: Iterator[pb.TrackRequest], context: grpc.ServicerContext
    ) -> Iterator[pb.TrackResponse]:
        try:
            first = next(request_iterator, None)
        except MalformedRequest as exc:
            context.abort(grpc.StatusCode.INVALID_ARGUMENT, str(exc))
        if first is None:
            return
        if self._draining is not None:
            context.abort(grpc.StatusCode.UNAVAILABLE, f"not accepting new sessions: {self._draining}")
        if first.WhichOneof("kind") != "open":
            context.abort(
                grpc.StatusCode.INVALID_ARGUMENT,
                "the session is not open: the first request must be `open`,"
                f" got `{first.WhichOneof('kind')}`",
            )
        try:
            config = convert.session_config_from_proto(first.open, self.limits)
        except ValueError as exc:  # PromptError is a ValueError
            context.abort(grpc.StatusCode.INVALID_ARGUMENT, f"cannot open session: {exc}")
        engine_name = config.engine or self.default_engine
        engine = self.engines.get(engine_name)
        if engine is None:
            context.abort(
                grpc.StatusCode.INVALID_ARGUMENT,
                f"engine {engine_name!r} is not served here; available: {', '.join(sorted(self.engines))}",
            )
        if not self.slots.try_acquire():
            context.abort(
                grpc.StatusCode.RESOURCE_EXHAUSTED,
                f"the server already has {self.slots.limit} open sessions (its max_sessions limit)",
            )
        session_id = uuid.uuid4().hex[:12]
        log = {"session_id": session_id}
        encoding = first.open.mask_encoding or pb.RLE
        inbox = SessionInbox(config.budget_policy)
        clock = AcquisitionClock(config.timestamp_clock)
        engine_session = None
        outcome = "error"
        with self._inbox_lock:
            self._open_inboxes.add(inbox)
        self.telemetry.sessions_open.inc()
        try:
            try:
                engine_session = engine.open_session(config)
            except PromptError as exc:
                context.abort(grpc.StatusCode.INVALID_ARGUMENT, f"cannot open session: {exc}")
            logger.info(
                "session %s opened: engine=%s modality=%s objects=%d budget=%.1f ms policy=%s client=%r",
                session_id, engine_name, config.modality.value, len(config.objects),
                config.latency_budget_ms, config.budget_policy.value, config.client_name, extra=log,
            )  # fmt: skip
            context.add_callback(inbox.cancel)  # disconnect or cancellation frees the session at once
            yield pb.TrackResponse(
                started=pb.SessionStarted(
                    session_id=session_id,
                    server_version=__version__,
                    engine=engine_info_to_proto(engine.info),
                    latency_budget_ms=config.latency_budget_ms,
                    warnings=list(engine.info.warnings),
                    protocol_version=convert.PROTOCOL_VERSION,
                )
            )
            receiver = threading.Thread(
                target=self._receive,
                args=(request_iterator, inbox, clock),
                name=f"recv-{session_id}",
                daemon=True,
            )
            receiver.start()
            runner = SessionRunner(
                engine_session,
                config,
                inbox,
                self.idle_timeout_s,
                max_objects=self.limits.max_objects_per_session,
            )
            if self._draining is not None:  # a drain that began while this session was opening
                inbox.drain(self._draining)
            try:
                for out in runner.run():
                    if isinstance(out, FrameResult):
                        result = convert.frame_result_to_proto(out, encoding, config.latency_budget_ms)
                        self.telemetry.observe_frame(
                            engine_name, pb.FrameStatus.Name(result.status), result.timing.total_ms,
                            result.timing.stages_ms,
                        )  # fmt: skip
                        yield pb.TrackResponse(frame=result)
                    elif isinstance(out, GatingDecision):
                        yield pb.TrackResponse(gating=convert.gating_decision_to_proto(out))
                    else:
                        self.telemetry.prompt_updates.labels(accepted=str(out.accepted).lower()).inc()
                        yield pb.TrackResponse(
                            prompt_ack=pb.PromptAck(
                                update_id=out.update_id, accepted=out.accepted, message=out.message
                            )
                        )
            except SessionFailed as exc:
                outcome = "failed"
                context.abort(grpc.StatusCode.INVALID_ARGUMENT, str(exc))
            except SessionIdle as exc:
                outcome = "idle"
                context.abort(grpc.StatusCode.DEADLINE_EXCEEDED, f"session closed: {exc}")
            except SessionShutdown as exc:
                outcome = "shutdown"
                context.abort(
                    grpc.StatusCode.UNAVAILABLE,
                    f"session closed: {exc}; {runner.frames_processed} frames were processed and every frame"
                    " received was answered",
                )
            outcome = "cancelled" if inbox.cancelled else "completed"
            logger.info(
                "session %s ended: %d frames processed, %d dropped%s",
                session_id, runner.frames_processed, inbox.frames_dropped,
                " (client cancelled)" if inbox.cancelled else "", extra=log,
            )  # fmt: skip
        finally:
            inbox.cancel()
            if engine_session is not None:
                engine_session.close()
            with self._inbox_lock:
                self._open_inboxes.discard(inbox)
            self.telemetry.sessions_open.dec()
            self.telemetry.sessions_total.labels(outcome=outcome).inc()
            self.slots.release()

    def _receive(
        self, requests: Iterator[pb.TrackRequest], inbox: SessionInbox, clock: AcquisitionClock
    ) -> None:
        """Receiving thread: decode each request as it arrives and post it to the inbox."""
        try:
            for request in requests:
                kind = request.WhichOneof("kind")
                if kind == "frame":
                    self._receive_frame(request.frame, inbox, clock)
                elif kind == "prompt_update":
                    try:
                        inbox.put_update(convert.prompt_update_from_proto(request.prompt_update, self.limits))
                    except PromptError as exc:
                        inbox.put_answer(PromptAck(request.prompt_update.update_id, False, str(exc)))
                elif kind == "open":
                    inbox.fail("the session is already open; start a new stream for a new session")
                    return
                else:
                    inbox.fail("empty request: set open, frame or prompt_update")
                    return
        except MalformedRequest as exc:
            inbox.fail(str(exc))
            return
        except Exception as exc:  # the stream broke (cancelled, disconnected)
            logger.debug("request stream ended: %s", exc)
            inbox.cancel()
            return
        inbox.finish()

    def _receive_frame(self, msg: pb.Frame, inbox: SessionInbox, clock: AcquisitionClock) -> None:
        received_mono, received_wall = time.monotonic(), time.time()
        try:
            frame = convert.frame_from_proto(msg, self.limits)
        except FrameError as exc:
            inbox.put_answer(error_result(msg.index, str(exc), received_wall, received_mono))
            return
        decode_ms = (time.monotonic() - received_mono) * 1000.0
        acquired = clock.acquired_mono(frame.timestamp_s, received_mono, received_wall)
        inbox.put_frame(Arrival(frame, received_mono, received_wall, decode_ms, acquired))
