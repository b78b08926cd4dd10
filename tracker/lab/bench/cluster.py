"""``tracker bench cluster``: replicas behind Envoy, replicas killed or drained mid-session.

Starts R ``tracker serve`` processes and Envoy on loopback, streams N open-loop
synthetic cine-MRI sessions (ground truth known) through Envoy with client
failover on and beam gating on, sends ``SIGKILL`` / ``SIGTERM`` to replicas on
schedule, then runs the same sessions again on a fresh cluster without faults.
The report holds what scale-out is judged by: every frame
accounted for, how long sessions took to resume, how many frames each failover
lost, whether the beam was ever on while no session was open, and the Dice
cost of restarting from the last mask. Sending is paced by acquisition time
(open loop) as in :mod:`tracker.lab.bench.stream`, whose server process, sources
and percentiles it reuses.
"""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import numpy as np
from matplotlib.figure import Figure
from tqdm import tqdm

from tracker.client import ClientResult, TrackerClient
from tracker.client.failover import FailoverEvent
from tracker.client.sync_failover import FailoverSession
from tracker.deploy.envoy import Endpoint, EnvoyProcess, EnvoySettings, envoy_version, free_port
from tracker.gating.types import BeamState, GatingConfig
from tracker.io.sequence import Sequence
from tracker.lab.bench.common import machine_info, ping_pong_index
from tracker.lab.bench.stream import ServerProcess, StreamSettings, load_sources
from tracker.lab.faultproxy import FaultProxy
from tracker.lab.provenance import provenance
from tracker.lab.scoring.metrics import dice
from tracker.timing import percentiles
from tracker.types import FrameStatus, MaskPrompt, ObjectPrompt, SessionConfig

logger = logging.getLogger(__name__)

FaultKind = Literal["kill", "drain"]
_SIGNALS: dict[str, signal.Signals] = {"kill": signal.SIGKILL, "drain": signal.SIGTERM}


@dataclass(frozen=True)
class Fault:
    """``kill`` (SIGKILL) or ``drain`` (SIGTERM) replica ``replica`` (1-based) at ``at_s``."""

    kind: FaultKind
    replica: int
    at_s: float

    @classmethod
    def parse(cls, kind: FaultKind, text: str) -> Fault:
        replica, sep, at = text.partition("@")
        try:
            fault = cls(kind, int(replica), float(at))
        except ValueError:
            fault = None
        if not sep or fault is None:
            raise ValueError(f"--{kind} expects REPLICA@SECONDS (e.g. 1@20), got {text!r}")
        return fault


@dataclass(frozen=True)
class ClusterSettings:
    replicas: int = 3
    sessions: int = 6
    rate_hz: float = 8.0
    duration_s: float = 60.0
    faults: tuple[Fault, ...] = ()
    engine: str = "flow"
    engine_options: tuple[tuple[str, str], ...] = ()
    # Gating on, with a window wide enough that the beam is mostly on: a BEAM_ON inside a
    # gap would then be noticed. (The figure of merit is the gap, not the duty cycle.)
    gating_margin_mm: float = 10.0
    health_interval_s: float = 0.25
    seed: int = 0

    def __post_init__(self) -> None:
        if self.replicas < 1 or self.sessions < 1:
            raise ValueError("need at least one replica and one session")
        if self.rate_hz <= 0 or self.duration_s <= 0:
            raise ValueError("rate and duration must be positive")
        hit = [f.replica for f in self.faults]
        for f in self.faults:
            if not 1 <= f.replica <= self.replicas:
                raise ValueError(
                    f"--{f.kind} {f.replica}@{f.at_s:g}: replicas are numbered 1..{self.replicas}"
                )
            if not 0 < f.at_s < self.duration_s:
                raise ValueError(
                    f"--{f.kind} {f.replica}@{f.at_s:g}: the time must lie in (0, {self.duration_s:g}) s"
                )
        if len(set(hit)) != len(hit):
            raise ValueError("each replica can be killed or drained once")
        if len(hit) >= self.replicas:
            raise ValueError("at least one replica must survive every fault")

    @property
    def frames_per_session(self) -> int:
        return max(1, round(self.duration_s * self.rate_hz))

    @property
    def max_sessions(self) -> int:
        return max(32, self.sessions)  # what ServerProcess passes as --max-sessions


