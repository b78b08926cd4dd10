"""End to end: recorded sequences streamed through the real gRPC API and scored."""

from __future__ import annotations

import json
import threading

import numpy as np
import pytest
import SimpleITK as sitk
from PIL import Image
from tqdm import tqdm

from tests.conftest import disk, free_port, shift, stop_process, textured_image, tracker_process
from tests.test_davis import ref_f_measure, ref_iou, toolkit_read_masks
from tracker.cli import main as cli_main
from tracker.client import ClientResult, StreamSession, TrackerClient
from tracker.io.sequence import Sequence
from tracker.io.trackrad import read_trackrad_case
from tracker.lab.replay import ReplayOptions, case_report, replay, replay_sequence
from tracker.lab.replay.run import _stream, session_config_for
from tracker.lab.synth.cine_mri import write_cases
from tracker.types import BudgetPolicy, FrameStatus

REPORT_KEYS = {"dice_mean", "hd95_mm_mean", "msd_mm_mean", "centroid_mm_mean", "frames", "dropped", "late"}
PERCENTILE_KEYS = {"p50", "p95", "p99", "max"}


@pytest.fixture(scope="module")
def cine_case(tmp_path_factory):
    return write_cases(tmp_path_factory.mktemp("cine"), 1, seed=11, progress=False)[0]


def _check_report_shape(report: dict) -> None:
    assert set(report) >= {"cases", "summary"}
    for block in [*report["cases"], report["summary"]]:
        assert set(block) >= REPORT_KEYS
        assert set(block["latency_ms"]) >= PERCENTILE_KEYS and set(block["server_ms"]) >= PERCENTILE_KEYS


@pytest.mark.slow
def test_replay_synthetic_cine_mri_case_via_cli(cine_case, tmp_path):
    report_path = tmp_path / "report.json"
    code = cli_main(
        [
            "replay",
            str(cine_case),
            "--report",
            str(report_path),
            "--out-masks",
            str(tmp_path / "masks"),
            "--no-progress",
        ]
    )
    assert code == 0
    report = json.loads(report_path.read_text())
    _check_report_shape(report)
    case = report["cases"][0]
    sequence = read_trackrad_case(cine_case)
    assert (
        case["frames"] == len(sequence) and case["dropped"] == 0 and case["late"] == 0 and case["errors"] == 0
    )
    assert case["dice_mean"] >= 0.85
    assert case["centroid_mm_mean"] <= 1.5
    assert case["hd95_mm_mean"] <= 4.0
    assert report["summary"]["latency_ms"]["p50"] < 1000
    # Predicted masks are written in the TrackRAD layout, readable like ground truth.
    written = tmp_path / "masks" / cine_case.name / "targets" / f"{cine_case.name}_labels.mha"
    labels = sitk.GetArrayFromImage(sitk.ReadImage(str(written)))
    assert labels.shape == (*sequence.shape_hw, len(sequence))
    assert np.array_equal(labels[:, :, 0] > 0, sequence.first_label > 0)


@pytest.mark.slow
def test_replay_davis_sequence(davis_dir, tmp_path):
    report, _ = replay(
        [davis_dir / "car-shadow"],
        ReplayOptions(rate="max", progress=False, out_masks=tmp_path / "masks"),
        report_path=tmp_path / "r.json",
    )
    _check_report_shape(report)
    case = report["cases"][0]
    assert case["kind"] == "davis" and case["frames"] == 40 and case["dropped"] == 0
    assert case["j_mean_after_prompt"] >= 0.70, "flow should hold a car over 40 frames"
    assert len(list((tmp_path / "masks" / "car-shadow").glob("*.png"))) == 40
    # DAVIS as davis2017-evaluation scores it: the written indexed PNGs against the
    # annotations, frames 1..T-2, by the test's transcription of the toolkit.
    names = [f"{i:05d}" for i in range(1, 39)]
    predicted = toolkit_read_masks(tmp_path / "masks" / "car-shadow", names)
    assert predicted.shape[0] == 1
    truth = [np.array(Image.open(davis_dir / "car-shadow" / "Annotations" / f"{n}.png")) > 0 for n in names]
    j = np.mean([ref_iou(t, p) for t, p in zip(truth, predicted[0], strict=True)])
    f = np.mean([ref_f_measure(p, t) for t, p in zip(truth, predicted[0], strict=True)])
    scores = case["davis"]
    assert scores["j_mean"] == pytest.approx(j, abs=1e-6)
    assert scores["f_mean"] == pytest.approx(f, abs=1e-6)
    assert scores["j_and_f_mean"] == pytest.approx((j + f) / 2, abs=1e-6)
    assert report["summary"]["davis"]["j_and_f_mean"] == pytest.approx((j + f) / 2, abs=1e-6)


