"""Plain-data views of the protocol's answers: server and engine info, a frame's answer."""

from __future__ import annotations

import time
from dataclasses import dataclass

from tracker.types import FrameResult, FrameStatus, FrameTiming, ObjectResult
from tracker.v1 import tracker_pb2 as pb


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
    stale: bool = False  # it came later than the session's max_answer_age_ms after send_frame

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
