"""Faults, limits and observability on a real server: shutdown, idle sessions, limits, metrics, logs."""

from __future__ import annotations

import json
import logging
import signal
import subprocess
import threading
import time
import urllib.request
from typing import Any

import grpc
import numpy as np
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

from tests.conftest import FakeEngine, disk_config, free_port, textured_image, tracker_process
from tracker import convert
from tracker.client import TrackerClient, TrackerError
from tracker.convert import Limits
from tracker.engines import create_engine
from tracker.server.app import ServerOptions, start_server
from tracker.server.telemetry import JsonLogFormatter
from tracker.types import (
    BoxPrompt,
    FrameStatus,
    PromptUpdate,
    SessionConfig,
    UpdateAction,
)
from tracker.v1 import tracker_pb2 as pb

H, W = 64, 80


def _config(**kw: Any) -> SessionConfig:
    return disk_config(H, W, 40, 30, 8, **kw)


def _health(address: str) -> int:
    with grpc.insecure_channel(address) as channel:
        return health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest(), timeout=5).status


def test_drain_answers_the_frame_in_flight_refuses_new_sessions_then_ends():
    engine = FakeEngine("holding", hold=True)
    running = start_server({"holding": engine})
    assert running.ready.wait(30)
    with TrackerClient(running.address) as client:
        session = client.open_session(_config())
        session.send_frame(textured_image(H, W), 0)
        assert engine.entered.wait(10)
        stopper = threading.Thread(target=running.drain_and_stop, kwargs={"grace_s": 10.0})
        stopper.start()
        deadline = time.monotonic() + 5
        while _health(running.address) != health_pb2.HealthCheckResponse.NOT_SERVING:
            assert time.monotonic() < deadline, "health never went NOT_SERVING"
            time.sleep(0.02)
        with pytest.raises(TrackerError) as refused:
            client.open_session(_config())
        assert refused.value.code == grpc.StatusCode.UNAVAILABLE
        assert "not accepting new sessions" in refused.value.details
        engine.release.set()
        answer = session.recv_frame(timeout_s=10).result
        with pytest.raises(TrackerError) as ended:
            while session.recv(timeout_s=10) is not None:
                pass
        stopper.join(15)
    assert answer.frame_index == 0 and answer.status is FrameStatus.OK
    assert ended.value.code == grpc.StatusCode.UNAVAILABLE and "shutting down" in ended.value.details
    assert "every frame received was answered" in ended.value.details


def test_frames_arriving_during_a_drain_are_answered_error():
    from tracker.server.budget import Arrival
    from tracker.server.inbox import Inbox
    from tracker.types import Frame

    inbox = Inbox()
    inbox.drain("the server is shutting down")
    inbox.put_frame(Arrival(Frame(7, np.zeros((4, 4), np.uint8)), time.monotonic(), time.time()))
    batch = inbox.take(0)
    assert batch.shutdown == "the server is shutting down" and batch.frame is None
    assert batch.answers[0].frame_index == 7 and batch.answers[0].status is FrameStatus.ERROR


@pytest.mark.slow
def test_sigterm_drains_and_exits_zero():
    port = free_port()
    process = tracker_process("serve", "--engine", "flow", "--port", str(port))
    try:
        with TrackerClient(f"127.0.0.1:{port}") as client:
            client.wait_ready(60)
            session = client.open_session(_config())
            session.send_frame(textured_image(H, W), 0)
            assert session.recv_frame().result.status is FrameStatus.OK
            process.send_signal(signal.SIGTERM)
            with pytest.raises(TrackerError) as ended:
                while session.recv(timeout_s=20) is not None:
                    pass
        assert ended.value.code == grpc.StatusCode.UNAVAILABLE
        assert process.wait(timeout=30) == 0
    finally:
        if process.poll() is None:
            process.kill()
    log = process.stdout.read().decode()
    assert "shutting down" in log and "stopped" in log


def test_idle_session_is_closed_with_a_clear_status():
    running = start_server({"flow": create_engine("flow")}, idle_timeout_s=0.3)
    try:
        with TrackerClient(running.address) as client:
            session = client.open_session(_config())
            with pytest.raises(TrackerError) as err:
                session.recv(timeout_s=10)
        assert (
            err.value.code == grpc.StatusCode.DEADLINE_EXCEEDED and "no request for 0 s" in err.value.details
        )
        assert running.host.slots.open == 0
    finally:
        running.stop(0)


