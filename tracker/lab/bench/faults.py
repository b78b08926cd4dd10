"""``tracker bench faults``: network faults that send no reset, one scenario at a time.

Each scenario starts a fresh cluster (R ``tracker serve`` replicas behind Envoy, each
reached through its own :class:`~tracker.lab.faultproxy.FaultProxy`), streams N gated
cine-MRI sessions at the given rate through Envoy with client failover on, and at
``fault_at_s`` disturbs the replica that holds the most sessions:

* ``blackhole_up`` / ``blackhole_down``: Envoy's bytes to (from) that replica vanish for
  ``blackhole_s``, sockets open, no reset;
* ``jitter``: 200 ± 100 ms each way for ``jitter_s``;
* ``bandwidth``: the link capped at 1 Mbit/s for ``bandwidth_s`` (frames are scaled to
  ``frame_px`` squared, 512 by default: one frame needs about 2 s of it);
* ``slow_reader``: the console stops reading its answers for ``slow_reader_s``;
* ``reset``: every connection to that replica reset (RST) mid-stream;
* ``none``: nothing happens: the control, for what a run does without a fault (the
  replicas' RSS grows by itself in the first minute, for one).

What is judged, per scenario (``scenarios.<name>.<key>``): ``frames`` sent,
``unaccounted`` (no answer) and ``duplicates`` (two answers); ``stale_holds`` (``BEAM_ON``
answers the client held because they came too late); ``beam_on_without_fresh_answer``
(frames at whose sending the console's ``beam_state()`` was ``BEAM_ON`` although no
``BEAM_ON`` answer younger than ``max_answer_age_ms`` had arrived: recomputed here from
the answers' own times, independently of the client's bookkeeping); ``detect_ms`` (fault
to the client's failover) and ``resume_ms`` (failover to the new session's first answer),
p50 and worst; ``reaped_s`` (black holes: fault to the replica showing no open session,
asked through its own port); ``rss_growth`` (the replicas' largest RSS during the run over their RSS at
the fault, minus one).
"""

from __future__ import annotations

import contextlib
import logging
import tempfile
import threading
import time
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
import psutil
from tqdm import tqdm

from tracker.client import TrackerClient
from tracker.client.failover import FailoverPolicy
from tracker.client.sync_failover import FailoverSession
from tracker.deploy.envoy import envoy_version
from tracker.gating.types import BeamState, GatingConfig
from tracker.io.sequence import Sequence
from tracker.lab.bench.cluster import ClusterSettings, LoopbackCluster, SessionLog, start_consoles
from tracker.lab.bench.common import machine_info
from tracker.lab.bench.stream import StreamSettings, load_sources
from tracker.lab.faultproxy import Direction, Fault, FaultKind, FaultProxy
from tracker.lab.provenance import provenance
from tracker.timing import percentiles
from tracker.types import MaskPrompt, ObjectPrompt, SessionConfig

logger = logging.getLogger(__name__)

SCENARIOS = ("none", "blackhole_up", "blackhole_down", "jitter", "bandwidth", "slow_reader", "reset")


