"""The sam2 engine behind the real server: `tracker serve --engine sam2 ...` over gRPC."""

from __future__ import annotations

import numpy as np
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

from tests.conftest import disk, free_port, stop_process, textured_image, tracker_process
from tracker.client import TrackerClient
from tracker.engines.sam2.options import cpu_has_native_bf16
from tracker.types import FrameStatus, MaskPrompt, ObjectPrompt, SessionConfig

H, W = 120, 160


@pytest.mark.slow
@pytest.mark.parametrize(
    "dtype",
    [
        "float32",
        pytest.param(
            "bfloat16",
            marks=pytest.mark.skipif(not cpu_has_native_bf16(), reason="this CPU has no native bfloat16"),
        ),
    ],
)
def test_serve_sam2_with_random_weights_over_grpc(dtype: str):
    port = free_port()
    server = tracker_process(
        "serve", "--engine", "sam2", "--model", "sam2.1_hiera_tiny",
        "--random-weights", "--image-size", "256", "--device", "cpu", "--dtype", dtype, "--port", str(port),
    )  # fmt: skip
    try:
        with TrackerClient(f"127.0.0.1:{port}") as client:
            client.wait_ready(120)
            import time

            import grpc

            deadline = time.monotonic() + 180
            with grpc.insecure_channel(f"127.0.0.1:{port}") as channel:
                health = health_pb2_grpc.HealthStub(channel)
                while (
                    health.Check(health_pb2.HealthCheckRequest(), timeout=5).status
                    != health_pb2.HealthCheckResponse.SERVING
                ):
                    assert time.monotonic() < deadline, "sam2 warm-up did not finish"
                    time.sleep(0.5)
            image = np.dstack([textured_image(H, W, c) for c in range(3)])
            session = client.open_session(
                SessionConfig(objects=(ObjectPrompt(1, MaskPrompt(disk(H, W, 60, 60, 15))),))
            )
            assert session.started.engine.name == "sam2" and session.started.engine.random_weights
            assert f"@256px {dtype}" in session.started.engine.version  # --dtype reached the engine
            assert any("RANDOM WEIGHTS" in w for w in session.started.warnings)
            results = []
            for i in range(3):
                session.send_frame(image, i)
                results.append(session.recv_frame(timeout_s=120).result)
            session.close()
    finally:
        out = stop_process(server, 60)
    assert [r.status for r in results] == [FrameStatus.OK] * 3
    stages = results[-1].timing.stages_ms
    assert {"encoder", "memory_attention", "decoder", "memory_encoder", "encode"} <= set(stages)
    assert results[0].objects[0].mask.shape == (H, W)
    assert b"RANDOM WEIGHTS" in out and server.returncode == 0
