"""Session failover for the client library: survive a replica's death or drain behind a proxy.

Opt-in (``TrackerClient.open_session(..., failover=True)``, ``tracker live
--failover``). When a session's stream ends with ``UNAVAILABLE`` or its
connection drops, the client opens a new session through the same address (a
proxy such as Envoy, which routes it to a healthy replica) with each object's
last good mask as its mask prompt, its label and its reference position, and
carries on with the newest frame. The tracker's memory (reference frames,
object memory) died with the old replica; the new session starts from the last
mask, which is what the operator saw last.

Invariants (tested in tests/test_cluster.py against real Envoy and real server
processes):

* every frame gets exactly one answer: frames the old session never answered,
  and frames sent while no session is open, are answered locally ``LOST``;
* a gating session sees ``BEAM_HOLD`` on every ``LOST`` answer, i.e. from the
  fault until the first answer of the new session (the server's gate decides
  again from there);
* each failover is a :class:`FailoverEvent` (gap in frames and ms);
* re-opens are bounded (:class:`FailoverPolicy`) with exponential backoff;
  refusals (``INVALID_ARGUMENT``, ``UNAUTHENTICATED``, ``PERMISSION_DENIED``, ...)
  are never retried: they would be refused again.

``RESOURCE_EXHAUSTED`` on a *re-open* is retried (``retry_resource_exhausted``,
default on): behind a proxy the next attempt may land on a replica with room,
and the proxy itself retries it once on another host first. The *first* open of
a session is never retried: a full cluster is the caller's decision to make.

This module holds the rules, the bookkeeping and every decision
(:class:`FailoverCore`, no I/O) shared by the blocking session
(:class:`tracker.client.sync_failover.FailoverSession`) and the asyncio one
(:class:`tracker.client.aio_failover.AsyncFailoverSession`), which only move
answers, sleep and open sessions.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from contextlib import AbstractContextManager
from dataclasses import dataclass, replace
from typing import Any

import grpc
import numpy as np

from tracker.client.core import END, OpenRequest
from tracker.client.errors import AnswerTimeout, SessionLostError, TrackerError, is_connection_loss
from tracker.client.messages import ClientResult
from tracker.gating.types import BeamState, GatingDecision
from tracker.types import (
    FrameResult,
    FrameStatus,
    FrameTiming,
    MaskPrompt,
    ObjectPrompt,
    Prompt,
    PromptAck,
    PromptUpdate,
    SessionConfig,
    UpdateAction,
)

logger = logging.getLogger(__name__)

# Codes that mean "this request would be refused again": never retried.
REFUSAL_CODES = frozenset(
    {
        grpc.StatusCode.INVALID_ARGUMENT,
        grpc.StatusCode.UNAUTHENTICATED,
        grpc.StatusCode.PERMISSION_DENIED,
        grpc.StatusCode.FAILED_PRECONDITION,
        grpc.StatusCode.UNIMPLEMENTED,
        grpc.StatusCode.NOT_FOUND,
        grpc.StatusCode.OUT_OF_RANGE,
        grpc.StatusCode.ALREADY_EXISTS,
    }
)


# The watchdog's floor: below this, network jitter alone would fail sessions over.
MIN_ANSWER_TIMEOUT_S = 0.5
WATCHDOG_TICK_S = 0.05  # how often an answer pump looks at the watchdog while it waits


@dataclass(frozen=True)
class FailoverPolicy:
    """How hard to try re-opening a lost session: bounded attempts, exponential backoff."""

    max_attempts: int = 6
    backoff_initial_s: float = 0.05  # the first attempt goes at once; the second waits this long
    backoff_multiplier: float = 2.0
    backoff_max_s: float = 1.0
    open_timeout_s: float = 5.0  # per attempt: until the new session's `started`
    retry_resource_exhausted: bool = True
    # The watchdog: frames in flight and nothing heard from the session for this long means
    # the session is lost (a silent network loss). None: the session's budget, at least 0.5 s.
    answer_timeout_s: float | None = None

    def __post_init__(self) -> None:
        if self.max_attempts < 1:
            raise ValueError(f"failover needs at least one attempt, got max_attempts={self.max_attempts}")
        if self.backoff_initial_s < 0 or self.backoff_max_s < 0 or self.backoff_multiplier < 1:
            raise ValueError("failover backoff must be non-negative and non-shrinking")
        if self.open_timeout_s <= 0:
            raise ValueError(f"open timeout must be positive, got {self.open_timeout_s} s")
        if self.answer_timeout_s is not None and self.answer_timeout_s <= 0:
            raise ValueError(f"answer timeout must be positive, got {self.answer_timeout_s} s")

    def answer_timeout_for(self, budget_ms: float) -> float:
        """Seconds of silence, with frames in flight, after which a session counts as lost."""
        if self.answer_timeout_s is not None:
            return self.answer_timeout_s
        return max(budget_ms / 1000.0, MIN_ANSWER_TIMEOUT_S)

    def delays(self) -> Iterator[float]:
        """Seconds to wait before each attempt: 0, then initial, initial*m, ... capped."""
        delay = self.backoff_initial_s
        for attempt in range(self.max_attempts):
            if attempt == 0:
                yield 0.0
            else:
                yield min(delay, self.backoff_max_s)
                delay *= self.backoff_multiplier


def is_retryable_reopen(error: TrackerError, policy: FailoverPolicy) -> bool:
    """Whether a failed re-open is worth another attempt (the transport, not a refusal)."""
    if isinstance(error, SessionLostError):
        return True
    code = error.code
    if code in REFUSAL_CODES:
        return False
    if code == grpc.StatusCode.RESOURCE_EXHAUSTED:
        return policy.retry_resource_exhausted
    # DEADLINE_EXCEEDED here is our own open timeout: the replica did not answer in time.
    # CANCELLED: this client cancelled nothing, so a replica (or the proxy) dropped the
    # stream, e.g. one that stopped listening while the proxy still routed to it.
    transient = (grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED, grpc.StatusCode.CANCELLED)
    return code in transient or is_connection_loss(code, error.details)


def triggers_failover(error: TrackerError) -> bool:
    """Whether a live session's end should fail over: UNAVAILABLE or a dropped connection."""
    return isinstance(error, SessionLostError) or error.code == grpc.StatusCode.UNAVAILABLE


