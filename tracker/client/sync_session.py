"""The blocking transport's session: :class:`StreamSession`, on threads.

The session's state and rules are :class:`~tracker.client.core.SessionCore`;
this module only moves requests and answers: a request iterator that gRPC
drains on its own thread, a receiver thread, and a condition variable each
for the outbox and the answer queue.
"""

from __future__ import annotations

import collections
import logging
import threading
import time
from collections.abc import Iterator
from concurrent.futures import Future
from concurrent.futures import TimeoutError as FutureTimeout
from types import TracebackType
from typing import Any

import grpc
import numpy as np

from tracker.client import core
from tracker.client.core import END, Answer, SendPolicy, SessionCore, SessionViews
from tracker.client.errors import LOST_CODES, PromptRefusedError, TrackerError, error_from_rpc
from tracker.client.messages import ClientResult, SessionStarted
from tracker.types import Prompt, PromptAck, PromptUpdate, SessionConfig
from tracker.v1 import tracker_pb2 as pb
from tracker.v1 import tracker_pb2_grpc as pb_grpc

logger = logging.getLogger(__name__)


class BlockingCalls:
    """The calls a blocking session builds on ``update`` and ``recv`` (shared with failover)."""

    def update(self, update: PromptUpdate, timeout_s: float | None = 30.0) -> PromptAck:
        raise NotImplementedError

    def recv(self, timeout_s: float | None = 60.0) -> Any:
        raise NotImplementedError

    def add_object(
        self, object_id: int, prompt: Prompt, label: str = "", timeout_s: float | None = 30.0
    ) -> PromptAck:
        """Start tracking a new object from ``prompt`` on the next frame."""
        return self.update(core.add_update(object_id, prompt, label), timeout_s)

    def remove_object(self, object_id: int, timeout_s: float | None = 30.0) -> PromptAck:
        """Stop tracking ``object_id``."""
        return self.update(core.remove_update(object_id), timeout_s)

    def correct_object(
        self, object_id: int, prompt: Prompt, label: str = "", timeout_s: float | None = 30.0
    ) -> PromptAck:
        """Replace an object's prompt; it becomes the object's new reference from the next frame."""
        return self.update(core.correct_update(object_id, prompt, label), timeout_s)

    def recv_frame(self, timeout_s: float | None = 60.0) -> ClientResult:
        """The next frame answer, skipping prompt acknowledgements and gating decisions."""
        while (frame := core.frame_of(self.recv(timeout_s))) is None:
            pass
        return frame

    def results(self, timeout_s: float | None = 60.0) -> Iterator[ClientResult]:
        """Frame answers until the stream ends (after ``done_writing`` or a server end)."""
        while (item := self.recv(timeout_s)) is not None:
            if isinstance(item, ClientResult):
                yield item

    def done_writing(self) -> None:
        raise NotImplementedError

    def cancel(self) -> None:
        raise NotImplementedError

    def close(self) -> list[Any]:
        """Half-close: the server answers what it has, then ends; returns the remaining answers."""
        self.done_writing()
        rest: list[Any] = []
        while (item := self.recv(timeout_s=None)) is not None:
            rest.append(item)
        return rest

    def __enter__(self) -> Any:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        if exc_type is None:
            self.close()
        else:
            self.cancel()


class AnswerQueue:
    """The answers waiting for ``recv``, in order; the end marker stays so ``recv`` keeps answering None."""

    def __init__(self) -> None:
        self._items: collections.deque[object] = collections.deque()
        self._cond = threading.Condition()

    def put(self, *items: object) -> None:
        with self._cond:
            self._items.extend(items)
            self._cond.notify_all()

    def get(self, timeout_s: float | None) -> Any:
        with self._cond:
            if not self._cond.wait_for(lambda: bool(self._items), timeout=timeout_s):
                raise TimeoutError(f"no answer from the server within {timeout_s} s")
            item = self._items[0]
            if item is not END:
                self._items.popleft()
        return core.unwrap(item)


