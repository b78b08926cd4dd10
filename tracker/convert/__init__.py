"""Conversions between ``tracker.v1`` protocol messages and the project's types.

Used by both ends: the servicer decodes requests and encodes responses; the
client encodes requests and decodes responses. Every decoder validates what it
reads and raises :class:`~tracker.types.FrameError`,
:class:`~tracker.types.PromptError` or ``ValueError`` with a message that names
the problem, so that bad input is refused clearly rather than half-processed.

One module per kind of message, each with both directions: :mod:`~tracker.convert.frames`,
:mod:`~tracker.convert.prompts` (masks, prompts, prompt updates),
:mod:`~tracker.convert.session` (the opening message, gating configuration included) and
:mod:`~tracker.convert.results` (frame results, gating decisions, re-prompt events);
:mod:`~tracker.convert.limits` holds what a request may ask and the default budget.
"""

from tracker.convert.frames import PIXEL_DTYPES, frame_from_proto, frame_to_proto
from tracker.convert.limits import (
    DEFAULT_LATENCY_BUDGET_MS,
    DEFAULT_VIDEO_FRAME_RATE_HZ,
    PROTOCOL_VERSION,
    Limits,
    default_budget_ms,
)
from tracker.convert.prompts import (
    mask_from_proto,
    mask_to_proto,
    object_prompt_from_proto,
    object_prompt_to_proto,
    prompt_from_proto,
    prompt_to_proto,
    prompt_update_from_proto,
    prompt_update_to_proto,
)
from tracker.convert.results import (
    frame_result_from_proto,
    frame_result_to_proto,
    gating_decision_from_proto,
    gating_decision_to_proto,
    object_result_from_proto,
    object_result_to_proto,
    reprompt_event_from_proto,
    reprompt_event_to_proto,
)
from tracker.convert.session import (
    gating_config_from_proto,
    gating_config_to_proto,
    geometry_from_proto,
    geometry_to_proto,
    session_config_from_proto,
    session_open_to_proto,
)

__all__ = [
    "DEFAULT_LATENCY_BUDGET_MS",
    "DEFAULT_VIDEO_FRAME_RATE_HZ",
    "PIXEL_DTYPES",
    "PROTOCOL_VERSION",
    "Limits",
    "default_budget_ms",
    "frame_from_proto",
    "frame_result_from_proto",
    "frame_result_to_proto",
    "frame_to_proto",
    "gating_config_from_proto",
    "gating_config_to_proto",
    "gating_decision_from_proto",
    "gating_decision_to_proto",
    "geometry_from_proto",
    "geometry_to_proto",
    "mask_from_proto",
    "mask_to_proto",
    "object_prompt_from_proto",
    "object_prompt_to_proto",
    "object_result_from_proto",
    "object_result_to_proto",
    "prompt_from_proto",
    "prompt_to_proto",
    "prompt_update_from_proto",
    "prompt_update_to_proto",
    "reprompt_event_from_proto",
    "reprompt_event_to_proto",
    "session_config_from_proto",
    "session_open_to_proto",
]
