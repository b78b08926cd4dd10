"""``tracker live`` on recorded sources: every frame sent is answered, recordings are complete."""

from __future__ import annotations

import argparse
from pathlib import Path

import cv2
import numpy as np
import pytest

from tests.conftest import shift, textured_image
from tracker.lab.live import LiveOptions, add_cli, run_live
from tracker.lab.live.runner import Recorder, parse_box
from tracker.lab.live.source import ArraySource, CaptureSource, open_source

H, W = 96, 128
BOX = (44.0, 28.0, 32.0, 32.0)  # x, y, w, h


def _moving(n: int) -> list[np.ndarray]:
    image = textured_image(H, W, seed=5)
    return [shift(image, i, 0) for i in range(n)]


def _write_video(path: Path, frames: list[np.ndarray], fps: float) -> Path:
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter.fourcc(*"mp4v"), fps, (W, H))
    assert writer.isOpened()
    for frame in frames:
        writer.write(cv2.cvtColor(frame, cv2.COLOR_GRAY2BGR))
    writer.release()
    return path


def _count_frames(path: Path) -> tuple[int, tuple[int, int]]:
    cap = cv2.VideoCapture(str(path))
    assert cap.isOpened(), f"{path} is not a playable video"
    count, shape = 0, (0, 0)
    while True:
        ok, frame = cap.read()
        if not ok:
            break
        count, shape = count + 1, frame.shape[:2]
    cap.release()
    return count, shape


def _check_every_frame_answered(summary, n: int) -> None:
    assert summary.error is None
    assert summary.frames_read == n
    assert sorted(summary.answered_indices) == list(range(n)), "one answer per frame sent"
    assert summary.frames_transmitted + summary.frames_skipped == n
    assert summary.server_answers == summary.frames_transmitted
    assert summary.local_answers == summary.frames_skipped
    assert sum(summary.statuses.values()) == n


def test_live_on_a_video_file_answers_every_frame_and_records_it(tmp_path):
    n = 16
    video = _write_video(tmp_path / "clip.mp4", _moving(n), fps=25)
    out = tmp_path / "out" / "live.mp4"
    summary = run_live(str(video), LiveOptions(prompt_box=BOX, record=out))
    _check_every_frame_answered(summary, n)
    assert summary.statuses.get("OK", 0) + summary.statuses.get("LATE", 0) >= 1
    assert summary.latency_ms["p50"] is not None and summary.budget_ms == pytest.approx(40.0)
    count, shape = _count_frames(out)
    assert count == n == summary.recorded_frames and shape == (H, W)
    # The overlay is in the recording: green contour pixels (mp4v is lossy, so loosely).
    cap = cv2.VideoCapture(str(out))
    _, bgr = cap.read()
    cap.release()
    green = (bgr[:, :, 1] > 150) & (bgr[:, :, 0] < 130) & (bgr[:, :, 2] < 130)
    assert green.sum() > 20


def test_live_on_an_image_folder_with_max_frames_via_the_cli(tmp_path):
    folder = tmp_path / "frames"
    folder.mkdir()
    for i, frame in enumerate(_moving(12)):
        cv2.imwrite(str(folder / f"f{i:03d}.png"), frame)
    mask = np.zeros((H, W), np.uint8)
    mask[30:58, 46:74] = 255
    cv2.imwrite(str(tmp_path / "prompt.png"), mask)
    out = tmp_path / "live.mp4"
    parser = argparse.ArgumentParser()
    add_cli(parser.add_subparsers(dest="command"))
    args = parser.parse_args(
        ["live", "--source", str(folder), "--prompt-mask", str(tmp_path / "prompt.png"), "--fps", "40",
         "--max-frames", "9", "--record", str(out)]
    )  # fmt: skip
    assert args.func(args) == 0
    assert _count_frames(out)[0] == 9


def test_live_stops_after_its_duration_and_the_last_answers_still_arrive():
    source = ArraySource(_moving(2) * 200, frame_rate_hz=20)
    summary = run_live(source, LiveOptions(prompt_box=BOX, duration_s=0.5))
    assert 5 <= summary.frames_read <= 12
    _check_every_frame_answered(summary, summary.frames_read)


def test_live_counts_stale_answers_and_reports_them():
    source = ArraySource(_moving(8), frame_rate_hz=20)
    summary = run_live(source, LiveOptions(prompt_box=BOX, max_answer_age_ms=0.001))
    _check_every_frame_answered(summary, 8)
    assert summary.stale_answers == summary.server_answers > 0  # no answer comes within 1 µs
    assert summary.as_dict()["stale_answers"] == summary.stale_answers
    fresh = run_live(ArraySource(_moving(8), frame_rate_hz=20), LiveOptions(prompt_box=BOX))
    assert fresh.stale_answers == 0


def test_a_slow_send_path_skips_frames_on_the_client_and_still_answers_each():
    big = [np.full((1536, 1536), v, np.uint8) for v in (10, 200)]  # 2.3 MB each, sent unpaced
    source = ArraySource(big * 15, frame_rate_hz=0)  # rate 0: as fast as the source delivers
    summary = run_live(source, LiveOptions(prompt_box=(100, 100, 300, 300), latency_budget_ms=1000))
    _check_every_frame_answered(summary, 30)
    assert summary.frames_skipped == summary.local_answers > 0
    assert summary.frames_transmitted >= 1, "the newest frame always goes out"


def test_bad_arguments_are_refused_clearly(tmp_path):
    with pytest.raises(ValueError, match="--prompt-click needs --view"):
        run_live(ArraySource(_moving(2), 10), LiveOptions(prompt_click=True))
    with pytest.raises(ValueError, match="nothing to track"):
        run_live(ArraySource(_moving(2), 10), LiveOptions())
    with pytest.raises(ValueError, match="x,y,w,h"):
        parse_box("1,2,3")
    with pytest.raises(FileNotFoundError, match="no such file"):
        open_source(tmp_path / "missing.mp4")
    with pytest.raises(ValueError, match="cannot open the capture source"):
        CaptureSource("rtsp://127.0.0.1:9/none")


def test_recorder_writes_in_index_order_whatever_the_answer_order(tmp_path):
    recorder = Recorder(tmp_path / "r.mp4", fps=10)
    frames = {i: np.full((H, W), i * 20, np.uint8) for i in range(5)}
    labels = np.zeros((H, W), np.uint16)
    for i in (2, 0, 4, 1, 3):
        recorder.add(i, frames[i], labels, "")
    recorder.close()
    cap = cv2.VideoCapture(str(tmp_path / "r.mp4"))
    means = []
    while (read := cap.read())[0]:
        means.append(float(read[1][H // 2 :, :].mean()))
    assert len(means) == 5 and means == sorted(means)
