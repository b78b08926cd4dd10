"""Shared fixtures: a real server on a loopback port, textured test images."""

from __future__ import annotations

import os
import socket
from collections.abc import Iterator
from pathlib import Path

import cv2
import numpy as np
import pytest

from engines import create_engine
from tracker.convert import Limits
from tracker.server.app import RunningServer, start_server

REPO_ROOT = Path(__file__).resolve().parent.parent


def free_port() -> int:
    """A loopback port nothing listens on now (for servers started in their own process)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def shared_data_dir() -> Path | None:
    """The workplace's shared real data (``../shared/data``), or None where it is absent."""
    env = os.environ.get("TRACKER_SHARED_DATA")
    path = Path(env) if env else REPO_ROOT.parent / "shared" / "data"
    return path if path.is_dir() else None


@pytest.fixture(scope="session")
def davis_dir() -> Path:
    root = shared_data_dir()
    if root is None or not (root / "davis2016").is_dir():
        pytest.skip("shared DAVIS-2016 data is absent (set TRACKER_SHARED_DATA or place ../shared/data)")
    return root / "davis2016"


def textured_image(h: int = 128, w: int = 160, seed: int = 0) -> np.ndarray:
    """Smooth random texture with blobs: something optical flow can lock onto."""
    rng = np.random.default_rng(seed)
    noise = rng.random((h, w)).astype(np.float32)
    img = cv2.GaussianBlur(noise, (0, 0), 3.0) * 0.6 + cv2.GaussianBlur(noise, (0, 0), 1.0) * 0.4
    img = (img - img.min()) / (img.max() - img.min())
    return (img * 255).astype(np.uint8)


def shift(image: np.ndarray, dx: float, dy: float) -> np.ndarray:
    m = np.float32([[1, 0, dx], [0, 1, dy]])
    return cv2.warpAffine(image, m, (image.shape[1], image.shape[0]), borderMode=cv2.BORDER_REFLECT)


def disk(h: int, w: int, cx: float, cy: float, r: float) -> np.ndarray:
    yy, xx = np.mgrid[:h, :w]
    return (xx - cx) ** 2 + (yy - cy) ** 2 <= r**2


@pytest.fixture(scope="module")
def flow_server() -> Iterator[RunningServer]:
    running = start_server(
        {"flow": create_engine("flow")}, port=0, limits=Limits(max_frame_pixels=2048 * 2048)
    )
    assert running.ready.wait(60), "engine warm-up did not finish"
    yield running
    running.stop(grace_s=0.5)
