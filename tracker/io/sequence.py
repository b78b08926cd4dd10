"""A recorded sequence, whatever file format it came from."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

import numpy as np

from tracker.types import Geometry, Modality


class FrameSource(Protocol):
    """Indexable frames; a NumPy array of shape (T, H, W[, 3]) is one."""

    def __len__(self) -> int: ...

    def __getitem__(self, index: int) -> np.ndarray: ...


@dataclass
class Sequence:
    """Frames plus what is known about them.

    ``labels`` and ``first_label`` are integer label maps: 0 is background and
    value ``k`` marks object ``k`` (a single target is 1). ``labels`` holds the
    ground truth of every frame when it is known.
    """

    name: str
    frames: FrameSource  # (T, H, W) or (T, H, W, 3)
    frame_rate_hz: float
    modality: Modality = Modality.OTHER
    geometry: Geometry = field(default_factory=Geometry)
    first_label: np.ndarray | None = None  # (H, W) integer label map used as the prompt
    labels: FrameSource | None = None  # (T, H, W) integer label maps, ground truth
    timestamps_s: np.ndarray | None = None  # acquisition times; None: index / frame_rate_hz
    source_path: Path | None = None
    kind: str = ""  # "trackrad", "itk", "dicom", "video", "images", "davis"
    metadata: dict[str, object] = field(default_factory=dict)

    def __len__(self) -> int:
        return len(self.frames)

    def __iter__(self) -> Iterator[np.ndarray]:
        for i in range(len(self.frames)):
            yield self.frames[i]

    @property
    def shape_hw(self) -> tuple[int, int]:
        first = self.frames[0]
        return int(first.shape[0]), int(first.shape[1])

    def timestamp(self, index: int) -> float:
        """Acquisition time of frame ``index`` in seconds from the first frame."""
        if self.timestamps_s is not None:
            return float(self.timestamps_s[index] - self.timestamps_s[0])
        return index / self.frame_rate_hz if self.frame_rate_hz > 0 else 0.0

    def prompt_label(self) -> np.ndarray | None:
        """The label map the tracker is prompted with: ``first_label`` or frame 0 of ``labels``."""
        if self.first_label is not None:
            return self.first_label
        if self.labels is not None:
            return np.asarray(self.labels[0])
        return None

    def object_ids(self) -> list[int]:
        label = self.prompt_label()
        if label is None:
            return []
        return [int(v) for v in np.unique(label) if v != 0]
