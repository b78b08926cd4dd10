"""A compute worker that hangs or dies: replaced, its session ends UNAVAILABLE, others go on.

Issue #13: "a dead worker is restarted and its sessions end with a clear UNAVAILABLE (never
a hang); a test kills a worker mid-stream". Workers are threads (docs/scheduler.md says
why), so "killed" means the two ways a thread's work ends without an answer: an engine call
that never returns (a stuck native call, a stalled device) and an exception that is not an
``Exception`` escaping the engine (the thread ends). Real gRPC server, real scheduler; the
engine is a fault-injecting one, since no real engine here can be made to hang on cue.
"""

from __future__ import annotations

import time

import grpc
import pytest

from tests.conftest import FakeEngine, disk_config, textured_image
from tracker.client import SessionLostError, TrackerClient
from tracker.server.app import RunningServer, ServerOptions, start_server
from tracker.server.scheduler import Completion, EdfScheduler, Job, SchedulerConfig, WorkerLost
from tracker.types import FrameStatus, SessionConfig

H, W = 48, 64


def _config() -> SessionConfig:
    return disk_config(H, W, 30, 24, 6, latency_budget_ms=5000)


def _serve(engine: FakeEngine, workers: int, stall_s: float) -> RunningServer:
    options = ServerOptions(
        metrics_port=0, scheduler=SchedulerConfig(workers=workers, stall_timeout_s=stall_s)
    )
    running = start_server({"faulty": engine}, options=options)
    assert running.ready.wait(30)
    return running


def _stream(client: TrackerClient, frames: int) -> list[FrameStatus]:
    statuses = []
    with client.open_session(_config()) as session:
        for i in range(frames):
            session.send_frame(textured_image(H, W), i)
            statuses.append(session.recv_frame(timeout_s=20).result.status)
    return statuses


def _metric(running: RunningServer, series: str, timeout_s: float = 5.0) -> float:
    """The value of one exposed series (name and labels as Prometheus prints them), once it shows."""
    import urllib.request

    deadline = time.monotonic() + timeout_s
    while True:
        text = urllib.request.urlopen(f"http://127.0.0.1:{running.metrics_port}/metrics", timeout=5).read()
        for line in text.decode().splitlines():
            if line.startswith(series + " "):
                return float(line.rsplit(" ", 1)[1])
        if time.monotonic() > deadline:
            raise AssertionError(f"{series} not in /metrics")
        time.sleep(0.05)


def test_a_hung_worker_is_replaced_its_session_ends_unavailable_and_others_go_on() -> None:
    engine = FakeEngine("faulty", cost_ms=5, session_faults={0: ("hang", 2)})
    running = _serve(engine, workers=2, stall_s=1.0)
    try:
        with TrackerClient(running.address) as client:
            stuck = client.open_session(_config())
            answers = []
            for i in range(3):  # one at a time: a frame sent while one waits would replace it
                stuck.send_frame(textured_image(H, W), i)
                answers.append(stuck.recv_frame(timeout_s=20).result)
            assert engine.hung.is_set()
            # The frame in the hung call is answered ERROR, saying so; then the stream ends.
            assert [a.status for a in answers] == [FrameStatus.OK, FrameStatus.OK, FrameStatus.ERROR]
            assert "stopped responding" in answers[2].message and "stall timeout 1 s" in answers[2].message
            t0 = time.monotonic()
            with pytest.raises(SessionLostError) as ended:
                stuck.recv(timeout_s=20)
            assert time.monotonic() - t0 < 10
            assert ended.value.code == grpc.StatusCode.UNAVAILABLE
            assert "tracking state is lost" in ended.value.details
            # The call is still hung, yet the engine serves another session on two live workers.
            assert _stream(client, 10) == [FrameStatus.OK] * 10
            scheduler = running.host.schedulers["faulty"]
            assert isinstance(scheduler, EdfScheduler)
            assert len(scheduler.live_workers) == 2 and scheduler.workers_replaced == 1
            assert _metric(running, 'tracker_workers_replaced_total{engine="faulty"}') == 1.0
            # When the stuck call finally returns, its late outcome is dropped, not answered.
            engine.release.set()
            deadline = time.monotonic() + 10
            while engine.late_returns == 0 and time.monotonic() < deadline:
                time.sleep(0.02)
            assert engine.late_returns == 1
            assert _stream(client, 3) == [FrameStatus.OK] * 3
            assert _metric(running, 'tracker_sessions_total{outcome="worker_lost"}') == 1.0
    finally:
        engine.release.set()
        running.drain_and_stop(grace_s=5)


def test_a_worker_whose_thread_dies_is_replaced_and_the_next_session_is_served() -> None:
    engine = FakeEngine("faulty", cost_ms=5, session_faults={0: ("die", 1)})
    # One worker: without a replacement nothing would be left to serve the next session.
    running = _serve(engine, workers=1, stall_s=30.0)
    try:
        with TrackerClient(running.address) as client:
            dying = client.open_session(_config())
            dying.send_frame(textured_image(H, W), 0)
            assert dying.recv_frame(timeout_s=20).result.status is FrameStatus.OK
            dying.send_frame(textured_image(H, W), 1)
            answer = dying.recv_frame(timeout_s=20).result
            assert answer.status is FrameStatus.ERROR and "died: SystemExit" in answer.message
            with pytest.raises(SessionLostError) as ended:
                dying.recv(timeout_s=20)
            assert ended.value.code == grpc.StatusCode.UNAVAILABLE
            assert _stream(client, 5) == [FrameStatus.OK] * 5
            scheduler = running.host.schedulers["faulty"]
            assert isinstance(scheduler, EdfScheduler)
            live = scheduler.live_workers
            assert len(live) == 1 and live[0].name.endswith("-worker-r1") and live[0].is_alive()
    finally:
        running.drain_and_stop(grace_s=5)


def test_a_completion_is_delivered_once() -> None:
    job = Job(0.0, 0, None, None)  # type: ignore[arg-type]
    first = Completion(None, WorkerLost("gone"), 0.0, 0.0, 1)
    assert job.complete(first) is True
    assert job.complete(Completion(None, None, 0.0, 1.0, 1)) is False
    assert job.future.result(0) is first


def test_the_stall_timeout_must_be_positive() -> None:
    with pytest.raises(ValueError, match="--worker-stall-timeout-s must be > 0"):
        SchedulerConfig(stall_timeout_s=0)