@dataclass
class SessionLog:
    """One console's side of a run: what it sent, what came back, what its beam showed."""

    k: int
    scheduled: list[float]  # monotonic send times
    answers: dict[int, ClientResult] = field(default_factory=dict)
    duplicates: int = 0
    events: list[FailoverEvent] = field(default_factory=list)
    error: str | None = None
    beam_at_send: dict[int, BeamState] = field(default_factory=dict)  # session.beam_state() per frame
    paused: threading.Event = field(default_factory=threading.Event)  # set: the console stops reading


@dataclass
class FaultRecord:
    fault: Fault
    mono: float
    sessions_open: int  # on that replica just before the signal (its GetInfo)


class LoopbackCluster:
    """R server processes and Envoy on loopback free ports.

    With ``proxies``, Envoy reaches each replica through its own :class:`FaultProxy`
    (``self.proxies[r]``), so that the network between them can fail on cue.
    """

    def __init__(
        self,
        settings: ClusterSettings,
        workdir: Path,
        *,
        serve_args: tuple[str, ...] = (),
        proxies: bool = False,
    ) -> None:
        self.settings = settings
        self.servers: list[ServerProcess] = []
        self.proxies: list[FaultProxy] = []
        self.envoy: EnvoyProcess | None = None
        try:
            self.servers = [
                ServerProcess(settings.engine, settings.engine_options, settings.sessions, serve_args)
                for _ in range(settings.replicas)
            ]
            for server in self.servers:
                server.wait_ready()
            if proxies:
                self.proxies = [FaultProxy(s.address).start() for s in self.servers]
            fronts = [Endpoint.parse(p.address) for p in self.proxies] or [
                Endpoint("127.0.0.1", s.port) for s in self.servers
            ]
            envoy_settings = EnvoySettings(
                replicas=tuple(fronts),
                listen_port=free_port(),  # admin port left at 0: Envoy picks a free one
                max_sessions=settings.max_sessions,
                health_interval_s=settings.health_interval_s,
                health_timeout_s=max(settings.health_interval_s, 0.5),
            )
            self.envoy = EnvoyProcess(envoy_settings, workdir)
            self.envoy.wait_healthy(settings.replicas)
        except BaseException:
            self.stop()
            raise

    @property
    def address(self) -> str:
        assert self.envoy is not None
        return self.envoy.address

    def signal(self, fault: Fault) -> FaultRecord:
        server = self.servers[fault.replica - 1]
        sessions = 0
        with contextlib.suppress(Exception), TrackerClient(server.address) as client:
            sessions = client.info(timeout_s=2.0).active_sessions
        mono = time.monotonic()
        os.kill(server.process.pid, _SIGNALS[fault.kind])
        logger.info(
            "%s replica %d (%s) with %d session(s)", fault.kind, fault.replica, server.address, sessions
        )
        return FaultRecord(fault, mono, sessions)

    def stop(self) -> None:
        if self.envoy is not None:
            self.envoy.stop()
        for proxy in self.proxies:
            proxy.stop()
        for server in self.servers:
            if server.process.poll() is None:
                server.stop()


def _session_config(k: int, sequence: Sequence, settings: ClusterSettings) -> SessionConfig:
    prompt = sequence.prompt_label()
    assert prompt is not None, f"{sequence.name} has no first-frame mask"
    return SessionConfig(
        modality=sequence.modality,
        engine=settings.engine,
        objects=tuple(ObjectPrompt(i, MaskPrompt(prompt == i), "tumour") for i in sequence.object_ids()),
        frame_rate_hz=settings.rate_hz,
        geometry=sequence.geometry,
        client_name=f"bench-cluster-{k}",
        gating=GatingConfig(margin_mm=settings.gating_margin_mm),
    )


def _open(client: TrackerClient, k: int, sequence: Sequence, settings: ClusterSettings) -> FailoverSession:
    session = client.open_session(_session_config(k, sequence, settings), failover=True, send_policy="latest")
    assert isinstance(session, FailoverSession)
    return session


def start_consoles(
    logs: list[SessionLog], sessions: list[FailoverSession], sequences: list[Sequence], t0: float, bar: tqdm
) -> list[threading.Thread]:
    """One :func:`stream_session` thread per log (session ``k`` plays ``sequences[k % len]``), started."""
    threads = [
        threading.Thread(
            target=stream_session,
            args=(log, sessions[log.k], sequences[log.k % len(sequences)], t0, bar),
            name=f"console-{log.k}",
        )
        for log in logs
    ]
    for thread in threads:
        thread.start()
    return threads


