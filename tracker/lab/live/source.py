"""Where live frames come from: capture devices, stream URLs, video files, image folders.

A :class:`FrameSource` hands out frames one at a time. Recordings (files and
folders, read through :func:`tracker.io.readers.open_sequence`, so DICOM, MHA
and TrackRAD cases work too) are *paced*: the caller sleeps to their frame
rate, as a scanner would deliver them. Devices and network streams are not:
reading blocks until the next frame exists, which is their rate.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence as Seq
from pathlib import Path

import cv2
import numpy as np

from tracker.io.readers import open_sequence
from tracker.types import Geometry, Modality

logger = logging.getLogger(__name__)

DEFAULT_FRAME_RATE_HZ = 10.0  # for recordings that state no rate (image folders)


class FrameSource:
    """A stream of frames; subclasses implement :meth:`read`."""

    frame_rate_hz: float = 0.0  # 0: unknown
    paced: bool = True  # True: the caller sleeps to frame_rate_hz between reads
    modality: Modality = Modality.OTHER
    geometry: Geometry = Geometry()
    name: str = "source"

    def read(self) -> np.ndarray | None:
        """The next frame ((H, W) or (H, W, 3) RGB), or None at the end."""
        raise NotImplementedError

    def prompt_label(self) -> np.ndarray | None:
        """A first-frame label map the recording carries (TrackRAD, DAVIS), else None."""
        return None

    def close(self) -> None:
        """Release the device or file."""


class ArraySource(FrameSource):
    """Frames already in memory (synthetic sources, tests), paced at ``frame_rate_hz``."""

    def __init__(self, frames: Seq[np.ndarray] | np.ndarray, frame_rate_hz: float, name: str = "frames"):
        self._frames = frames
        self._next = 0
        self.frame_rate_hz = float(frame_rate_hz)
        self.name = name

    def read(self) -> np.ndarray | None:
        if self._next >= len(self._frames):
            return None
        frame = np.asarray(self._frames[self._next])
        self._next += 1
        return frame


class SequenceSource(ArraySource):
    """A recording on disk, through the project's readers."""

    def __init__(self, path: Path, frame_rate_hz: float | None = None) -> None:
        self.sequence = open_sequence(Path(path), frame_rate_hz=frame_rate_hz)
        rate = self.sequence.frame_rate_hz
        if rate <= 0:
            logger.warning(
                "%s states no frame rate; playing at %.0f Hz (set --fps)", path, DEFAULT_FRAME_RATE_HZ
            )
            rate = DEFAULT_FRAME_RATE_HZ
        super().__init__(self.sequence.frames, rate, self.sequence.name)
        self.modality = self.sequence.modality
        self.geometry = self.sequence.geometry

    def prompt_label(self) -> np.ndarray | None:
        return self.sequence.prompt_label()

    def close(self) -> None:
        closer = getattr(self.sequence.frames, "close", None)
        if closer is not None:
            closer()


class CaptureSource(FrameSource):
    """A capture device (index) or a stream URL OpenCV can open; reads block at the source's rate."""

    paced = False

    def __init__(self, spec: int | str, frame_rate_hz: float | None = None) -> None:
        self._cap = cv2.VideoCapture(spec)
        if not self._cap.isOpened():
            raise ValueError(f"OpenCV cannot open the capture source {spec!r}")
        reported = float(self._cap.get(cv2.CAP_PROP_FPS) or 0.0)
        self.frame_rate_hz = float(frame_rate_hz or (reported if 0 < reported <= 1000 else 0.0))
        self.name = f"device {spec}" if isinstance(spec, int) else str(spec)

    def read(self) -> np.ndarray | None:
        ok, bgr = self._cap.read()
        if not ok or bgr is None:
            return None
        if bgr.ndim == 2:
            return bgr
        return cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)

    def close(self) -> None:
        self._cap.release()


def open_source(spec: str | int | Path, frame_rate_hz: float | None = None) -> FrameSource:
    """A device index (``0``), a stream URL (``rtsp://...``), or a video file / image folder path."""
    if isinstance(spec, int) or (isinstance(spec, str) and spec.isdigit()):
        return CaptureSource(int(spec), frame_rate_hz)
    text = str(spec)
    if "://" in text:
        return CaptureSource(text, frame_rate_hz)
    path = Path(text)
    if not path.exists():
        raise FileNotFoundError(f"{path}: no such file or folder (and not a device index or URL)")
    return SequenceSource(path, frame_rate_hz)
