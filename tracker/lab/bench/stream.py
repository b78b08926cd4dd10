"""``tracker bench stream``: open-loop streaming load against a real server.

Each session sends frame ``i`` at ``t0 + i / rate`` whatever the answers (open
loop), and every latency is measured from that *scheduled* time, not from when
the frame actually left: a stalled server cannot hide its stall by slowing the
sender down (no coordinated omission). The server runs in its own process so
its CPU and memory are measured apart from the load generator's.
"""

from __future__ import annotations

import dataclasses
import logging
import socket
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import grpc
import numpy as np
import psutil
from grpc_health.v1 import health_pb2, health_pb2_grpc
from matplotlib.figure import Figure
from tqdm import tqdm

from tracker.client import ClientResult, TrackerClient
from tracker.io.sequence import Sequence
from tracker.lab.bench.common import machine_info, ping_pong_index
from tracker.lab.provenance import provenance
from tracker.lab.synth.cine_mri import generate_case, random_case_params
from tracker.timing import PIPELINE_STAGES, percentiles
from tracker.types import BudgetPolicy, FrameStatus, MaskPrompt, Modality, ObjectPrompt, SessionConfig

logger = logging.getLogger(__name__)

QUANTILES = (50, 90, 99, 99.9)  # p50, p90, p99, p99_9


@dataclass(frozen=True)
class StreamSettings:
    engine: str = "flow"
    sessions: int = 1
    rate_hz: float = 8.0
    duration_s: float | None = 30.0
    frames: int | None = None
    budget_ms: float = 0.0  # 0: the server's default for the modality
    policy: BudgetPolicy = BudgetPolicy.LATEST
    engine_options: tuple[tuple[str, str], ...] = ()
    sources: tuple[str, ...] = ()
    warmup_frames: int = 2  # excluded from latency statistics (first-frame prompt set-up)
    serve_args: tuple[str, ...] = ()  # extra `tracker serve` flags for a server this run starts

    @property
    def frames_per_session(self) -> int:
        if self.frames is not None:
            return self.frames
        assert self.duration_s is not None
        return max(1, round(self.duration_s * self.rate_hz))


@dataclass
class Sample:
    t_s: float
    rss_mb: float
    cpu_percent: float
    gpu: dict[str, float] = field(default_factory=dict)


@dataclass
class FrameOutcome:
    session: int
    index: int
    scheduled_s: float  # seconds from the run's start
    status: FrameStatus
    latency_ms: float  # scheduled send time -> answer received
    server_ms: float
    stages_ms: dict[str, float]
    batch_size: int = 0  # frames in the engine call that computed this one (0: not computed)
    degraded: bool = False  # DEGRADE policy: the answer lists degradation steps in force


def stage_order(name: str) -> int:
    """Pipeline position of a stage; engine-specific ones (e.g. flow's) sit where inference does."""
    if name in PIPELINE_STAGES:
        return PIPELINE_STAGES.index(name)
    return PIPELINE_STAGES.index("encoder")


class ServerProcess:
    """``tracker serve`` in a child process on a free loopback port."""

    def __init__(
        self,
        engine: str,
        engine_options: tuple[tuple[str, str], ...],
        max_sessions: int,
        serve_args: tuple[str, ...] = (),
    ) -> None:
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            self.port = s.getsockname()[1]
        args = [sys.executable, "-m", "tracker.cli", "--log-level", "WARNING", "serve", "--engine", engine]
        args += ["--port", str(self.port), "--max-sessions", str(max(32, max_sessions)), *serve_args]
        for key, value in engine_options:
            args += ["--engine-option", f"{key}={value}"]
        self.process = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        self.address = f"127.0.0.1:{self.port}"

    def wait_ready(self, timeout_s: float = 300.0) -> None:
        """Until the server reports SERVING: its engines have run their warm-up frame."""

        client = TrackerClient(self.address)
        try:
            client.wait_ready(timeout_s)
            deadline = time.monotonic() + timeout_s
            with grpc.insecure_channel(self.address) as channel:
                health = health_pb2_grpc.HealthStub(channel)
                request = health_pb2.HealthCheckRequest()
                while health.Check(request, timeout=10).status != health_pb2.HealthCheckResponse.SERVING:
                    if time.monotonic() > deadline:
                        raise TimeoutError(f"server not SERVING after {timeout_s:.0f} s (engine warm-up)")
                    time.sleep(0.2)
        except Exception as exc:
            _, err = self.process.communicate(timeout=5) if self.process.poll() is not None else (b"", b"")
            raise RuntimeError(f"server did not start: {err.decode()[-2000:]}") from exc
        finally:
            client.close()

    def stop(self) -> None:
        self.process.terminate()
        try:
            self.process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            self.process.kill()


