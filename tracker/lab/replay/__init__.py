"""Replay recorded sequences through the real gRPC API and score them.

:mod:`tracker.lab.replay.records` holds the data (options, per-frame records, case results);
:mod:`tracker.lab.replay.run` streams and scores (see its docstring for the two pacing modes);
:mod:`tracker.lab.replay.gating_report` scores a cine case's gating and confidence.
"""

from tracker.lab.replay.records import CaseResult, FrameRecord, Rate, ReplayOptions
from tracker.lab.replay.run import case_report, cine_blocks, connect, replay, replay_sequence, summary_report

__all__ = [
    "CaseResult",
    "FrameRecord",
    "Rate",
    "ReplayOptions",
    "case_report",
    "cine_blocks",
    "connect",
    "replay",
    "replay_sequence",
    "summary_report",
]
