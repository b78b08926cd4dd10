"""Run by tests/test_packaging.py with a bare install's interpreter (not collected by pytest).

Waits for the server at argv[1] to report SERVING, reads GetInfo, runs one flow session
through the installed client library, and prints one JSON line with what it saw.
"""

from __future__ import annotations

import importlib.util
import json
import sys
import time

import grpc
import numpy as np
from grpc_health.v1 import health_pb2, health_pb2_grpc

from tracker.client import ClientResult, TrackerClient
from tracker.types import MaskPrompt, ObjectPrompt

N_FRAMES = 6


def wait_serving(address: str, timeout_s: float = 120.0) -> None:
    deadline = time.monotonic() + timeout_s
    with grpc.insecure_channel(address) as channel:
        stub = health_pb2_grpc.HealthStub(channel)
        while True:
            try:
                reply = stub.Check(health_pb2.HealthCheckRequest(), timeout=2.0)
                if reply.status == health_pb2.HealthCheckResponse.SERVING:
                    return
            except grpc.RpcError:
                pass
            if time.monotonic() > deadline:
                raise TimeoutError(f"{address} did not report SERVING within {timeout_s} s")
            time.sleep(0.2)


def main() -> int:
    address = sys.argv[1]
    wait_serving(address)
    h, w = 64, 80
    rng = np.random.default_rng(0)
    base = (rng.random((h, w)) * 255).astype(np.uint8)
    yy, xx = np.mgrid[:h, :w]
    target = (xx - 30) ** 2 + (yy - 32) ** 2 <= 8**2
    with TrackerClient(address) as client:
        info = client.info()
        session = client.open_session(objects=(ObjectPrompt(1, MaskPrompt(target), "tumour"),))
        for i in range(N_FRAMES):
            session.send_frame(np.roll(base, i, axis=1), i)
        answers = [a for a in session.close() if isinstance(a, ClientResult)]
    print(  # the test reads this line
        json.dumps(
            {
                "engines": [e.name for e in info.engines],
                "frames_sent": N_FRAMES,
                "answers": sorted(a.result.frame_index for a in answers),
                "statuses": sorted({a.result.status.name for a in answers}),
                "heavy_modules_importable": [
                    m for m in ("torch", "onnxruntime", "pycocotools", "sam2") if importlib.util.find_spec(m)
                ],
            }
        )
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
