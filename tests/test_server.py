"""The service over real gRPC on loopback with the real flow engine."""

from __future__ import annotations

import time
from typing import Any

import grpc
import numpy as np
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha.proto_reflection_descriptor_database import ProtoReflectionDescriptorDatabase

from tests.conftest import disk, disk_config, shift, textured_image
from tracker.client import ClientResult, TrackerClient, TrackerError
from tracker.convert import Limits
from tracker.engines import create_engine
from tracker.server.app import start_server
from tracker.types import (
    BoxPrompt,
    FrameStatus,
    Geometry,
    MaskPrompt,
    Modality,
    PromptAck,
    PromptUpdate,
    SessionConfig,
    UpdateAction,
)
from tracker.v1 import tracker_pb2 as pb

H, W = 128, 160


def _config(**kw: Any) -> SessionConfig:
    return disk_config(H, W, 60, 64, 12, "tumour", modality=Modality.CINE_MRI, **kw)


def test_stream_tracks_a_moving_target_and_reports_mm(flow_server):
    image = textured_image(H, W)
    geometry = Geometry(spacing_mm=(0.5, 2.0), origin_mm=(10.0, -5.0, 3.0))
    with TrackerClient(flow_server.address) as client:
        session = client.open_session(_config(geometry=geometry))
        assert session.started.engine.name == "flow"
        assert session.started.server_version and session.started.protocol_version == "tracker.v1"
        assert "correct_object" in session.started.engine.capabilities
        results = []
        for i in range(6):
            session.send_frame(shift(image, 2 * i, i), i, timestamp_s=i * 0.25)
            results.append(session.recv_frame())
        session.close()
    assert [r.result.frame_index for r in results] == list(range(6))
    assert all(r.result.status is FrameStatus.OK for r in results)
    last = results[-1].result.objects[0]
    assert last.object_id == 1 and last.label == "tumour" and last.present
    # The target moved by (+10, +5) px over five frames.
    assert last.centroid_px[0] == pytest.approx(70, abs=1.0)
    assert last.centroid_px[1] == pytest.approx(69, abs=1.0)
    expected_mm = geometry.pixel_to_mm(*last.centroid_px)
    assert last.centroid_mm == pytest.approx(expected_mm)
    assert last.mask.shape == (H, W) and last.area_px == int(last.mask.sum())
    x0, y0, x1, y1 = last.box
    assert x0 <= last.centroid_px[0] <= x1 and y0 <= last.centroid_px[1] <= y1
    timing = results[-1].result.timing
    assert timing.total_ms >= timing.compute_ms > 0 and timing.receive_time_s > 1e9
    assert {"queue", "decode", "preprocess", "flow", "propagate", "postprocess", "encode"} <= set(
        timing.stages_ms
    )
    assert sum(timing.stages_ms.values()) <= timing.total_ms + 0.5


def test_png_mask_encoding_round_trips(flow_server):
    image = textured_image(H, W)
    with TrackerClient(flow_server.address) as client:
        session = client.open_session(_config(), mask_encoding=pb.PNG)
        session.send_frame(image, 0)
        result = session.recv_frame().result
        session.close()
    assert result.objects[0].mask.sum() == disk(H, W, 60, 64, 12).sum()


def test_prompt_updates_add_correct_remove_mid_stream(flow_server):
    image = textured_image(H, W)
    with TrackerClient(flow_server.address) as client:
        session = client.open_session(_config())
        session.send_frame(image, 0)
        first = session.recv_frame().result
        session.send_update(
            PromptUpdate(UpdateAction.ADD, 7, BoxPrompt(100, 20, 130, 50), "grasper", update_id=1)
        )
        ack = session.recv()
        assert ack == PromptAck(1, True, ack.message)
        session.send_frame(image, 1)
        second = session.recv_frame().result
        assert [o.object_id for o in second.objects] == [1, 7]
        assert second.applied_update_ids == [1]
        # The added object did not disturb the first one.
        assert np.array_equal(second.objects[0].mask, first.objects[0].mask)
        assert second.objects[1].label == "grasper" and second.objects[1].present

        corrected = disk(H, W, 30, 30, 8)
        session.send_update(PromptUpdate(UpdateAction.CORRECT, 1, MaskPrompt(corrected), update_id=2))
        session.send_update(PromptUpdate(UpdateAction.REMOVE, 7, update_id=3))
        session.send_update(PromptUpdate(UpdateAction.REMOVE, 99, update_id=4))
        acks = [session.recv() for _ in range(3)]
        assert [(a.update_id, a.accepted) for a in acks] == [(2, True), (3, True), (4, False)]
        assert "unknown object id 99" in acks[2].message
        session.send_frame(image, 2)
        third = session.recv_frame().result
        session.close()
    assert [o.object_id for o in third.objects] == [1]
    assert third.applied_update_ids == [2, 3]
    assert np.array_equal(third.objects[0].mask, corrected)


