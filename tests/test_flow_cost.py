"""What the flow engine does to fit a 24 fps budget changes no output.

* The first flow at a frame size allocates DIS's pyramid buffers and the pixel grids (3-4 ms
  at 854x480 on a 2-core VM), which the first tracked frame paid within its budget. The
  session builds them at open when it knows the frame size, otherwise on the prompt frame,
  which has no flow of its own to compute.
* :meth:`_Warp.region` samples the flow and both confidences in one 4-channel call and keeps
  the x and y maps apart; its values are those of an exact bilinear resize of the working
  fields (OpenCV's 2-channel path, used before, rounds its weights to 1/32 of a pixel).
"""

from __future__ import annotations

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


def _exact_resize(field: np.ndarray, hw: tuple[int, int], roi: tuple[int, int, int, int]) -> np.ndarray:
    """``field`` (h, w, ...) resized to ``hw`` over ``roi``, in float64: what cv2.resize's
    INTER_LINEAR computes (pixel centres aligned, the border replicated), without rounding."""
    y0, y1, x0, x1 = roi
    h, w = field.shape[:2]
    f = field.astype(np.float64).reshape(h, w, -1)

    def axis(lo: int, hi: int, n_src: int, n_dst: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        src = np.clip((np.arange(lo, hi) + 0.5) * n_src / n_dst - 0.5, 0, n_src - 1)
        i0 = np.floor(src).astype(int)
        return i0, np.minimum(i0 + 1, n_src - 1), src - i0

    r0, r1, fy = axis(y0, y1, h, hw[0])
    c0, c1, fx = axis(x0, x1, w, hw[1])
    fy, fx = fy[:, None, None], fx[None, :, None]
    top = f[r0][:, c0] * (1 - fx) + f[r0][:, c1] * fx
    bottom = f[r1][:, c0] * (1 - fx) + f[r1][:, c1] * fx
    return (top * (1 - fy) + bottom * fy).reshape(y1 - y0, x1 - x0, *field.shape[2:])


@pytest.mark.parametrize("hw", [(480, 854), (270, 270), (181, 333)])
def test_region_is_an_exact_bilinear_resize_of_the_working_fields(hw: tuple[int, int]) -> None:
    rng = np.random.default_rng(1)
    work = (round(hw[0] * 0.37), round(hw[1] * 0.37))  # an uneven scale, not the same along both axes
    flow = (rng.normal(0.0, 4.0, (*work, 2))).astype(np.float32)
    confidence = rng.random(work, dtype=np.float32)
    structure = rng.random(work, dtype=np.float32)
    fb = rng.random(work, dtype=np.float32)
    warp = _Warp(_pixel_grid(work) + flow, flow, confidence, structure, fb, hw, _pixel_grid(hw), 16.0)
    scale = np.array([hw[1] / work[1], hw[0] / work[0]])
    for roi in [(0, hw[0], 0, hw[1]), (17, hw[0] // 2, 31, hw[1] - 5)]:
        fields = warp.region(roi)
        map_x, map_y = fields.maps
        assert map_y is not None and map_x.dtype == map_y.dtype == np.float32
        assert map_x.shape == map_y.shape == (roi[1] - roi[0], roi[3] - roi[2])
        y0, y1, x0, x1 = roi
        grid = _pixel_grid(hw)[y0:y1, x0:x1].astype(np.float64)
        expected = grid + _exact_resize(flow, hw, roi) * scale
        # float32 coordinates of up to ~850 px hold ~1e-4 px; the 1/32-px weights erred by ~0.3 px
        assert np.abs(map_x - expected[..., 0]).max() < 2e-3
        assert np.abs(map_y - expected[..., 1]).max() < 2e-3
        # values in [0, 1]: float32 weights hold ~1e-5; weights rounded to 1/32 err by up to ~1/64
        for got, want in [
            (fields.confidence, confidence),
            (fields.structure, structure),
            (fields.fb_error, fb),
        ]:
            assert got is not None
            np.testing.assert_allclose(got, _exact_resize(want, hw, roi), rtol=0, atol=1e-4)


def test_at_full_resolution_the_region_is_a_cut_of_the_fields() -> None:
    hw = (60, 80)
    flow = np.random.default_rng(2).normal(0.0, 2.0, (*hw, 2)).astype(np.float32)
    ones = np.ones(hw, np.float32)
    warp = _Warp(_pixel_grid(hw) + flow, flow, ones, ones, None, hw, _pixel_grid(hw), 8.0)
    fields = warp.region((5, 40, 10, 70))
    map_xy, none = fields.maps
    assert none is None and fields.fb_error is None
    assert np.array_equal(map_xy, warp.work_map[5:40, 10:70])