class Sampler(threading.Thread):
    """Samples a process's RSS and CPU (and the GPU, when there is one) every ``period_s``."""

    def __init__(self, pid: int, period_s: float = 0.5) -> None:
        super().__init__(name="bench-sampler", daemon=True)

        self._proc = psutil.Process(pid)
        self._period = period_s
        self._halt = threading.Event()
        self.samples: list[Sample] = []
        self._nvml = None
        try:
            import pynvml

            pynvml.nvmlInit()
            self._nvml = (pynvml, pynvml.nvmlDeviceGetHandleByIndex(0))
        except Exception:  # no GPU: CPU figures only
            self._nvml = None

    def run(self) -> None:
        start = time.monotonic()
        self._proc.cpu_percent(None)
        while not self._halt.wait(self._period):
            try:
                rss = self._proc.memory_info().rss / 2**20
                cpu = self._proc.cpu_percent(None)
            except Exception:  # the process ended
                return
            gpu: dict[str, float] = {}
            if self._nvml is not None:
                nv, handle = self._nvml
                util = nv.nvmlDeviceGetUtilizationRates(handle)
                mem = nv.nvmlDeviceGetMemoryInfo(handle)
                gpu = {
                    "util_percent": float(util.gpu),
                    "memory_mb": mem.used / 2**20,
                    "sm_clock_mhz": float(nv.nvmlDeviceGetClockInfo(handle, nv.NVML_CLOCK_SM)),
                }
            self.samples.append(Sample(time.monotonic() - start, rss, cpu, gpu))

    def stop(self) -> None:
        self._halt.set()
        self.join(timeout=5)


def load_sources(settings: StreamSettings, seed: int = 0) -> list[Sequence]:
    """Recorded sequences, or one generated 270x270 cine-MRI case."""
    if settings.sources:
        from tracker.io.readers import open_sequence

        return [open_sequence(Path(p)) for p in settings.sources]

    params = dataclasses.replace(
        random_case_params(np.random.default_rng(seed)), size_px=270, n_frames=120, frame_rate_hz=8.0
    )
    case = generate_case(params, seed)
    return [
        Sequence(
            name="synthetic-270",
            frames=case.frames,
            frame_rate_hz=8.0,
            modality=Modality.CINE_MRI,
            first_label=case.labels[0],
            labels=case.labels,
            kind="synthetic",
        )
    ]


def _run_session(
    k: int,
    client: TrackerClient,
    sequence: Sequence,
    settings: StreamSettings,
    t0: float,
    outcomes: list[FrameOutcome],
    bar: tqdm,
    lock: threading.Lock,
) -> None:
    prompt = sequence.prompt_label()
    assert prompt is not None, f"{sequence.name} has no first-frame mask"
    objects = tuple(ObjectPrompt(i, MaskPrompt(prompt == i)) for i in sequence.object_ids())
    config = SessionConfig(
        modality=sequence.modality,
        engine=settings.engine,
        objects=objects,
        latency_budget_ms=settings.budget_ms,
        frame_rate_hz=settings.rate_hz,
        geometry=sequence.geometry,
        budget_policy=settings.policy,
        client_name=f"bench-stream-{k}",
    )
    session = client.open_session(config)
    n = settings.frames_per_session
    # Spread sessions over one frame interval so they do not all arrive at once.
    phase = k / settings.sessions / settings.rate_hz
    scheduled = [t0 + phase + i / settings.rate_hz for i in range(n)]
    received: dict[int, ClientResult] = {}

    def collect() -> None:
        while len(received) < n:
            item = session.recv(timeout_s=None)
            if item is None:
                return
            if isinstance(item, ClientResult):
                received[item.result.frame_index] = item
                with lock:
                    bar.update(1)

    collector = threading.Thread(target=collect, name=f"bench-recv-{k}", daemon=True)
    collector.start()
    for i in range(n):
        delay = scheduled[i] - time.monotonic()
        if delay > 0:
            time.sleep(delay)
        pixels = np.asarray(sequence.frames[ping_pong_index(i, len(sequence))])
        session.send_frame(pixels, i, timestamp_s=scheduled[i] - t0)
    collector.join()
    session.close()
    rows = []
    for i in range(n):
        answer = received.get(i)
        if answer is None:
            raise RuntimeError(f"session {k}: frame {i} was never answered")
        r = answer.result
        rows.append(
            FrameOutcome(
                session=k,
                index=i,
                scheduled_s=scheduled[i] - t0,
                status=r.status,
                latency_ms=(answer.received_mono - scheduled[i]) * 1000.0,
                server_ms=r.timing.total_ms,
                stages_ms=dict(r.timing.stages_ms),
                batch_size=r.timing.batch_size,
                degraded=bool(r.degradations),
            )
        )
    with lock:
        outcomes.extend(rows)


