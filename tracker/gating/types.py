"""The gating vocabulary: beam states, decisions, the configuration and its checks.

Kept apart from :mod:`tracker.gating.gate` (the logic) so that :mod:`tracker.types` can name
these in its annotations without importing a feature.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass

import numpy as np

from tracker.gating.predictor import make_predictor


class BeamState(enum.Enum):
    ON = "BEAM_ON"
    HOLD = "BEAM_HOLD"


@dataclass(frozen=True)
class GatingDecision:
    state: BeamState
    reason: str
    frame_index: int | None = None  # None: decided without a frame (a stalled stream)
    cause: str = ""  # HOLD: one of HOLD_CAUSES; BEAM_ON: ""
    guard_mm: float = 0.0  # the guard band in force for this decision (largest over the gated objects)


# Why a HOLD was decided, as a short code (the reason gives the figures).
HOLD_CAUSES = (
    "frame_status",  # the frame was DROPPED, LATE or ERROR
    "not_tracked",  # a gated object is missing from the answer, or none is gated
    "lost",  # empty mask, presence score too low, or no prediction yet
    "warming_up",  # too few forecasts checked yet to know the prediction error
    "low_confidence",  # tracking confidence under min_confidence
    "outside",  # the prediction is outside the window itself
    "guard_band",  # inside the window, but within the estimated error of its edge
    "stalled",  # no frame answered for the stall timeout
    "stale",  # the client got the answer later than its max_answer_age_ms after sending the frame
)
RULES = ("centroid", "mask")


@dataclass(frozen=True)
class GatingConfig:
    margin_mm: float = 3.0  # window: a sphere of this radius around each reference position
    # The beam stays on only while the predicted position is this far inside the margin:
    # a guard band for tracking and prediction error, traded against duty cycle. guard_mm is
    # the tracking error that confidence does not see, one of the estimated error's terms and
    # the guard's floor: flow's centroid error on the hard tuning set is about 0.5 mm RMS
    # whatever its confidence (bench/tune_gating.py --diagnose).
    guard_mm: float = 0.5  # the smallest guard band (mm); the estimated error can widen it
    window_mask: np.ndarray | None = None  # or: a mask in the image (bool H x W); implies rule "mask"
    min_inside_fraction: float = 0.95  # mask rule: share of the object that must lie inside
    rule: str = "centroid"  # "centroid" or "mask" (see the module docstring)
    # Uncertainty: hold under this tracking confidence; widen the guard to this many
    # estimated standard errors; the tracking error (mm) that confidence 0 stands for.
    # guard_sigmas, confidence_error_mm and min_checked_forecasts were chosen on the hard tuning
    # set only (bench/tune_gating.py, guard_mm at its calibrated 0.5): the largest mean
    # duty/oracle with no beam-on-outside frame at 50, 100 and 200 ms latency, with the window at
    # end-exhale and at the first frame alike.
    min_confidence: float = 0.5
    guard_sigmas: float = 1.0
    confidence_error_mm: float = 2.0
    # Hold until this many forecasts were checked against measurements, from the start and
    # after every doubtful frame: before that the prediction error (and so the guard) is
    # unknown, and doubt holds the beam.
    min_checked_forecasts: int = 1
    min_presence: float = 0.5  # presence score under which the object counts as lost
    stall_timeout_ms: float = 500.0  # hold when no frame has been answered for this long
    beam_latency_ms: float = 0.0  # added to the measured latency to make the horizon
    horizon_ms: float = 0.0  # > 0: a fixed prediction horizon instead of latency + beam latency
    predictor: str = "kalman"
    object_ids: tuple[int, ...] = ()  # objects that gate the beam; empty: all

    def __post_init__(self) -> None:
        if not np.isfinite(self.margin_mm) or self.margin_mm <= 0:
            raise ValueError(f"gating margin must be a positive number of mm, got {self.margin_mm}")
        if not 0 <= self.guard_mm < self.margin_mm:
            raise ValueError(
                f"gating guard must lie in [0, margin), got {self.guard_mm} mm for {self.margin_mm} mm"
            )
        if self.guard_sigmas * self.guard_mm >= self.margin_mm:  # guard_mm is also an error term
            raise ValueError(
                f"guard_sigmas x guard_mm ({self.guard_sigmas:g} x {self.guard_mm:g} mm) must be under the"
                f" {self.margin_mm:g} mm margin: the guard band would cover the whole window"
            )
        if not 0 < self.min_inside_fraction <= 1:
            raise ValueError(f"min_inside_fraction must be in (0, 1], got {self.min_inside_fraction}")
        if self.rule not in RULES:
            raise ValueError(f"gating rule must be one of {', '.join(RULES)}, got {self.rule!r}")
        if not 0 <= self.min_confidence <= 1:
            raise ValueError(f"min_confidence must be in [0, 1], got {self.min_confidence}")
        if not (np.isfinite(self.guard_sigmas) and self.guard_sigmas >= 0):
            raise ValueError(f"guard_sigmas must be a number >= 0, got {self.guard_sigmas}")
        if self.min_checked_forecasts < 0:
            raise ValueError(f"min_checked_forecasts must be >= 0, got {self.min_checked_forecasts}")
        if not (np.isfinite(self.confidence_error_mm) and self.confidence_error_mm >= 0):
            raise ValueError(f"confidence_error_mm must be a number >= 0, got {self.confidence_error_mm}")
        if self.stall_timeout_ms <= 0:
            raise ValueError(f"stall timeout must be positive, got {self.stall_timeout_ms} ms")
        make_predictor(self.predictor)  # validates the name

    @property
    def mask_rule(self) -> bool:
        return self.rule == "mask" or self.window_mask is not None