@dataclass(frozen=True)
class FaultBenchSettings:
    scenarios: tuple[str, ...] = SCENARIOS
    replicas: int = 3
    sessions: int = 3
    rate_hz: float = 8.0
    duration_s: float = 20.0
    fault_at_s: float = 5.0
    blackhole_s: float = 5.0
    jitter_s: float = 10.0
    bandwidth_s: float = 10.0
    slow_reader_s: float = 3.0
    frame_px: int = 512
    keepalive_ms: int = 1000  # the replicas' keepalive (and its timeout): how fast they reap
    # The client's answer watchdog: above the worst round trip the jitter scenario allows
    # (200 + 100 ms each way, plus compute), below the 1 s budget, so silence is noticed
    # sooner than the budget-long default would notice it. None: the policy's default.
    answer_timeout_ms: float | None = 750.0
    gating_margin_mm: float = 10.0
    seed: int = 0

    def __post_init__(self) -> None:
        unknown = sorted(set(self.scenarios) - set(SCENARIOS))
        if unknown or not self.scenarios:
            raise ValueError(f"unknown scenario(s) {unknown}; known: {', '.join(SCENARIOS)}")
        if self.replicas < 2:
            raise ValueError("failover needs at least two replicas")
        if not 0 < self.fault_at_s < self.duration_s:
            raise ValueError(f"the fault must start within the run (0, {self.duration_s:g}) s")
        if self.frame_px < 64:
            raise ValueError(f"frames must be at least 64 px, got {self.frame_px}")
        if self.answer_timeout_ms is not None and self.answer_timeout_ms <= 0:
            raise ValueError(f"the answer timeout must be positive, got {self.answer_timeout_ms} ms")

    def failover_policy(self) -> FailoverPolicy:
        """The consoles' failover policy: the default, with this run's answer watchdog."""
        if self.answer_timeout_ms is None:
            return FailoverPolicy()
        return FailoverPolicy(answer_timeout_s=self.answer_timeout_ms / 1000.0)

    def fault_window(self, scenario: str) -> tuple[Fault | None, float]:
        """What the proxy does in ``scenario`` (None: nothing on the wire), and for how long."""
        return {
            "blackhole_up": (Fault(FaultKind.BLACKHOLE, Direction.UP), self.blackhole_s),
            "blackhole_down": (Fault(FaultKind.BLACKHOLE, Direction.DOWN), self.blackhole_s),
            "jitter": (
                Fault(FaultKind.DELAY, Direction.BOTH, delay_ms=200.0, jitter_ms=100.0),
                self.jitter_s,
            ),
            "bandwidth": (Fault(FaultKind.BANDWIDTH, Direction.BOTH, bits_per_s=1e6), self.bandwidth_s),
            "slow_reader": (None, self.slow_reader_s),
            "none": (None, 0.0),
            "reset": (Fault(FaultKind.RESET), 0.0),
        }[scenario]


def _scaled(sequence: Sequence, px: int) -> Sequence:
    """The sequence at ``px`` x ``px`` (frames linear, labels nearest), to size the link's load."""
    frames = [cv2.resize(np.asarray(f), (px, px), interpolation=cv2.INTER_LINEAR) for f in sequence.frames]
    labels = None
    if sequence.labels is not None:
        labels = [
            cv2.resize(np.asarray(m), (px, px), interpolation=cv2.INTER_NEAREST) for m in sequence.labels
        ]
    first = cv2.resize(np.asarray(sequence.first_label), (px, px), interpolation=cv2.INTER_NEAREST)
    return Sequence(
        name=f"{sequence.name}-{px}",
        frames=frames,
        frame_rate_hz=sequence.frame_rate_hz,
        modality=sequence.modality,
        first_label=first,
        labels=labels,
        kind=sequence.kind,
    )


def _config(k: int, sequence: Sequence, settings: FaultBenchSettings) -> SessionConfig:
    prompt = sequence.prompt_label()
    assert prompt is not None, f"{sequence.name} has no first-frame mask"
    return SessionConfig(
        modality=sequence.modality,
        objects=tuple(ObjectPrompt(i, MaskPrompt(prompt == i), "tumour") for i in sequence.object_ids()),
        frame_rate_hz=settings.rate_hz,
        client_name=f"bench-faults-{k}",
        gating=GatingConfig(margin_mm=settings.gating_margin_mm),
    )


def beam_on_without_fresh_answer(log: SessionLog, max_age_s: float) -> int:
    """Frames at whose sending the beam showed ON with no fresh BEAM_ON answer received.

    Recomputed from the answers' own send and receive times: at time t an answer is a fresh
    BEAM_ON when it had arrived by t, its frame was sent at most ``max_age_s`` before t, and
    its decision (after the client's stale check) is BEAM_ON.
    """
    ons = sorted(
        (a.received_mono, a.sent_mono)
        for a in log.answers.values()
        if not a.local and a.result.gating is not None and a.result.gating.state is BeamState.ON
    )
    violations = 0
    for i, beam in log.beam_at_send.items():
        if beam is not BeamState.ON:
            continue
        t = log.scheduled[i]
        fresh = any(received <= t and sent >= t - max_age_s for received, sent in ons)
        violations += not fresh
    return violations


