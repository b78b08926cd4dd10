"""Shared fixtures: a real server on a loopback port, textured test images."""

from __future__ import annotations

import os
import shutil
import socket
from collections.abc import Iterator
from pathlib import Path

import cv2
import numpy as np
import pytest

from tracker.convert import Limits
from tracker.engines import create_engine
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


def davis_root() -> Path:
    """The shared DAVIS-2016 folder: skip where the shared data folder is absent, fail where it is broken.

    The shared folder exists here and in CI; only on a user's machine is it missing. When it
    is there, a missing or unreadable DAVIS folder is a fault to report, never a reason to
    test something else instead.
    """
    root = shared_data_dir()
    if root is None:
        pytest.skip("the shared data folder is absent (set TRACKER_SHARED_DATA or place ../shared/data)")
    davis = root / "davis2016"
    if not davis.is_dir():
        pytest.fail(f"the shared data folder {root} is present but has no davis2016/ (see its README)")
    return davis


def davis_clip(folder: Path, sequence: str, n: int) -> list[np.ndarray]:
    """Copy the first ``n`` JPEGs of a shared DAVIS sequence into ``folder`` (bytes as published).

    Returns the frames' object masks (annotation > 127); fails naming the file that is missing
    or unreadable.
    """
    src = davis_root() / sequence
    masks = []
    for i in range(n):
        jpeg, png = src / "JPEGImages" / f"{i:05d}.jpg", src / "Annotations" / f"{i:05d}.png"
        for path in (jpeg, png):
            if not path.is_file():
                pytest.fail(f"shared DAVIS data is broken: {path} is missing")
        shutil.copy(jpeg, folder / jpeg.name)
        annotation = cv2.imread(str(png), cv2.IMREAD_GRAYSCALE)
        if annotation is None:
            pytest.fail(f"shared DAVIS data is broken: {png} is not a readable image")
        masks.append(annotation > 127)
    return masks


@pytest.fixture(scope="session")
def davis_dir() -> Path:
    return davis_root()


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
