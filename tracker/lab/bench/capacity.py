"""``tracker bench capacity``: how many sessions a server holds within a latency target.

A session *holds* when, for the whole run, every frame is answered ``OK``
(no ``LATE``, ``DROPPED`` or ``ERROR``) and the end-to-end p99 latency (scheduled
send to answer received, as ``tracker bench stream`` measures it) is at most
``--p99-ms``. The search streams open-loop synthetic sessions through one
server process: it doubles the number of sessions until a probe fails, bisects
between the last pass and the first failure, then confirms the result with a
run of the full ``--duration`` (stepping down while the confirmation fails).

``--compare-per-session`` runs the same search against a server started with
``--scheduler per-session`` (each session computing on its own thread, the
design before the scheduler) in the same invocation, so that the ratio comes
from one run on one machine.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from typing import Any

from tracker.client import TrackerClient
from tracker.lab.bench.stream import ServerProcess, StreamSettings, machine_info, run_stream
from tracker.lab.provenance import provenance

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class CapacitySettings:
    stream: StreamSettings  # engine, rate, policy, options; `sessions` and the length are set per probe
    p99_ms: float
    duration_s: float = 60.0  # the confirming run
    probe_s: float = 15.0  # each search probe
    # A fresh server's first seconds (first sessions, lazy set-up) are slower than its
    # steady state; a discarded stream of this length runs first, so that the first probe
    # does not fail on start-up transients that a longer run would dilute.
    warmup_s: float = 10.0
    max_sessions: int = 64
    serve_args: tuple[str, ...] = ()  # extra `tracker serve` flags (--workers, --max-batch, ...)


@dataclass
class Probe:
    sessions: int
    duration_s: float
    passed: bool
    p99_ms: float | None
    late: int
    dropped: int
    errors: int
    cpu_percent_mean: float | None
    report: dict[str, Any] = field(repr=False, default_factory=dict)

    def row(self) -> dict[str, Any]:
        """The probe's outcome with the figures that explain it (latencies, stages, batches)."""
        out = {k: v for k, v in self.__dict__.items() if k != "report"}
        for key in ("latency_ms", "server_ms", "stages_ms_median", "batch_size"):
            if key in self.report:
                out[key] = self.report[key]
        return out


def holds(report: dict[str, Any], p99_ms: float) -> bool:
    """The capacity criterion: nothing late, dropped or failed, and p99 within the target."""
    p99 = report["latency_ms"]["p99"]
    return (
        report["late"] == 0
        and report["dropped"] == 0
        and report["errors"] == 0
        and p99 is not None
        and p99 <= p99_ms
    )


def search(probe: Callable[[int, float], Probe], settings: CapacitySettings) -> tuple[int, list[Probe]]:
    """The largest session count that holds (0 if even one does not), and every probe run."""
    probes: list[Probe] = []

    def run(n: int, duration_s: float) -> bool:
        result = probe(n, duration_s)
        probes.append(result)
        logger.info(
            "%d sessions, %.0f s: %s (p99 %s ms, late %d, dropped %d, errors %d, cpu %s %%)",
            n, duration_s, "holds" if result.passed else "fails",
            f"{result.p99_ms:.1f}" if result.p99_ms is not None else "-",
            result.late, result.dropped, result.errors,
            f"{result.cpu_percent_mean:.0f}" if result.cpu_percent_mean is not None else "-",
        )  # fmt: skip
        return result.passed

    good, bad = 0, None
    n = 1
    while n <= settings.max_sessions:  # double until a probe fails
        if not run(n, settings.probe_s):
            bad = n
            break
        good = n
        n *= 2
    if bad is None:
        bad = settings.max_sessions + 1
    while bad - good > 1:  # bisect
        mid = (good + bad) // 2
        if run(mid, settings.probe_s):
            good = mid
        else:
            bad = mid
    while good > 0 and not run(good, settings.duration_s):  # confirm over the full duration
        good -= 1
    return good, probes


