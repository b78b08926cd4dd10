"""``tracker bench capacity``: the search, the criterion, and one real run against real servers."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from tracker.lab.bench.capacity import CapacitySettings, Probe, holds, search
from tracker.lab.bench.stream import StreamSettings


def _report(p99: float | None, late: int = 0, dropped: int = 0, errors: int = 0) -> dict:
    return {"latency_ms": {"p99": p99}, "late": late, "dropped": dropped, "errors": errors}


def test_holds_needs_the_p99_target_and_no_late_dropped_or_error():
    assert holds(_report(49.9), 50.0)
    assert not holds(_report(50.1), 50.0)
    assert not holds(_report(10.0, late=1), 50.0)
    assert not holds(_report(10.0, dropped=1), 50.0)
    assert not holds(_report(10.0, errors=1), 50.0)
    assert not holds(_report(None), 50.0)


def _fake(limit_probe: int, limit_full: int, full_s: float):
    calls: list[tuple[int, float]] = []

    def probe(n: int, duration_s: float) -> Probe:
        calls.append((n, duration_s))
        ok = n <= (limit_full if duration_s == full_s else limit_probe)
        return Probe(n, duration_s, ok, 10.0 if ok else 99.0, 0, 0, 0, 50.0)

    return probe, calls


@pytest.mark.parametrize(
    ("limit_probe", "limit_full", "expected"), [(11, 11, 11), (11, 9, 9), (0, 0, 0), (70, 70, 64)]
)
def test_search_doubles_bisects_and_confirms_over_the_full_duration(limit_probe, limit_full, expected):
    settings = CapacitySettings(StreamSettings(), p99_ms=50.0, duration_s=60.0, probe_s=10.0, max_sessions=64)
    probe, calls = _fake(limit_probe, limit_full, 60.0)
    capacity, probes = search(probe, settings)
    assert capacity == expected
    assert [p.sessions for p in probes] == [n for n, _ in calls]
    if expected:
        assert calls[-1] == (expected, 60.0), "the answer is the count whose full-length run held"
    doubling = [n for n, d in calls if d == 10.0][:4]
    assert doubling[: min(4, len(doubling))] == [1, 2, 4, 8][: len(doubling)]


@pytest.mark.slow
def test_capacity_run_against_real_servers_writes_the_issue_keys(tmp_path):
    out = tmp_path / "capacity.json"
    command = [
        sys.executable, "-m", "tracker.cli", "bench", "capacity", "--engine", "flow", "--rate", "4",
        "--p99-ms", "2000", "--duration", "2", "--probe-duration", "1.5", "--warmup", "1",
        "--max-sessions", "2", "--compare-per-session", "--json", str(out),
    ]  # fmt: skip
    subprocess.run(command, check=True, capture_output=True, timeout=300)
    report = json.loads(out.read_text())
    for key in ("capacity_sessions", "baseline_capacity_sessions", "ratio", "p99_ms_at_capacity",
                "cpu_percent_mean", "settings", "machine", "provenance"):  # fmt: skip
        assert key in report, key
    # A 2 s budget at 4 Hz is easy: both designs hold the search's ceiling of 2 sessions.
    assert report["capacity_sessions"] == 2 and report["baseline_capacity_sessions"] == 2
    assert report["ratio"] == 1.0
    assert report["scheduler"]["scheduler"]["kind"] == "edf"
    assert report["baseline"]["scheduler"]["kind"] == "per-session"
    assert report["provenance"]["commit"]
