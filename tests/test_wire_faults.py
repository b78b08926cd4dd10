"""Faults on the wire that send no reset: stale answers, silent loss, reaping, slow consumers.

Real gRPC servers in-process on loopback; the network faults go through the userspace
proxy :class:`tracker.lab.faultproxy.FaultProxy` (this kernel has no ``netem``).
"""

from __future__ import annotations

import json
import subprocess
import sys
import threading
import time

import grpc
import numpy as np
import pytest

from tests.conftest import free_port
from tests.test_failover import GATED, Collector, frame, serve
from tracker import convert
from tracker.client import ClientResult, TrackerClient
from tracker.client.core import Freshness
from tracker.client.errors import AnswerTimeout
from tracker.client.failover import FailoverCore, FailoverPolicy
from tracker.client.sync_failover import FailoverSession
from tracker.gating.types import BeamState, GatingDecision
from tracker.keepalive import Keepalive
from tracker.lab.bench.faults import FaultBenchSettings
from tracker.lab.faultproxy import Direction, Fault, FaultKind, FaultProxy
from tracker.server.inbox import MAX_PENDING_ANSWERS
from tracker.types import FrameResult, FrameStatus, SessionConfig
from tracker.v1 import tracker_pb2 as pb
from tracker.v1 import tracker_pb2_grpc as pb_grpc

FAST_KEEPALIVE = Keepalive(time_ms=300, timeout_ms=300)
SLOW_KEEPALIVE = Keepalive(time_ms=60_000, timeout_ms=20_000)


def _answer(index: int, sent: float, received: float, state: BeamState | None) -> ClientResult:
    gating = GatingDecision(state, "test", index) if state is not None else None
    return ClientResult(FrameResult(index, FrameStatus.OK, gating=gating), sent, received)


# -- the rules, without I/O ------------------------------------------------------------------


def test_a_late_beam_on_is_held_and_counted_and_the_beam_expires_without_fresh_answers() -> None:
    fresh = Freshness(max_answer_age_ms=100.0)
    on_time = fresh.check(_answer(0, 10.0, 10.05, BeamState.ON))
    assert not on_time.stale and on_time.result.gating is not None
    assert on_time.result.gating.state is BeamState.ON
    assert fresh.beam_state(10.06) is BeamState.ON
    assert fresh.beam_state(10.11) is BeamState.HOLD  # frame 0 is now older than 100 ms: no fresh answer
    late = fresh.check(_answer(1, 11.0, 11.25, BeamState.ON))
    assert late.stale and late.result.gating is not None
    assert late.result.gating.state is BeamState.HOLD and late.result.gating.cause == "stale"
    assert "250 ms" in late.result.gating.reason
    assert fresh.beam_state(11.25) is BeamState.HOLD
    no_gate = fresh.check(_answer(2, 12.0, 12.5, None))  # stale without gating: marked, not a hold
    assert no_gate.stale and no_gate.result.gating is None
    assert (fresh.stale_answers, fresh.stale_holds) == (2, 1)


def test_the_default_answer_age_is_the_sessions_budget() -> None:
    fresh = Freshness()
    fresh.started(budget_ms=40.0)
    assert fresh.check(_answer(0, 1.0, 1.05, BeamState.ON)).stale
    assert not Freshness(max_answer_age_ms=60.0).check(_answer(0, 1.0, 1.05, BeamState.ON)).stale


def test_the_watchdog_counts_silence_from_the_last_answer_or_the_oldest_frame() -> None:
    core = FailoverCore(SessionConfig(latency_budget_ms=200.0), FailoverPolicy())
    core.session_started(200.0, now=0.0)
    assert core.answer_timeout_s == 0.5  # the floor: jitter alone must not fail a session over
    assert core.watchdog_wait(1.0) is None  # nothing in flight: nothing to miss
    core.sent(7, now=1.0)
    assert core.watchdog_wait(1.2) == pytest.approx(0.3)
    core.heard(GatingDecision(BeamState.HOLD, "stalled", None), 1.3)  # no frames reach it: not a sign
    assert core.watchdog_wait(1.3) == pytest.approx(0.2)
    core.heard(_answer(6, 0.9, 1.4, None), 1.4)  # an answer of another frame: the server is alive
    assert core.overdue(1.6, "s") is None
    lost = core.overdue(1.95, "s")
    assert isinstance(lost, AnswerTimeout) and "1 frame(s) in flight" in lost.details
    out, reopen = core.ended(lost, "s", now=1.95)
    assert reopen and [a.result.status for a in out if isinstance(a, ClientResult)] == [FrameStatus.LOST]
    assert FailoverCore(SessionConfig(), FailoverPolicy(answer_timeout_s=2.0)).answer_timeout_s == 2.0
    with pytest.raises(ValueError, match="answer timeout"):
        FailoverPolicy(answer_timeout_s=0.0)