def stream_session(
    log: SessionLog, session: FailoverSession, sequence: Sequence, t0: float, bar: tqdm
) -> None:
    """Send ``sequence`` on ``log.scheduled`` (open loop) while another thread reads the answers."""

    def collect() -> None:
        try:
            for answer in session.results(timeout_s=None):
                while log.paused.is_set():
                    time.sleep(0.01)
                if answer.frame_index in log.answers:
                    log.duplicates += 1
                log.answers[answer.frame_index] = answer
                bar.update(1)
        except Exception as exc:  # failover gave up: what is missing is counted unaccounted
            log.error = str(exc)

    collector = threading.Thread(target=collect, name=f"cluster-recv-{log.k}", daemon=True)
    collector.start()
    try:
        for i, when in enumerate(log.scheduled):
            delay = when - time.monotonic()
            if delay > 0:
                time.sleep(delay)
            pixels = np.asarray(sequence.frames[ping_pong_index(i, len(sequence))])
            log.beam_at_send[i] = session.beam_state()
            session.send_frame(pixels, i, timestamp_s=when - t0)
        session.done_writing()
    except Exception as exc:
        log.error = str(exc)
        session.cancel()
    collector.join(timeout=60.0)
    if collector.is_alive():
        log.error = log.error or "answers still missing 60 s after the last frame"
        session.cancel()
    log.events = session.events


def run_phase(
    settings: ClusterSettings, sequences: list[Sequence], faults: tuple[Fault, ...], label: str
) -> tuple[list[SessionLog], list[FaultRecord]]:
    """One run: a fresh cluster, N sessions, the given faults on schedule."""
    n = settings.frames_per_session
    with tempfile.TemporaryDirectory(prefix="bench-cluster-") as tmp:
        cluster = LoopbackCluster(settings, Path(tmp))
        records: list[FaultRecord] = []
        try:
            with TrackerClient(cluster.address) as client:
                # One after the other, as consoles start treatments: opens that race each other
                # all see every replica idle and least-request cannot spread them.
                sessions = [
                    _open(client, k, sequences[k % len(sequences)], settings)
                    for k in range(settings.sessions)
                ]
                t0 = time.monotonic() + 0.5
                logs = [
                    SessionLog(
                        k,
                        [
                            t0 + k / settings.sessions / settings.rate_hz + i / settings.rate_hz
                            for i in range(n)
                        ],
                    )
                    for k in range(settings.sessions)
                ]
                with tqdm(total=n * settings.sessions, desc=label, unit="frame") as bar:
                    threads = start_consoles(logs, sessions, sequences, t0, bar)
                    for fault in sorted(faults, key=lambda f: f.at_s):
                        delay = t0 + fault.at_s - time.monotonic()
                        if delay > 0:
                            time.sleep(delay)
                        records.append(cluster.signal(fault))
                    for t in threads:
                        t.join()
        finally:
            cluster.stop()
    return logs, records


def _dice_mean(logs: list[SessionLog], sequences: list[Sequence]) -> float | None:
    """Mean Dice of answered frames (frame 0, the prompt, excluded as TrackRAD does)."""
    values = []
    for log in logs:
        seq = sequences[log.k % len(sequences)]
        assert seq.labels is not None
        for i, answer in log.answers.items():
            if i == 0 or answer.status not in (FrameStatus.OK, FrameStatus.LATE):
                continue
            truth = np.asarray(seq.labels[ping_pong_index(i, len(seq))])
            for oid in seq.object_ids():
                found = [o for o in answer.objects if o.object_id == oid]
                values.append(dice(found[0].mask, truth == oid) if found else 0.0)
    return float(np.mean(values)) if values else None


