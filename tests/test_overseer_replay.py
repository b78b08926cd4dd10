"""End to end: a synthetic surgical sequence replayed over gRPC with and without the oracle overseer.

The overseer's targets: with the oracle overseer, instruments that enter are
tracked within m+1 frames and those that leave are dropped within m+1 frames;
without it, what enters is missed. Engine: ``flow`` (the wrapper is engine-agnostic).
"""

from __future__ import annotations

import numpy as np
import pytest

from tracker.lab.replay import ReplayOptions, replay
from tracker.lab.scoring.objects import judge_reprompts
from tracker.lab.synth.surgical import write_sequence

M = 3


@pytest.fixture(scope="module")
def sequence_dir(tmp_path_factory: pytest.TempPathFactory):
    out = tmp_path_factory.mktemp("surgical") / "case"
    write_sequence(out, 60, seed=1, height=96, width=128)
    return out


@pytest.fixture(scope="module")
def reports(sequence_dir):
    options = {"persist_runs": str(M)}
    with_ov, _ = replay(
        [sequence_dir],
        ReplayOptions(engine="flow", overseer="oracle", overseer_options=options, progress=False),
    )
    without, _ = replay([sequence_dir], ReplayOptions(engine="flow", progress=False))
    return with_ov, without


def test_oracle_overseer_tracks_entries_and_drops_exits_in_time(reports) -> None:
    with_ov, _ = reports
    case = with_ov["cases"][0]
    objects = case["objects"].values()
    entering = [o for o in objects if o["enter_frame"] is not None]
    leaving = [o for o in objects if o["exit_frame"] is not None]
    assert entering and leaving
    assert all(o["entry_delay"] is not None and o["entry_delay"] <= M + 1 for o in entering), entering
    assert all(o["exit_delay"] is not None and o["exit_delay"] <= M + 1 for o in leaving), leaving
    reasons = {e["reason"] for e in case["reprompts"]}
    assert {"enter", "leave"} <= reasons
    assert with_ov["summary"]["reprompts"] == len(case["reprompts"]) > 0
    ev = case["reprompts"][0]
    assert set(ev) >= {"frame", "object_id", "class", "reason", "lowered_j"}
    judged = [e["lowered_j"] for e in case["reprompts"]]
    assert None not in judged  # the sequence has ground truth: every decision before the last frame is judged
    assert with_ov["summary"]["false_reprompts"] == sum(judged)


def _stack(*frames: list[tuple[slice, slice, int]]) -> np.ndarray:
    out = np.zeros((len(frames), 10, 10), np.int32)
    for t, boxes in enumerate(frames):
        for ys, xs, v in boxes:
            out[t, ys, xs] = v
    return out


def test_a_reprompt_is_false_when_the_next_frame_scores_worse_or_it_tracks_nothing() -> None:
    obj = (slice(2, 6), slice(2, 6), 1)
    labels = _stack([obj], [obj], [obj])
    shifted = (slice(5, 9), slice(5, 9), 1)
    predictions = _stack([obj], [shifted], [obj])  # J 1.0 on frame 0, about 0.03 on frame 1
    ghost = _stack([obj, (slice(8, 10), slice(0, 2), 7)], [obj], [obj])
    judged = judge_reprompts(
        predictions, labels, {1: 1}, [(0, 1, "correct"), (1, 1, "correct"), (2, 1, "add")]
    )
    assert [(j.frame, j.lowered_j) for j in judged] == [
        (0, True),
        (1, False),
    ]  # frame 2 is the last: not applied
    assert judged[0].j_before == 1.0 and judged[0].j_after is not None and judged[0].j_after < 0.1
    ghosts = judge_reprompts(ghost, labels, {1: 1}, [(0, 7, "add"), (0, 7, "remove")])
    assert [(j.object_id, j.lowered_j) for j in ghosts] == [(None, True), (None, False)]


def test_without_overseer_entries_are_missed_and_j_is_lower(reports) -> None:
    with_ov, without = reports
    case = without["cases"][0]
    entering = [o for o in case["objects"].values() if o["enter_frame"] is not None]
    assert entering and all(o["entry_delay"] is None for o in entering)
    assert without["summary"]["reprompts"] == 0
    assert with_ov["summary"]["j_mean_after_prompt"] > without["summary"]["j_mean_after_prompt"] + 0.1
    assert set(with_ov["summary"]["per_class_j"]) == set(without["summary"]["per_class_j"]) != set()
    # Every ground-truth object is scored, including those never prompted.
    assert len(case["objects"]) == len(with_ov["cases"][0]["objects"]) >= 4


def test_oracle_with_remote_server_is_a_clear_error(sequence_dir) -> None:
    with pytest.raises(ValueError, match="in-process"):
        replay([sequence_dir], ReplayOptions(overseer="oracle", progress=False), server="127.0.0.1:1")