@pytest.mark.slow
def test_realtime_replay_against_a_separate_server_process(cine_case, tmp_path):
    """`tracker serve` in its own process, `tracker replay --server` paced by acquisition time."""

    port = free_port()
    server = tracker_process("serve", "--engine", "flow", "--port", str(port))
    try:
        sequence = read_trackrad_case(cine_case)
        n = min(len(sequence), 12)
        # A short realtime replay: keep only the first n frames to bound the wall time.
        short = tmp_path / "short"
        from tracker.io.trackrad import write_trackrad_case

        case = write_trackrad_case(
            short,
            "R001",
            np.asarray(sequence.frames[:n]),
            sequence.first_label,
            8.0,
            np.asarray(sequence.labels[:n]),
        )
        report, _ = replay(
            [case],
            ReplayOptions(rate="realtime", progress=False),
            server=f"127.0.0.1:{port}",
            report_path=None,
        )
    finally:
        out = stop_process(server, 20)
    c = report["cases"][0]
    assert c["frames"] == n and c["dropped"] == 0 and c["late"] == 0 and c["errors"] == 0
    assert server.returncode == 0, out.decode()[-2000:]
    assert b"session" in out and b"ended" in out


def test_replay_without_a_prompt_names_the_problem(tmp_path):
    from tracker.io.trackrad import write_trackrad_case

    case = write_trackrad_case(tmp_path, "E001", np.zeros((3, 20, 20), np.uint16), np.zeros((20, 20)), 4.0)
    with pytest.raises(ValueError, match="first-frame mask is empty"):
        replay([case], ReplayOptions(progress=False))


class _NotedFrames:
    """A clip's frames, noting which have been read (a FrameSource, as a reader's lazy frames are)."""

    def __init__(self, frames: list[np.ndarray]) -> None:
        self.frames = frames
        self.read = [threading.Event() for _ in frames]

    def __len__(self) -> int:
        return len(self.frames)

    def __getitem__(self, index: int) -> np.ndarray:
        self.read[index].set()
        return self.frames[index]


class _AnswerAfterTheNextRead:
    """A real session whose answer to frame i is taken only once frame i + 1 has been read."""

    def __init__(self, session: StreamSession, frames: _NotedFrames) -> None:
        self.session, self.frames, self.sent = session, frames, -1

    def send_frame(self, pixels: np.ndarray, index: int, timestamp_s: float | None = None) -> None:
        self.sent = index
        self.session.send_frame(pixels, index, timestamp_s)

    def recv_frame(self) -> ClientResult:
        upcoming = self.sent + 1
        if upcoming < len(self.frames):
            read = self.frames.read[upcoming].wait(10.0)
            assert read, f"frame {upcoming} was not read while frame {self.sent} was computed"
        return self.session.recv_frame()


def test_max_rate_replay_reads_the_next_frame_while_this_one_is_computed(flow_server):
    """A camera has its next frame ready: the replay's own reading must not delay the send."""
    frames = _NotedFrames([shift(textured_image(), 1.5 * t, 0.0) for t in range(6)])
    prompt = disk(128, 160, 80, 64, 12).astype(np.uint16)
    sequence = Sequence("clip", frames, frame_rate_hz=24.0, first_label=prompt)
    options = ReplayOptions(rate="max", progress=False)
    with TrackerClient(flow_server.address) as client:
        session = client.open_session(session_config_for(sequence, options))
        spy = _AnswerAfterTheNextRead(session, frames)
        with tqdm(disable=True) as bar:
            answers = _stream(spy, sequence, "max", bar)  # type: ignore[arg-type]
        session.close()
    assert [a.frame_index for a in answers] == list(range(6))
    assert all(a.status in (FrameStatus.OK, FrameStatus.LATE) and a.objects[0].mask.any() for a in answers)


def test_the_budget_policy_reaches_the_session_and_degraded_answers_are_counted(flow_server):
    """With DEGRADE and a budget no answer can meet (1 µs), every answer after the first is degraded."""
    frames = [shift(textured_image(), 1.5 * t, 0.0) for t in range(5)]
    prompt = disk(128, 160, 80, 64, 12).astype(np.uint16)
    sequence = Sequence("clip", np.stack(frames), frame_rate_hz=24.0, first_label=prompt)
    cases = {}
    for policy in (BudgetPolicy.LATEST, BudgetPolicy.DEGRADE):
        options = ReplayOptions(progress=False, latency_budget_ms=0.001, budget_policy=policy)
        assert session_config_for(sequence, options).budget_policy is policy
        with TrackerClient(flow_server.address) as client:
            result = replay_sequence(client, sequence, options)
        cases[policy] = (case_report(result), result.records)
    (latest, _), (degrade, records) = cases[BudgetPolicy.LATEST], cases[BudgetPolicy.DEGRADE]
    assert latest["degraded"] == 0 and latest["late"] == 5
    assert [bool(r.degradations) for r in records] == [False, True, True, True, True]
    assert degrade["degraded"] == 4 and "half the working size" in records[-1].degradations[0]