def summarise(
    settings: ClusterSettings, logs: list[SessionLog], records: list[FaultRecord], sequences: list[Sequence]
) -> dict[str, object]:
    """The fault run's invariants (see the module docstring); pure, for tests too."""
    n = settings.frames_per_session
    statuses: dict[str, int] = {s.value: 0 for s in FrameStatus}
    unaccounted = 0
    resume_ms: list[float] = []
    detect_ms: list[float] = []
    beam_on_gap = 0
    events_out = []
    unresumed = 0
    per_fault = {id(r): 0 for r in records}
    for log in logs:
        unaccounted += sum(1 for i in range(n) if i not in log.answers)
        for answer in log.answers.values():
            statuses[answer.status.value] += 1
        ordered = sorted(log.answers.values(), key=lambda a: a.received_mono)
        for event in log.events:
            # The fault: the last signal sent before the client saw its stream end.
            before = [r for r in records if r.mono <= event.fault_mono]
            record = before[-1] if before else None
            fault_mono = record.mono if record else event.fault_mono
            if record is not None:
                per_fault[id(record)] += 1
            first_ok = next(
                (a for a in ordered if a.received_mono >= event.fault_mono and a.status is FrameStatus.OK),
                None,
            )
            if first_ok is None:
                unresumed += 1
            else:
                resume_ms.append((first_ok.received_mono - fault_mono) * 1000.0)
            detect_ms.append((event.fault_mono - fault_mono) * 1000.0)
            # The gap: from the stream's end to the new session's first answer; an answer the
            # console received then, or a LOST one, must not let the beam on.
            for answer in log.answers.values():
                in_gap = (
                    event.fault_mono <= answer.received_mono < event.resumed_mono
                    or answer.status is FrameStatus.LOST
                )
                gating = answer.result.gating
                if in_gap and gating is not None and gating.state is BeamState.ON:
                    beam_on_gap += 1
            events_out.append(
                {
                    "session": log.k,
                    "fault": f"{record.fault.kind} {record.fault.replica}@{record.fault.at_s:g}"
                    if record
                    else None,
                    "cause": event.cause,
                    "lost_frames": list(event.lost_frames),
                    "gap_ms": event.gap_ms,
                    "attempts": event.attempts,
                    "resume_ms": (first_ok.received_mono - fault_mono) * 1000.0 if first_ok else None,
                }
            )
    faults_out = [
        {
            "kind": r.fault.kind,
            "replica": r.fault.replica,
            "at_s": r.fault.at_s,
            "sessions_open": r.sessions_open,
            "failovers": per_fault[id(r)],
        }
        for r in records
    ]
    lost = [len(e["lost_frames"]) for e in events_out]  # type: ignore[arg-type]
    return {
        "frames": n * settings.sessions,
        "answered": statuses,
        "unaccounted": unaccounted,
        "duplicates": sum(log.duplicates for log in logs),
        "session_errors": [log.error for log in logs if log.error],
        "failovers": len(events_out),
        "unresumed": unresumed,
        "resume_ms": percentiles(resume_ms, (50,)),
        "detect_ms": percentiles(detect_ms, (50,)),
        "lost_per_failover_max": max(lost) if lost else 0,
        "beam_on_during_gap": beam_on_gap,
        "beam_on": sum(
            1
            for log in logs
            for a in log.answers.values()
            if a.result.gating and a.result.gating.state is BeamState.ON
        ),
        "dice_mean": _dice_mean(logs, sequences),
        "faults": faults_out,
        "failover_events": events_out,
        "timeline": _timeline(logs),
    }


def _timeline(logs: list[SessionLog]) -> list[dict[str, object]]:
    """Every answer: session, frame, scheduled time (s from the first frame), status, beam."""
    if not logs:
        return []
    t0 = min(log.scheduled[0] for log in logs)
    rows: list[dict[str, object]] = []
    for log in logs:
        for i, answer in sorted(log.answers.items()):
            gating = answer.result.gating
            rows.append(
                {
                    "session": log.k,
                    "index": i,
                    "t_s": round(log.scheduled[i] - t0, 4),
                    "status": answer.status.value,
                    "beam": gating.state.value if gating is not None else None,
                }
            )
    return rows


