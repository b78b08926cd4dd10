"""The protocol's version, what one request may ask of the server, and the default latency budget."""

from __future__ import annotations

from dataclasses import dataclass

from tracker.types import Modality

PROTOCOL_VERSION = "tracker.v1"
DEFAULT_LATENCY_BUDGET_MS = 1000.0  # cine-MRI: the TrackRAD2025 limit per frame
DEFAULT_VIDEO_FRAME_RATE_HZ = 30.0  # endoscopy without a stated rate


def default_budget_ms(modality: Modality, frame_rate_hz: float) -> float:
    """The budget when a client states none: 1 s for cine-MRI, one frame interval for video."""
    if modality is Modality.CINE_MRI:
        return DEFAULT_LATENCY_BUDGET_MS
    if frame_rate_hz > 0:
        return 1000.0 / frame_rate_hz
    if modality is Modality.ENDOSCOPY:
        return 1000.0 / DEFAULT_VIDEO_FRAME_RATE_HZ
    return DEFAULT_LATENCY_BUDGET_MS


@dataclass(frozen=True)
class Limits:
    """What one request may ask of the server; each refusal names the limit."""

    max_frame_pixels: int = 4096 * 4096
    max_objects_per_session: int = 64
    max_prompt_points: int = 256
    max_sessions: int = 32
    max_message_bytes: int = 256 * 1024 * 1024
