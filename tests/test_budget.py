"""Latency budget enforcement: defaults, acquisition clock, and the LATEST/DEGRADE/STRICT policies."""

from __future__ import annotations

import threading
import time
from typing import Any

import numpy as np
import pytest

from tests.conftest import FakeEngine, disk_config, textured_image
from tracker import convert
from tracker.client import ClientResult, TrackerClient
from tracker.engines import create_engine
from tracker.server.app import start_server
from tracker.server.budget import AcquisitionClock, Arrival, DegradeController
from tracker.server.inbox import Inbox
from tracker.server.session import Session
from tracker.types import (
    BudgetPolicy,
    Frame,
    FrameStatus,
    SessionConfig,
    TimestampClock,
)
from tracker.v1 import tracker_pb2 as pb

H, W = 48, 64


def _config(**kw: Any) -> SessionConfig:
    return disk_config(H, W, 30, 20, 6, **kw)


@pytest.mark.parametrize(
    ("modality", "fps", "expected"),
    [
        (pb.CINE_MRI, 4.0, 1000.0),
        (pb.ENDOSCOPY, 25.0, 40.0),
        (pb.ENDOSCOPY, 0.0, 1000.0 / 30),
        (pb.OTHER, 0.0, 1000.0),
        (pb.OTHER, 50.0, 20.0),
    ],
)
def test_default_budget_follows_the_modality(modality, fps, expected):
    config = convert.session_config_from_proto(
        pb.SessionOpen(modality=modality, frame_rate_hz=fps), convert.Limits()
    )
    assert config.latency_budget_ms == pytest.approx(expected)
    assert config.budget_policy is BudgetPolicy.LATEST and config.timestamp_clock is TimestampClock.RELATIVE


def test_relative_clock_charges_delay_beyond_the_fastest_transit():
    clock = AcquisitionClock(TimestampClock.RELATIVE)
    # Client clock starts at 1000 s; first two frames arrive 5 ms after acquisition, the third 105 ms.
    assert clock.acquired_mono(1000.0, 50.005, 0) == pytest.approx(50.005)
    assert clock.acquired_mono(1000.1, 50.105, 0) == pytest.approx(50.105)
    assert clock.acquired_mono(1000.2, 50.305, 0) == pytest.approx(50.205)
    assert clock.acquired_mono(None, 51.0, 0) is None


def test_unix_clock_uses_the_wall_clock():
    clock = AcquisitionClock(TimestampClock.UNIX)
    assert clock.acquired_mono(1_700_000_000.0, 10.0, 1_700_000_000.25) == pytest.approx(9.75)


def test_budget_counts_from_acquisition_over_grpc():
    server = start_server({"flow": create_engine("flow")})
    try:
        with TrackerClient(server.address) as client:
            session = client.open_session(_config(latency_budget_ms=100.0))
            image = textured_image(H, W)
            session.send_frame(image, 0, timestamp_s=10.0)
            first = session.recv_frame().result
            # Frame 1 was acquired 0.1 s after frame 0 but the client sends it 0.3 s later.
            time.sleep(0.3)
            session.send_frame(image, 1, timestamp_s=10.1)
            second = session.recv_frame().result
            session.close()
    finally:
        server.stop(0)
    assert first.status is FrameStatus.OK
    assert second.status is FrameStatus.LATE and "after acquisition" in second.message
    # Late because of the 0.2 s between acquisition and arrival, not because of processing:
    # that gap is set by the client's sleep, and machine load can only widen it.
    assert second.timing.since_acquisition_ms - second.timing.total_ms >= 150


def _run_burst(policy: BudgetPolicy, costs: tuple[float, ...], n: int, interval_s: float, budget_ms: float):
    server = start_server({"paced": FakeEngine("paced", cost_ms=costs)})
    try:
        with TrackerClient(server.address) as client:
            session = client.open_session(_config(latency_budget_ms=budget_ms, budget_policy=policy))
            image = np.zeros((H, W), np.uint8)
            start = time.monotonic()
            for i in range(n):
                time.sleep(max(0.0, start + i * interval_s - time.monotonic()))
                session.send_frame(image, i, timestamp_s=i * interval_s)
            answers = [a.result for a in session.close() if isinstance(a, ClientResult)]
    finally:
        server.stop(0)
    assert sorted(a.frame_index for a in answers) == list(range(n)), "every frame answered exactly once"
    return answers


