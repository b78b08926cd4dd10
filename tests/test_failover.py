"""Client failover (tracker.client.failover): re-open after a drain, LOST answers, refusals, bounds.

Real gRPC servers in-process on one loopback port: server A is drained (its
sessions end UNAVAILABLE, as under SIGTERM), then server B starts on the same
port, so the client's re-open through the same address lands on B (what a proxy
does across replicas; tests/test_cluster.py does it through real Envoy).
"""

from __future__ import annotations

import asyncio
import threading
import time

import grpc
import numpy as np
import pytest

from tests.conftest import disk, free_port, shift, textured_image
from tracker.client import ClientResult, SessionLostError, TrackerClient, TrackerError
from tracker.client.aio import AsyncTrackerClient
from tracker.client.aio_failover import AsyncFailoverSession
from tracker.client.failover import FailoverCore, FailoverPolicy, is_retryable_reopen
from tracker.client.sync_failover import FailoverSession
from tracker.engines import create_engine
from tracker.gating.types import BeamState, GatingConfig, GatingDecision
from tracker.lab.scoring.metrics import dice
from tracker.server.app import RunningServer, ServerOptions, start_server
from tracker.types import FrameResult, FrameStatus, MaskPrompt, ObjectPrompt, SessionConfig

H, W = 128, 160
IMAGE = textured_image(H, W)
MASK = disk(H, W, 80, 64, 14)
GATED = SessionConfig(
    objects=(ObjectPrompt(1, MaskPrompt(MASK), "tumour"),), gating=GatingConfig(margin_mm=50.0)
)
PATIENT = FailoverPolicy(max_attempts=60, backoff_initial_s=0.05, backoff_max_s=0.2)


def frame(i: int) -> np.ndarray:
    return shift(IMAGE, 0.5 * i, 0.25 * i)


def truth(i: int) -> np.ndarray:
    return disk(H, W, 80 + 0.5 * i, 64 + 0.25 * i, 14)


def serve(port: int, **options: object) -> RunningServer:
    running = start_server(
        {"flow": create_engine("flow")},
        options=ServerOptions(port=port, **options),  # type: ignore[arg-type]
    )
    assert running.ready.wait(60), "engine warm-up did not finish"
    return running


class Collector:
    """Every frame answer of a session, with a count per frame index."""

    def __init__(self, session: FailoverSession) -> None:
        self.answers: dict[int, ClientResult] = {}
        self.counts: dict[int, int] = {}
        self.error: TrackerError | None = None
        self._cond = threading.Condition()
        self._thread = threading.Thread(target=self._run, args=(session,), daemon=True)
        self._thread.start()

    def _run(self, session: FailoverSession) -> None:
        try:
            for answer in session.results(timeout_s=None):
                with self._cond:
                    self.answers[answer.frame_index] = answer
                    self.counts[answer.frame_index] = self.counts.get(answer.frame_index, 0) + 1
                    self._cond.notify_all()
        except TrackerError as exc:
            self.error = exc

    def wait_for(self, index: int, timeout_s: float = 30.0) -> ClientResult:
        with self._cond:
            assert self._cond.wait_for(lambda: index in self.answers, timeout_s), f"frame {index} unanswered"
            return self.answers[index]

    def join(self) -> None:
        self._thread.join(60)
        assert not self._thread.is_alive()


# -- pure bookkeeping ----------------------------------------------------------------------


def test_policy_backoff_is_bounded_and_grows() -> None:
    delays = list(FailoverPolicy(max_attempts=5, backoff_initial_s=0.1, backoff_max_s=0.3).delays())
    assert delays == [0.0, 0.1, 0.2, 0.3, 0.3]
    with pytest.raises(ValueError, match="at least one attempt"):
        FailoverPolicy(max_attempts=0)


@pytest.mark.parametrize(
    ("code", "retried"),
    [
        (grpc.StatusCode.UNAVAILABLE, True),
        (grpc.StatusCode.DEADLINE_EXCEEDED, True),
        (grpc.StatusCode.RESOURCE_EXHAUSTED, True),
        (grpc.StatusCode.INVALID_ARGUMENT, False),
        (grpc.StatusCode.UNAUTHENTICATED, False),
        (grpc.StatusCode.PERMISSION_DENIED, False),
        (grpc.StatusCode.FAILED_PRECONDITION, False),
    ],
)
def test_refusals_are_never_retried(code: grpc.StatusCode, retried: bool) -> None:
    assert is_retryable_reopen(TrackerError(code, "x"), FailoverPolicy()) is retried
    strict = FailoverPolicy(retry_resource_exhausted=False)
    assert is_retryable_reopen(TrackerError(code, "x"), strict) is (
        retried and code != grpc.StatusCode.RESOURCE_EXHAUSTED
    )
    assert is_retryable_reopen(SessionLostError(grpc.StatusCode.INTERNAL, "rst_stream"), FailoverPolicy())


