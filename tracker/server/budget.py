"""The budget side of a session, free of threads and gRPC: when a frame's budget starts, and how
the ``DEGRADE`` policy trades accuracy for time.

The budget runs from the frame's acquisition time when the client gives one
(:class:`AcquisitionClock`), otherwise from its arrival. The policies as a whole are
described in :mod:`tracker.server.session`.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

from tracker.types import Frame, FrameResult, FrameStatus, FrameTiming, TimestampClock


@dataclass
class Arrival:
    """A decoded frame, when it reached the server and when it was acquired."""

    frame: Frame
    received_mono: float  # time.monotonic() at arrival, for durations
    received_wall: float  # time.time() at arrival, reported to the client
    decode_ms: float = 0.0
    acquired_mono: float | None = None  # acquisition time on the monotonic clock, when known

    @property
    def deadline_origin(self) -> float:
        """Where the budget starts: acquisition when known, else arrival."""
        return self.acquired_mono if self.acquired_mono is not None else self.received_mono


class AcquisitionClock:
    """Maps a client's acquisition timestamps onto this server's monotonic clock.

    With ``UNIX`` timestamps the clocks are taken as synchronised. With
    ``RELATIVE`` ones (any client clock), the offset is the smallest
    ``arrival - timestamp`` seen so far: the fastest frame is assumed to have
    had no delay, so later frames are charged for every extra millisecond they
    spent in the client, the network or the server. That under-counts a constant
    transport delay, never the queueing the budget is about.
    """

    def __init__(self, mode: TimestampClock) -> None:
        self.mode = mode
        self._offset_s: float | None = None

    def acquired_mono(
        self, timestamp_s: float | None, received_mono: float, received_wall: float
    ) -> float | None:
        if timestamp_s is None:
            return None
        if self.mode is TimestampClock.UNIX:
            age_s = max(0.0, received_wall - timestamp_s)
        else:
            offset = received_mono - timestamp_s
            if self._offset_s is None or offset < self._offset_s:
                self._offset_s = offset
            age_s = offset - self._offset_s
        return received_mono - age_s


@dataclass
class DegradeController:
    """Chooses how many of an engine's degradation steps are in force.

    Escalates one step when an answer uses more than ``high`` of the budget (or a
    frame had to be dropped); relaxes one step after ``patience`` answers in a row
    under ``low`` of it. The hysteresis keeps it from flapping on every frame.
    """

    steps: tuple[str, ...]
    budget_ms: float
    high: float = 0.85
    low: float = 0.5
    patience: int = 10
    level: int = 0
    reason: str = ""
    _calm: int = 0

    def update(self, frame_index: int, total_ms: float, dropped: int) -> bool:
        """Record one answer; return True when the level changed."""
        if total_ms > self.high * self.budget_ms or dropped:
            self._calm = 0
            if self.level < len(self.steps):
                self.level += 1
                cause = f"{dropped} frame(s) dropped" if dropped else f"{total_ms:.1f} ms"
                self.reason = (
                    f"frame {frame_index}: {cause} against a budget of {self.budget_ms:.1f} ms;"
                    f" now: {self.steps[self.level - 1]}"
                )
                return True
            return False
        if total_ms < self.low * self.budget_ms and self.level > 0:
            self._calm += 1
            if self._calm >= self.patience:
                self._calm = 0
                self.level -= 1
                self.reason = (
                    f"frame {frame_index}: {self.patience} answers under {self.low:.0%} of the budget;"
                    f" relaxed to level {self.level}"
                )
                return True
        else:
            self._calm = 0
        return False

    @property
    def active(self) -> list[str]:
        return list(self.steps[: self.level])


def unprocessed_result(arrival: Arrival, status: FrameStatus, message: str) -> FrameResult:
    now = time.monotonic()
    waited_ms = (now - arrival.received_mono) * 1000.0
    return FrameResult(
        frame_index=arrival.frame.index,
        status=status,
        message=message,
        timing=FrameTiming(
            receive_time_s=arrival.received_wall,
            queue_ms=waited_ms,
            total_ms=waited_ms,
            since_acquisition_ms=(now - arrival.acquired_mono) * 1000.0 if arrival.acquired_mono else 0.0,
        ),
    )


def error_result(frame_index: int, message: str, received_wall: float, received_mono: float) -> FrameResult:
    elapsed_ms = (time.monotonic() - received_mono) * 1000.0
    return FrameResult(
        frame_index=frame_index,
        status=FrameStatus.ERROR,
        message=message,
        timing=FrameTiming(receive_time_s=received_wall, total_ms=elapsed_ms),
    )
