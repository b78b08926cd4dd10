"""Video files through OpenCV: short clips decoded up front, long ones streamed lazily."""

from __future__ import annotations

import logging
import math
from pathlib import Path

import cv2
import numpy as np

from tracker.io.common import LazyFrames, stem_of
from tracker.io.sequence import Sequence
from tracker.types import Modality

logger = logging.getLogger(__name__)

PRELOAD_VIDEO_BYTES = 256 * 2**20  # decode clips up to this size up front; stream longer ones


class VideoFrames(LazyFrames):
    """Lazy RGB frames of a video file: sequential reads stream, jumps seek, recent frames cache.

    OpenCV's capture is not thread-safe; :class:`LazyFrames` calls the loader under its
    lock. Short forward jumps decode through (exact); long jumps use ``CAP_PROP_POS_FRAMES``.
    """

    _FORWARD_DECODE_LIMIT = 48

    def __init__(self, path: Path, cache_size: int = 16) -> None:
        self.path = Path(path)
        self._cap = cv2.VideoCapture(str(self.path))
        if not self._cap.isOpened():
            raise ValueError(f"{self.path}: OpenCV cannot open this video")
        self._next = 0  # index the next cap.read() returns
        width = int(self._cap.get(cv2.CAP_PROP_FRAME_WIDTH))
        height = int(self._cap.get(cv2.CAP_PROP_FRAME_HEIGHT))
        count = self._verified_count(int(self._cap.get(cv2.CAP_PROP_FRAME_COUNT)))
        super().__init__(count, self._decode, (height, width, 3), np.dtype(np.uint8), cache_size)

    def _verified_count(self, reported: int) -> int:
        """Containers estimate frame counts from duration; check the last one decodes, else count."""
        if reported > 0 and self._read_at(reported - 1) is not None:
            return reported
        logger.info("%s: container frame count %d is unreliable; counting frames", self.path, reported)
        self._cap.set(cv2.CAP_PROP_POS_FRAMES, 0)
        count = 0
        while self._cap.grab():
            count += 1
        self._cap.set(cv2.CAP_PROP_POS_FRAMES, 0)
        self._next = 0
        if count == 0:
            raise ValueError(f"{self.path}: video has no decodable frames")
        return count

    def _read_at(self, index: int) -> np.ndarray | None:
        if index != self._next:
            if self._next < index <= self._next + self._FORWARD_DECODE_LIMIT:
                while self._next < index and self._cap.grab():
                    self._next += 1
            else:
                self._cap.set(cv2.CAP_PROP_POS_FRAMES, index)
                self._next = index
        ok, bgr = self._cap.read()
        if not ok or bgr is None:
            self._next = -1  # position unknown: seek next time
            return None
        self._next = index + 1
        return cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)

    def _decode(self, index: int) -> np.ndarray:
        frame = self._read_at(index)
        if frame is None:
            raise IndexError(f"{self.path}: frame {index} could not be decoded")
        return frame

    def close(self) -> None:
        with self._lock:
            self._cap.release()

    def __del__(self) -> None:
        cap = getattr(self, "_cap", None)
        if cap is not None:
            cap.release()


def read_video(
    path: Path,
    frame_rate_hz: float | None = None,
    *,
    preload: bool | None = None,
    modality: Modality = Modality.OTHER,
) -> Sequence:
    """Read any video OpenCV can open, as RGB uint8 frames.

    ``preload=None`` decodes clips up to :data:`PRELOAD_VIDEO_BYTES` into one
    array and streams longer ones through :class:`VideoFrames`. The frame
    rate is ``frame_rate_hz`` or the container's (0 when it reports none).
    ``modality`` defaults to OTHER; pass ENDOSCOPY for surgical video.
    """
    path = Path(path)
    cap = cv2.VideoCapture(str(path))
    try:
        if not cap.isOpened():
            raise ValueError(f"{path}: OpenCV cannot open this video")
        fps = float(cap.get(cv2.CAP_PROP_FPS) or 0.0)
        count = int(cap.get(cv2.CAP_PROP_FRAME_COUNT))
        width, height = int(cap.get(cv2.CAP_PROP_FRAME_WIDTH)), int(cap.get(cv2.CAP_PROP_FRAME_HEIGHT))
        fourcc = int(cap.get(cv2.CAP_PROP_FOURCC))
        if preload is None:
            preload = 0 < count * width * height * 3 <= PRELOAD_VIDEO_BYTES
        frames: np.ndarray | VideoFrames
        if preload:
            decoded = []
            while True:
                ok, bgr = cap.read()
                if not ok or bgr is None:
                    break
                decoded.append(cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB))
            if not decoded:
                raise ValueError(f"{path}: video has no decodable frames")
            frames = np.stack(decoded)
    finally:
        cap.release()
    if not preload:
        frames = VideoFrames(path)

    rate_source = "container"
    if frame_rate_hz is not None:
        fps, rate_source = float(frame_rate_hz), "argument"
    elif not (math.isfinite(fps) and 0 < fps <= 1000):
        logger.warning("%s: container reports no usable frame rate (%s); frame rate unknown", path, fps)
        fps, rate_source = 0.0, "unknown"
    codec = "".join(chr((fourcc >> (8 * i)) & 0xFF) for i in range(4)) if fourcc > 0 else ""
    return Sequence(
        name=stem_of(path),
        frames=frames,
        frame_rate_hz=fps,
        modality=modality,
        source_path=path,
        kind="video",
        metadata={
            "frame_rate_source": rate_source,
            "codec": codec.strip("\x00"),
            "container_frame_count": count,
            "lazy": not preload,
        },
    )


# --------------------------------------------------------------------------- image folders
