"""Session hosting, free of gRPC: admission, engines and their schedulers, drain, outcomes.

The servicer converts protocol messages and hands the host domain objects: a
:class:`~tracker.types.SessionConfig` to open a session, then a stream of
:data:`Incoming` items for the session's receiving thread. Everything else a
session needs on a server lives here: the admission slots, the engine lookup,
the engine's compute scheduler, the registry of open sessions that a drain
walks, and the outcome telemetry.
"""

from __future__ import annotations

import logging
import threading
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from enum import Enum

from tracker.engines.base import Engine, EngineSession
from tracker.server.runner import SessionRunner
from tracker.server.scheduler import Scheduler, SchedulerConfig, SchedulerInfo, make_scheduler
from tracker.server.session import (
    AcquisitionClock,
    Arrival,
    Outgoing,
    SessionFailed,
    SessionIdle,
    SessionInbox,
    SessionShutdown,
    SessionWorkerLost,
)
from tracker.server.telemetry import Telemetry
from tracker.types import Frame, FrameResult, PromptAck, PromptError, PromptUpdate, SessionConfig

logger = logging.getLogger(__name__)

# How long closing a session waits for a frame still being computed, before it frees the
# engine session anyway (a worker that returns later finds a closed inbox).
CLOSE_WAIT_S = 30.0


@dataclass(frozen=True)
class Received:
    """A decoded frame as it came off the wire."""

    frame: Frame
    received_mono: float
    received_wall: float
    decode_ms: float


@dataclass(frozen=True)
class Refused:
    """A request answered without processing: an undecodable frame, a malformed update."""

    answer: FrameResult | PromptAck


@dataclass(frozen=True)
class Violation:
    """The stream broke the protocol; the session ends with this message."""

    message: str


Incoming = Received | PromptUpdate | Refused | Violation


class RefusalKind(Enum):
    INVALID = "invalid"  # the request is wrong: INVALID_ARGUMENT
    UNAVAILABLE = "unavailable"  # the server is draining: UNAVAILABLE
    EXHAUSTED = "exhausted"  # no free session slot: RESOURCE_EXHAUSTED


class SessionRefused(Exception):
    def __init__(self, kind: RefusalKind, message: str) -> None:
        super().__init__(message)
        self.kind = kind


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


class HostedSession:
    """One open session: its inbox, its runner, and the bookkeeping of its end."""

    def __init__(
        self,
        host: SessionHost,
        session_id: str,
        engine_name: str,
        engine: Engine,
        engine_session: EngineSession,
        config: SessionConfig,
    ) -> None:
        self.host = host
        self.id = session_id
        self.engine_name = engine_name
        self.engine = engine
        self.config = config
        self.engine_session = engine_session
        self.inbox = SessionInbox(config.budget_policy)
        self.clock = AcquisitionClock(config.timestamp_clock)
        self.runner = SessionRunner(
            engine_session,
            config,
            self.inbox,
            host.idle_timeout_s,
            max_objects=host.max_objects,
            scheduler=host.schedulers[engine_name],
        )
        self.outcome = "error"
        self._closed = False

    @property
    def log(self) -> dict[str, str]:
        return {"session_id": self.id}

    def receive(
        self, items: Iterator[Incoming], broken: type[Exception] | tuple[type[Exception], ...] = ()
    ) -> None:
        """The receiving thread: post each item to the inbox as it arrives.

        An exception of a ``broken`` type from ``items`` is a protocol violation
        (its message ends the session); any other means the stream is gone.
        """
        try:
            for item in items:
                if isinstance(item, Received):
                    acquired = self.clock.acquired_mono(
                        item.frame.timestamp_s, item.received_mono, item.received_wall
                    )
                    self.inbox.put_frame(
                        Arrival(item.frame, item.received_mono, item.received_wall, item.decode_ms, acquired)
                    )
                elif isinstance(item, PromptUpdate):
                    self.inbox.put_update(item)
                elif isinstance(item, Refused):
                    self.inbox.put_answer(item.answer)
                else:
                    self.inbox.fail(item.message)
                    return
        except broken as exc:
            self.inbox.fail(str(exc))
            return
        except Exception as exc:  # the stream broke (cancelled, disconnected)
            logger.debug("request stream ended: %s", exc, extra=self.log)
            self.inbox.cancel()
            return
        self.inbox.finish()

    def start_receiving(
        self, items: Iterator[Incoming], broken: type[Exception] | tuple[type[Exception], ...] = ()
    ) -> None:
        threading.Thread(
            target=self.receive, args=(items, broken), name=f"recv-{self.id}", daemon=True
        ).start()

    def answers(self) -> Iterator[Outgoing]:
        """Every answer of the session; records how it ended (see :meth:`close`)."""
        try:
            yield from self.runner.run()
        except SessionFailed:
            self.outcome = "failed"
            raise
        except SessionIdle:
            self.outcome = "idle"
            raise
        except SessionShutdown:
            self.outcome = "shutdown"
            raise
        except SessionWorkerLost:
            self.outcome = "worker_lost"
            raise
        self.outcome = "cancelled" if self.inbox.cancelled else "completed"
        logger.info(
            "session %s ended: %d frames processed, %d dropped%s",
            self.id, self.runner.frames_processed, self.inbox.frames_dropped,
            " (client cancelled)" if self.inbox.cancelled else "", extra=self.log,
        )  # fmt: skip

    def close(self) -> None:
        """Free everything the session holds. Idempotent."""
        if self._closed:
            return
        self._closed = True
        self.inbox.cancel()
        if not self.runner.wait_idle(CLOSE_WAIT_S):
            logger.error("session %s: a frame was still computing after %.0f s", self.id, CLOSE_WAIT_S)
        self.engine_session.close()
        self.host._forget(self)


