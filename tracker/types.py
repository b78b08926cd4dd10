"""The project's own types: what flows between the pipeline stages.

These are plain dataclasses, independent of the wire protocol (``tracker.v1``)
and of any engine. The servicer converts protocol messages to these types and
back; engines, readers, metrics and replay only ever see these.

Conventions used everywhere in the project:

* Images are NumPy arrays indexed ``[row, column]`` (``[y, x]``), shape
  ``(H, W)`` for single-channel frames or ``(H, W, 3)`` for RGB.
* Masks are ``bool`` arrays of shape ``(H, W)``.
* Pixel coordinates are ``x`` (column, rightwards) and ``y`` (row, downwards);
  the centre of the top-left pixel is ``(0, 0)``.
* Boxes are ``(x0, y0, x1, y1)`` in pixels with ``x1``/``y1`` exclusive, so a
  box around the single pixel (3, 4) is ``(3, 4, 4, 5)``.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:  # annotations only: tracker.types imports no feature
    from tracker.gating.types import GatingConfig, GatingDecision


class Modality(enum.Enum):
    CINE_MRI = "cine_mri"
    ENDOSCOPY = "endoscopy"
    OTHER = "other"


class FrameStatus(enum.Enum):
    OK = "OK"
    LATE = "LATE"  # processed, but the result missed the session's budget
    DROPPED = "DROPPED"  # skipped: a newer frame was already waiting
    ERROR = "ERROR"  # this frame could not be processed; see the message
    LOST = "LOST"  # client-side only: the session died (or was being replaced) before an answer


class BudgetPolicy(enum.Enum):
    """What a session does when it falls behind its latency budget."""

    LATEST = "latest"  # answer stale waiting frames DROPPED, process the newest
    DEGRADE = "degrade"  # as LATEST, plus step-wise accuracy-for-time trades
    STRICT = "strict"  # never hold a frame for a newer one; unmakeable frames are answered LATE


class TimestampClock(enum.Enum):
    RELATIVE = "relative"  # client clock, aligned by the fastest observed transit
    UNIX = "unix"  # a wall clock synchronised with the server's


class PromptError(ValueError):
    """A prompt or prompt update that cannot be applied (names the problem)."""


class FrameError(ValueError):
    """A frame that cannot be processed (names the problem)."""


@dataclass(frozen=True)
class Geometry:
    """Where pixels lie in patient (or room) coordinates, in millimetres.

    Follows DICOM/ITK: the centre of pixel (x, y) lies at
    ``origin + x * spacing[0] * x_direction + y * spacing[1] * y_direction``.
    ``x_direction`` is the unit vector along which the column index increases,
    ``y_direction`` the one along which the row index increases (DICOM's
    ImageOrientationPatient, first and second triple).
    """

    spacing_mm: tuple[float, float] = (1.0, 1.0)
    origin_mm: tuple[float, float, float] = (0.0, 0.0, 0.0)
    x_direction: tuple[float, float, float] = (1.0, 0.0, 0.0)
    y_direction: tuple[float, float, float] = (0.0, 1.0, 0.0)

    def __post_init__(self) -> None:
        if len(self.spacing_mm) != 2 or any(not np.isfinite(s) or s <= 0 for s in self.spacing_mm):
            raise ValueError(f"pixel spacing must be two positive numbers, got {self.spacing_mm}")
        for name in ("origin_mm", "x_direction", "y_direction"):
            value = getattr(self, name)
            if len(value) != 3 or not all(np.isfinite(v) for v in value):
                raise ValueError(f"{name} must be three finite numbers, got {value}")
        for name in ("x_direction", "y_direction"):
            norm = float(np.linalg.norm(getattr(self, name)))
            if abs(norm - 1.0) > 1e-3:
                raise ValueError(f"{name} must be a unit vector, has length {norm:.4f}")

    def pixel_to_mm(self, x: float, y: float) -> tuple[float, float, float]:
        """Patient coordinates (mm) of the point at pixel coordinates (x, y)."""
        p = (
            np.asarray(self.origin_mm)
            + x * self.spacing_mm[0] * np.asarray(self.x_direction)
            + y * self.spacing_mm[1] * np.asarray(self.y_direction)
        )
        return (float(p[0]), float(p[1]), float(p[2]))


@dataclass(frozen=True)
class MaskPrompt:
    mask: np.ndarray  # bool (H, W)


@dataclass(frozen=True)
class BoxPrompt:
    x0: float
    y0: float
    x1: float
    y1: float


@dataclass(frozen=True)
class PointsPrompt:
    points: np.ndarray  # float (N, 2) of (x, y) pixel coordinates
    labels: np.ndarray  # int (N,): 1 foreground, 0 background


Prompt = MaskPrompt | BoxPrompt | PointsPrompt


@dataclass(frozen=True)
class ObjectPrompt:
    """An object as the client names it, with the prompt that defines it."""

    object_id: int  # the client's stable id; engines map it to their own slots
    prompt: Prompt
    label: str = ""  # optional class label, e.g. "tumour" or "grasper"
    reference_mm: tuple[float, float, float] | None = None  # gating: planned position


class UpdateAction(enum.Enum):
    ADD = "add"
    REMOVE = "remove"
    CORRECT = "correct"


@dataclass(frozen=True)
class PromptUpdate:
    """Add, remove or correct one object; applies to the next frame processed."""

    action: UpdateAction
    object_id: int
    prompt: Prompt | None = None  # required for ADD and CORRECT
    label: str = ""
    update_id: int = 0
    reference_mm: tuple[float, float, float] | None = None  # gating: a new planned position


@dataclass
class Frame:
    """One acquired frame as it enters the pipeline."""

    index: int
    pixels: np.ndarray  # (H, W) or (H, W, 3): uint8, uint16, int16 or float32
    timestamp_s: float | None = None  # acquisition time on the client's clock

    @property
    def shape_hw(self) -> tuple[int, int]:
        return int(self.pixels.shape[0]), int(self.pixels.shape[1])


@dataclass
class ObjectTrack:
    """What an engine says about one object on one frame."""

    object_id: int
    mask: np.ndarray  # bool (H, W), full frame
    score: float  # presence score in [0, 1]
    # Tracking confidence in [0, 1]: how far this mask can be trusted (each engine documents
    # how it computes it, see docs/validation.md); None: the engine does not estimate one,
    # and the presence score stands in for it.
    confidence: float | None = None

    @property
    def present(self) -> bool:
        return self.score >= 0.5 and bool(self.mask.any())


@dataclass
class ObjectResult:
    """One object's answer for one frame, after post-processing."""

    object_id: int
    label: str
    mask: np.ndarray  # bool (H, W)
    score: float
    present: bool
    area_px: int
    box: tuple[float, float, float, float] | None  # (x0, y0, x1, y1), None when empty
    centroid_px: tuple[float, float] | None  # (x, y), None when empty
    centroid_mm: tuple[float, float, float] | None
    # Gating sessions (cine-MRI): patient-space box corners (x0, y0) and (x1, y1), the
    # displacement of the centroid from the object's reference, and the position
    # predicted ``prediction_horizon_ms`` after acquisition.
    box_mm: tuple[float, ...] | None = None
    displacement_mm: tuple[float, float, float] | None = None
    predicted_mm: tuple[float, float, float] | None = None
    prediction_horizon_ms: float = 0.0
    confidence: float | None = None  # tracking confidence in [0, 1]; None: not reported (gating holds)