# -- real servers, real sockets --------------------------------------------------------------


def test_stale_answers_are_held_end_to_end_and_fresh_ones_are_not() -> None:
    port = free_port()
    server = serve(port)
    try:
        with FaultProxy(f"127.0.0.1:{port}").start() as proxy, TrackerClient(proxy.address) as client:
            session = client.open_session(GATED, max_answer_age_ms=120.0)
            states = []
            for i in range(12):
                session.send_frame(frame(i), i)
                states.append(session.recv_frame(10).result.gating.state)  # type: ignore[union-attr]
            assert states[-1] is BeamState.ON and session.stale_holds == 0
            proxy.apply(Fault(FaultKind.DELAY, Direction.DOWN, delay_ms=200.0))
            late = []
            for i in range(12, 16):
                session.send_frame(frame(i), i)
                late.append(session.recv_frame(10))
            proxy.apply(None)
            session.close()
        assert all(a.stale for a in late)
        assert all(a.result.gating is not None and a.result.gating.state is BeamState.HOLD for a in late)
        assert session.stale_holds == session.stale_answers == 4
    finally:
        server.stop(0.5)


def test_a_black_hole_is_detected_by_the_watchdog_and_the_session_resumes_after_it() -> None:
    port = free_port()
    server = serve(port, keepalive=SLOW_KEEPALIVE)  # only the client's watchdog can notice in time
    policy = FailoverPolicy(max_attempts=40, backoff_initial_s=0.05, backoff_max_s=0.2, open_timeout_s=1.0)
    try:
        with FaultProxy(f"127.0.0.1:{port}").start() as proxy:
            client = TrackerClient(proxy.address, keepalive=SLOW_KEEPALIVE)
            session = client.open_session(
                GATED, failover=True, failover_policy=policy, max_answer_age_ms=300.0
            )
            assert isinstance(session, FailoverSession)
            answers = Collector(session)
            i = 0
            for i in range(10):
                session.send_frame(frame(i), i)
                answers.wait_for(i)
            fault_at = time.monotonic()
            proxy.apply(Fault(FaultKind.BLACKHOLE, Direction.BOTH))
            beam_on_in_fault = 0
            while time.monotonic() - fault_at < 2.0:
                i += 1
                session.send_frame(frame(i), i)
                # frames sent before the fault are at least this old: none of their answers is fresh
                beam_on_in_fault += session.beam_state() is BeamState.ON and time.monotonic() - fault_at > 0.3
                time.sleep(0.05)
            proxy.apply(None)
            while not session.events and time.monotonic() - fault_at < 20.0:
                i += 1
                session.send_frame(frame(i), i)
                time.sleep(0.05)
            for j in range(i + 1, i + 4):
                session.send_frame(frame(j), j)
            session.done_writing()
            answers.join()
            client.close()
    finally:
        server.stop(0.5)
    assert answers.error is None
    assert sorted(answers.answers) == list(range(i + 4)), "a frame went unanswered"
    assert set(answers.counts.values()) == {1}, "a frame was answered twice"
    assert session.events, "the session never failed over"
    event = session.events[0]
    assert event.cause == "ANSWER_TIMEOUT"
    detect_s = event.fault_mono - fault_at
    assert 0.3 < detect_s < 1.5, f"silent loss noticed after {detect_s:.2f} s (watchdog: 1 s budget)"
    assert beam_on_in_fault == 0, "the beam stayed on without a fresh answer"
    for k in event.lost_frames:
        gating = answers.answers[k].result.gating
        assert gating is not None and gating.state is BeamState.HOLD


def test_the_server_reaps_a_session_whose_client_went_silent() -> None:
    port = free_port()
    server = serve(port, keepalive=FAST_KEEPALIVE)
    try:
        with FaultProxy(f"127.0.0.1:{port}").start() as proxy:
            client = TrackerClient(proxy.address, keepalive=SLOW_KEEPALIVE)
            session = client.open_session(GATED)
            session.send_frame(frame(0), 0)
            assert session.recv_frame(10).status is FrameStatus.OK
            assert server.host.slots.open == 1
            silent_at = time.monotonic()
            proxy.apply(Fault(FaultKind.BLACKHOLE, Direction.UP))  # the client's pings and frames vanish
            while server.host.slots.open and time.monotonic() - silent_at < 10.0:
                time.sleep(0.02)
            reaped_s = time.monotonic() - silent_at
            client.close()
    finally:
        server.stop(0.5)
    assert server.host.slots.open == 0, "the orphaned session still holds its slot"
    assert reaped_s < 2.0, f"reaped after {reaped_s:.1f} s (keepalive 300 + 300 ms)"
    outcomes = {
        s.labels["outcome"]: s.value
        for m in server.telemetry.sessions_total.collect()
        for s in m.samples
        if s.name.endswith("_total")
    }
    # gRPC Python may end a dead connection's request stream as if the client had closed its side,
    # so the outcome is either; what is certain is one session, ended, and its slot free.
    assert sum(outcomes.values()) == 1.0 and set(outcomes) <= {"cancelled", "completed"}


