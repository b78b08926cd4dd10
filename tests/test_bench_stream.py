"""The streaming harness against a real server process: counts, keys, plots."""

from __future__ import annotations

import json

import pytest

from tracker.bench.common import ping_pong, ping_pong_index
from tracker.bench.stream import StreamSettings, run_stream, write_plots
from tracker.cli import main as cli_main

KEYS = {"latency_ms", "server_ms", "late", "dropped", "errors", "frames", "sessions", "rss_mb_peak"}


def test_ping_pong_plays_back_and_forth_without_a_jump():
    assert [ping_pong_index(n, 4) for n in range(8)] == [0, 1, 2, 3, 2, 1, 0, 1]
    assert ping_pong_index(5, 1) == 0
    assert ping_pong(4, 8) == [0, 1, 2, 3, 2, 1, 0, 1]
    with pytest.raises(ValueError, match="empty sequence"):
        ping_pong_index(0, 0)


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
