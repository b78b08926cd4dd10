"""What the flow engine does to fit a 24 fps budget (issue #13's demo) changes no output.

* The first flow at a frame size allocates DIS's pyramid buffers and the pixel grids (3-4 ms
  at 854x480 on a 2-core VM), which the first tracked frame paid within its budget. The
  session builds them at open when it knows the frame size, otherwise on the prompt frame,
  which has no flow of its own to compute.
* :meth:`_Warp.region` scales the sampled flow channel by channel instead of by a broadcast
  (2,) multiply, which numpy runs with an inner loop of two elements; the values are the same.
"""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from tests.conftest import disk, shift, textured_image
from tracker.engines.flow import FlowEngine, FlowSession, _pixel_grid, _Warp
from tracker.types import (
    Frame,
    MaskPrompt,
    ObjectPrompt,
    ObjectTrack,
    PromptUpdate,
    SessionConfig,
    UpdateAction,
)

H, W = 180, 320
MAX_SIDE = "160"  # flow at 90x160: the working grid differs from the full-resolution one
WORK = (90, 160)


def _frames(n: int = 6) -> list[np.ndarray]:
    base = textured_image(H, W, seed=3)
    return [shift(base, 2.5 * t, -1.5 * t) for t in range(n)]


def _config(declared: bool) -> SessionConfig:
    objects = (
        ObjectPrompt(1, MaskPrompt(disk(H, W, 150, 90, 25))),
        ObjectPrompt(2, MaskPrompt(disk(H, W, 60, 50, 15))),
    )
    return SessionConfig(objects=objects, image_size=(H, W) if declared else None)


def _session(declared: bool) -> FlowSession:
    return FlowEngine.from_options({"max_side": MAX_SIDE}).open_session(_config(declared))


def test_a_declared_size_is_prepared_at_open_and_the_first_tracked_frame_reuses_it() -> None:
    session = _session(declared=True)
    assert session._prepared == ((H, W), WORK)
    grid, work_grid = session._grid, session._work_grid
    assert (
        grid is not None
        and grid.shape == (H, W, 2)
        and work_grid is not None
        and work_grid.shape == (*WORK, 2)
    )
    frames = _frames(2)
    session.step(Frame(0, frames[0]))
    session.step(Frame(1, frames[1]))
    assert session._grid is grid and session._work_grid is work_grid  # built once, before any frame
    session.close()
    assert session._prepared is None and session._grid is None


def test_without_a_declared_size_the_prompt_frame_prepares_it() -> None:
    session = _session(declared=False)
    assert session._prepared is None and session._grid is None  # nothing to size it by yet
    frames = _frames(2)
    session.step(Frame(0, frames[0]))
    assert session._prepared == ((H, W), WORK)
    grid = session._grid
    assert grid is not None and grid.shape == (H, W, 2)
    session.step(Frame(1, frames[1]))
    assert session._grid is grid


def _run(session: FlowSession, frames: list[np.ndarray]) -> list[list[ObjectTrack]]:
    tracks = []
    for i, frame in enumerate(frames):
        if i == 3:  # a re-prompt of every object: a frame without flow, mid-stream
            for oid, (cx, cy, r) in {1: (157.5, 85.5, 25.0), 2: (67.5, 45.5, 15.0)}.items():
                session.apply(PromptUpdate(UpdateAction.CORRECT, oid, MaskPrompt(disk(H, W, cx, cy, r))))
        tracks.append(session.step(Frame(i, frame)).tracks)
    return tracks


@pytest.mark.parametrize("declared", [True, False])
def test_preparing_changes_no_output(monkeypatch: pytest.MonkeyPatch, declared: bool) -> None:
    frames = _frames()
    prepared = _run(_session(declared), frames)
    monkeypatch.setattr(FlowSession, "_prepare", lambda self, hw: None)
    cold = _session(declared)
    assert cold._grid is None  # really not prepared: everything is built inside the tracked frames
    unprepared = _run(cold, frames)
    assert len(prepared) == len(frames) and all(len(ts) == 2 for ts in prepared)
    assert any(
        t.mask.any() and not np.array_equal(t.mask, prepared[0][i].mask) for i, t in enumerate(prepared[2])
    )
    for a_frame, b_frame in zip(prepared, unprepared, strict=True):
        for a, b in zip(a_frame, b_frame, strict=True):
            assert a.object_id == b.object_id
            assert np.array_equal(a.mask, b.mask)
            assert a.score == b.score and a.confidence == b.confidence


def _region_as_before(warp: _Warp, roi: tuple[int, int, int, int]) -> np.ndarray:
    """The region's map as the engine computed it before: one broadcast multiply by both scales."""
    y0, y1, x0, x1 = roi
    h, w = warp.flow.shape[:2]
    sx, sy = w / warp.hw[1], h / warp.hw[0]
    to_work = np.array([[sx, 0.0, sx * (x0 + 0.5) - 0.5], [0.0, sy, sy * (y0 + 0.5) - 0.5]])
    flags = cv2.INTER_LINEAR | cv2.WARP_INVERSE_MAP
    flow = cv2.warpAffine(
        warp.flow, to_work, (x1 - x0, y1 - y0), flags=flags, borderMode=cv2.BORDER_REPLICATE
    )
    return warp.grid[y0:y1, x0:x1] + flow * np.array([1.0 / sx, 1.0 / sy], dtype=np.float32)


@pytest.mark.parametrize("hw", [(480, 854), (270, 270), (181, 333)])
def test_region_scales_the_flow_exactly_as_the_broadcast_did(hw: tuple[int, int]) -> None:
    rng = np.random.default_rng(1)
    work = (round(hw[0] * 0.37), round(hw[1] * 0.37))  # an uneven scale, not the same along both axes
    flow = (rng.normal(0.0, 4.0, (*work, 2))).astype(np.float32)
    ones = np.ones(work, np.float32)
    warp = _Warp(_pixel_grid(work) + flow, flow, ones, ones, None, hw, _pixel_grid(hw), 16.0)
    for roi in [(0, hw[0], 0, hw[1]), (17, hw[0] // 2, 31, hw[1] - 5)]:
        got = warp.region(roi).map_xy
        assert got.shape == (roi[1] - roi[0], roi[3] - roi[2], 2) and got.dtype == np.float32
        assert np.array_equal(got, _region_as_before(warp, roi))