def test_core_answers_the_gap_lost_with_beam_hold_and_times_it() -> None:
    core = FailoverCore(GATED)
    core.sent(0, 1.0, IMAGE)
    core.sent(1, 1.1, IMAGE)
    hold, *lost = core.fault("UNAVAILABLE", "old", now=1.2)
    assert isinstance(hold, GatingDecision) and hold.state is BeamState.HOLD and hold.frame_index is None
    assert [a.frame_index for a in lost] == [0, 1]  # type: ignore[union-attr]
    gap = core.lost_in_gap(2, now=1.3)
    for answer in [*lost, gap]:
        assert isinstance(answer, ClientResult)
        assert answer.status is FrameStatus.LOST and answer.local
        assert answer.result.gating is not None and answer.result.gating.state is BeamState.HOLD
    assert core.in_gap and core.events == []
    core.reopened("new", attempts=2)
    assert not core.in_gap
    core.sent(3, 1.4)
    assert core.answered(ClientResult(FrameResult(3, FrameStatus.OK), 1.4, 1.5))
    (event,) = core.events
    assert (event.lost_frames, event.attempts, event.first_frame) == ((0, 1, 2), 2, 3)
    assert event.gap_ms == pytest.approx(300.0)
    resumed = core.resume_config()
    assert [(o.object_id, o.label) for o in resumed.objects] == [(1, "tumour")]


# -- real servers ----------------------------------------------------------------------------


def test_failover_after_a_drain_answers_every_frame_once_and_resumes_from_the_last_mask() -> None:
    port = free_port()
    first = serve(port)
    second = None
    client = TrackerClient(f"127.0.0.1:{port}")
    try:
        session = client.open_session(GATED, failover=True, failover_policy=PATIENT)
        assert isinstance(session, FailoverSession)
        old_id = session.session_id
        answers = Collector(session)
        for i in range(5):
            session.send_frame(frame(i), i)
            assert answers.wait_for(i).status is FrameStatus.OK
        first.drain_and_stop(grace_s=5.0)  # the session ends UNAVAILABLE; nothing listens now
        for i in range(5, 8):  # sent while no session can be open: answered LOST at once
            session.send_frame(frame(i), i)
            assert answers.wait_for(i).status is FrameStatus.LOST
        second = serve(port)
        i = 8
        while not session.events and i < 200:
            session.send_frame(frame(i), i)
            time.sleep(0.05)
            i += 1
        for j in range(i, i + 5):
            session.send_frame(frame(j), j)
        session.done_writing()
        answers.join()
        sent = i + 5
    finally:
        client.close()
        if second is not None:
            second.stop(0.5)
    assert answers.error is None
    assert sorted(answers.answers) == list(range(sent)), "a frame went unanswered"
    assert set(answers.counts.values()) == {1}, "a frame was answered twice"
    (event,) = session.events
    assert event.old_session_id == old_id and event.new_session_id == session.session_id != old_id
    lost = sorted(k for k, a in answers.answers.items() if a.status is FrameStatus.LOST)
    assert lost == list(event.lost_frames) and {5, 6, 7} <= set(lost)
    for k in lost:  # the beam holds through the gap
        gating = answers.answers[k].result.gating
        assert gating is not None and gating.state is BeamState.HOLD
    after = [a for k, a in sorted(answers.answers.items()) if k >= event.first_frame]
    # Nothing is lost after the resume (the closing burst may be DROPPED by the server: latest wins).
    assert after[0].status is FrameStatus.OK
    assert all(a.status in (FrameStatus.OK, FrameStatus.DROPPED) for a in after)
    # The new session started from the last good mask (frame 4's), on frame 4's image.
    first_new = answers.answers[event.first_frame]
    (obj,) = first_new.objects
    assert obj.label == "tumour"
    assert dice(obj.mask, truth(event.first_frame)) > 0.8


def _drained_after_frame_0(
    client: TrackerClient, server: RunningServer, policy: FailoverPolicy
) -> tuple[FailoverSession, Collector]:
    """A failover session whose frame 0 was answered, then ``server`` drained and stopped under it."""
    session = client.open_session(GATED, failover=True, failover_policy=policy)
    assert isinstance(session, FailoverSession)
    answers = Collector(session)
    session.send_frame(frame(0), 0)
    answers.wait_for(0)
    server.drain_and_stop(grace_s=5.0)
    return session, answers


