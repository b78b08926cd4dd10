"""The ``tracker.v1.Tracker`` servicer: protocol messages in, protocol messages out.

It only converts (``tracker.convert``) and maps how a session ended to a status code;
sessions are admitted by :class:`tracker.server.host.SessionHost`, and each one's frames
go through the pipeline of :mod:`tracker.server.session`.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator

import grpc
from google.protobuf.message import DecodeError

from tracker import __version__, convert
from tracker.engines.base import EngineInfo
from tracker.gating.types import GatingDecision
from tracker.server.budget import error_result
from tracker.server.host import RefusalKind, SessionHost, SessionRefused
from tracker.server.scheduler import SchedulerInfo
from tracker.server.session import EndKind, Incoming, Received, Refused, Violation
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


def engine_info_to_proto(info: EngineInfo, scheduler: SchedulerInfo) -> pb.EngineInfo:
    return pb.EngineInfo(
        name=info.name,
        version=info.version,
        capabilities=list(info.capabilities),
        device=info.device,
        random_weights=info.random_weights,
        scheduler=scheduler.kind,
        workers=scheduler.workers,
        max_batch=scheduler.max_batch,
        max_queue_delay_ms=scheduler.max_queue_delay_ms,
        threads_per_worker=scheduler.threads_per_worker,
    )


_REFUSAL_CODES = {
    RefusalKind.INVALID: grpc.StatusCode.INVALID_ARGUMENT,
    RefusalKind.UNAVAILABLE: grpc.StatusCode.UNAVAILABLE,
    RefusalKind.EXHAUSTED: grpc.StatusCode.RESOURCE_EXHAUSTED,
}


class TrackerServicer(pb_grpc.TrackerServicer):
    def __init__(self, host: SessionHost, limits: convert.Limits) -> None:
        self.host = host
        self.limits = limits

    def _engine_info(self, name: str) -> pb.EngineInfo:
        return engine_info_to_proto(self.host.engines[name].info, self.host.scheduler_info(name))

    def GetInfo(self, request: pb.GetInfoRequest, context: grpc.ServicerContext) -> pb.ServerInfo:  # noqa: N802
        return pb.ServerInfo(
            server_version=__version__,
            protocol_version=convert.PROTOCOL_VERSION,
            default_engine=self.host.default_engine,
            engines=[self._engine_info(name) for name in self.host.engines],
            active_sessions=self.host.slots.open,
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
        if self.host.draining is not None:
            context.abort(grpc.StatusCode.UNAVAILABLE, f"not accepting new sessions: {self.host.draining}")
        kind = first.WhichOneof("kind")
        if kind != "open":
            got = f"`{kind}`" if kind else "an empty request (none of `open`, `frame`, `prompt_update` set)"
            context.abort(
                grpc.StatusCode.INVALID_ARGUMENT,
                f"the session is not open: the first request must be `open`, got {got}",
            )
        try:
            config = convert.session_config_from_proto(first.open, self.limits)
        except ValueError as exc:  # PromptError is a ValueError
            context.abort(grpc.StatusCode.INVALID_ARGUMENT, f"cannot open session: {exc}")
        try:
            session = self.host.open(config)
        except SessionRefused as exc:
            context.abort(_REFUSAL_CODES[exc.kind], str(exc))
        encoding = first.open.mask_encoding or pb.RLE
        budget_ms = config.latency_budget_ms
        try:
            context.add_callback(session.inbox.cancel)  # disconnect or cancellation frees the session at once
            yield pb.TrackResponse(
                started=pb.SessionStarted(
                    session_id=session.id,
                    server_version=__version__,
                    engine=self._engine_info(session.engine_name),
                    latency_budget_ms=budget_ms,
                    warnings=list(self.host.engines[session.engine_name].info.warnings),
                    protocol_version=convert.PROTOCOL_VERSION,
                )
            )
            session.start_receiving(self._incoming(request_iterator), broken=MalformedRequest)
            for out in session.answers():
                yield self._response(out, session.engine_name, encoding, budget_ms)
            end = session.end
            assert end is not None
            if end.kind is EndKind.FAILED:
                context.abort(grpc.StatusCode.INVALID_ARGUMENT, end.message)
            elif end.kind is EndKind.IDLE:
                context.abort(grpc.StatusCode.DEADLINE_EXCEEDED, f"session closed: {end.message}")
            elif end.kind is EndKind.WORKER_LOST:
                context.abort(
                    grpc.StatusCode.UNAVAILABLE,
                    f"session ended: {end.message}; its frame was answered ERROR and its tracking state is"
                    " lost: open a new session",
                )
            elif end.kind is EndKind.SHUTDOWN:
                context.abort(
                    grpc.StatusCode.UNAVAILABLE,
                    f"session closed: {end.message}; {session.frames_processed} frames were processed"
                    " and every frame received was answered",
                )
        finally:
            self.host.release(session)

    def _response(
        self, out: FrameResult | PromptAck | GatingDecision, engine: str, encoding: int, budget_ms: float
    ) -> pb.TrackResponse:
        if isinstance(out, FrameResult):
            result = convert.frame_result_to_proto(out, encoding, budget_ms)
            self.host.observe(
                engine,
                pb.FrameStatus.Name(result.status),
                result.timing.total_ms,
                dict(result.timing.stages_ms),
            )
            return pb.TrackResponse(frame=result)
        if isinstance(out, GatingDecision):
            return pb.TrackResponse(gating=convert.gating_decision_to_proto(out))
        self.host.telemetry.prompt_updates.labels(accepted=str(out.accepted).lower()).inc()
        return pb.TrackResponse(
            prompt_ack=pb.PromptAck(update_id=out.update_id, accepted=out.accepted, message=out.message)
        )

    def _incoming(self, requests: Iterator[pb.TrackRequest]) -> Iterator[Incoming]:
        """The session's requests as domain objects (runs on its receiving thread)."""
        for request in requests:
            kind = request.WhichOneof("kind")
            if kind == "frame":
                yield self._frame(request.frame)
            elif kind == "prompt_update":
                try:
                    yield convert.prompt_update_from_proto(request.prompt_update, self.limits)
                except PromptError as exc:
                    yield Refused(PromptAck(request.prompt_update.update_id, False, str(exc)))
            elif kind == "open":
                yield Violation("the session is already open; start a new stream for a new session")
                return
            else:
                yield Violation("empty request: set open, frame or prompt_update")
                return

    def _frame(self, msg: pb.Frame) -> Received | Refused:
        received_mono, received_wall = time.monotonic(), time.time()
        try:
            frame = convert.frame_from_proto(msg, self.limits)
        except FrameError as exc:
            return Refused(error_result(msg.index, str(exc), received_wall, received_mono))
        return Received(frame, received_mono, received_wall, (time.monotonic() - received_mono) * 1000.0)
