"""The serving loop without a server: latest-frame-wins, budget, engine faults."""

from __future__ import annotations

import time

import numpy as np

from tests.conftest import FakeEngine, disk, textured_image
from tracker.engines import create_engine
from tracker.server.runner import SessionRunner
from tracker.server.session import Arrival, SessionInbox
from tracker.types import (
    Frame,
    FrameResult,
    FrameStatus,
    MaskPrompt,
    ObjectPrompt,
    SessionConfig,
)


def _arrival(index: int, image: np.ndarray) -> Arrival:
    return Arrival(Frame(index, image), time.monotonic(), time.time())


def _config(**kw: object) -> SessionConfig:
    return SessionConfig(objects=(ObjectPrompt(1, MaskPrompt(disk(64, 80, 40, 30, 8))),), **kw)  # type: ignore[arg-type]


def test_inbox_keeps_only_the_newest_frame_and_answers_the_rest_dropped():
    inbox = SessionInbox()
    image = textured_image(64, 80)
    for i in range(5):
        inbox.put_frame(_arrival(i, image))
    batch = inbox.take(0)
    assert batch.frame.frame.index == 4
    assert [a.frame_index for a in batch.answers] == [0, 1, 2, 3]
    assert all(a.status is FrameStatus.DROPPED for a in batch.answers)
    assert inbox.frames_dropped == 4


def test_runner_answers_each_frame_and_finishes_what_is_waiting():
    engine = create_engine("flow")
    inbox = SessionInbox()
    runner = SessionRunner(engine.open_session(_config()), _config(), inbox)
    image = textured_image(64, 80)
    inbox.put_frame(_arrival(0, image))
    inbox.finish()
    answers = list(runner.run())
    assert [type(a) for a in answers] == [FrameResult]
    assert answers[0].status is FrameStatus.OK and answers[0].objects[0].present


def test_an_engine_fault_costs_one_frame_not_the_session():
    inbox = SessionInbox()
    config = _config()
    engine = FakeEngine("faulty", fail_on=[1], empty_masks=True)
    runner = SessionRunner(engine.open_session(config), config, inbox)
    answers = []
    image = textured_image(64, 80)
    for i in range(3):
        inbox.put_frame(_arrival(i, image))
        batch_answers = runner.run()
        answers.append(next(batch_answers))
    assert [a.status for a in answers] == [FrameStatus.OK, FrameStatus.ERROR, FrameStatus.OK]
    assert "RuntimeError: CUDA error" in answers[1].message


def test_budget_uses_time_since_arrival_including_queue_wait():
    engine = create_engine("flow")
    inbox = SessionInbox()
    config = _config(latency_budget_ms=50.0)
    runner = SessionRunner(engine.open_session(config), config, inbox)
    stale = Arrival(Frame(0, textured_image(64, 80)), time.monotonic() - 0.2, time.time() - 0.2)
    result = runner.process(stale)
    assert result.status is FrameStatus.LATE
    assert result.timing.queue_ms >= 200 and result.timing.total_ms >= 200