def test_a_client_that_stops_reading_meets_back_pressure_and_every_frame_is_answered_once() -> None:
    port = free_port()
    server = serve(port)
    pixels = np.random.default_rng(0).integers(0, 255, (64, 64), dtype=np.uint8)
    sent: list[int] = []
    stop = threading.Event()

    def requests():
        yield pb.TrackRequest(open=convert.session_open_to_proto(SessionConfig(), pb.RLE))
        i = 0
        while not stop.is_set() and i < 5000:
            yield pb.TrackRequest(frame=convert.frame_to_proto(pixels, i, None))
            sent.append(i)
            i += 1

    try:
        # The client's receive window stays at gRPC's 64 KiB (no BDP growth), as a console's would
        # fill sooner or later: then the server's sends wait and its decided answers pile up.
        channel = grpc.insecure_channel(f"127.0.0.1:{port}", options=[("grpc.http2.bdp_probe", 0)])
        call = pb_grpc.TrackerStub(channel).Track(requests())
        assert next(call).WhichOneof("kind") == "started"
        (session,) = server.host.open_sessions()
        pending, sent_seen = [], []
        for _ in range(30):  # 3 s in which the client reads nothing
            time.sleep(0.1)
            pending.append(session.inbox.pending_answers)
            sent_seen.append(len(sent))
        assert max(pending) == MAX_PENDING_ANSWERS, "the answers never reached the bound"
        assert sent_seen[-1] == sent_seen[-10] < 5000, "the server kept reading a client that reads nothing"
        stop.set()
        counts: dict[int, int] = {}
        for response in call:
            if response.WhichOneof("kind") == "frame":
                counts[response.frame.frame_index] = counts.get(response.frame.frame_index, 0) + 1
                if len(counts) == len(sent):
                    call.cancel()
                    break
        channel.close()
    finally:
        server.stop(0.5)
    assert sorted(counts) == sent, "a frame went unanswered"
    assert set(counts.values()) == {1}


# -- tracker bench faults, one short scenario --------------------------------------------------


def test_bench_faults_settings_refuse_what_cannot_run() -> None:
    with pytest.raises(ValueError, match="unknown scenario"):
        FaultBenchSettings(scenarios=("earthquake",))
    with pytest.raises(ValueError, match="at least two replicas"):
        FaultBenchSettings(replicas=1)
    with pytest.raises(ValueError, match="within the run"):
        FaultBenchSettings(duration_s=5.0, fault_at_s=6.0)
    with pytest.raises(ValueError, match="answer timeout must be positive"):
        FaultBenchSettings(answer_timeout_ms=0.0)


def test_bench_faults_passes_its_answer_watchdog_to_the_consoles_policy() -> None:
    assert FaultBenchSettings(answer_timeout_ms=750.0).failover_policy().answer_timeout_for(1000.0) == 0.75
    assert FaultBenchSettings(answer_timeout_ms=None).failover_policy().answer_timeout_for(1000.0) == 1.0


def test_bench_faults_black_hole_keeps_every_invariant_and_reports_its_keys(tmp_path) -> None:
    out = tmp_path / "faults.json"
    command = [
        sys.executable, "-m", "tracker.cli", "--log-level", "WARNING", "bench", "faults",
        "--scenario", "blackhole_up", "--duration", "8", "--fault-at", "2", "--frame-px", "128",
        "--json", str(out),
    ]  # fmt: skip
    subprocess.run(command, check=True, capture_output=True, timeout=240)
    report = json.loads(out.read_text())
    s = report["scenarios"]["blackhole_up"]
    keys = {"frames", "unaccounted", "duplicates", "stale_holds", "beam_on_without_fresh_answer"}
    assert keys | {"detect_ms", "resume_ms", "reaped_s", "rss_growth"} <= set(s)
    assert s["frames"] == 3 * 64
    assert s["unaccounted"] == 0 and s["duplicates"] == 0 and s["beam_on_without_fresh_answer"] == 0
    # noticed by the client's watchdog, or by the replica's keepalive closing Envoy's connection
    assert s["failovers"] >= 1 and set(s["causes"]) <= {"ANSWER_TIMEOUT", "UNAVAILABLE", "INTERNAL"}
    assert s["detect_ms"]["max"] < 2000.0
    assert s["reaped_s"] is not None and s["reaped_s"] < 10.0
    assert report["targets"]["blackhole_up.nothing_unaccounted_or_twice"] is True
    assert report["provenance"]["command"] and report["machine"]