def test_a_refused_reopen_is_not_retried() -> None:
    port = free_port()
    first = serve(port)
    client = TrackerClient(f"127.0.0.1:{port}")
    second = None
    try:
        session, answers = _drained_after_frame_0(client, first, PATIENT)
        second = serve(port, auth_tokens=("a-token-this-client-lacks",))
        answers.join()  # the session ends: the re-open was refused
    finally:
        client.close()
        if second is not None:
            second.stop(0.5)
    assert answers.error is not None and answers.error.code == grpc.StatusCode.UNAUTHENTICATED
    assert "failover gave up" in answers.error.details
    assert session.reopen_attempts < PATIENT.max_attempts  # it stopped at the refusal
    assert session.events == []


def test_retries_are_bounded_and_every_frame_is_still_answered() -> None:
    port = free_port()
    first = serve(port)
    client = TrackerClient(f"127.0.0.1:{port}")
    policy = FailoverPolicy(max_attempts=3, backoff_initial_s=0.05, backoff_max_s=0.05)
    try:
        session, answers = _drained_after_frame_0(client, first, policy)
        session.send_frame(frame(1), 1)  # lost (or refused, once failover has given up)
        answers.join()
    except TrackerError as exc:  # send_frame after the give-up raises the failure itself
        assert "failover gave up" in exc.details
        answers.join()
    finally:
        client.close()
    assert answers.error is not None and answers.error.code == grpc.StatusCode.UNAVAILABLE
    assert session.reopen_attempts == 3
    assert 0 in answers.answers and answers.answers[0].status is FrameStatus.OK
    assert all(a.status is FrameStatus.LOST for k, a in answers.answers.items() if k > 0)
    with pytest.raises(TrackerError, match="failover gave up"):
        session.send_frame(frame(2), 2)


def test_async_failover_after_a_drain() -> None:
    async def run() -> tuple[AsyncFailoverSession, dict[int, ClientResult], list[int]]:
        port = free_port()
        first = serve(port)
        second = None
        answers: dict[int, ClientResult] = {}
        order: list[int] = []
        async with AsyncTrackerClient(f"127.0.0.1:{port}") as client:
            session = await client.open_session(GATED, failover=True, failover_policy=PATIENT)
            assert isinstance(session, AsyncFailoverSession)

            async def collect() -> None:
                async for answer in session.results(timeout_s=None):
                    answers[answer.frame_index] = answer
                    order.append(answer.frame_index)

            reader = asyncio.create_task(collect())
            try:
                for i in range(3):
                    await session.send_frame(frame(i), i)
                    while i not in answers:
                        await asyncio.sleep(0.01)
                await asyncio.to_thread(first.drain_and_stop, 5.0)
                await session.send_frame(frame(3), 3)
                second = await asyncio.to_thread(serve, port)
                i = 4
                while not session.events and i < 200:
                    await session.send_frame(frame(i), i)
                    await asyncio.sleep(0.05)
                    i += 1
                await session.send_frame(frame(i), i)
                await session.done_writing()
                await asyncio.wait_for(reader, 60)
            finally:
                if second is not None:
                    second.stop(0.5)
        return session, answers, order

    session, answers, order = asyncio.run(run())
    assert sorted(order) == sorted(set(order)) == list(range(len(order))), (
        "a frame unanswered or answered twice"
    )
    (event,) = session.events
    assert 3 in event.lost_frames
    for k in event.lost_frames:
        assert answers[k].status is FrameStatus.LOST
        assert answers[k].result.gating is not None and answers[k].result.gating.state is BeamState.HOLD
    assert answers[event.first_frame].status is FrameStatus.OK


def test_tracker_live_failover_through_a_drain() -> None:
    """`tracker live --failover`: the run survives its server's drain; every frame answered once."""
    from tracker.lab.live.runner import LiveOptions, LiveRunner
    from tracker.lab.live.source import ArraySource

    port = free_port()
    first = serve(port)
    second = None
    frames = [frame(i) for i in range(60)]
    options = LiveOptions(server=f"127.0.0.1:{port}", prompt_box=(66, 50, 28, 28), failover=True)
    runner = LiveRunner(ArraySource(frames, 20.0), options).start()
    try:
        time.sleep(0.5)
        first.drain_and_stop(grace_s=5.0)
        second = serve(port)
        summary = runner.wait(timeout_s=60)
    finally:
        if second is not None:
            second.stop(0.5)
    assert summary.error is None
    assert sorted(summary.answered_indices) == list(range(60))
    (failover,) = summary.failovers
    assert failover["old_session"] != failover["new_session"]
    assert summary.statuses.get("LOST", 0) == len(failover["lost_frames"])  # type: ignore[arg-type]