class _Watch(threading.Thread):
    """Samples the replicas' RSS, and the faulted replica's open sessions through its own port."""

    def __init__(self, pids: list[int], address: str) -> None:
        super().__init__(name="faults-watch", daemon=True)
        self._procs = [psutil.Process(p) for p in pids]
        self._address = address
        self._halt = threading.Event()
        self.rss: list[tuple[float, float]] = []  # (time, largest replica RSS in MB)
        self.sessions: list[tuple[float, int]] = []

    def run(self) -> None:
        with TrackerClient(self._address) as client:
            while not self._halt.wait(0.1):
                now = time.monotonic()
                with contextlib.suppress(psutil.Error):
                    self.rss.append((now, max(p.memory_info().rss for p in self._procs) / 2**20))
                with contextlib.suppress(Exception):
                    self.sessions.append((now, client.info(timeout_s=1.0).active_sessions))

    def stop(self) -> None:
        self._halt.set()
        self.join(5)


def run_scenario(scenario: str, settings: FaultBenchSettings, sequences: list[Sequence]) -> dict[str, object]:
    fault, hold_s = settings.fault_window(scenario)
    n = max(1, round(settings.duration_s * settings.rate_hz))
    cluster_settings = ClusterSettings(
        replicas=settings.replicas, sessions=settings.sessions, rate_hz=settings.rate_hz,
        duration_s=settings.duration_s, gating_margin_mm=settings.gating_margin_mm, seed=settings.seed,
    )  # fmt: skip
    keepalive = (
        "--keepalive-ms",
        str(settings.keepalive_ms),
        "--keepalive-timeout-ms",
        str(settings.keepalive_ms),
    )
    with tempfile.TemporaryDirectory(prefix="bench-faults-") as tmp:
        cluster = LoopbackCluster(cluster_settings, Path(tmp), serve_args=keepalive, proxies=True)
        try:
            with TrackerClient(cluster.address) as client:
                sessions = []
                for k in range(settings.sessions):
                    session = client.open_session(
                        _config(k, sequences[k % len(sequences)], settings),
                        failover=True,
                        failover_policy=settings.failover_policy(),
                        send_policy="latest",
                    )
                    assert isinstance(session, FailoverSession)
                    sessions.append(session)
                target = _busiest(cluster)
                watch = _Watch([s.process.pid for s in cluster.servers], cluster.servers[target].address)
                watch.start()
                t0 = time.monotonic() + 0.5
                logs = [
                    SessionLog(k, [t0 + (k / settings.sessions + i) / settings.rate_hz for i in range(n)])
                    for k in range(settings.sessions)
                ]
                with tqdm(total=n * settings.sessions, desc=f"faults: {scenario}", unit="frame") as bar:
                    threads = start_consoles(logs, sessions, sequences, t0, bar)
                    fault_mono = _inject(
                        scenario, fault, hold_s, t0 + settings.fault_at_s, cluster.proxies[target], logs
                    )
                    for t in threads:
                        t.join()
                watch.stop()
        finally:
            cluster.stop()
    return _score(scenario, settings, logs, sessions, fault_mono, watch, n)


def _busiest(cluster: LoopbackCluster) -> int:
    """The replica holding the most sessions (asked through each replica's own port)."""
    counts = []
    for server in cluster.servers:
        with TrackerClient(server.address) as client:
            counts.append(client.info(timeout_s=5.0).active_sessions)
    logger.info("sessions per replica: %s", counts)
    return int(np.argmax(counts))


def _inject(
    scenario: str, fault: Fault | None, hold_s: float, at: float, proxy: FaultProxy, logs: list[SessionLog]
) -> float:
    time.sleep(max(0.0, at - time.monotonic()))
    start = time.monotonic()
    if scenario == "slow_reader":
        for c in logs:
            c.paused.set()
        time.sleep(hold_s)
        for c in logs:
            c.paused.clear()
        return start
    proxy.apply(fault)
    if hold_s > 0:
        time.sleep(hold_s)
        proxy.apply(None)
    return start