def measure(settings: CapacitySettings, serve_args: tuple[str, ...], label: str) -> dict[str, Any]:
    """Search one server configuration; the report of its confirming run and the probes."""
    stream = settings.stream
    process = ServerProcess(stream.engine, stream.engine_options, settings.max_sessions, serve_args)
    try:
        process.wait_ready()
        scheduler = _scheduler_info(process.address, stream.engine)
        if settings.warmup_s > 0:
            run_stream(
                replace(stream, sessions=2, duration_s=settings.warmup_s, frames=None), process=process
            )

        def probe(n: int, duration_s: float) -> Probe:
            run = replace(stream, sessions=n, duration_s=duration_s, frames=None)
            report = run_stream(run, process=process)
            return Probe(
                sessions=n,
                duration_s=duration_s,
                passed=holds(report, settings.p99_ms),
                p99_ms=report["latency_ms"]["p99"],
                late=report["late"],
                dropped=report["dropped"],
                errors=report["errors"],
                cpu_percent_mean=report["cpu_percent_mean"],
                report=report,
            )

        capacity, probes = search(probe, settings)
    finally:
        process.stop()
    confirmed = probes[-1] if capacity > 0 else None
    result: dict[str, Any] = {
        "label": label,
        "serve_args": list(serve_args),
        "scheduler": scheduler,
        "capacity_sessions": capacity,
        "probes": [p.row() for p in probes],
    }
    if confirmed is not None:
        r = confirmed.report
        result.update(
            {
                "p99_ms_at_capacity": r["latency_ms"]["p99"],
                "latency_ms_at_capacity": r["latency_ms"],
                "server_ms_at_capacity": r["server_ms"],
                "cpu_percent_mean": r["cpu_percent_mean"],
                "stages_ms_median": r["stages_ms_median"],
                "batch_size": r["batch_size"],
                "gpu": r["gpu"],
                "rss_mb_peak": r["rss_mb_peak"],
                "frames_at_capacity": r["frames"],
            }
        )
    return result


def _scheduler_info(address: str, engine: str) -> dict[str, Any]:
    with TrackerClient(address) as client:
        info = next(e for e in client.info().engines if e.name == engine)
    return {
        "kind": info.scheduler,
        "workers": info.workers,
        "threads_per_worker": info.threads_per_worker,
        "max_batch": info.max_batch,
        "max_queue_delay_ms": info.max_queue_delay_ms,
    }


def run_capacity(settings: CapacitySettings, compare_per_session: bool) -> dict[str, Any]:
    run_provenance = provenance()
    main = measure(settings, settings.serve_args, "scheduler")
    report: dict[str, Any] = {
        "capacity_sessions": main["capacity_sessions"],
        "p99_ms_at_capacity": main.get("p99_ms_at_capacity"),
        "cpu_percent_mean": main.get("cpu_percent_mean"),
        "stages_ms_median": main.get("stages_ms_median"),
        "batch_size": main.get("batch_size"),
        "gpu": main.get("gpu"),
        "scheduler": main,
    }
    if compare_per_session:
        baseline = measure(settings, ("--scheduler", "per-session"), "per-session")
        report["baseline_capacity_sessions"] = baseline["capacity_sessions"]
        report["ratio"] = (
            main["capacity_sessions"] / baseline["capacity_sessions"]
            if baseline["capacity_sessions"]
            else None
        )
        report["baseline"] = baseline
    stream = settings.stream
    report["settings"] = {
        "engine": stream.engine,
        "engine_options": dict(stream.engine_options),
        "rate_hz": stream.rate_hz,
        "p99_ms": settings.p99_ms,
        "duration_s": settings.duration_s,
        "probe_s": settings.probe_s,
        "warmup_s": settings.warmup_s,
        "max_sessions": settings.max_sessions,
        "policy": stream.policy.value,
        "budget_ms": stream.budget_ms or "modality default",
        "sources": list(stream.sources) or ["synthetic 270x270 cine-MRI"],
        "serve_args": list(settings.serve_args),
        "criterion": "whole run: 0 LATE, 0 DROPPED, 0 ERROR, end-to-end p99 <= p99_ms",
    }
    report["machine"] = machine_info()
    report["provenance"] = run_provenance
    return report
