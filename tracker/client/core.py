"""The session core both transports share: everything about a session except the I/O.

:class:`SessionCore` builds the requests (open, frames, prompt updates), gives
update ids, keeps the outbox and the send times, routes each server answer to
its waiter or to the caller's queue, and maps a stream's end status onto the
client's errors. It never touches a socket, a thread or an event loop: the
blocking session (:mod:`tracker.client.sync`) wraps it in a condition
variable and two threads, the asyncio one (:mod:`tracker.client.aio`) in two
tasks. Not thread-safe: the transport locks.
"""

from __future__ import annotations

import collections
import dataclasses
import logging
import time
from dataclasses import dataclass, replace
from typing import Any, Generic, Literal, TypeVar

import grpc
import numpy as np

from tracker import convert
from tracker.client.errors import SessionLostError, TrackerError, error_from_status
from tracker.client.messages import ClientResult, SessionStarted, skipped_result
from tracker.gating.types import BeamState, GatingDecision
from tracker.types import Prompt, PromptAck, PromptUpdate, SessionConfig, UpdateAction
from tracker.v1 import tracker_pb2 as pb

logger = logging.getLogger(__name__)

SendPolicy = Literal["queue", "latest"]

END = object()  # marks the end of the outbox (half-close) and of the answer queue

_CONFIG_FIELDS = tuple(f.name for f in dataclasses.fields(SessionConfig))


def build_session_config(config: SessionConfig | None = None, **overrides: Any) -> SessionConfig:
    """``config`` (default: :class:`SessionConfig`) with the named fields replaced.

    Field names come from :class:`SessionConfig` itself, so a new field needs no
    change here; an unknown name is a TypeError listing the valid ones.
    """
    unknown = sorted(set(overrides) - set(_CONFIG_FIELDS))
    if unknown:
        raise TypeError(f"unknown session setting(s) {unknown}; SessionConfig fields: {list(_CONFIG_FIELDS)}")
    if overrides.get("objects") is not None:
        overrides["objects"] = tuple(overrides["objects"])
    if overrides.get("engine_options") is not None:
        overrides["engine_options"] = dict(overrides["engine_options"])
    return replace(config or SessionConfig(), **overrides)


def add_update(object_id: int, prompt: Prompt, label: str = "") -> PromptUpdate:
    return PromptUpdate(UpdateAction.ADD, object_id, prompt, label)


def remove_update(object_id: int) -> PromptUpdate:
    return PromptUpdate(UpdateAction.REMOVE, object_id)


def correct_update(object_id: int, prompt: Prompt, label: str = "") -> PromptUpdate:
    return PromptUpdate(UpdateAction.CORRECT, object_id, prompt, label)


Answer = ClientResult | PromptAck | GatingDecision


def unwrap(item: object) -> Any:
    """A queued answer for the caller: None at the end of the stream; a queued error is raised."""
    if item is END:
        return None
    if isinstance(item, TrackerError):
        raise item
    return item


def frame_of(item: object) -> ClientResult | None:
    """The frame answer among ``recv``'s answers (None for acks and decisions); raises at the end."""
    if item is None:
        raise TrackerError(grpc.StatusCode.UNAVAILABLE, "the stream ended before the frame was answered")
    return item if isinstance(item, ClientResult) else None


@dataclass(frozen=True)
class OpenRequest:
    """What a caller asked ``open_session`` for, handed to the transport."""

    config: SessionConfig
    mask_encoding: int = pb.RLE
    timeout_s: float = 60.0
    send_policy: SendPolicy = "queue"
    failover: bool = False
    failover_policy: Any = None  # a tracker.client.failover.FailoverPolicy, or None for the default
    max_answer_age_ms: float | None = None  # None: the session's latency budget


# -- the send path ---------------------------------------------------------------------------


@dataclass
class Pending:
    """A request waiting for the transport; frames carry their index and send time."""

    request: pb.TrackRequest
    frame_index: int | None = None  # set for frames
    sent_mono: float = 0.0


class Outbox:
    """Requests waiting for the transport, in order; not thread-safe (callers lock).

    ``policy="queue"`` keeps every frame. ``policy="latest"`` keeps at most one
    unsent frame: a newer frame replaces it (moving to the end, so prompt
    updates queued meanwhile still precede it) and :meth:`push_frame` returns
    the replaced one so the caller can answer it locally.
    """

    def __init__(self, policy: SendPolicy = "queue") -> None:
        if policy not in ("queue", "latest"):
            raise ValueError(f"send policy must be 'queue' or 'latest', got {policy!r}")
        self.policy = policy
        self._items: collections.deque[Pending | object] = collections.deque()
        self._frame: Pending | None = None  # the unsent frame, under "latest"

    def push_frame(self, item: Pending) -> Pending | None:
        replaced = None
        if self.policy == "latest" and self._frame is not None:
            replaced = self._frame
            self._items.remove(replaced)
        self._items.append(item)
        if self.policy == "latest":
            self._frame = item
        return replaced

    def push(self, item: Pending | object) -> None:
        self._items.append(item)

    def pop(self) -> Pending | object | None:
        if not self._items:
            return None
        item = self._items.popleft()
        if item is self._frame:
            self._frame = None
        return item

    def __len__(self) -> int:
        return len(self._items)


