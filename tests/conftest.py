"""Shared fixtures: a real server on a loopback port, textured test images, one fake engine."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Hashable, Iterator, Sequence
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import pytest

from tracker.convert import Limits
from tracker.engines import create_engine
from tracker.engines.base import Engine, EngineInfo, EngineSession, StepOutput
from tracker.server.app import RunningServer, start_server
from tracker.types import Frame, MaskPrompt, ObjectPrompt, ObjectTrack, SessionConfig

REPO_ROOT = Path(__file__).resolve().parent.parent


def free_port() -> int:
    """A loopback port nothing listens on now (for servers started in their own process)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def tracker_process(*args: str, **popen: Any) -> subprocess.Popen[bytes]:
    """``python -m tracker.cli ARGS`` as a process; stdout and stderr in one pipe unless ``popen`` says."""
    options: dict[str, Any] = {"stdout": subprocess.PIPE, "stderr": subprocess.STDOUT, **popen}
    return subprocess.Popen([sys.executable, "-m", "tracker.cli", *args], **options)


def stop_process(process: subprocess.Popen[bytes], timeout_s: float) -> bytes:
    """SIGTERM ``process``; what it wrote to its pipe once it has ended."""
    process.terminate()
    out, _ = process.communicate(timeout=timeout_s)
    return out


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


def disk_config(h: int, w: int, cx: float, cy: float, r: float, label: str = "", **kw: Any) -> SessionConfig:
    """A session of one object (id 1, ``label``) prompted with a disk mask on ``h`` x ``w`` frames."""
    return SessionConfig(objects=(ObjectPrompt(1, MaskPrompt(disk(h, w, cx, cy, r)), label),), **kw)


@pytest.fixture(scope="module")
def flow_server() -> Iterator[RunningServer]:
    running = start_server(
        {"flow": create_engine("flow")}, port=0, limits=Limits(max_frame_pixels=2048 * 2048)
    )
    assert running.ready.wait(60), "engine warm-up did not finish"
    yield running
    running.stop(grace_s=0.5)