def test_latest_policy_drops_stale_frames_under_overload():
    # 4x overload: 40 ms of work per frame, a frame every 10 ms.
    answers = _run_burst(BudgetPolicy.LATEST, (40.0,), 40, 0.010, 1000.0)
    statuses = [a.status for a in answers]
    assert statuses.count(FrameStatus.DROPPED) >= 20
    assert FrameStatus.LATE not in statuses
    assert all(a.objects for a in answers if a.status is FrameStatus.OK)


def test_strict_policy_answers_unmakeable_frames_late_and_drops_none():
    answers = _run_burst(BudgetPolicy.STRICT, (40.0,), 40, 0.010, 60.0)
    statuses = [a.status for a in answers]
    assert FrameStatus.DROPPED not in statuses
    assert statuses.count(FrameStatus.OK) >= 5
    skipped = [a for a in answers if a.status is FrameStatus.LATE and not a.objects]
    assert len(skipped) >= 20 and all("strict policy" in a.message for a in skipped)
    # Frames that were processed finished within the budget (that is the point of STRICT).
    assert all(a.timing.since_acquisition_ms <= 60.0 + 15 for a in answers if a.status is FrameStatus.OK)


def test_degrade_policy_steps_down_and_says_why():
    # 30 ms per frame at full quality, 8 ms once degraded; frames every 25 ms with a 25 ms budget.
    answers = _run_burst(BudgetPolicy.DEGRADE, (30.0, 8.0), 60, 0.025, 25.0)
    degraded = [a for a in answers if a.degradations]
    assert degraded, "the session should have degraded"
    assert degraded[0].degradations == ["step 1"] and "budget of 25.0 ms" in degraded[0].degradation_reason
    tail = answers[-20:]
    assert sum(a.status is FrameStatus.OK for a in tail) >= 15, "once degraded the session keeps up"


def test_degrade_controller_hysteresis():
    controller = DegradeController(("a", "b"), budget_ms=100.0, patience=3)
    assert controller.update(0, 90.0, 0) and controller.active == ["a"]
    assert controller.update(1, 95.0, 0) and controller.active == ["a", "b"]
    assert not controller.update(2, 99.0, 0)  # nothing left to give up
    assert not controller.update(3, 30.0, 0) and not controller.update(4, 30.0, 0)
    assert controller.update(5, 30.0, 0) and controller.active == ["a"]
    assert "relaxed to level 1" in controller.reason


def test_flow_degradation_halves_the_working_size():
    session = create_engine("flow").open_session(_config())
    assert session._work_size((400, 300)) == (400, 300)
    session.set_degradation(1)
    assert session._work_size((400, 300)) == (200, 150)
    with pytest.raises(ValueError, match=r"outside 0\.\.1"):
        session.set_degradation(2)
    # Tracking goes on across the change of working size.
    image = textured_image(H, W)
    session.set_degradation(0)
    session.step(Frame(0, image))
    session.set_degradation(1)
    assert session.step(Frame(1, image)).tracks[0].present


def test_inbox_applies_back_pressure_when_answers_are_not_read():
    inbox = Inbox(max_pending_answers=2)
    image = np.zeros((4, 4), np.uint8)
    for i in range(3):  # two DROPPED answers fill the backlog
        inbox.put_frame(Arrival(Frame(i, image), time.monotonic(), time.time()))
    blocked = threading.Thread(
        target=inbox.put_frame, args=(Arrival(Frame(3, image), time.monotonic(), time.time()),)
    )
    blocked.start()
    blocked.join(0.2)
    assert blocked.is_alive(), "the receiving side must wait while the answers are unread"
    batch = inbox.take(0)
    assert [a.frame_index for a in batch.answers] == [0, 1]
    blocked.join(2)
    assert not blocked.is_alive()


def test_a_session_reports_engine_stages_and_since_acquisition():
    config = _config()
    session = FakeEngine("paced", cost_ms=(5.0,)).open_session(config)
    now = time.monotonic()
    result = Session(session, config).process(
        Arrival(Frame(0, np.zeros((H, W), np.uint8)), now, time.time(), 0.1, now - 0.05)
    )
    assert result.timing.stages_ms["inference"] >= 5.0
    assert result.timing.since_acquisition_ms >= 55.0