@dataclass(frozen=True)
class FailoverEvent:
    """One failover: from the fault the client saw to the first answer of the new session."""

    cause: str  # the old stream's end status
    old_session_id: str
    new_session_id: str
    attempts: int  # re-open attempts it took
    fault_mono: float  # time.monotonic() when the client saw the stream end
    resumed_mono: float  # ... when the new session's first answer arrived
    lost_frames: tuple[int, ...]  # frames answered LOST for this gap
    first_frame: int  # the new session's first answered frame

    @property
    def gap_frames(self) -> int:
        return len(self.lost_frames)

    @property
    def gap_ms(self) -> float:
        return (self.resumed_mono - self.fault_mono) * 1000.0


class FailoverFailed(RuntimeError):
    """Raised from ``recv`` when every re-open attempt failed (or one was refused)."""


@dataclass
class _Gap:
    cause: str
    old_session_id: str
    fault_mono: float
    lost: list[int]
    attempts: int = 0
    new_session_id: str = ""
    reopened: bool = False  # the new session is open; waiting for its first answer


class FailoverCore:
    """What a failover session remembers, and the local answers it gives; not thread-safe.

    Tracks frames in flight on the current session, each object's last good
    mask, label and reference position (and prompt updates that changed them),
    and the gap between a fault and the new session's first answer.
    """

    def __init__(self, config: SessionConfig, policy: FailoverPolicy | None = None) -> None:
        self.config = config
        self.policy = policy or FailoverPolicy()
        self.closing = False  # the caller half-closed or cancelled: no new session
        self.failure: TrackerError | None = None  # why the session ended for good
        self.reopen_attempts = 0  # over all failovers, failed attempts included
        self.objects: dict[int, ObjectPrompt] = {o.object_id: o for o in config.objects}
        self.last_mask: dict[int, np.ndarray] = {}
        # frame index -> (send time, pixels) on the current session; the pixels of the last
        # well-tracked frame prime a new session (its masks belong to that image).
        self.inflight: dict[int, tuple[float, np.ndarray | None]] = {}
        self.last_frame: tuple[int, np.ndarray] | None = None
        self.priming: int | None = None  # the new session's priming frame: its answer is not passed on
        self.gap: _Gap | None = None
        self.events: list[FailoverEvent] = []
        self.frames_lost = 0
        self.pending_updates: dict[int, PromptUpdate] = {}
        self.answer_timeout_s = self.policy.answer_timeout_for(config.latency_budget_ms)
        self.last_heard = 0.0  # time.monotonic() of the current session's last answer (or its start)

    # -- the watchdog: a session that stopped answering is lost ---------------------------------

    def session_started(self, budget_ms: float, now: float) -> None:
        """A session (the first or a new one) is open with this budget: the watchdog starts afresh."""
        self.answer_timeout_s = self.policy.answer_timeout_for(budget_ms)
        self.last_heard = now

    def heard(self, item: object, now: float) -> None:
        """A message from the current session: an answer or ack shows it is processing frames.

        A frame-less ``BEAM_HOLD`` (the server's gate saw no frame for its stall timeout)
        does not: it is what a server sends when the client's frames stopped reaching it.
        """
        if not isinstance(item, GatingDecision):
            self.last_heard = now

    def watchdog_wait(self, now: float) -> float | None:
        """Seconds until the session counts as lost if nothing is heard; None: no frame in flight.

        The clock runs from the later of the session's last answer and the oldest frame in
        flight, so a slow but live server (answering other frames, or DROPPED ones) is not lost.
        """
        if not self.inflight or self.in_gap:
            return None
        oldest = min(sent for sent, _ in self.inflight.values())
        return max(self.last_heard, oldest) + self.answer_timeout_s - now

    def overdue(self, now: float, session_id: str) -> AnswerTimeout | None:
        """The error that ends a session which answered nothing for too long, else None."""
        wait = self.watchdog_wait(now)
        if wait is None or wait > 0:
            return None
        return AnswerTimeout(
            grpc.StatusCode.UNAVAILABLE,
            f"no answer for {self.answer_timeout_s * 1000:.0f} ms"
            f" with {len(self.inflight)} frame(s) in flight",
            session_id,
        )

    @property
    def in_gap(self) -> bool:
        """No session is accepting frames (the fault happened, the new one is not open yet)."""
        return self.gap is not None and not self.gap.reopened

    def sent(self, index: int, now: float, pixels: np.ndarray | None = None) -> None:
        self.inflight[index] = (now, pixels)

    def answered(self, answer: ClientResult) -> bool:
        """Book an answer from the current session; False: swallow it (the priming frame's)."""
        # The priming frame's answer is never the caller's, whether the server computed it or
        # the client's send slot replaced it (a local DROPPED): that index was answered already.
        if self.priming is not None and answer.frame_index == self.priming:
            self.priming = None
            return False
        sent = self.inflight.pop(answer.frame_index, None)
        result = answer.result
        if result.status in (FrameStatus.OK, FrameStatus.LATE):
            good = False
            for obj in result.objects:
                if obj.present and obj.area_px > 0 and obj.object_id in self.objects:
                    self.last_mask[obj.object_id] = obj.mask
                    self._learn_reference(obj.object_id, obj.centroid_mm, obj.displacement_mm)
                    good = True
            if good and sent is not None and sent[1] is not None:
                self.last_frame = (answer.frame_index, sent[1])
        gap = self.gap
        if gap is None or not gap.reopened or answer.local:
            return True
        self.gap = None
        event = FailoverEvent(
            cause=gap.cause,
            old_session_id=gap.old_session_id,
            new_session_id=gap.new_session_id,
            attempts=gap.attempts,
            fault_mono=gap.fault_mono,
            resumed_mono=answer.received_mono,
            lost_frames=tuple(gap.lost),
            first_frame=answer.frame_index,
        )
        self.events.append(event)
        logger.warning(
            "failover %s -> %s: %d frame(s) lost, %.0f ms from the fault to the first answer",
            event.old_session_id, event.new_session_id, event.gap_frames, event.gap_ms,
        )  # fmt: skip
        return True

    def _learn_reference(
        self,
        object_id: int,
        centroid_mm: tuple[float, float, float] | None,
        displacement_mm: tuple[float, float, float] | None,
    ) -> None:
        """Keep a gated object's reference across failover when the server chose it.

        Without an explicit ``reference_mm`` the server's gate takes the first
        confident position as the reference; a new session must not take a new one
        (the target may have drifted), so it is recovered as centroid - displacement.
        """
        obj = self.objects[object_id]
        if obj.reference_mm is not None or centroid_mm is None or displacement_mm is None:
            return
        reference = tuple(float(c - d) for c, d in zip(centroid_mm, displacement_mm, strict=True))
        self.objects[object_id] = replace(obj, reference_mm=reference)  # type: ignore[arg-type]

    def update_sent(self, update: PromptUpdate) -> None:
        self.pending_updates[update.update_id] = update

    def book_update(self, update: PromptUpdate, update_id: int) -> PromptUpdate:
        """The update under the id its session gave it, remembered until its ack (for a re-open)."""
        update = replace(update, update_id=update_id)
        self.update_sent(update)
        return update

    def acked(self, ack: PromptAck) -> None:
        """An accepted update changes what a re-opened session must be prompted with."""
        update = self.pending_updates.pop(ack.update_id, None)
        if update is None or not ack.accepted:
            return
        if update.action is UpdateAction.REMOVE:
            self.objects.pop(update.object_id, None)
            self.last_mask.pop(update.object_id, None)
            return
        assert update.prompt is not None
        old = self.objects.get(update.object_id)
        self.objects[update.object_id] = ObjectPrompt(
            update.object_id,
            update.prompt,
            update.label or (old.label if old else ""),
            update.reference_mm if update.reference_mm is not None else (old.reference_mm if old else None),
        )
        self.last_mask.pop(update.object_id, None)  # the correction is newer than any mask seen

    def _lost_result(self, index: int, sent_mono: float, now: float, why: str) -> ClientResult:
        waited_ms = max(0.0, (now - sent_mono) * 1000.0)
        gating = None
        if self.config.gating is not None:
            gating = GatingDecision(BeamState.HOLD, f"failover: {why}", index)
        result = FrameResult(
            frame_index=index,
            status=FrameStatus.LOST,
            message=f"lost in failover: {why}",
            timing=FrameTiming(queue_ms=waited_ms, total_ms=waited_ms),
            gating=gating,
        )
        self.frames_lost += 1
        if self.gap is not None:
            self.gap.lost.append(index)
        return ClientResult(result, sent_mono, now, local=True)

    def fault(self, cause: str, old_session_id: str, now: float) -> list[ClientResult | GatingDecision]:
        """The stream ended: open a gap and answer every frame still in flight LOST.

        A gating session also gets a frame-less ``BEAM_HOLD`` first, as the server
        sends when a stream stalls: the console holds at the fault, not at its next frame.
        """
        if self.gap is None:
            self.gap = _Gap(cause, old_session_id, now, [])
        else:  # the re-opened session died before its first answer: the same gap goes on
            self.gap.reopened = False
        self.priming = None
        pending, self.inflight = self.inflight, {}
        why = f"session {old_session_id or '?'} ended ({cause})"
        out: list[ClientResult | GatingDecision] = []
        if self.config.gating is not None:
            out.append(GatingDecision(BeamState.HOLD, f"failover: {why}", None))
        out += [self._lost_result(i, t, now, why) for i, (t, _) in sorted(pending.items())]
        return out

    def lost_in_gap(self, index: int, now: float) -> ClientResult:
        """A frame sent while no session is open."""
        return self._lost_result(index, now, now, "no session open (re-opening through the proxy)")

    def resume_config(self) -> SessionConfig:
        """The new session's config: every object prompted with its last good mask (else its prompt)."""
        objects = []
        for oid, obj in self.objects.items():
            mask = self.last_mask.get(oid)
            prompt: Prompt = MaskPrompt(mask) if mask is not None else obj.prompt
            objects.append(ObjectPrompt(oid, prompt, obj.label, obj.reference_mm))
        name = self.config.client_name
        return replace(self.config, objects=tuple(objects), client_name=f"{name} (failover)".strip())

    def prime_frame(self) -> tuple[int, np.ndarray] | None:
        """The frame to send first on a new session: the image its mask prompts belong to.

        Prompting the newest frame with an older frame's mask would start the new
        session off by however far the target moved in between; sending that older
        frame first (its answer is swallowed) starts it exactly where the old one was.
        """
        return self.last_frame

    def reopened(self, new_session_id: str, attempts: int, priming: int | None = None) -> None:
        assert self.gap is not None
        self.priming = priming
        self.gap.reopened = True
        self.gap.new_session_id = new_session_id
        self.gap.attempts += attempts

    # -- the decisions both transports act on --------------------------------------------------

    def route(self, item: object) -> bool:
        """Book an answer of the current session; False: swallow it (the priming frame's)."""
        if isinstance(item, ClientResult):
            return self.answered(item)
        if isinstance(item, PromptAck):
            self.acked(item)
        return True

    def ended(self, error: TrackerError, session_id: str, now: float) -> tuple[list[object], bool]:
        """The current stream ended with ``error``: the answers to queue, and whether to re-open.

        A refusal ends the session; a fault answers what was in flight ``LOST`` and
        re-opens unless the caller is closing (nothing more to send).
        """
        if not triggers_failover(error):
            return self.finish(error, session_id, now), False
        lost: list[object] = list(self.fault(_code_name(error), session_id, now))
        if self.closing:
            return lost + self.finish(None, session_id, now), False
        return lost, True

    def finish(self, failure: TrackerError | None, session_id: str, now: float) -> list[object]:
        """The session is over: the last answers to queue, the end marker included.

        With a failure, nothing will answer what is in flight: it is answered ``LOST``.
        """
        self.failure = failure
        out: list[object] = []
        if failure is not None:
            out += self.fault(_code_name(failure), session_id, now)
            out.append(failure)
        out.append(END)
        return out

    def attempts(self) -> Iterator[tuple[int, float]]:
        """(attempt number from 1, seconds to wait before it) for one failover."""
        return enumerate(self.policy.delays(), start=1)

    def next_attempt(self) -> tuple[SessionConfig, tuple[int, np.ndarray] | None] | None:
        """The next re-open's config and priming frame; None when the caller is closing."""
        if self.closing:
            return None
        self.reopen_attempts += 1
        return self.resume_config(), self.prime_frame()

    def attempt_failed(self, error: TrackerError, attempt: int) -> bool:
        """A re-open failed; True: try again (the transport, not a refusal)."""
        logger.warning("failover attempt %d/%d: %s", attempt, self.policy.max_attempts, error)
        return is_retryable_reopen(error, self.policy)

    @staticmethod
    def gave_up(cause: TrackerError, last: TrackerError) -> TrackerError:
        return TrackerError(
            last.code, f"failover gave up after the session ended ({cause.details}): {last.details}"
        )

    def admit_frame(self, index: int, now: float, pixels: np.ndarray) -> ClientResult | None:
        """A caller's frame: its ``LOST`` answer during a gap, else None (send it; it is in flight)."""
        if self.failure is not None:
            raise self.failure
        if self.closing:
            raise TrackerError(None, "the session is closed for sending; open a new session")
        if self.in_gap:
            return self.lost_in_gap(index, now)
        self.sent(index, now, pixels)
        return None

    def not_sent(self, index: int, error: TrackerError) -> None:
        """Sending raised ``error``: re-raised unless the stream just ended (then it is answered LOST)."""
        if not triggers_failover(error):
            self.inflight.pop(index, None)
            raise error

    def check_update(self, session_id: str) -> None:
        """Prompt updates go to an open session only: during a gap one would be lost with it."""
        if self.failure is not None:
            raise self.failure
        if self.in_gap:
            raise SessionLostError(grpc.StatusCode.UNAVAILABLE, "failing over to a new session", session_id)