class FakeEngine(Engine):
    """The one stand-in engine of the server, scheduler, budget and fault tests.

    Each step sleeps its cost and answers every object with a whole-frame mask (``present``
    and confidence 1) or an empty one (``present=False``, confidence 0). What a test needs
    beyond that is switched on by name:

    * ``cost_ms``: per frame, or one cost per degradation level (then the session offers
      ``len(cost_ms) - 1`` degradation steps), timed as the stage ``"inference"``;
    * ``fail_on``: frame indices whose step raises ``RuntimeError(fault)``;
    * ``hold``: each step sets :attr:`entered` and waits for :attr:`release` (a frame is then
      provably in flight);
    * ``session_faults``: the n-th session opened hangs (``"hang"``: sets :attr:`hung`, waits
      for :attr:`release`) or ends its worker thread (``"die"``) on the given frame;
    * ``slow_warm_up``: :meth:`warm_up` waits for :attr:`release`;
    * ``batching``: frames of all sessions share a key, and :meth:`step_batch` runs them in
      one call. Every call's ``(client_name, frame index)`` pairs are kept in :attr:`calls`,
      and :attr:`overlaps` counts calls that found a frame of the same session still running.
    """

    def __init__(
        self,
        name: str = "fake",
        *,
        cost_ms: float | Sequence[float] = 0.0,
        fail_on: Sequence[int] = (),
        fault: str = "CUDA error: an illegal memory access",
        empty_masks: bool = False,
        hold: bool = False,
        session_faults: dict[int, tuple[str, int]] | None = None,
        slow_warm_up: bool = False,
        batching: bool = False,
    ) -> None:
        self.info = EngineInfo(name, "1", capabilities=("mask_prompt",))
        self.costs = tuple(cost_ms) if isinstance(cost_ms, Sequence) else (float(cost_ms),)
        self.fail_on = set(fail_on)
        self.fault = fault
        self.empty_masks = empty_masks
        self.hold = hold
        self.session_faults = dict(session_faults or {})
        self.slow_warm_up = slow_warm_up
        self.batching = batching
        self.entered = threading.Event()
        self.release = threading.Event()
        self.hung = threading.Event()
        self.late_returns = 0  # hung steps that returned after their release
        self.opened = 0
        self.calls: list[list[tuple[str, int]]] = []
        self.running: set[str] = set()
        self.overlaps = 0
        self._lock = threading.Lock()

    def warm_up(self) -> None:
        if self.slow_warm_up:
            self.release.wait(10)

    def open_session(self, config: SessionConfig) -> EngineSession:
        session = _FakeSession(config, self, self.session_faults.get(self.opened))
        self.opened += 1
        return session

    @property
    def max_batch_size(self) -> int:  # type: ignore[override]
        return 64 if self.batching else 1

    def batch_key(self, session: EngineSession, frame: Frame) -> Hashable | None:
        return "all"

    def step_batch(self, work: Sequence[tuple[EngineSession, Frame]]) -> list[StepOutput | Exception]:
        if not self.batching:
            return super().step_batch(work)
        self._enter(work)
        try:
            time.sleep(self.costs[0] / 1000.0)
            return _FakeSession.step_batch(self, work)
        finally:
            self._leave([s for s, _ in work])

    def tracks(self, session: EngineSession, frame: Frame) -> list[ObjectTrack]:
        fill = not self.empty_masks
        mask = np.full(frame.shape_hw, fill, dtype=bool)
        return [ObjectTrack(oid, mask.copy(), 1.0 if fill else 0.0) for oid in session.object_ids]

    def _fault(self, frame: Frame) -> None:
        if frame.index in self.fail_on:
            raise RuntimeError(self.fault)

    def _enter(self, items: Sequence[tuple[EngineSession, Frame]]) -> None:
        with self._lock:
            names = [s.config.client_name for s, _ in items]
            self.overlaps += sum(n in self.running for n in names)
            self.running.update(names)
            self.calls.append([(s.config.client_name, f.index) for s, f in items])

    def _leave(self, sessions: Sequence[EngineSession]) -> None:
        with self._lock:
            self.running.difference_update(s.config.client_name for s in sessions)


class _FakeSession(EngineSession):
    def __init__(self, config: SessionConfig, engine: FakeEngine, fault: tuple[str, int] | None) -> None:
        self.engine = engine
        self.fault = fault
        super().__init__(config)

    def degradations(self) -> tuple[str, ...]:
        return tuple(f"step {i + 1}" for i in range(len(self.engine.costs) - 1))

    @staticmethod
    def step_batch(
        engine: FakeEngine, work: Sequence[tuple[EngineSession, Frame]]
    ) -> list[StepOutput | Exception]:
        """Each item's frame check, tracks and output, one outcome per item (a fault in its place)."""
        outcomes: list[StepOutput | Exception] = []
        for session, frame in work:
            try:
                assert isinstance(session, _FakeSession)
                updates = session._begin_step(frame)
                assert all(u.prompt is not None for u in updates if u.action.value != "remove")
                engine._fault(frame)
                outcomes.append(session._finish_step(engine.tracks(session, frame)))
            except Exception as exc:
                outcomes.append(exc)
        return outcomes

    def _step(self, frame: Frame, updates: list) -> list[ObjectTrack]:
        engine = self.engine
        engine._enter([(self, frame)])
        try:
            if engine.hold:
                engine.entered.set()
                engine.release.wait(10)
            if self.fault is not None and frame.index == self.fault[1]:
                if self.fault[0] == "hang":
                    engine.hung.set()
                    engine.release.wait(60)
                    engine.late_returns += 1
                else:
                    raise SystemExit("injected: the worker thread ends here")
            with self.timer.stage("inference"):
                time.sleep(engine.costs[self.degradation_level] / 1000.0)
            engine._fault(frame)
            return engine.tracks(self, frame)
        finally:
            engine._leave([self])