# -- freshness of answers -------------------------------------------------------------------


class Freshness:
    """Never act on a stale answer: the client's own check of every frame answer's age.

    An answer's age is the time from ``send_frame`` (for a console that sends as it
    acquires, the frame's acquisition) to its arrival. An answer older than
    ``max_answer_age_ms`` (default: the session's latency budget) is marked ``stale``;
    its ``BEAM_ON`` becomes ``BEAM_HOLD`` (cause ``stale``) and is counted. Between
    answers, :meth:`beam_state` is ``BEAM_ON`` only until the last ``BEAM_ON``'s frame
    is ``max_answer_age_ms`` old: a console polling it holds the beam from the moment
    it has no fresh answer, whether answers are late or stopped coming.
    """

    def __init__(self, max_answer_age_ms: float | None = None) -> None:
        self.max_age_ms = max_answer_age_ms
        self.stale_answers = 0
        self.stale_holds = 0
        self._on_until: float | None = None  # monotonic time the last fresh BEAM_ON expires

    def started(self, budget_ms: float) -> None:
        if self.max_age_ms is None and budget_ms > 0:
            self.max_age_ms = budget_ms

    def check(self, answer: ClientResult) -> ClientResult:
        """``answer``, marked stale (and held) when it came too late."""
        limit = self.max_age_ms
        gating = answer.result.gating
        if limit is not None and answer.end_to_end_ms > limit:
            answer.stale = True
            self.stale_answers += 1
            if gating is not None and gating.state is BeamState.ON:
                self.stale_holds += 1
                gating = GatingDecision(
                    BeamState.HOLD,
                    f"stale answer: it came {answer.end_to_end_ms:.0f} ms after the frame was sent"
                    f" (max_answer_age_ms {limit:.0f})",
                    answer.frame_index,
                    "stale",
                    gating.guard_mm,
                )
                answer.result = replace(answer.result, gating=gating)
        if gating is not None and gating.state is BeamState.ON:
            self._on_until = answer.sent_mono + limit / 1000.0 if limit is not None else float("inf")
        elif gating is not None:
            self._on_until = None
        return answer

    def beam_state(self, now: float) -> BeamState:
        on = self._on_until is not None and now <= self._on_until
        return BeamState.ON if on else BeamState.HOLD


# -- one session's state ---------------------------------------------------------------------

W = TypeVar("W")  # the transport's waiter for an ack: a concurrent.futures or an asyncio Future


