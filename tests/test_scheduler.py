"""The compute scheduler: deadline order, one frame per session, batching, faults, prompt verdicts."""

from __future__ import annotations

import threading
import time
from concurrent.futures import Future
from typing import Any

import numpy as np
import pytest

from tests.conftest import FakeEngine, disk_config, textured_image
from tracker.client import ClientResult, TrackerClient
from tracker.engines import create_engine
from tracker.engines.base import EngineSession
from tracker.server.app import ServerOptions, start_server
from tracker.server.scheduler import Completion, EdfScheduler, Job, SchedulerConfig, thread_budget
from tracker.types import (
    BudgetPolicy,
    Frame,
    FrameStatus,
    SessionConfig,
)

H, W = 32, 40


def _config(name: str = "", **kw: Any) -> SessionConfig:
    return disk_config(H, W, 20, 16, 5, client_name=name, **kw)


class _Collector:
    def __init__(self) -> None:
        self.done: list[tuple[str, int, Completion]] = []
        self.event = threading.Event()

    def job(self, session: EngineSession, index: int, deadline: float) -> Job:
        job = Job(deadline, 0, session, Frame(index, np.zeros((H, W), np.uint8)))

        def done(future: Future[Completion]) -> None:
            self.done.append((session.config.client_name, index, future.result()))
            self.event.set()

        job.future.add_done_callback(done)
        return job

    def wait_for(self, n: int, timeout_s: float = 10.0) -> None:
        end = time.monotonic() + timeout_s
        while len(self.done) < n and time.monotonic() < end:
            time.sleep(0.005)
        assert len(self.done) == n, f"{len(self.done)} of {n} jobs completed"


def _queued_behind_s0(
    engine: FakeEngine, scheduler: EdfScheduler, indices: list[int], settle_s: float
) -> _Collector:
    """Sessions s0, s1, ...: s0's frame 0 runs alone; ``settle_s`` later s1, s2, ... queue frames
    ``indices`` behind it (deadlines 10 s + i). Returns once every frame is answered, the scheduler closed.
    """
    sessions = [engine.open_session(_config(f"s{i}")) for i in range(len(indices) + 1)]
    collector = _Collector()
    now = time.monotonic()
    try:
        scheduler.submit(collector.job(sessions[0], 0, now + 10))
        time.sleep(settle_s)
        for i, index in enumerate(indices, start=1):
            scheduler.submit(collector.job(sessions[i], index, now + 10 + i))
        collector.wait_for(len(sessions))
    finally:
        scheduler.close()
    return collector


def test_thread_budget_keeps_workers_times_threads_within_the_cores():
    assert thread_budget(2, available=2) == 1
    assert thread_budget(1, available=16) == 16
    assert thread_budget(3, available=16) == 5
    assert thread_budget(8, available=2) == 1  # never zero


def test_scheduler_config_names_bad_values():
    with pytest.raises(ValueError, match="unknown scheduler 'fifo'"):
        SchedulerConfig(kind="fifo")
    with pytest.raises(ValueError, match="--workers must be at least 1"):
        SchedulerConfig(workers=0)
    with pytest.raises(ValueError, match="--max-batch must be at least 1"):
        SchedulerConfig(max_batch=0)


def test_earliest_deadline_runs_first_across_sessions():
    engine = FakeEngine("timed", cost_ms=40)
    scheduler = EdfScheduler(engine, workers=1, max_batch=1)
    sessions = {n: engine.open_session(_config(n)) for n in "abcd"}
    collector = _Collector()
    now = time.monotonic()
    try:
        scheduler.submit(collector.job(sessions["a"], 0, now))  # occupies the worker
        time.sleep(0.01)
        # Queued while the worker is busy, in an order unlike their deadlines.
        for name, deadline_s in (("b", 3.0), ("c", 1.0), ("d", 2.0)):
            scheduler.submit(collector.job(sessions[name], 0, now + deadline_s))
        collector.wait_for(4)
    finally:
        scheduler.close()
    assert [name for name, _, _ in collector.done] == ["a", "c", "d", "b"]


def test_batches_group_queued_frames_up_to_max_batch():
    engine = FakeEngine("timed", cost_ms=60, batching=True)
    scheduler = EdfScheduler(engine, workers=1, max_batch=3, max_queue_delay_ms=0)
    collector = _queued_behind_s0(engine, scheduler, [0, 0, 0, 0], settle_s=0.02)
    assert [len(call) for call in engine.calls] == [1, 3, 1]
    assert [n for n, _ in engine.calls[1]] == ["s1", "s2", "s3"], "earliest deadlines batch first"
    sizes = {name: c.batch_size for name, _, c in collector.done}
    assert sizes == {"s0": 1, "s1": 3, "s2": 3, "s3": 3, "s4": 1}


def test_batch_wait_never_passes_a_deadline():
    engine = FakeEngine("timed", cost_ms=1, batching=True)
    scheduler = EdfScheduler(engine, workers=1, max_batch=4, max_queue_delay_ms=2000)
    session = engine.open_session(_config("urgent"))
    collector = _Collector()
    start = time.monotonic()
    try:
        scheduler.submit(collector.job(session, 0, start + 0.05))  # 50 ms to its deadline
        collector.wait_for(1)
    finally:
        scheduler.close()
    ((_, _, completion),) = collector.done
    # Generous bound (shared machines): far below the 2 s queue delay it would have waited otherwise.
    assert completion.started_mono - start < 0.5
    assert completion.batch_size == 1