def run_stream(
    settings: StreamSettings,
    server: str | None = None,
    seed: int = 0,
    process: ServerProcess | None = None,
) -> dict[str, object]:
    """Run the load and return the report (see the module docstring).

    ``server``: the address of a running server (no CPU/RSS figures); ``process``:
    a server this harness may sample but does not own (it is left running);
    neither: a server process is started for this run and stopped after it.
    """
    run_provenance = provenance(seed=seed)  # at the start: the load average is the run's starting load
    sequences = load_sources(settings, seed)
    owned = process is None and server is None
    if owned:
        process = ServerProcess(
            settings.engine, settings.engine_options, settings.sessions, settings.serve_args
        )
        process.wait_ready()
    if process is not None:
        server = process.address
    assert server is not None
    sampler = Sampler(process.process.pid) if process is not None else None
    outcomes: list[FrameOutcome] = []
    lock = threading.Lock()
    total = settings.frames_per_session * settings.sessions
    try:
        with TrackerClient(server) as client:
            if sampler is not None:
                sampler.start()
            t0 = time.monotonic() + 0.5
            with tqdm(
                total=total, desc=f"stream {settings.engine} x{settings.sessions}", unit="frame"
            ) as bar:
                threads = [
                    threading.Thread(
                        target=_run_session,
                        args=(k, client, sequences[k % len(sequences)], settings, t0, outcomes, bar, lock),
                        name=f"bench-session-{k}",
                    )
                    for k in range(settings.sessions)
                ]
                for t in threads:
                    t.start()
                for t in threads:
                    t.join()
            wall_s = time.monotonic() - t0
    finally:
        try:
            if sampler is not None:
                sampler.stop()
        finally:  # never leave a server process behind, whatever failed above
            if owned and process is not None:
                process.stop()
    if len(outcomes) != total:
        raise RuntimeError(f"{total - len(outcomes)} frames unaccounted for (a session failed)")
    return build_report(settings, outcomes, sampler.samples if sampler else [], wall_s, run_provenance)


GRAPH_STAGES = ("encoder", "memory_attention", "decoder", "memory_encoder")  # a SAM2 engine's graphs
WAIT_STAGES = ("receive", "queue", "schedule")  # waiting for a slot or a batch, not computing