@dataclass
class FrameTiming:
    """Server-side timings of one frame, milliseconds unless named otherwise."""

    receive_time_s: float = 0.0  # server wall clock (Unix seconds) when the frame arrived
    queue_ms: float = 0.0  # arrival until processing started
    compute_ms: float = 0.0  # decode + preprocess + inference + postprocess
    total_ms: float = 0.0  # arrival until the answer was ready
    stages_ms: dict[str, float] = field(default_factory=dict)
    since_acquisition_ms: float = 0.0  # acquisition until the answer; 0 when the frame had no timestamp
    batch_size: int = 0  # frames in the engine call that computed this one; 0: not computed


@dataclass(frozen=True)
class RepromptEvent:
    """One decision of the overseer (:mod:`tracker.overseer`): what it changed on which object, and why.

    Reported in the response of the frame on which the decision was taken; the
    prompt update it implies applies to the next frame processed.
    """

    object_id: int
    label: str = ""  # the object's class, e.g. "grasper"
    reason: str = ""  # "enter", "leave", "drift", "duplicate" or "guard"
    action: str = ""  # "add", "remove" or "correct"
    observed_frame: int = 0  # the frame the overseer looked at (earlier than this one when it ran async)
    score: float = 0.0  # the detection score behind the decision (0 when none)
    iou: float = 0.0  # tracker/overseer mask agreement behind the decision (0 when none)
    message: str = ""


@dataclass
class FrameResult:
    frame_index: int
    status: FrameStatus
    objects: list[ObjectResult] = field(default_factory=list)
    timing: FrameTiming = field(default_factory=FrameTiming)
    message: str = ""
    applied_update_ids: list[int] = field(default_factory=list)
    degradations: list[str] = field(default_factory=list)  # DEGRADE policy: steps in force, mildest first
    degradation_reason: str = ""
    reprompts: list[RepromptEvent] = field(default_factory=list)  # overseer decisions
    gating: GatingDecision | None = None  # gating sessions only


@dataclass(frozen=True)
class SessionConfig:
    """Everything a client states when it opens a session."""

    modality: Modality = Modality.OTHER
    engine: str = ""  # empty: the server's default engine
    engine_options: dict[str, str] = field(default_factory=dict)
    objects: tuple[ObjectPrompt, ...] = ()
    latency_budget_ms: float = 1000.0
    frame_rate_hz: float = 0.0  # 0: unknown
    geometry: Geometry = field(default_factory=Geometry)
    image_size: tuple[int, int] | None = None  # (H, W) when declared up front
    client_name: str = ""
    budget_policy: BudgetPolicy = BudgetPolicy.LATEST
    timestamp_clock: TimestampClock = TimestampClock.RELATIVE
    gating: GatingConfig | None = None  # MR-linac beam gating; None: off


@dataclass(frozen=True)
class PromptAck:
    """The answer to one prompt update: accepted (applies to the next frame) or refused."""

    update_id: int
    accepted: bool
    message: str = ""
