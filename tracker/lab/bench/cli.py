"""The ``tracker bench`` sub-commands: stream, capacity, reference, cluster and faults (their arguments)."""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

from tracker.cli_args import key_value
from tracker.lab.bench import cluster, faults, reference, stream
from tracker.lab.bench.capacity import CapacitySettings, run_capacity
from tracker.lab.bench.cluster import ClusterSettings, Fault, run_cluster
from tracker.lab.bench.common import write_json
from tracker.lab.bench.stream import StreamSettings, run_stream
from tracker.types import BudgetPolicy


def add_cli(subparsers: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    p = subparsers.add_parser("stream", help="open-loop streaming load against a server")
    p.add_argument("--engine", default="flow")
    p.add_argument("--engine-option", action="append", default=[], metavar="KEY=VALUE")
    p.add_argument("--sessions", type=int, default=1)
    p.add_argument("--rate", type=float, default=8.0, help="frames per second per session")
    length = p.add_mutually_exclusive_group(required=True)
    length.add_argument("--duration", type=float, help="seconds per session")
    length.add_argument("--frames", type=int, help="frames per session")
    p.add_argument(
        "--source", action="append", default=[], help="recorded sequence(s); default: synthetic cine"
    )
    p.add_argument("--budget-ms", type=float, default=0.0, help="0: the modality's default")
    p.add_argument("--policy", choices=[p.value for p in BudgetPolicy], default="latest")
    p.add_argument("--server", default=None, help="HOST:PORT of a running server (no CPU/RSS figures)")
    p.add_argument(
        "--serve-arg",
        action="append",
        default=[],
        metavar="FLAG[=VALUE]",
        help="extra `tracker serve` flag for the server this run starts, e.g. --serve-arg=--model-dir=DIR",
    )
    p.add_argument("--json", type=Path, required=True)
    p.add_argument("--plots", type=Path, default=None)
    p.set_defaults(func=_cmd_stream)


def add_capacity_cli(subparsers: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    p = subparsers.add_parser(
        "capacity", help="the most sessions a server holds at a rate within a p99 latency target"
    )
    p.add_argument("--engine", default="flow")
    p.add_argument("--engine-option", action="append", default=[], metavar="KEY=VALUE")
    p.add_argument("--rate", type=float, default=8.0, help="frames per second per session")
    p.add_argument("--p99-ms", type=float, required=True, help="end-to-end p99 latency target")
    p.add_argument("--duration", type=float, default=60.0, help="seconds of the confirming run")
    p.add_argument("--probe-duration", type=float, default=15.0, help="seconds of each search probe")
    p.add_argument(
        "--warmup", type=float, default=10.0, help="seconds of a discarded stream before the search"
    )
    p.add_argument("--max-sessions", type=int, default=64, help="upper end of the search")
    p.add_argument("--policy", choices=[p.value for p in BudgetPolicy], default="latest")
    p.add_argument("--budget-ms", type=float, default=0.0, help="0: the modality's default")
    p.add_argument(
        "--source", action="append", default=[], help="recorded sequence(s); default: synthetic cine"
    )
    p.add_argument(
        "--serve-arg",
        action="append",
        default=[],
        metavar="FLAG[=VALUE]",
        help="extra `tracker serve` flag for the measured server, e.g. --serve-arg=--max-batch=8",
    )
    p.add_argument(
        "--compare-per-session",
        action="store_true",
        help="also measure `tracker serve --scheduler per-session` in this run, and the ratio",
    )
    p.add_argument("--json", type=Path, required=True)
    p.set_defaults(func=_cmd_capacity)


def _stream_settings(args: argparse.Namespace, **more: Any) -> StreamSettings:
    """The load that ``bench stream`` and ``bench capacity`` describe with the same flags."""

    return StreamSettings(
        engine=args.engine,
        rate_hz=args.rate,
        budget_ms=args.budget_ms,
        policy=BudgetPolicy(args.policy),
        engine_options=tuple(key_value(pair) for pair in args.engine_option),
        sources=tuple(args.source),
        **more,
    )


def _cmd_capacity(args: argparse.Namespace) -> int:
    settings = CapacitySettings(
        stream=_stream_settings(args),
        p99_ms=args.p99_ms,
        duration_s=args.duration,
        probe_s=args.probe_duration,
        warmup_s=args.warmup,
        max_sessions=args.max_sessions,
        serve_args=tuple(args.serve_arg),
    )
    report = run_capacity(settings, args.compare_per_session)
    write_json(report, args.json)
    keys = (
        "capacity_sessions",
        "baseline_capacity_sessions",
        "ratio",
        "p99_ms_at_capacity",
        "cpu_percent_mean",
    )
    print(json.dumps({k: report.get(k) for k in keys}, indent=2))  # noqa: T201 - the command's output
    return 0


def add_reference_cli(subparsers: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    p = subparsers.add_parser(
        "reference",
        help="SAM2 engine vs sam2's SAM2VideoPredictor: ms/frame, RSS over time, parity",
        add_help=False,
    )
    p.set_defaults(func=_cmd_reference, forward_unknown=True)


def _cmd_reference(args: argparse.Namespace) -> int:
    return reference.main(args.forwarded)


def _cmd_stream(args: argparse.Namespace) -> int:
    if args.server and args.serve_arg:
        raise SystemExit("--serve-arg is for the server this run starts; --server names a running one")
    settings = _stream_settings(
        args,
        sessions=args.sessions,
        duration_s=args.duration,
        frames=args.frames,
        serve_args=tuple(args.serve_arg),
    )
    report = run_stream(settings, server=args.server)
    write_json(report, args.json)
    if args.plots is not None:
        budget = args.budget_ms or (1000.0 if not args.source else None)
        stream.write_plots(report, args.plots, budget)
    summary = {
        k: report[k]
        for k in ("frames", "late", "dropped", "errors", "latency_ms", "server_ms", "rss_mb_peak")
    }
    print(json.dumps(summary, indent=2))  # noqa: T201 - the command's output
    return 0


def add_cluster_cli(subparsers: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    p = subparsers.add_parser(
        "cluster",
        help="replicas behind Envoy on loopback; kill/drain replicas mid-session; client failover on",
    )
    p.add_argument("--replicas", type=int, default=3)
    p.add_argument("--sessions", type=int, default=6)
    p.add_argument("--rate", type=float, default=8.0, help="frames per second per session")
    p.add_argument("--duration", type=float, required=True, help="seconds per session")
    p.add_argument("--kill", action="append", default=[], metavar="R@SECONDS", help="SIGKILL replica R")
    p.add_argument("--drain", action="append", default=[], metavar="R@SECONDS", help="SIGTERM replica R")
    p.add_argument("--engine", default="flow")
    p.add_argument("--engine-option", action="append", default=[], metavar="KEY=VALUE")
    p.add_argument("--gating-margin-mm", type=float, default=10.0)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--json", type=Path, required=True)
    p.add_argument("--plots", type=Path, default=None, help="folder for the timeline plot")
    p.set_defaults(func=_cmd_cluster)


def _cmd_cluster(args: argparse.Namespace) -> int:
    options = [key_value(pair) for pair in args.engine_option]
    faults = tuple(Fault.parse("kill", t) for t in args.kill) + tuple(
        Fault.parse("drain", t) for t in args.drain
    )
    settings = ClusterSettings(
        replicas=args.replicas,
        sessions=args.sessions,
        rate_hz=args.rate,
        duration_s=args.duration,
        faults=faults,
        engine=args.engine,
        engine_options=tuple(options),
        gating_margin_mm=args.gating_margin_mm,
        seed=args.seed,
    )
    report = run_cluster(settings)
    write_json(report, args.json)
    if args.plots is not None:
        cluster.write_plots(report, args.plots)
    keys = (
        "frames", "answered", "unaccounted", "failovers", "resume_ms", "lost_per_failover_max",
        "beam_on_during_gap", "dice_mean", "dice_mean_no_fault", "faults", "targets",
    )  # fmt: skip
    print(json.dumps({k: report[k] for k in keys}, indent=2))  # noqa: T201 - the command's output
    return 0


def add_faults_cli(subparsers: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    p = subparsers.add_parser(
        "faults",
        help="network faults that send no reset (black holes, jitter, a 1 Mbit/s link, a stalled"
        " reader, resets), one scenario at a time, replicas behind Envoy, failover on",
    )
    p.add_argument(
        "--scenario",
        action="append",
        choices=faults.SCENARIOS,
        default=None,
        help="run only these (repeat); default: all",
    )
    p.add_argument("--replicas", type=int, default=3)
    p.add_argument("--sessions", type=int, default=3)
    p.add_argument("--rate", type=float, default=8.0, help="frames per second per session")
    p.add_argument("--duration", type=float, default=20.0, help="seconds per scenario")
    p.add_argument("--fault-at", type=float, default=5.0, help="seconds into each scenario")
    p.add_argument("--frame-px", type=int, default=512, help="frames are scaled to this square size")
    p.add_argument(
        "--answer-timeout-ms",
        type=float,
        default=faults.FaultBenchSettings.answer_timeout_ms,
        help="the consoles' answer watchdog (silence with frames in flight that counts as a lost"
        " session); 0: the failover policy's default, the session's budget (default: %(default)s)",
    )
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--json", type=Path, required=True)
    p.set_defaults(func=_cmd_faults)


def _cmd_faults(args: argparse.Namespace) -> int:
    settings = faults.FaultBenchSettings(
        scenarios=tuple(args.scenario or faults.SCENARIOS),
        replicas=args.replicas,
        sessions=args.sessions,
        rate_hz=args.rate,
        duration_s=args.duration,
        fault_at_s=args.fault_at,
        frame_px=args.frame_px,
        answer_timeout_ms=args.answer_timeout_ms or None,
        seed=args.seed,
    )
    report = faults.run_faults(settings)
    write_json(report, args.json)
    print(json.dumps({"scenarios": report["scenarios"], "targets": report["targets"]}, indent=2))  # noqa: T201
    return 0
