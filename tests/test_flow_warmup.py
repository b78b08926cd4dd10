"""The flow engine builds its per-size state before the first tracked frame, and that changes no output.

The first flow at a frame size allocates DIS's pyramid buffers and the pixel grids; paid
inside the first tracked frame, it ate into a 24 fps video's 41.7 ms budget (issue #13's
demo). The session builds them at open when it knows the frame size, otherwise on the
prompt frame, which has no flow of its own to compute.
"""

from __future__ import annotations

import numpy as np
import pytest

from tests.conftest import disk, shift, textured_image
from tracker.engines.flow import FlowEngine, FlowSession
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