class StreamSession(SessionViews, BlockingCalls):
    """One open session. ``send_*`` never block on the server; ``recv`` returns answers in order.

    Answers are :class:`ClientResult` (one per frame sent) and
    :class:`~tracker.types.PromptAck` (one per update sent with
    :meth:`send_update`; acks of :meth:`update` / :meth:`add_object` /
    :meth:`remove_object` / :meth:`correct_object` go to their caller instead).
    """

    def __init__(
        self,
        stub: pb_grpc.TrackerStub,
        config: SessionConfig,
        mask_encoding: int = pb.RLE,
        timeout_s: float = 60.0,
        *,
        metadata: tuple[tuple[str, str], ...] = (),
        send_policy: SendPolicy = "queue",
        on_lost: Any = None,
        max_answer_age_ms: float | None = None,
    ) -> None:
        self.config = config
        self._core: SessionCore[Future[PromptAck]] = SessionCore(config, send_policy, max_answer_age_ms)
        self._cond = threading.Condition()  # guards the core; wakes the request iterator
        self._answers = AnswerQueue()
        self._on_lost = on_lost
        self._core.open(mask_encoding)
        self._call = stub.Track(self._request_stream(), metadata=metadata)
        first_box: list[object] = []
        opener = threading.Thread(target=lambda: first_box.append(self._first()), daemon=True)
        opener.start()
        opener.join(timeout_s)
        if not first_box:
            self._call.cancel()
            raise TrackerError(grpc.StatusCode.DEADLINE_EXCEEDED, f"no session start within {timeout_s} s")
        first = first_box[0]
        if isinstance(first, TrackerError):
            self._end_writing()
            if first.code in LOST_CODES and on_lost is not None:
                on_lost()  # no connection: the next session starts on a fresh channel
            raise first
        try:
            self.started: SessionStarted = self._core.accept_first(first)  # type: ignore[arg-type]
        except TrackerError:
            self._call.cancel()
            raise
        self._receiver = threading.Thread(target=self._receive, name="tracker-recv", daemon=True)
        self._receiver.start()

    # -- plumbing ----------------------------------------------------------------------

    def _first(self) -> pb.TrackResponse | TrackerError:
        try:
            return next(self._call)
        except grpc.RpcError as exc:
            return error_from_rpc(exc)
        except StopIteration:
            return TrackerError(grpc.StatusCode.UNAVAILABLE, "the server ended the stream without answering")

    def _request_stream(self) -> Iterator[pb.TrackRequest]:
        while True:
            with self._cond:
                self._cond.wait_for(lambda: len(self._core.outbox) > 0)
                request = self._core.next_request()
            if request is END:
                return
            yield request  # type: ignore[misc]

    def _receive(self) -> None:
        try:
            for response in self._call:
                with self._cond:
                    waiter, answer = self._core.route(response, time.monotonic())
                if waiter is not None:
                    waiter.set_result(answer)  # type: ignore[arg-type]
                elif answer is not None:
                    self._answers.put(answer)
        except grpc.RpcError as exc:
            with self._cond:
                error = self._core.stream_error(exc.code(), exc.details())
            if error is not None:
                self._fail(error)
        with self._cond:
            waiters, error = self._core.orphans()
        for waiter in waiters:
            waiter.set_exception(error)
        self._answers.put(END)

    def _fail(self, failure: TrackerError) -> None:
        with self._cond:
            lost = self._core.fail(failure)
        if lost and self._on_lost is not None:
            self._on_lost()
        self._answers.put(failure)
        self._end_writing()

    def _end_writing(self) -> None:
        with self._cond:
            if self._core.end_writing():
                self._cond.notify_all()

    def allocate_update_id(self, requested: int = 0) -> int:
        with self._cond:
            return self._core.allocate_update_id(requested)

    # -- sending -----------------------------------------------------------------------

    def send_frame(self, pixels: np.ndarray, index: int, timestamp_s: float | None = None) -> None:
        """Queue one frame (``(H, W)`` or ``(H, W, 3)``; uint8, uint16, int16 or float32).

        Never waits for the server. Raises :class:`SessionLostError` once the
        connection has dropped, ValueError for arrays the protocol cannot carry.
        """
        with self._cond:
            skipped = self._core.push_frame(pixels, index, timestamp_s, time.monotonic())
            self._cond.notify_all()
        if skipped is not None:
            self._answers.put(skipped)

    def send_update(self, update: PromptUpdate) -> int:
        """Queue a prompt update; its ack comes back through :meth:`recv`. Returns its update id.

        An ``update_id`` of 0 is replaced by the next unused id, so acks can be matched.
        """
        with self._cond:
            update = self._core.push_update(update)
            self._cond.notify_all()
        return update.update_id

    def send_raw(self, request: pb.TrackRequest) -> None:
        """Send a request as it is (for tests of the server's input checks)."""
        with self._cond:
            self._core.push_raw(request)
            self._cond.notify_all()

    def update(self, update: PromptUpdate, timeout_s: float | None = 30.0) -> PromptAck:
        """Send a prompt update and wait for its ack; :class:`PromptRefusedError` if refused.

        The ack means the update applies to the next frame the server processes.
        """
        waiter: Future[PromptAck] = Future()
        with self._cond:
            update = self._core.push_update(update, waiter)
            self._cond.notify_all()
        try:
            ack = waiter.result(timeout=timeout_s)
        except FutureTimeout:
            raise TimeoutError(f"no ack for prompt update {update.update_id} within {timeout_s} s") from None
        finally:
            with self._cond:
                self._core.waiters.pop(update.update_id, None)
        if not ack.accepted:
            raise PromptRefusedError(ack)
        return ack

    # -- receiving ---------------------------------------------------------------------

    def recv(self, timeout_s: float | None = 60.0) -> Answer | None:
        """The next answer; None when the stream has ended.

        Raises :class:`SessionLostError` when the connection dropped,
        :class:`TrackerError` for another error status, TimeoutError when
        nothing arrives within ``timeout_s``.
        """
        return self._answers.get(timeout_s)

    # -- ending ------------------------------------------------------------------------

    def done_writing(self) -> None:
        """Half-close: no more requests; queued ones still go out and are answered."""
        self._end_writing()

    def close(self) -> list[Any]:
        """Half-close: the server answers what it has, then ends; returns the remaining answers."""
        rest = super().close()
        self._core.closed = True
        return rest

    def cancel(self) -> None:
        """End now: the server frees the session without answering what is waiting."""
        self._core.closed = True
        self._call.cancel()
        self._end_writing()
