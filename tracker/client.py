"""A blocking Python client for the ``tracker.v1`` protocol.

Frames go out from NumPy arrays, results come back as the project's
dataclasses with client-side timings attached. Sending never waits for
results, so a caller can pace frames by acquisition time (open loop) while the
answers are collected on a background thread.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from types import TracebackType

import grpc
import numpy as np

from tracker import convert
from tracker.types import FrameResult, PromptAck, PromptUpdate, SessionConfig
from tracker.v1 import tracker_pb2 as pb
from tracker.v1 import tracker_pb2_grpc as pb_grpc

logger = logging.getLogger(__name__)

_END = object()


class TrackerError(RuntimeError):
    """The server ended the session with an error status; ``code`` and ``details`` say why."""

    def __init__(self, code: grpc.StatusCode, details: str) -> None:
        super().__init__(f"{code.name}: {details}")
        self.code = code
        self.details = details


@dataclass
class ClientResult:
    """A frame's answer with the client's view of its latency."""

    result: FrameResult
    sent_mono: float
    received_mono: float

    @property
    def end_to_end_ms(self) -> float:
        return (self.received_mono - self.sent_mono) * 1000.0


def channel_options(max_message_bytes: int = 256 * 1024 * 1024) -> list[tuple[str, int]]:
    return [
        ("grpc.max_receive_message_length", max_message_bytes),
        ("grpc.max_send_message_length", max_message_bytes),
    ]


class TrackerClient:
    """A connection to one tracker server."""

    def __init__(self, address: str) -> None:
        self.address = address
        self._channel = grpc.insecure_channel(address, options=channel_options())
        self._stub = pb_grpc.TrackerStub(self._channel)

    def wait_ready(self, timeout_s: float = 10.0) -> None:
        grpc.channel_ready_future(self._channel).result(timeout=timeout_s)

    def info(self, timeout_s: float = 10.0) -> pb.ServerInfo:
        return self._stub.GetInfo(pb.GetInfoRequest(), timeout=timeout_s)

    def open_session(
        self, config: SessionConfig, mask_encoding: int = pb.RLE, timeout_s: float = 60.0
    ) -> StreamSession:
        """Open a Track stream and wait for the server's ``started`` answer."""
        return StreamSession(self._stub, config, mask_encoding, timeout_s)

    def close(self) -> None:
        self._channel.close()

    def __enter__(self) -> TrackerClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class StreamSession:
    """One open session. ``send_*`` never block on the server; ``recv`` returns answers in order."""

    def __init__(
        self, stub: pb_grpc.TrackerStub, config: SessionConfig, mask_encoding: int, timeout_s: float
    ):
        self._requests: queue.Queue[object] = queue.Queue()
        self._answers: queue.Queue[object] = queue.Queue()
        self._sent_at: dict[int, float] = {}
        self._lock = threading.Lock()
        self._closed = False
        self._requests.put(pb.TrackRequest(open=convert.session_open_to_proto(config, mask_encoding)))
        self._call = stub.Track(self._request_stream())
        try:
            first = next(self._call)
        except grpc.RpcError as exc:
            raise TrackerError(exc.code(), exc.details()) from None
        if first.WhichOneof("kind") != "started":
            self._call.cancel()
            raise TrackerError(
                grpc.StatusCode.INTERNAL, f"expected `started`, got `{first.WhichOneof('kind')}`"
            )
        self.started: pb.SessionStarted = first.started
        if self.started.engine.random_weights:
            logger.warning(
                "the server runs %s with RANDOM WEIGHTS: not for clinical use", self.started.engine.name
            )
        self._receiver = threading.Thread(target=self._receive, name="tracker-recv", daemon=True)
        self._receiver.start()

    @property
    def session_id(self) -> str:
        return self.started.session_id

    def _request_stream(self) -> Iterator[pb.TrackRequest]:
        while True:
            item = self._requests.get()
            if item is _END:
                return
            yield item  # type: ignore[misc]

    def _receive(self) -> None:
        try:
            for response in self._call:
                received = time.monotonic()
                kind = response.WhichOneof("kind")
                if kind == "frame":
                    result = convert.frame_result_from_proto(response.frame)
                    with self._lock:
                        sent = self._sent_at.pop(result.frame_index, received)
                    self._answers.put(ClientResult(result, sent, received))
                elif kind == "prompt_ack":
                    ack = response.prompt_ack
                    self._answers.put(PromptAck(ack.update_id, ack.accepted, ack.message))
        except grpc.RpcError as exc:
            if exc.code() != grpc.StatusCode.CANCELLED or not self._closed:
                self._answers.put(TrackerError(exc.code(), exc.details()))
        self._answers.put(_END)

    def send_frame(self, pixels: np.ndarray, index: int, timestamp_s: float | None = None) -> None:
        message = convert.frame_to_proto(pixels, index, timestamp_s)
        with self._lock:
            self._sent_at[index] = time.monotonic()
        self._requests.put(pb.TrackRequest(frame=message))

    def send_update(self, update: PromptUpdate) -> None:
        self._requests.put(pb.TrackRequest(prompt_update=convert.prompt_update_to_proto(update)))

    def send_raw(self, request: pb.TrackRequest) -> None:
        """Send a request as it is (for tests of the server's input checks)."""
        self._requests.put(request)

    def recv(self, timeout_s: float | None = 60.0) -> ClientResult | PromptAck | None:
        """The next answer; None when the stream has ended; raises TrackerError for an error status."""
        try:
            item = self._answers.get(timeout=timeout_s)
        except queue.Empty:
            raise TimeoutError(f"no answer from the server within {timeout_s} s") from None
        if item is _END:
            self._answers.put(_END)  # keep answering None
            return None
        if isinstance(item, TrackerError):
            raise item
        return item  # type: ignore[return-value]

    def recv_frame(self, timeout_s: float | None = 60.0) -> ClientResult:
        """The next frame answer, skipping prompt acknowledgements."""
        while True:
            item = self.recv(timeout_s)
            if item is None:
                raise TrackerError(
                    grpc.StatusCode.UNAVAILABLE, "the stream ended before the frame was answered"
                )
            if isinstance(item, ClientResult):
                return item

    def close(self) -> list[ClientResult | PromptAck]:
        """Half-close: the server answers what it has, then ends; returns the remaining answers."""
        self._requests.put(_END)
        rest: list[ClientResult | PromptAck] = []
        while (item := self.recv(timeout_s=None)) is not None:
            rest.append(item)
        self._closed = True
        return rest

    def cancel(self) -> None:
        self._closed = True
        self._call.cancel()
        self._requests.put(_END)

    def __enter__(self) -> StreamSession:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        if exc_type is None:
            self.close()
        else:
            self.cancel()
