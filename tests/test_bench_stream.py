"""The streaming harness against a real server process: counts, keys, plots."""

from __future__ import annotations

import json

import pytest

from tracker.cli import main as cli_main
from tracker.lab.bench.common import ping_pong, ping_pong_index
from tracker.lab.bench.stream import FrameOutcome, StreamSettings, frame_profile, run_stream, write_plots

KEYS = {"latency_ms", "server_ms", "late", "dropped", "errors", "frames", "sessions", "rss_mb_peak"}


def test_ping_pong_plays_back_and_forth_without_a_jump():
    assert [ping_pong_index(n, 4) for n in range(8)] == [0, 1, 2, 3, 2, 1, 0, 1]
    assert ping_pong_index(5, 1) == 0
    assert ping_pong(4, 8) == [0, 1, 2, 3, 2, 1, 0, 1]
    with pytest.raises(ValueError, match="empty sequence"):
        ping_pong_index(0, 0)


def _outcome(server_ms: float, **stages: float) -> FrameOutcome:
    from tracker.types import FrameStatus

    return FrameOutcome(0, 0, 0.0, FrameStatus.OK, server_ms + 1.0, server_ms, dict(stages))


def test_frame_profile_splits_graphs_waits_and_the_time_between_graphs():
    frames = [
        _outcome(100.0, queue=5.0, preprocess=4.0, encoder=50.0, memory_attention=30.0, decoder=5.0),
        _outcome(200.0, queue=10.0, preprocess=4.0, encoder=100.0, memory_attention=60.0, decoder=6.0),
        _outcome(100.0, schedule=2.0, preprocess=8.0, encoder=50.0, memory_attention=30.0, decoder=5.0),
    ]
    p = frame_profile(frames)
    assert p is not None and p["frames"] == 3 and p["server_ms_median"] == 100.0
    # between graphs, per frame: 100-85-5 = 10 (share 0.10); 200-166-10 = 24 (0.12); 100-85-2 = 13 (0.13)
    assert p["between_graphs_ms_median"] == 13.0
    assert p["between_graphs_share_median"] == 0.12 and p["between_graphs_share_max"] == 0.13
    assert p["stages"]["encoder"] == {"ms": 50.0, "share": 0.5}
    # outside every named stage: 100-94 = 6, 200-180 = 20, 100-95 = 5 -> median 6
    assert p["stages"]["other"]["ms"] == 6.0
    assert list(p["stages"])[:3] == ["queue", "schedule", "preprocess"]  # pipeline order
    assert frame_profile([_outcome(10.0, flow=8.0)]) is None  # no graphs: nothing to profile


@pytest.mark.slow
def test_stream_run_accounts_for_every_frame_and_writes_plots(tmp_path):
    report = run_stream(StreamSettings("flow", sessions=2, rate_hz=20.0, frames=12))
    assert set(report) >= KEYS
    assert report["frames"] == 24 and report["sessions"] == 2
    assert report["ok"] + report["late"] + report["dropped"] + report["errors"] == 24
    for key in ("latency_ms", "server_ms"):
        assert {"p50", "p90", "p99", "max"} <= set(report[key])
        assert 0 < report[key]["p50"] <= report[key]["p99"] <= report[key]["max"]
    assert report["latency_ms"]["p50"] >= report["server_ms"]["p50"]
    assert report["rss_mb_peak"] > 20  # the server process was sampled, not this one
    assert {"flow", "postprocess"} <= set(report["stages_ms_median"])
    assert report["machine"]["cores"] and report["settings"]["policy"] == "latest"
    paths = write_plots(report, tmp_path, 1000.0)
    assert all(p.stat().st_size > 5000 for p in paths)


@pytest.mark.slow
def test_bench_stream_cli(tmp_path):
    out = tmp_path / "r.json"
    code = cli_main(
        ["bench", "stream", "--sessions", "1", "--rate", "10", "--frames", "6", "--json", str(out)]
    )
    assert code == 0
    assert json.loads(out.read_text())["frames"] == 6