def test_one_fault_in_a_batch_costs_only_that_frame():
    engine = FakeEngine("timed", cost_ms=30, batching=True, fail_on=[7], fault="numerical fault on frame 7")
    scheduler = EdfScheduler(engine, workers=1, max_batch=4, max_queue_delay_ms=0)
    collector = _queued_behind_s0(engine, scheduler, [5, 7, 9], settle_s=0.01)
    outcomes = {index: c for _, index, c in collector.done}
    assert isinstance(outcomes[7].error, RuntimeError) and outcomes[7].output is None
    assert all(outcomes[i].output is not None and outcomes[i].error is None for i in (0, 5, 9))
    assert outcomes[5].batch_size == 3


def test_closing_answers_queued_jobs_with_an_error():
    engine = FakeEngine("timed", cost_ms=100)
    scheduler = EdfScheduler(engine, workers=1)
    sessions = [engine.open_session(_config(f"s{i}")) for i in range(3)]
    collector = _Collector()
    now = time.monotonic()
    for i, s in enumerate(sessions):
        scheduler.submit(collector.job(s, 0, now + i))
    time.sleep(0.02)
    scheduler.close()
    collector.wait_for(3)
    errors = [c.error for _, _, c in collector.done if c.error is not None]
    assert len(errors) == 2 and all("shutting down" in str(e) for e in errors)
    with pytest.raises(RuntimeError, match="closed"):
        scheduler.submit(collector.job(sessions[0], 1, now))


def _stream(address: str, name: str, n: int, interval_s: float, budget_ms: float = 10_000.0) -> list:
    with TrackerClient(address) as client:
        session = client.open_session(_config(name, latency_budget_ms=budget_ms))
        image = np.zeros((H, W), np.uint8)
        for i in range(n):
            session.send_frame(image, i)
            time.sleep(interval_s)
        return [a.result for a in session.close() if isinstance(a, ClientResult)]


def test_many_sessions_over_grpc_each_frame_once_in_order_never_two_at_once():
    engine = FakeEngine("timed", cost_ms=15, batching=True)
    options = ServerOptions(scheduler=SchedulerConfig(workers=2, max_batch=3, max_queue_delay_ms=1))
    server = start_server({"timed": engine}, options=options)
    results: dict[str, list] = {}
    try:
        assert server.ready.wait(30)
        threads = [
            threading.Thread(target=lambda n=n: results.__setitem__(n, _stream(server.address, n, 25, 0.004)))
            for n in ("a", "b", "c", "d", "e", "f")
        ]
        for t in threads:
            t.start()
        for t in threads:
            t.join(60)
    finally:
        server.stop(0)
    assert sorted(results) == ["a", "b", "c", "d", "e", "f"]
    for name, answers in results.items():
        indices = [a.frame_index for a in answers]
        assert sorted(indices) == list(range(25)), f"session {name}: every frame answered exactly once"
        computed = [a.frame_index for a in answers if a.status is FrameStatus.OK]
        assert computed and computed == sorted(computed), f"session {name}: frames computed in order"
    assert engine.overlaps == 0, "two frames of one session were computed at once"
    assert max(len(c) for c in engine.calls) > 1, "frames of several sessions shared an engine call"
    ok = [a for answers in results.values() for a in answers if a.status is FrameStatus.OK]
    assert {a.timing.batch_size for a in ok} <= {1, 2, 3} and all(
        "schedule" in a.timing.stages_ms for a in ok
    )


def test_dropped_verdict_is_sent_before_the_answer_still_computing():
    engine = FakeEngine("timed", cost_ms=400)
    server = start_server({"timed": engine}, options=ServerOptions(scheduler=SchedulerConfig(workers=1)))
    try:
        assert server.ready.wait(30)
        with TrackerClient(server.address) as client:
            session = client.open_session(_config("slow", budget_policy=BudgetPolicy.LATEST))
            image = np.zeros((H, W), np.uint8)
            for i in range(3):  # 0 goes to the engine; 1 waits and is replaced by 2
                session.send_frame(image, i)
                time.sleep(0.05)
            first = session.recv_frame()
            rest = [a.result for a in session.close() if isinstance(a, ClientResult)]
    finally:
        server.stop(0)
    assert first.result.frame_index == 1 and first.result.status is FrameStatus.DROPPED, (
        "the verdict on frame 1 must not wait behind frame 0's computation"
    )
    assert [(a.frame_index, a.status) for a in rest] == [(0, FrameStatus.OK), (2, FrameStatus.OK)]


def test_engine_fault_costs_one_frame_under_the_scheduler():
    engine = FakeEngine("timed", cost_ms=1, fail_on=[2], fault="numerical fault on frame 2")
    server = start_server({"timed": engine})
    try:
        assert server.ready.wait(30)
        answers = _stream(server.address, "f", 5, 0.02)
    finally:
        server.stop(0)
    statuses = {a.frame_index: a.status for a in answers}
    assert statuses == {
        0: FrameStatus.OK,
        1: FrameStatus.OK,
        2: FrameStatus.ERROR,
        3: FrameStatus.OK,
        4: FrameStatus.OK,
    }
    (error,) = [a for a in answers if a.status is FrameStatus.ERROR]
    assert "numerical fault on frame 2" in error.message


@pytest.mark.parametrize(("kind", "workers"), [("edf", 2), ("per-session", 0)])
def test_get_info_reports_the_scheduler(kind, workers):
    options = ServerOptions(scheduler=SchedulerConfig(kind=kind, workers=2 if kind == "edf" else None))
    server = start_server({"flow": create_engine("flow")}, options=options)
    try:
        with TrackerClient(server.address) as client:
            (info,) = client.info().engines
        with TrackerClient(server.address) as client:
            session = client.open_session(_config("x"))
            session.send_frame(textured_image(H, W), 0)
            result = session.recv_frame().result
            session.close()
    finally:
        server.stop(0)
    assert (info.scheduler, info.workers) == (kind, workers)
    assert info.threads_per_worker >= 1
    assert result.status is FrameStatus.OK and result.timing.batch_size == 1
