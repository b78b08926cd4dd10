"""What a replay produces: its options, one record per frame, and each case's result.

Plain data, apart from :mod:`tracker.lab.replay.run` (which makes them) so that the report
builders (:mod:`tracker.lab.replay.gating_report`) can name them without importing the replay.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import numpy as np

from tracker.gating.types import BeamState
from tracker.io.sequence import Sequence
from tracker.lab.scoring import metrics
from tracker.lab.scoring import objects as overseer_scoring
from tracker.types import BudgetPolicy, FrameStatus, RepromptEvent

Rate = Literal["realtime", "max"]


@dataclass(frozen=True)
class ReplayOptions:
    rate: Rate = "max"
    engine: str = ""  # empty: the server's default
    engine_options: dict[str, str] = field(default_factory=dict)
    latency_budget_ms: float | None = None  # None: 1000 ms for cine-MRI, one frame interval for video
    budget_policy: BudgetPolicy = BudgetPolicy.LATEST  # what the session does when late (docs/budgets.md)
    out_masks: Path | None = None
    # How out_masks is laid out (tracker.io.challenge_layout): "native", "trackrad" (TrackRAD2025's
    # Grand-Challenge job outputs and predictions.json) or "davis2017" (davis2017-evaluation's layout).
    out_masks_layout: str = "native"
    first_mask: Path | None = None
    frame_rate_hz: float | None = None  # override for sources that do not state it
    progress: bool = True
    # Overseer (tracker.overseer) for the in-process server: "" none, "oracle" (ground truth of
    # each sequence), "guard" (flow drift guard) or a W.pt / W.onnx detector.
    overseer: str = ""
    overseer_options: dict[str, str] = field(default_factory=dict)  # PolicyConfig knobs, e.g. persist_runs=3
    # Beam gating (cine-MRI): a window of this many mm around each object's reference; None: off.
    gating_margin_mm: float | None = None
    gating_guard_mm: float | None = None  # beam on only this far inside the margin; None: the gate's default
    beam_latency_ms: float = 0.0  # added to the measured latency to make the prediction horizon
    prediction_horizon_ms: float = (
        0.0  # > 0: a fixed horizon instead (e.g. 300 to compare with TrackRAD teams)
    )
    predictor: str = "kalman"
    # Uncertainty-aware gating (tracker.gating.gate): the rule and its knobs; None: the gate's defaults.
    gating_rule: str = "centroid"  # or "mask": >= min_inside_fraction of the target inside the boundary
    # The window's reference (tracker.gating.reference): "first_frame", or "end_exhale" as a planner
    # sets it on a reference image (needs ground truth); the gate and the oracle get the same one.
    gating_reference: str = "first_frame"
    min_inside_fraction: float = 0.95
    min_confidence: float | None = None
    guard_sigmas: float | None = None
    confidence_error_mm: float | None = None
    min_checked_forecasts: int | None = None
    # TrackRAD2025 challenge mode: the headline Dice/HD95/centroid are the challenge's (frames
    # with empty ground truth dropped, distances in px, empty predictions penalised max(H, W)).
    challenge_mode: bool = False


@dataclass
class FrameRecord:
    index: int
    status: FrameStatus
    end_to_end_ms: float
    server_ms: float
    message: str = ""
    reprompts: list[RepromptEvent] = field(default_factory=list)  # overseer decisions on this frame
    beam: BeamState | None = None  # gating sessions: the decision on this frame
    # Per object: (measured centroid mm, predicted mm, horizon ms), for answered frames.
    positions: dict[int, tuple[tuple[float, ...], tuple[float, ...] | None, float]] = field(
        default_factory=dict
    )
    confidences: dict[int, float] = field(default_factory=dict)  # per object, where reported
    hold_cause: str = ""  # gating: why the beam was held (tracker.gating.gate.HOLD_CAUSES)
    guard_mm: float = 0.0  # gating: the guard band in force
    degradations: list[str] = field(default_factory=list)  # DEGRADE policy: the trades in force
    # From send_frame to the server's receipt of the frame (client queue, serialisation,
    # transport), where client and server share a clock (a loopback server); else None.
    to_server_ms: float | None = None


@dataclass
class CaseResult:
    sequence: Sequence
    records: list[FrameRecord]
    predictions: np.ndarray  # (T, H, W) integer label maps
    scores: dict[int, metrics.SequenceScores]  # per object id, where ground truth exists
    budget_ms: float
    # Per ground-truth object: class, associated tracks, entry/exit frames and delays.
    outcomes: dict[int, overseer_scoring.ObjectOutcome] = field(default_factory=dict)
    gating_margin_mm: float | None = None
    options: ReplayOptions = field(default_factory=ReplayOptions)