def test_object_and_message_limits_name_the_limit():
    limits = Limits(max_objects_per_session=2, max_message_bytes=64 * 1024)
    running = start_server({"flow": create_engine("flow")}, limits=limits)
    try:
        with TrackerClient(running.address) as client:
            session = client.open_session(_config())
            for oid in (2, 3):
                session.send_update(
                    PromptUpdate(UpdateAction.ADD, oid, BoxPrompt(5, 5, 20, 20), update_id=oid)
                )
            session.send_frame(textured_image(H, W), 0)
            acks = [session.recv() for _ in range(2)]
            assert acks[0].accepted and not acks[1].accepted
            assert "the limit is 2 objects per session" in acks[1].message
            session.recv_frame()
            session.send_frame(np.zeros((400, 400), np.uint8), 1)  # 160 kB > 64 kB
            with pytest.raises(TrackerError) as err:
                session.recv(timeout_s=10)
        assert err.value.code == grpc.StatusCode.RESOURCE_EXHAUSTED and "larger than max" in err.value.details
        with pytest.raises(ValueError, match="3 objects requested; the limit is 2"):
            convert.session_config_from_proto(
                pb.SessionOpen(
                    objects=[
                        pb.ObjectPrompt(object_id=i, prompt=pb.Prompt(box=pb.Box(x1=4, y1=4)))
                        for i in range(3)
                    ]
                ),
                limits,
            )
    finally:
        running.stop(0)


def test_prometheus_metrics_count_frames_stages_and_sessions():
    running = start_server({"flow": create_engine("flow")}, options=ServerOptions(metrics_port=0))
    try:
        with TrackerClient(running.address) as client:
            session = client.open_session(_config())
            for i in range(4):
                session.send_frame(textured_image(H, W), i)
                session.recv_frame()
            text = (
                urllib.request.urlopen(f"http://127.0.0.1:{running.metrics_port}/metrics", timeout=5)
                .read()
                .decode()
            )
            assert "tracker_sessions_open 1.0" in text
            session.close()
        text = (
            urllib.request.urlopen(f"http://127.0.0.1:{running.metrics_port}/metrics", timeout=5)
            .read()
            .decode()
        )
    finally:
        running.stop(0)
    assert 'tracker_frames_total{engine="flow",status="OK"} 4.0' in text
    assert 'tracker_stage_seconds_count{engine="flow",stage="flow"}' in text
    assert 'tracker_stage_seconds_bucket{engine="flow",le="0.01",stage="encode"}' in text
    assert "tracker_sessions_open 0.0" in text
    assert 'tracker_sessions_total{outcome="completed"} 1.0' in text
    assert 'tracker_engine_info{device="cpu",engine="flow"' in text


def test_json_logs_carry_the_session_id():
    record = logging.LogRecord(
        "tracker.server", logging.INFO, __file__, 1, "session %s opened", ("abc",), None
    )
    record.session_id = "abc"
    entry = json.loads(JsonLogFormatter().format(record))
    assert (
        entry["message"] == "session abc opened" and entry["session_id"] == "abc" and entry["level"] == "INFO"
    )


def test_health_is_not_serving_until_the_engine_has_warmed_up():
    engine = FakeEngine("slow", slow_warm_up=True)
    running = start_server({"slow": engine})
    try:
        assert _health(running.address) == health_pb2.HealthCheckResponse.NOT_SERVING
        engine.release.set()
        assert running.ready.wait(10)
        assert _health(running.address) == health_pb2.HealthCheckResponse.SERVING
    finally:
        running.stop(0)


@pytest.mark.slow
def test_thousand_disconnect_cycles_leave_memory_flat():
    import psutil

    port = free_port()
    process = tracker_process(
        "--log-level", "WARNING", "serve", "--port", str(port), stdout=None, stderr=subprocess.DEVNULL
    )
    try:
        server = psutil.Process(process.pid)
        image = textured_image(H, W)
        with TrackerClient(f"127.0.0.1:{port}") as client:
            client.wait_ready(60)

            def cycle() -> None:
                session = client.open_session(_config())
                session.send_frame(image, 0)
                session.recv_frame()
                session.cancel()

            for _ in range(100):  # warm: allocator pools, gRPC buffers
                cycle()
            time.sleep(0.5)
            start_mb = server.memory_info().rss / 2**20
            for _ in range(1000):
                cycle()
            deadline = time.monotonic() + 10
            while client.info().active_sessions and time.monotonic() < deadline:
                time.sleep(0.05)
            end_mb = server.memory_info().rss / 2**20
            assert client.info().active_sessions == 0
    finally:
        process.terminate()
        process.wait(20)
    assert end_mb <= start_mb * 1.05, f"server RSS grew from {start_mb:.1f} MB to {end_mb:.1f} MB"