def _score(
    scenario: str,
    settings: FaultBenchSettings,
    logs: list[SessionLog],
    sessions: list[FailoverSession],
    fault_mono: float,
    watch: _Watch,
    n: int,
) -> dict[str, object]:
    events = [e for s in sessions for e in s.events]
    detect = [(e.fault_mono - fault_mono) * 1000.0 for e in events if e.fault_mono >= fault_mono]
    resume = [e.gap_ms for e in events if e.fault_mono >= fault_mono]
    before = [rss for t, rss in watch.rss if t <= fault_mono]
    during = [rss for t, rss in watch.rss if t > fault_mono]
    # Only a black hole orphans server sessions; elsewhere the sessions stay until the run ends.
    reaped = None
    if scenario.startswith("blackhole"):
        reaped = next((t - fault_mono for t, open_ in watch.sessions if t > fault_mono and open_ == 0), None)
    budget_s = max(s.started.latency_budget_ms for s in sessions) / 1000.0
    return {
        "frames": n * len(logs),
        "unaccounted": sum(n - len(c.answers) for c in logs),
        "duplicates": sum(c.duplicates for c in logs),
        "stale_holds": sum(s.stale_holds for s in sessions),
        "stale_answers": sum(s.stale_answers for s in sessions),
        "beam_on_without_fresh_answer": sum(beam_on_without_fresh_answer(c, budget_s) for c in logs),
        "failovers": len(events),
        "causes": sorted({e.cause for e in events}),
        "lost_frames": sum(e.gap_frames for e in events),
        "detect_ms": _p50_max(detect),
        "resume_ms": _p50_max(resume),
        "reaped_s": None if reaped is None else round(reaped, 2),
        "rss_growth": round(max(during) / before[-1] - 1.0, 4) if before and during else None,
        "errors": [c.error for c in logs if c.error],
    }


def _p50_max(values: list[float]) -> dict[str, float | None]:
    p = percentiles(values, (50,))
    return {"p50": p["p50"], "max": round(max(values), 1) if values else None}


def targets(report: dict[str, object]) -> dict[str, bool]:
    """The targets of each scenario that ran, as booleans."""
    out: dict[str, bool] = {}
    scenarios = report["scenarios"]
    assert isinstance(scenarios, dict)
    for name, s in scenarios.items():
        out[f"{name}.nothing_unaccounted_or_twice"] = s["unaccounted"] == 0 and s["duplicates"] == 0
        out[f"{name}.no_beam_on_without_fresh_answer"] = s["beam_on_without_fresh_answer"] == 0
        if name.startswith("blackhole"):
            detect, resume = s["detect_ms"], s["resume_ms"]
            out[f"{name}.detected_within_1s_p50_2s_worst"] = (
                detect["p50"] is not None and detect["p50"] <= 1000.0 and detect["max"] <= 2000.0
            )
            out[f"{name}.resumed_within_250ms_p50"] = resume["p50"] is not None and resume["p50"] <= 250.0
            out[f"{name}.reaped_within_10s"] = s["reaped_s"] is not None and s["reaped_s"] <= 10.0
        if name == "slow_reader":
            out[f"{name}.rss_growth_at_most_10_percent"] = (
                s["rss_growth"] is not None and s["rss_growth"] <= 0.10
            )
    return out


def run_faults(settings: FaultBenchSettings) -> dict[str, object]:
    """Every scenario in turn, each on a fresh cluster, and the report."""
    run_provenance = provenance(seed=settings.seed)
    sequences = [
        _scaled(load_sources(StreamSettings(), settings.seed + k)[0], settings.frame_px)
        for k in range(min(settings.sessions, 3))
    ]
    report: dict[str, object] = {
        "scenarios": {name: run_scenario(name, settings, sequences) for name in settings.scenarios}
    }
    report["settings"] = {
        "replicas": settings.replicas,
        "sessions": settings.sessions,
        "rate_hz": settings.rate_hz,
        "duration_s": settings.duration_s,
        "fault_at_s": settings.fault_at_s,
        "hold_s": {name: settings.fault_window(name)[1] for name in settings.scenarios},
        "frame_px": settings.frame_px,
        "replica_keepalive_ms": settings.keepalive_ms,
        "client": "failover on, send_policy latest, max_answer_age_ms = the budget, default keepalive",
        "client_answer_timeout_ms": settings.answer_timeout_ms,  # None: the session's budget
        "engine": "flow",
        "source": "synthetic 270x270 cine-MRI scaled to frame_px, one case per session (up to 3)",
    }
    report["proxy"] = {"name": "envoy", "version": envoy_version()}
    report["machine"] = machine_info()
    report["targets"] = targets(report)
    report["provenance"] = run_provenance
    return report