def _code_name(error: TrackerError) -> str:
    if isinstance(error, AnswerTimeout):
        return "ANSWER_TIMEOUT"
    return error.code.name if error.code else "?"


class FailoverViews:
    """What both failover sessions hold and let a caller read.

    ``_lock`` guards the core: a lock on threads, a null context on asyncio.
    """

    _lock: AbstractContextManager[Any]

    def __init__(self, client: Any, request: OpenRequest) -> None:
        self._client = client
        self._request = replace(request, failover=False)  # what each inner open asks for
        self.policy: FailoverPolicy = request.failover_policy or FailoverPolicy()
        self._core = FailoverCore(request.config, self.policy)

    def _inner_request(self, config: SessionConfig, timeout_s: float) -> OpenRequest:
        """A plain (inner) session's open: ``config``, the caller's encoding and send policy."""
        return replace(self._request, config=config, timeout_s=timeout_s)

    _sessions: list[Any]  # every inner session so far, the current one last

    def _session(self) -> Any:
        """The current inner session."""
        raise NotImplementedError

    @property
    def stale_answers(self) -> int:
        """Answers that came later than ``max_answer_age_ms`` after their frame, over every session."""
        return sum(s.stale_answers for s in self._sessions)

    @property
    def stale_holds(self) -> int:
        """Of those, the ``BEAM_ON`` ones the client held, over every session."""
        return sum(s.stale_holds for s in self._sessions)

    def beam_state(self, now: float | None = None) -> BeamState:
        """``BEAM_HOLD`` during a failover; else the current session's fresh decision."""
        with self._lock:
            if self._core.gap is not None:  # from the fault to the new session's first answer
                return BeamState.HOLD
        return self._session().beam_state(now)

    @property
    def config(self) -> SessionConfig:
        return self._core.config

    @property
    def started(self) -> Any:
        """The current session's ``started`` (a new one after each failover)."""
        return self._session().started

    @property
    def session_id(self) -> str:
        return self._session().session_id

    @property
    def events(self) -> list[FailoverEvent]:
        with self._lock:
            return list(self._core.events)

    @property
    def frames_lost(self) -> int:
        return self._core.frames_lost

    @property
    def reopen_attempts(self) -> int:
        """Re-open attempts over all failovers, failed ones included."""
        return self._core.reopen_attempts

    @property
    def in_gap(self) -> bool:
        with self._lock:
            return self._core.in_gap