def frame_profile(answered: list[FrameOutcome]) -> dict[str, Any] | None:
    """Where a server frame's time goes: each stage's median and share, and what lies between graphs.

    ``between_graphs`` is, per frame, the server's time minus the graphs and the waits: the
    frame's decode, preprocessing, mask up-sampling, memory bookkeeping, the copies between
    graphs, postprocessing and the answer's encoding. Its share is of that frame's server
    time; median and worst over the answered frames. None for engines without graph stages.
    """
    frames = [o for o in answered if any(g in o.stages_ms for g in GRAPH_STAGES)]
    if not frames:
        return None
    between = []
    shares = []
    unnamed = []
    for o in frames:
        graphs = sum(o.stages_ms.get(g, 0.0) for g in GRAPH_STAGES)
        waits = sum(o.stages_ms.get(w, 0.0) for w in WAIT_STAGES)
        rest = max(0.0, o.server_ms - graphs - waits)
        between.append(rest)
        shares.append(rest / o.server_ms if o.server_ms > 0 else 0.0)
        unnamed.append(max(0.0, o.server_ms - sum(o.stages_ms.values())))
    server = float(np.median([o.server_ms for o in frames]))
    names = sorted({n for o in frames for n in o.stages_ms}, key=stage_order)
    stages = {}
    for name in names:
        ms = float(np.median([o.stages_ms.get(name, 0.0) for o in frames]))
        stages[name] = {"ms": round(ms, 2), "share": round(ms / server, 4) if server else None}
    other = float(np.median(unnamed))
    stages["other"] = {"ms": round(other, 2), "share": round(other / server, 4) if server else None}
    return {
        "frames": len(frames),
        "server_ms_median": round(server, 2),
        "stages": stages,
        "between_graphs_ms_median": round(float(np.median(between)), 2),
        "between_graphs_share_median": round(float(np.median(shares)), 4),
        "between_graphs_share_max": round(float(np.max(shares)), 4),
        "definition": "per frame: server time - graph stages - waits (receive, queue, schedule);"
        " 'other' is server time outside every named stage",
    }


def build_report(
    settings: StreamSettings,
    outcomes: list[FrameOutcome],
    samples: list[Sample],
    wall_s: float,
    run_provenance: dict[str, object] | None = None,
) -> dict[str, object]:
    measured = [o for o in outcomes if o.index >= settings.warmup_frames]
    answered = [o for o in measured if o.status in (FrameStatus.OK, FrameStatus.LATE)]
    statuses = [o.status for o in outcomes]
    stage_names = sorted({name for o in answered for name in o.stages_ms}, key=stage_order)
    stages = {
        name: float(np.median([o.stages_ms[name] for o in answered if name in o.stages_ms]))
        for name in stage_names
    }
    rss = [s.rss_mb for s in samples]
    after_10s = [s.rss_mb for s in samples if s.t_s >= 10.0]
    report: dict[str, object] = {
        "frames": len(outcomes),
        "sessions": settings.sessions,
        "late": statuses.count(FrameStatus.LATE),
        "dropped": statuses.count(FrameStatus.DROPPED),
        "errors": statuses.count(FrameStatus.ERROR),
        "ok": statuses.count(FrameStatus.OK),
        "degraded": sum(o.degraded for o in outcomes),
        "latency_ms": percentiles([o.latency_ms for o in answered], QUANTILES),
        "server_ms": percentiles([o.server_ms for o in answered], QUANTILES),
        "stages_ms_median": stages,
        "frame_profile": frame_profile(answered),
        "throughput_fps": len([o for o in outcomes if o.status in (FrameStatus.OK, FrameStatus.LATE)])
        / wall_s,
        "offered_fps": settings.rate_hz * settings.sessions,
        "wall_s": wall_s,
        "rss_mb_peak": max(rss) if rss else None,
        "rss_mb_at_10s": after_10s[0] if after_10s else None,
        "rss_mb_end": rss[-1] if rss else None,
        "rss_growth_after_10s_pct": (
            100.0 * (max(after_10s) - after_10s[0]) / after_10s[0] if len(after_10s) > 1 else None
        ),
        "cpu_percent_mean": float(np.mean([s.cpu_percent for s in samples])) if samples else None,
        "gpu": _gpu_summary(samples),
        "batch_size": batch_summary([o.batch_size for o in answered]),
        "provenance": run_provenance or provenance(),
        "machine": machine_info(),
        "settings": {
            "engine": settings.engine,
            "sessions": settings.sessions,
            "rate_hz": settings.rate_hz,
            "frames_per_session": settings.frames_per_session,
            "budget_ms": settings.budget_ms or "modality default",
            "policy": settings.policy.value,
            "engine_options": dict(settings.engine_options),
            "sources": list(settings.sources) or ["synthetic 270x270 cine-MRI"],
            "warmup_frames_excluded": settings.warmup_frames,
            "serve_args": list(settings.serve_args),
        },
        "timeline": [
            {
                "session": o.session,
                "index": o.index,
                "t_s": o.scheduled_s,
                "status": o.status.value,
                "latency_ms": o.latency_ms,
                "server_ms": o.server_ms,
            }
            for o in outcomes
        ],
        "resources": [
            {"t_s": s.t_s, "rss_mb": s.rss_mb, "cpu_percent": s.cpu_percent, **s.gpu} for s in samples
        ],
    }
    return report