def write_plots(report: dict[str, object], out_dir: Path) -> list[Path]:
    """One timeline per session: answers by status, beam on, the faults; and resume times."""
    out_dir.mkdir(parents=True, exist_ok=True)
    timeline = report["timeline"]
    assert isinstance(timeline, list)
    colours = {
        "OK": "tab:green",
        "LATE": "tab:olive",
        "DROPPED": "tab:orange",
        "ERROR": "black",
        "LOST": "red",
    }
    fig = Figure(figsize=(11, 6), layout="constrained")  # object API: no pyplot state, no display
    ax, bx = fig.subplots(2, 1, gridspec_kw={"height_ratios": [3, 1]})
    for status, colour in colours.items():
        rows = [r for r in timeline if r["status"] == status]
        if rows:
            ax.scatter(
                [r["t_s"] for r in rows], [r["session"] for r in rows], s=6 if status == "OK" else 30,
                c=colour, marker="|" if status == "OK" else "x", label=f"{status} ({len(rows)})",
            )  # fmt: skip
    on = [r for r in timeline if r["beam"] == "BEAM_ON"]
    ax.scatter([r["t_s"] for r in on], [r["session"] + 0.3 for r in on], s=2, c="tab:blue", label="BEAM_ON")
    faults = report["faults"]
    assert isinstance(faults, list)
    for f in faults:
        ax.axvline(f["at_s"], color="red" if f["kind"] == "kill" else "purple", ls="--", lw=1)
        ax.text(
            f["at_s"],
            0.01,
            f" {f['kind']} replica {f['replica']}",
            fontsize=8,
            transform=ax.get_xaxis_transform(),
        )
    ax.set_xlabel("scheduled send time (s)")
    ax.set_ylabel("session")
    ax.set_yticks(sorted({int(r["session"]) for r in timeline}))  # type: ignore[call-overload]
    ax.set_title("answers per session through Envoy (faults dashed)")
    ax.legend(loc="upper right", fontsize=7, ncols=3)
    events = report["failover_events"]
    assert isinstance(events, list)
    resumed = [e for e in events if e["resume_ms"] is not None]
    bx.bar(range(len(resumed)), [e["resume_ms"] for e in resumed], color="tab:gray")
    bx.set_xticks(range(len(resumed)), [f"s{e['session']} {e['fault']}" for e in resumed], fontsize=7)
    bx.axhline(250, color="tab:orange", ls=":", lw=1, label="p50 target 250 ms")
    bx.axhline(1000, color="red", ls=":", lw=1, label="max target 1000 ms")
    bx.set_ylabel("fault to first OK (ms)")
    bx.legend(fontsize=7)
    path = out_dir / "cluster_timeline.png"
    fig.savefig(path, dpi=120)
    return [path]


def targets(report: dict[str, object]) -> dict[str, bool]:
    """The scale-out targets, each checked on the report."""
    resume = report["resume_ms"]
    assert isinstance(resume, dict)
    faults = report["faults"]
    assert isinstance(faults, list)
    dice_fault, dice_clean = report["dice_mean"], report["dice_mean_no_fault"]
    return {
        "unaccounted_0": report["unaccounted"] == 0 and report["duplicates"] == 0,
        "every_faulted_session_resumed": report["unresumed"] == 0
        and all(f["failovers"] >= f["sessions_open"] for f in faults),
        "resume_p50_le_250ms": resume["p50"] is None or resume["p50"] <= 250.0,
        "resume_max_le_1000ms": resume["max"] is None or resume["max"] <= 1000.0,
        "lost_per_failover_le_3": int(report["lost_per_failover_max"]) <= 3,  # type: ignore[call-overload]
        "beam_on_during_gap_0": report["beam_on_during_gap"] == 0,
        "dice_within_0.01": dice_fault is not None
        and dice_clean is not None
        and abs(float(dice_fault) - float(dice_clean)) <= 0.01,  # type: ignore[arg-type]
    }


def run_cluster(settings: ClusterSettings) -> dict[str, object]:
    """Both runs (faults, then the same sessions without) and the report."""
    run_provenance = provenance(seed=settings.seed)
    sequences = [load_sources(StreamSettings(), settings.seed + k) for k in range(min(settings.sessions, 3))]
    flat = [s[0] for s in sequences]
    logs, records = run_phase(settings, flat, settings.faults, f"cluster x{settings.replicas} (faults)")
    report = summarise(settings, logs, records, flat)
    clean_logs, _ = run_phase(settings, flat, (), f"cluster x{settings.replicas} (no faults)")
    clean = summarise(settings, clean_logs, [], flat)
    report["dice_mean_no_fault"] = clean["dice_mean"]
    report["no_fault"] = {
        k: clean[k] for k in ("answered", "unaccounted", "failovers", "beam_on", "dice_mean")
    }
    report["replicas"] = settings.replicas
    report["sessions"] = settings.sessions
    report["proxy"] = {"name": "envoy", "version": envoy_version()}
    report["machine"] = machine_info()
    report["settings"] = {
        "replicas": settings.replicas,
        "sessions": settings.sessions,
        "rate_hz": settings.rate_hz,
        "duration_s": settings.duration_s,
        "frames_per_session": settings.frames_per_session,
        "faults": [f"{f.kind} {f.replica}@{f.at_s:g}" for f in settings.faults],
        "engine": settings.engine,
        "engine_options": dict(settings.engine_options),
        "max_sessions_per_replica": settings.max_sessions,
        "gating_margin_mm": settings.gating_margin_mm,
        "envoy_health_interval_s": settings.health_interval_s,
        "source": "synthetic 270x270 cine-MRI, one case per session (up to 3), played ping-pong",
    }
    report["targets"] = targets(report)
    report["provenance"] = run_provenance
    return report