class SessionHost:
    """Everything sessions share on one server."""

    def __init__(
        self,
        engines: dict[str, Engine],
        default_engine: str,
        max_sessions: int,
        max_objects: int | None = None,
        idle_timeout_s: float | None = None,
        telemetry: Telemetry | None = None,
        scheduler: SchedulerConfig | None = None,
    ) -> None:
        if default_engine not in engines:
            raise ValueError(
                f"default engine {default_engine!r} is not among the loaded engines {sorted(engines)}"
            )
        self.engines = engines
        self.default_engine = default_engine
        self.max_objects = max_objects
        self.idle_timeout_s = idle_timeout_s
        self.slots = SessionSlots(max_sessions)
        self.telemetry = telemetry or Telemetry()
        config = scheduler or SchedulerConfig()
        self.schedulers: dict[str, Scheduler] = {}
        for name, engine in engines.items():
            info = engine.info
            self.telemetry.describe_engine(info.name, info.version, info.device, info.random_weights)
            observe: Callable[[int], None] = self.telemetry.batch_size.labels(engine=name).observe
            replaced = self.telemetry.workers_replaced.labels(engine=name)
            self.schedulers[name] = make_scheduler(
                engine, config, name, on_batch=observe, on_worker_lost=lambda _reason, c=replaced: c.inc()
            )
            s = self.schedulers[name].info
            logger.info(
                "engine %s: scheduler %s, %d worker(s) x %d thread(s), max batch %d, max queue delay %.1f ms",
                name, s.kind, s.workers, s.threads_per_worker, s.max_batch, s.max_queue_delay_ms,
            )  # fmt: skip
        self._draining: str | None = None
        self._open: set[HostedSession] = set()
        self._lock = threading.Lock()

    def open_sessions(self) -> list[HostedSession]:
        """The sessions open now (a copy)."""
        with self._lock:
            return list(self._open)

    def scheduler_info(self, engine_name: str) -> SchedulerInfo:
        return self.schedulers[engine_name].info

    @property
    def draining(self) -> str | None:
        return self._draining

    def drain(self, message: str = "the server is shutting down") -> None:
        """Refuse new sessions; let open ones answer their waiting frames, then end them."""
        with self._lock:
            self._draining = message
            sessions = list(self._open)
        for session in sessions:
            session.inbox.drain(message)

    def close(self) -> None:
        """Stop the schedulers (after a drain); frames still queued are answered ERROR."""
        for scheduler in self.schedulers.values():
            scheduler.close()

    def open(self, config: SessionConfig) -> HostedSession:
        """Admit a session; :class:`SessionRefused` says why not."""
        if self._draining is not None:
            raise SessionRefused(RefusalKind.UNAVAILABLE, f"not accepting new sessions: {self._draining}")
        engine_name = config.engine or self.default_engine
        engine = self.engines.get(engine_name)
        if engine is None:
            raise SessionRefused(
                RefusalKind.INVALID,
                f"engine {engine_name!r} is not served here; available: {', '.join(sorted(self.engines))}",
            )
        if not self.slots.try_acquire():
            raise SessionRefused(
                RefusalKind.EXHAUSTED,
                f"the server already has {self.slots.limit} open sessions (its max_sessions limit)",
            )
        try:
            engine_session = engine.open_session(config)
        except PromptError as exc:
            self.slots.release()
            raise SessionRefused(RefusalKind.INVALID, f"cannot open session: {exc}") from exc
        except BaseException:
            self.slots.release()
            raise
        session = HostedSession(self, uuid.uuid4().hex[:12], engine_name, engine, engine_session, config)
        with self._lock:
            self._open.add(session)
            draining = self._draining
        self.telemetry.sessions_open.inc()
        if draining is not None:  # a drain that began while this session was opening
            session.inbox.drain(draining)
        logger.info(
            "session %s opened: engine=%s modality=%s objects=%d budget=%.1f ms policy=%s client=%r",
            session.id, engine_name, config.modality.value, len(config.objects),
            config.latency_budget_ms, config.budget_policy.value, config.client_name, extra=session.log,
        )  # fmt: skip
        return session

    def _forget(self, session: HostedSession) -> None:
        with self._lock:
            self._open.discard(session)
        self.telemetry.sessions_open.dec()
        self.telemetry.sessions_total.labels(outcome=session.outcome).inc()
        self.slots.release()

    def observe(self, engine_name: str, status: str, total_ms: float, stages_ms: dict[str, float]) -> None:
        self.telemetry.observe_frame(engine_name, status, total_ms, stages_ms)
