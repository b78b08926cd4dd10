"""Replay recorded sequences through the real gRPC API and score them.

:mod:`tracker.replay.records` holds the data (options, per-frame records, case results);
:mod:`tracker.replay.run` streams and scores (see its docstring for the two pacing modes).
"""

from tracker.replay.records import CaseResult, FrameRecord, Rate, ReplayOptions
from tracker.replay.run import cine_blocks, connect, replay, replay_sequence, summary_report

__all__ = [
    "CaseResult",
    "FrameRecord",
    "Rate",
    "ReplayOptions",
    "cine_blocks",
    "connect",
    "replay",
    "replay_sequence",
    "summary_report",
]
