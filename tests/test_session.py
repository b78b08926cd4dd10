"""The serving loop without a server: latest-frame-wins, budget, engine faults."""

from __future__ import annotations

import threading
import time
from typing import Any

import numpy as np

from tests.conftest import FakeEngine, disk_config, textured_image
from tracker.engines import create_engine
from tracker.server.budget import Arrival
from tracker.server.inbox import Inbox
from tracker.server.scheduler import EdfScheduler
from tracker.server.session import EndKind, Session
from tracker.types import (
    Frame,
    FrameResult,
    FrameStatus,
    SessionConfig,
)


def _arrival(index: int, image: np.ndarray) -> Arrival:
    return Arrival(Frame(index, image), time.monotonic(), time.time())


def _config(**kw: Any) -> SessionConfig:
    return disk_config(64, 80, 40, 30, 8, **kw)


def test_inbox_keeps_only_the_newest_frame_and_answers_the_rest_dropped():
    inbox = Inbox()
    image = textured_image(64, 80)
    for i in range(5):
        inbox.put_frame(_arrival(i, image))
    batch = inbox.take(0)
    assert batch.frame.frame.index == 4
    assert [a.frame_index for a in batch.answers] == [0, 1, 2, 3]
    assert all(a.status is FrameStatus.DROPPED for a in batch.answers)
    assert inbox.frames_dropped == 4


def test_a_session_answers_each_frame_and_finishes_what_is_waiting():
    engine = create_engine("flow")
    session = Session(engine.open_session(_config()), _config())
    image = textured_image(64, 80)
    session.inbox.put_frame(_arrival(0, image))
    session.inbox.finish()
    answers = list(session.answers())
    assert [type(a) for a in answers] == [FrameResult]
    assert answers[0].status is FrameStatus.OK and answers[0].objects[0].present
    assert session.end is not None and session.end.kind is EndKind.COMPLETED


def test_an_engine_fault_costs_one_frame_not_the_session():
    config = _config()
    engine = FakeEngine("faulty", fail_on=[1], empty_masks=True)
    session = Session(engine.open_session(config), config)
    answers = []
    image = textured_image(64, 80)
    for i in range(3):
        session.inbox.put_frame(_arrival(i, image))
        batch_answers = session.answers()
        answers.append(next(batch_answers))
    assert [a.status for a in answers] == [FrameStatus.OK, FrameStatus.ERROR, FrameStatus.OK]
    assert "RuntimeError: CUDA error" in answers[1].message


def test_budget_uses_time_since_arrival_including_queue_wait():
    engine = create_engine("flow")
    config = _config(latency_budget_ms=50.0)
    session = Session(engine.open_session(config), config)
    stale = Arrival(Frame(0, textured_image(64, 80)), time.monotonic() - 0.2, time.time() - 0.2)
    result = session.process(stale)
    assert result.status is FrameStatus.LATE
    assert result.timing.queue_ms >= 200 and result.timing.total_ms >= 200


def test_how_a_session_ends_is_a_value_with_its_reason():
    engine = create_engine("flow")
    failed = Session(engine.open_session(_config()), _config())
    failed.inbox.put_frame(_arrival(0, textured_image(64, 80)))
    failed.inbox.fail("the session is already open; start a new stream for a new session")
    answers = list(failed.answers())
    # The failure ends it before the waiting frame is processed, and that frame is still answered.
    assert [(a.frame_index, a.status) for a in answers] == [(0, FrameStatus.ERROR)]
    assert answers[0].message.startswith("not processed: the session is already open")
    assert failed.end is not None and failed.end.kind is EndKind.FAILED
    assert failed.end.message.startswith("the session is already open")

    idle = Session(engine.open_session(_config()), _config(), idle_timeout_s=0.05)
    assert list(idle.answers()) == []
    assert idle.end is not None and idle.end.kind is EndKind.IDLE and "no request for" in idle.end.message

    drained = Session(engine.open_session(_config()), _config())
    drained.inbox.put_frame(_arrival(0, textured_image(64, 80)))
    drained.inbox.drain("the server is shutting down")
    answers = list(drained.answers())
    assert [a.status for a in answers] == [FrameStatus.OK]  # the waiting frame is answered first
    assert drained.end is not None and drained.end.kind is EndKind.SHUTDOWN


def test_the_scheduler_hands_back_a_future_and_never_calls_the_session():
    from tracker.server.scheduler import EdfScheduler, Job

    engine = FakeEngine("timed", cost_ms=5)
    scheduler = EdfScheduler(engine, workers=1)
    try:
        config = _config()
        es = engine.open_session(config)
        future = scheduler.submit(Job(time.monotonic() + 1.0, 0, es, Frame(0, textured_image(64, 80))))
        completion = future.result(timeout=10)
        assert completion.error is None and completion.output is not None
        assert [t.object_id for t in completion.output.tracks] == [1]
    finally:
        scheduler.close()


def test_a_frame_computing_when_the_session_fails_is_still_answered():
    engine = FakeEngine("holding", hold=True)
    config = _config()
    session = Session(engine.open_session(config), config, EdfScheduler(engine, workers=1))
    try:
        session.inbox.put_frame(_arrival(0, textured_image(64, 80)))
        answers = session.answers()
        computing = threading.Thread(target=lambda: engine.entered.wait(10) and session.inbox.fail("broken"))
        computing.start()
        timer = threading.Timer(0.3, engine.release.set)  # the frame finishes after the failure
        timer.start()
        got = list(answers)
        computing.join()
        assert [(a.frame_index, a.status) for a in got] == [(0, FrameStatus.OK)]
        assert (
            session.end is not None and session.end.kind is EndKind.FAILED and session.end.message == "broken"
        )
    finally:
        session.scheduler.close()