def test_every_frame_gets_exactly_one_answer_when_frames_arrive_too_fast(flow_server):
    # Large frames sent in a burst: processing cannot keep up, so stale frames are dropped.
    big = textured_image(1024, 1024, seed=3)
    config = disk_config(1024, 1024, 500, 500, 80, modality=Modality.CINE_MRI)
    n = 40
    with TrackerClient(flow_server.address) as client:
        session = client.open_session(config)
        for i in range(n):
            session.send_frame(shift(big, i % 5, 0), i)
        answers = [a for a in session.close() if isinstance(a, ClientResult)]
    indices = sorted(a.result.frame_index for a in answers)
    assert indices == list(range(n)), "each frame must be answered exactly once"
    statuses = {a.result.frame_index: a.result.status for a in answers}
    assert set(statuses.values()) <= {FrameStatus.OK, FrameStatus.DROPPED, FrameStatus.LATE}
    assert list(statuses.values()).count(FrameStatus.DROPPED) > 0
    assert statuses[n - 1] is not FrameStatus.DROPPED, "the newest frame is always processed"
    dropped = next(a.result for a in answers if a.result.status is FrameStatus.DROPPED)
    assert "latest frame wins" in dropped.message and not dropped.objects


def test_frames_over_budget_are_answered_late(flow_server):
    image = textured_image(H, W)
    with TrackerClient(flow_server.address) as client:
        session = client.open_session(_config(latency_budget_ms=0.001))
        assert session.started.latency_budget_ms == pytest.approx(0.001)
        session.send_frame(image, 0)
        result = session.recv_frame().result
        session.close()
    assert result.status is FrameStatus.LATE
    assert "over the session budget" in result.message
    assert result.objects and result.objects[0].present, "a late answer still carries its result"


def test_cancel_frees_the_session_at_once(flow_server):
    image = textured_image(H, W)
    with TrackerClient(flow_server.address) as client:
        before = client.info().active_sessions
        session = client.open_session(_config())
        session.send_frame(image, 0)
        session.recv_frame()
        assert client.info().active_sessions == before + 1
        session.cancel()
        deadline = time.monotonic() + 5
        while client.info().active_sessions != before and time.monotonic() < deadline:
            time.sleep(0.02)
        assert client.info().active_sessions == before


def test_health_and_reflection(flow_server):
    channel = grpc.insecure_channel(flow_server.address)
    health = health_pb2_grpc.HealthStub(channel)
    for service in ("", "tracker.v1.Tracker"):
        status = health.Check(health_pb2.HealthCheckRequest(service=service), timeout=5).status
        assert status == health_pb2.HealthCheckResponse.SERVING
    database = ProtoReflectionDescriptorDatabase(channel)
    services = database.get_services()
    assert "tracker.v1.Tracker" in services and "grpc.health.v1.Health" in services
    method_names = [m.name for m in database.FindFileContainingSymbol("tracker.v1.Tracker").service[0].method]
    assert {"Track", "GetInfo"} <= set(method_names)
    channel.close()


def test_get_info_lists_engine_and_limits(flow_server):
    with TrackerClient(flow_server.address) as client:
        info = client.info()
    assert info.default_engine == "flow" and [e.name for e in info.engines] == ["flow"]
    assert info.max_frame_pixels == 2048 * 2048 and info.protocol_version == "tracker.v1"


def test_session_limit_is_enforced():
    running = start_server({"flow": create_engine("flow")}, limits=Limits(max_sessions=1))
    try:
        with TrackerClient(running.address) as client:
            first = client.open_session(_config())
            with pytest.raises(TrackerError) as err:
                client.open_session(_config())
            assert (
                err.value.code == grpc.StatusCode.RESOURCE_EXHAUSTED and "max_sessions" in err.value.details
            )
            first.close()
    finally:
        running.stop(0)
