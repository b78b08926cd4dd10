"""Session hosting, free of gRPC: admission, engines and their schedulers, drain, outcomes.

The servicer converts protocol messages and hands the host a
:class:`~tracker.types.SessionConfig`; the host admits a
:class:`~tracker.server.session.Session` (which then owns everything of that stream) and
releases it when the stream ends. What sessions share on a server lives here: the
admission slots, the engine lookup, each engine's compute scheduler, the registry of
open sessions that a drain walks, and the outcome telemetry.
"""

from __future__ import annotations

import logging
import threading
import uuid
from collections.abc import Callable
from enum import Enum

from tracker.engines.base import Engine
from tracker.server.scheduler import Scheduler, SchedulerConfig, SchedulerInfo, make_scheduler
from tracker.server.session import Session
from tracker.server.telemetry import Telemetry
from tracker.types import PromptError, SessionConfig

logger = logging.getLogger(__name__)


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
        self._open: set[Session] = set()
        self._lock = threading.Lock()

    def open_sessions(self) -> list[Session]:
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

    def open(self, config: SessionConfig) -> Session:
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
        session = Session(
            engine_session,
            config,
            self.schedulers[engine_name],
            session_id=uuid.uuid4().hex[:12],
            engine_name=engine_name,
            idle_timeout_s=self.idle_timeout_s,
            max_objects=self.max_objects,
        )
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

    def release(self, session: Session) -> None:
        """Close ``session`` and free its slot, recording how it ended. Once per session."""
        with self._lock:
            if session not in self._open:
                return
            self._open.discard(session)
        session.close()
        self.telemetry.sessions_open.dec()
        outcome = session.end.kind.value if session.end is not None else "error"
        self.telemetry.sessions_total.labels(outcome=outcome).inc()
        self.slots.release()

    def observe(self, engine_name: str, status: str, total_ms: float, stages_ms: dict[str, float]) -> None:
        self.telemetry.observe_frame(engine_name, status, total_ms, stages_ms)