def batch_summary(sizes: list[int]) -> dict[str, object] | None:
    """How many frames shared an engine call with each answered frame."""
    computed = [b for b in sizes if b > 0]
    if not computed:
        return None
    counts = np.bincount(computed)
    return {
        "mean": float(np.mean(computed)),
        "max": int(max(computed)),
        "frames_by_size": {str(size): int(n) for size, n in enumerate(counts) if n},
    }


def _gpu_summary(samples: list[Sample]) -> dict[str, float] | None:
    gpu = [s.gpu for s in samples if s.gpu]
    if not gpu:
        return None
    return {
        "util_percent_mean": float(np.mean([g["util_percent"] for g in gpu])),
        "memory_mb_peak": float(max(g["memory_mb"] for g in gpu)),
        "sm_clock_mhz_median": float(np.median([g["sm_clock_mhz"] for g in gpu])),
    }


def write_plots(report: dict[str, object], out_dir: Path, budget_ms: float | None = None) -> list[Path]:
    """Latency CDF, per-frame timeline with the budget line, stage breakdown, server memory."""
    out_dir.mkdir(parents=True, exist_ok=True)
    timeline: list[dict] = report["timeline"]  # type: ignore[assignment]
    answered = [t for t in timeline if t["status"] in ("OK", "LATE")]
    paths = []

    fig = Figure(figsize=(6, 4))  # the object API: no pyplot state, no display backend
    ax = fig.subplots()
    lat = np.sort([t["latency_ms"] for t in answered])
    ax.plot(lat, np.linspace(0, 1, len(lat), endpoint=False))
    if budget_ms:
        ax.axvline(budget_ms, color="red", ls=":", label=f"budget {budget_ms:.0f} ms")
        ax.legend()
    ax.set(xlabel="end-to-end latency (ms)", ylabel="fraction of frames", xscale="log", title="Latency CDF")
    ax.grid(alpha=0.3)
    fig.tight_layout()
    paths.append(out_dir / "latency_cdf.png")
    fig.savefig(paths[-1], dpi=110)

    fig = Figure(figsize=(10, 4))
    ax = fig.subplots()
    colours = {"OK": "tab:blue", "LATE": "tab:orange", "DROPPED": "tab:red", "ERROR": "black"}
    for status, colour in colours.items():
        pts = [t for t in timeline if t["status"] == status]
        if pts:
            y = [t["latency_ms"] if status in ("OK", "LATE") else (budget_ms or 1.0) for t in pts]
            ax.scatter([t["t_s"] for t in pts], y, s=4, color=colour, label=f"{status} ({len(pts)})")
    if budget_ms:
        ax.axhline(budget_ms, color="red", ls=":", label="budget")
    ax.set(xlabel="time (s)", ylabel="end-to-end latency (ms)", yscale="log", title="Per-frame latency")
    ax.legend(fontsize=8, markerscale=3)
    fig.tight_layout()
    paths.append(out_dir / "timeline.png")
    fig.savefig(paths[-1], dpi=110)

    fig = Figure(figsize=(11, 4))
    stages_ax, mem_ax = fig.subplots(1, 2)
    stages: dict[str, float] = report["stages_ms_median"]  # type: ignore[assignment]
    stages_ax.barh(list(stages)[::-1], list(stages.values())[::-1])
    stages_ax.set(xlabel="median ms", title="Per-stage breakdown (server)")
    resources: list[dict] = report["resources"]  # type: ignore[assignment]
    mem_ax.plot([r["t_s"] for r in resources], [r["rss_mb"] for r in resources])
    mem_ax.set(xlabel="time (s)", ylabel="server RSS (MB)", title="Server memory")
    fig.tight_layout()
    paths.append(out_dir / "stages_memory.png")
    fig.savefig(paths[-1], dpi=110)
    return paths
