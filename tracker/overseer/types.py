"""Plain data passed between detectors, the re-prompt policy and the engine wrapper (no torch)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

import cv2
import numpy as np

from tracker.types import Frame

# The overseer detector's architectures (built in tracker.overseer.model).
ARCHS = ("r50", "mbv3", "small")


@dataclass
class Detection:
    """One instance the overseer sees on one frame."""

    label: str  # class name, e.g. "grasper"
    score: float  # detector confidence in [0, 1]
    mask: np.ndarray  # bool (H, W), full frame

    @property
    def area(self) -> int:
        return int(np.count_nonzero(self.mask))


@dataclass
class TrackView:
    """What the tracker says about one object on the frame the overseer looks at."""

    object_id: int
    label: str
    mask: np.ndarray  # bool (H, W)
    score: float  # the engine's presence score in [0, 1]

    @property
    def area(self) -> int:
        return int(np.count_nonzero(self.mask))

    @property
    def present(self) -> bool:
        return self.score >= 0.5 and bool(self.mask.any())


class Detector(Protocol):
    """A frame-wise instance detector: torch Mask R-CNN, its ONNX export, or ground truth.

    ``detect`` may be called from a worker thread (one call at a time per
    session); implementations shared between sessions must be thread-safe.
    """

    name: str

    def detect(self, frame: Frame) -> list[Detection]: ...

    def close(self) -> None: ...


def outputs_to_detections(
    labels: np.ndarray,
    scores: np.ndarray,
    masks: np.ndarray,
    classes: tuple[str, ...],
    score_threshold: float,
    out_hw: tuple[int, int] | None = None,
) -> list[Detection]:
    """Mask R-CNN outputs -> detections (mask probabilities thresholded at 0.5, resized to ``out_hw``)."""
    dets = []
    for label, score, prob in zip(labels, scores, masks, strict=True):
        if score < score_threshold or not 1 <= int(label) <= len(classes):
            continue
        p = prob[0] if prob.ndim == 3 else prob
        if out_hw is not None and p.shape != out_hw:
            p = cv2.resize(p.astype(np.float32), (out_hw[1], out_hw[0]), interpolation=cv2.INTER_LINEAR)
        dets.append(Detection(classes[int(label) - 1], float(score), p >= 0.5))
    return dets