class SessionCore(Generic[W]):
    """One session's state and rules, without I/O; see the module docstring."""

    def __init__(
        self, config: SessionConfig, send_policy: SendPolicy = "queue", max_answer_age_ms: float | None = None
    ) -> None:
        if max_answer_age_ms is not None and max_answer_age_ms <= 0:
            raise ValueError(f"max_answer_age_ms must be positive, got {max_answer_age_ms}")
        self.config = config
        self.freshness = Freshness(max_answer_age_ms)
        self.outbox = Outbox(send_policy)
        self.sent_at: dict[int, float] = {}  # frame index -> time.monotonic() of send_frame
        self.waiters: dict[int, W] = {}  # update id -> the caller waiting for its ack
        self.next_update_id = 1
        self.closed = False  # the caller ended the session (close or cancel)
        self.writing_done = False
        self.failure: TrackerError | None = None
        self.frames_sent = 0
        self.frames_skipped = 0
        self.started: SessionStarted | None = None

    @property
    def session_id(self) -> str:
        return self.started.session_id if self.started is not None else ""

    # -- opening -----------------------------------------------------------------------------

    def open(self, mask_encoding: int) -> None:
        """Queue the session's ``open`` request: always the first on the stream."""
        self.outbox.push(
            Pending(pb.TrackRequest(open=convert.session_open_to_proto(self.config, mask_encoding)))
        )

    def accept_first(self, first: pb.TrackResponse | None) -> SessionStarted:
        """The server's first answer (None: the stream ended) must be ``started``; TrackerError otherwise."""
        kind = "end of stream" if first is None else f"`{first.WhichOneof('kind')}`"
        if first is None or first.WhichOneof("kind") != "started":
            raise TrackerError(grpc.StatusCode.INTERNAL, f"expected `started`, got {kind}")
        self.started = SessionStarted.from_proto(first.started)
        self.freshness.started(self.started.latency_budget_ms)
        if self.started.engine.random_weights:
            logger.warning(
                "the server runs %s with RANDOM WEIGHTS: not for clinical use", self.started.engine.name
            )
        for warning in self.started.warnings:
            logger.warning("server: %s", warning)
        return self.started

    # -- sending -----------------------------------------------------------------------------

    def check_open(self) -> None:
        if self.failure is not None:
            raise self.failure
        if self.writing_done:
            raise TrackerError(None, "the session is closed for sending; open a new session")

    def push_frame(
        self, pixels: np.ndarray, index: int, timestamp_s: float | None, now: float
    ) -> ClientResult | None:
        """Queue a frame; returns the local ``DROPPED`` answer of the frame it replaced, if any."""
        self.check_open()
        message = convert.frame_to_proto(pixels, index, timestamp_s)
        self.sent_at[index] = now
        replaced = self.outbox.push_frame(Pending(pb.TrackRequest(frame=message), index, now))
        if replaced is None or replaced.frame_index is None:
            return None
        self.sent_at.pop(replaced.frame_index, None)
        self.frames_skipped += 1
        return skipped_result(replaced.frame_index, index, replaced.sent_mono)

    def allocate_update_id(self, requested: int = 0) -> int:
        """``requested`` if non-zero (later ids skip past it), else the next unused id."""
        if requested:
            self.next_update_id = max(self.next_update_id, requested + 1)
            return requested
        update_id = self.next_update_id
        self.next_update_id += 1
        return update_id

    def push_update(self, update: PromptUpdate, waiter: W | None = None) -> PromptUpdate:
        """Queue a prompt update under its (allocated) id; its ack goes to ``waiter`` if given."""
        self.check_open()
        update = replace(update, update_id=self.allocate_update_id(update.update_id))
        if waiter is not None:
            self.waiters[update.update_id] = waiter
        self.outbox.push(Pending(pb.TrackRequest(prompt_update=convert.prompt_update_to_proto(update))))
        return update

    def push_raw(self, request: pb.TrackRequest) -> None:
        self.check_open()
        self.outbox.push(Pending(request))

    def next_request(self) -> pb.TrackRequest | object | None:
        """The next request for the wire, :data:`END` to half-close, None when nothing is queued."""
        item = self.outbox.pop()
        if item is None or item is END:
            return item
        assert isinstance(item, Pending)
        if item.frame_index is not None:
            self.frames_sent += 1
        return item.request

    def end_writing(self) -> bool:
        """Queue the half-close once; True if this call did it (the transport wakes its writer)."""
        if self.writing_done:
            return False
        self.writing_done = True
        self.outbox.push(END)
        return True

    # -- receiving ---------------------------------------------------------------------------

    def route(self, response: pb.TrackResponse, received: float) -> tuple[W | None, Answer | None]:
        """Where a server answer goes: ``(waiter, ack)`` for an awaited ack, else ``(None, answer)``."""
        kind = response.WhichOneof("kind")
        if kind == "frame":
            result = convert.frame_result_from_proto(response.frame)
            sent = self.sent_at.pop(result.frame_index, received)
            return None, self.freshness.check(ClientResult(result, sent, received))
        if kind == "prompt_ack":
            msg = response.prompt_ack
            ack = PromptAck(msg.update_id, msg.accepted, msg.message)
            return self.waiters.pop(ack.update_id, None), ack
        if kind == "gating":  # a beam HOLD sent because the stream stalled
            return None, convert.gating_decision_from_proto(response.gating)
        return None, None

    def stream_error(self, code: grpc.StatusCode | None, details: str | None) -> TrackerError | None:
        """The error a live stream's end status surfaces as; None for a cancel the caller made."""
        if code == grpc.StatusCode.CANCELLED:
            if self.closed:
                return None
            # cancelled, but not by us: the stream is gone all the same
            return SessionLostError(code, details or "cancelled", self.session_id)
        return error_from_status(code, details or "", self.session_id, in_session=True)

    def fail(self, failure: TrackerError) -> bool:
        """Record the session's failure; True when it is a lost connection (the channel is stale)."""
        self.failure = failure
        lost = isinstance(failure, SessionLostError)
        if lost:
            logger.warning("%s", failure)
        return lost

    def orphans(self) -> tuple[list[W], TrackerError]:
        """The stream ended: every waiter still waiting, and the error to hand each."""
        waiters, self.waiters = list(self.waiters.values()), {}
        return waiters, self.failure or TrackerError(
            None, "the session ended before the prompt update was answered"
        )


class SessionViews:
    """What both plain sessions let a caller read from their :class:`SessionCore`."""

    _core: SessionCore[Any]

    @property
    def stale_answers(self) -> int:
        """Frame answers that came later than ``max_answer_age_ms`` after their frame was sent."""
        return self._core.freshness.stale_answers

    @property
    def stale_holds(self) -> int:
        """Of those, the ones whose ``BEAM_ON`` the client turned into ``BEAM_HOLD``."""
        return self._core.freshness.stale_holds

    def beam_state(self, now: float | None = None) -> BeamState:
        """``BEAM_ON`` only while the last decision was ``BEAM_ON`` and is still fresh."""
        return self._core.freshness.beam_state(time.monotonic() if now is None else now)

    @property
    def session_id(self) -> str:
        return self._core.session_id

    @property
    def send_policy(self) -> SendPolicy:
        return self._core.outbox.policy

    @property
    def frames_sent(self) -> int:
        """Frames that went out on the wire (not those replaced in the send slot)."""
        return self._core.frames_sent

    @property
    def frames_skipped(self) -> int:
        """Frames replaced by a newer one before they were sent (``send_policy="latest"``)."""
        return self._core.frames_skipped
