"""The ``tracker`` command: serve, replay, synth, demo."""

from __future__ import annotations

import argparse
import json
import logging
import sys
from pathlib import Path

from tracker import __version__
from tracker.cli_args import key_values
from tracker.convert import Limits
from tracker.deploy.envoy import add_cli as add_envoy_cli
from tracker.engines.availability import missing_module_message
from tracker.engines.export import add_cli as add_export_cli
from tracker.io.challenge_layout import LAYOUTS
from tracker.keepalive import Keepalive
from tracker.lab.bench.cli import add_capacity_cli, add_cluster_cli, add_faults_cli, add_reference_cli
from tracker.lab.bench.cli import add_cli as add_stream_cli
from tracker.lab.bench.engines import add_cli as add_engines_cli
from tracker.lab.synth.cine_mri import write_cases
from tracker.lab.synth.cli import add_cli as add_surgical_cli
from tracker.lab.training.cli import add_cli as add_overseer_cli
from tracker.server.app import ServerOptions, is_loopback, serve
from tracker.server.scheduler import SchedulerConfig
from tracker.server.security import TlsFiles, load_tokens
from tracker.server.telemetry import JsonLogFormatter
from tracker.weights import WeightsError

logger = logging.getLogger("tracker")


def _cmd_serve(args: argparse.Namespace) -> int:
    tls = None
    if args.tls_cert or args.tls_key:
        if not (args.tls_cert and args.tls_key):
            raise ValueError("--tls-cert and --tls-key go together")
        tls = TlsFiles(args.tls_cert, args.tls_key, args.tls_client_ca)
    elif args.tls_client_ca:
        raise ValueError("--tls-client-ca (mutual TLS) needs --tls-cert and --tls-key")
    if tls is None and not is_loopback(args.host) and not args.insecure:
        raise ValueError(
            f"refusing to serve plaintext on {args.host}: only loopback is allowed without TLS;"
            " give --tls-cert/--tls-key, or pass --insecure to accept unencrypted traffic on this network"
        )
    tokens = load_tokens(args.auth_token_file)
    if args.auth_token_file and not tokens:
        raise ValueError(f"{args.auth_token_file} holds no tokens")
    limits = Limits(
        max_sessions=args.max_sessions,
        max_frame_pixels=args.max_frame_pixels,
        max_objects_per_session=args.max_objects,
        max_message_bytes=args.max_message_mb * 2**20,
    )
    options = ServerOptions(
        host=args.host,
        port=args.port,
        limits=limits,
        idle_timeout_s=args.idle_timeout_s or None,
        keepalive=Keepalive(args.keepalive_ms, args.keepalive_timeout_ms),
        tls=tls,
        auth_tokens=tokens,
        metrics_port=args.metrics_port,
        metrics_host=args.metrics_host,
        allow_insecure_remote=args.insecure,
        scheduler=SchedulerConfig(
            args.scheduler, args.workers, args.max_batch, args.max_queue_delay_ms, args.worker_stall_timeout_s
        ),
    )
    engines = [e.strip() for e in args.engine.split(",") if e.strip()]
    engine_options = key_values(args.engine_option)
    # SAM2 shorthands; the same settings as --engine-option KEY=VALUE.
    for key, value in (
        ("model", args.model),
        ("checkpoint", args.checkpoint and str(args.checkpoint)),
        ("random_weights", "true" if args.random_weights else None),
        ("image_size", args.image_size and str(args.image_size)),
        ("device", args.device),
        ("dtype", args.dtype),
    ):
        if value:
            engine_options[key] = value
    return serve(
        engines,
        engine_options,
        options,
        args.overseer,
        key_values(args.overseer_option),
        args.model_dir,
    )


def _cmd_replay(args: argparse.Namespace) -> int:
    from tracker.lab.replay import ReplayOptions, replay

    options = ReplayOptions(
        rate=args.rate,
        engine=args.engine,
        engine_options=key_values(args.engine_option),
        latency_budget_ms=args.budget_ms,
        out_masks=args.out_masks,
        out_masks_layout=args.layout,
        first_mask=args.first_mask,
        frame_rate_hz=args.frame_rate,
        progress=not args.no_progress,
        overseer=args.overseer,
        overseer_options=key_values(args.overseer_option),
        gating_margin_mm=args.gating_margin_mm,
        beam_latency_ms=args.beam_latency_ms,
        gating_rule=args.gating_rule,
        gating_reference=args.gating_reference,
        min_inside_fraction=args.min_inside_percent / 100.0,
        min_confidence=args.min_confidence,
        guard_sigmas=args.guard_sigmas,
        challenge_mode=args.challenge,
    )
    report, results = replay(args.paths, options, server=args.server, report_path=args.report)
    logger.info("report written to %s", args.report)
    if args.html is not None:
        from tracker.lab.report.html import write_html_report

        write_html_report(args.html, report, results)
        logger.info("HTML report written to %s", args.html)
    print(json.dumps(report["summary"], indent=2))  # noqa: T201 - the command's output
    return 0


def _cmd_synth(args: argparse.Namespace) -> int:
    paths = write_cases(args.out, args.cases, args.seed, progress=not args.no_progress)
    logger.info("wrote %d TrackRAD-layout cases under %s", len(paths), args.out)
    return 0


def _cmd_demo(args: argparse.Namespace) -> int:
    from tracker.lab.demo import run_demo

    run_demo(args.out, davis=args.davis, seed=args.seed)
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="tracker", description="Real-time streaming tracker service over gRPC."
    )
    parser.add_argument("--version", action="version", version=f"tracker {__version__}")
    parser.add_argument("--log-level", default="INFO", choices=["DEBUG", "INFO", "WARNING", "ERROR"])
    parser.add_argument(
        "--log-format", default="text", choices=["text", "json"], help="json: one object per line"
    )
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("serve", help="run the gRPC server")
    p.add_argument(
        "--engine", default="flow", help="engine name, or a comma-separated list (first is default)"
    )
    p.add_argument("--engine-option", action="append", default=[], metavar="KEY=VALUE", help="engine option")
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=50051)
    p.add_argument("--insecure", action="store_true", help="allow plaintext on a non-loopback address")
    p.add_argument("--tls-cert", type=Path, help="PEM certificate chain: serve TLS")
    p.add_argument("--tls-key", type=Path, help="PEM private key for --tls-cert")
    p.add_argument(
        "--tls-client-ca", type=Path, help="PEM CA bundle: require client certificates (mutual TLS)"
    )
    p.add_argument(
        "--auth-token-file",
        type=Path,
        help="bearer tokens, one per line (also read from $TRACKER_AUTH_TOKENS); health stays open",
    )
    p.add_argument("--metrics-port", type=int, default=None, help="serve Prometheus /metrics on this port")
    p.add_argument("--metrics-host", default="127.0.0.1", help="address /metrics listens on (plain HTTP)")
    p.add_argument("--max-sessions", type=int, default=32)
    p.add_argument("--max-frame-pixels", type=int, default=4096 * 4096)
    p.add_argument("--max-objects", type=int, default=64, help="objects per session")
    p.add_argument("--max-message-mb", type=int, default=256, help="largest gRPC message accepted")
    p.add_argument(
        "--idle-timeout-s", type=float, default=60.0, help="close sessions idle this long (0: never)"
    )
    p.add_argument(
        "--keepalive-ms",
        type=int,
        default=Keepalive.time_ms,
        help="ping each client this often; a connection whose ping is not acknowledged within"
        " --keepalive-timeout-ms is closed and its sessions freed (docs/protocol.md)",
    )
    p.add_argument("--keepalive-timeout-ms", type=int, default=Keepalive.timeout_ms)
    p.add_argument("--overseer", default="", help="wrap the engines with an overseer: guard, W.pt or W.onnx")
    sched = p.add_argument_group("compute scheduling (docs/scheduler.md)")
    sched.add_argument(
        "--scheduler",
        choices=["edf", "per-session"],
        default="edf",
        help="edf: worker threads, earliest deadline first across sessions, batching;"
        " per-session: each session computes on its own thread (the earlier design, for comparison)",
    )
    sched.add_argument(
        "--workers", type=int, default=None, help="compute workers per engine (default: the engine's own)"
    )
    sched.add_argument("--max-batch", type=int, default=4, help="frames of several sessions per engine call")
    sched.add_argument(
        "--max-queue-delay-ms",
        type=float,
        default=2.0,
        help="how long a worker may wait to fill a batch (never past a frame's deadline)",
    )
    sched.add_argument(
        "--worker-stall-timeout-s",
        type=float,
        default=30.0,
        help="a worker whose engine call runs longer is replaced and its sessions end UNAVAILABLE",
    )
    sam2 = p.add_argument_group("sam2 engine")
    sam2.add_argument("--model", default=None, help="sam2.1_hiera_tiny|small|base_plus|large (or t/s/b+/l)")
    weights = sam2.add_mutually_exclusive_group()
    weights.add_argument("--checkpoint", type=Path, default=None, help="checkpoint in a model directory")
    weights.add_argument(
        "--random-weights", action="store_true", help="untrained weights: tests and benchmarks only"
    )
    sam2.add_argument("--image-size", type=int, default=None, help="default: 1024 on cuda, 512 on cpu")
    sam2.add_argument("--device", choices=["cpu", "cuda"], default=None)
    sam2.add_argument(
        "--dtype",
        choices=["float32", "bfloat16"],
        default=None,
        help="bfloat16: autocast (cuda, or a CPU with avx512_bf16/amx_bf16); default float32",
    )
    p.add_argument(
        "--model-dir",
        action="append",
        type=Path,
        default=[],
        help="directory checkpoints may be loaded from (besides the weights cache); its manifest.json"
        " must list each file's SHA-256 (tracker weights add/fetch write it)",
    )
    p.add_argument("--overseer-option", action="append", default=[], metavar="KEY=VALUE", help="policy knob")
    p.set_defaults(func=_cmd_serve)

    p = sub.add_parser("replay", help="stream recorded sequences through the API and score them")
    p.add_argument(
        "paths", nargs="+", type=Path, metavar="PATH", help="TrackRAD case, DAVIS folder, video, DICOM, MHA"
    )
    p.add_argument("--server", default=None, help="HOST:PORT; default: start a server in-process on loopback")
    p.add_argument("--rate", choices=["realtime", "max"], default="max")
    p.add_argument("--first-mask", type=Path, default=None, help="prompt mask for frame 0 (PNG/MHA)")
    p.add_argument("--report", type=Path, required=True, help="JSON report to write")
    p.add_argument("--out-masks", type=Path, default=None, help="folder for predicted masks")
    p.add_argument(
        "--layout",
        choices=LAYOUTS,
        default="native",
        help="how --out-masks is laid out: native (TrackRAD cases as <id>/targets/<id>_labels.mha, PNGs"
        " otherwise); trackrad (TrackRAD2025's Grand-Challenge job outputs and predictions.json, read by"
        " its evaluate.py as they are); davis2017 (<seq>/<frame>.png with ids 1..N, and a DAVIS-2017"
        " root of the ground truth, for davis2017-evaluation)",
    )
    p.add_argument("--engine", default="", help="engine for the sessions (and for the in-process server)")
    p.add_argument("--engine-option", action="append", default=[], metavar="KEY=VALUE")
    p.add_argument(
        "--budget-ms", type=float, default=None, help="default: 1000 for cine-MRI, a frame interval else"
    )
    p.add_argument("--frame-rate", type=float, default=None, help="override the source's frame rate (Hz)")
    p.add_argument("--no-progress", action="store_true")
    p.add_argument(
        "--overseer",
        default="",
        help="re-prompting overseer for the in-process server: oracle (ground truth), guard (cine drift"
        " guard), or a trained detector W.pt / W.onnx",
    )
    p.add_argument("--overseer-option", action="append", default=[], metavar="KEY=VALUE", help="policy knob")
    p.add_argument("--gating-margin-mm", type=float, default=None, help="gate the beam on a window of M mm")
    p.add_argument(
        "--beam-latency-ms", type=float, default=0.0, help="added to the measured latency (gating)"
    )
    p.add_argument(
        "--gating-rule",
        choices=["centroid", "mask"],
        default="centroid",
        help="centroid: predicted centroid within the margin; mask: >= --min-inside-percent of the target"
        " inside the boundary (first mask + margin)",
    )
    p.add_argument(
        "--min-inside-percent", type=float, default=95.0, help="mask rule: P %% of the target inside"
    )
    p.add_argument(
        "--gating-reference",
        choices=["first_frame", "end_exhale"],
        default="first_frame",
        help="the window's reference: the prompted frame, or (with ground truth) the end-exhale frame of"
        " the first breathing cycle, as a planner sets it; the gate and the oracle get the same one",
    )
    p.add_argument("--min-confidence", type=float, default=None, help="hold under this tracking confidence")
    p.add_argument("--guard-sigmas", type=float, default=None, help="guard band in estimated standard errors")
    p.add_argument(
        "--challenge",
        action="store_true",
        help="TrackRAD2025 challenge mode: headline Dice/HD95/centroid as the challenge computes them",
    )
    p.add_argument("--html", type=Path, default=None, help="also write a self-contained HTML report here")
    p.set_defaults(func=_cmd_replay)

    p = sub.add_parser("synth", help="generate synthetic sequences with ground truth")
    synth = p.add_subparsers(dest="kind", required=True)
    s = synth.add_parser("cine-mri", help="TrackRAD-layout cine-MRI cases with breathing motion")
    s.add_argument("--out", type=Path, required=True)
    s.add_argument("--cases", type=int, default=10)
    s.add_argument("--seed", type=int, default=0)
    s.add_argument("--no-progress", action="store_true")
    s.set_defaults(func=_cmd_synth)

    add_surgical_cli(synth)

    add_overseer_cli(sub)

    add_export_cli(sub)
    from tracker.lab.live import add_cli as add_live_cli

    add_live_cli(sub)
    from tracker.weights import add_cli as add_weights_cli

    add_weights_cli(sub)

    add_envoy_cli(sub)

    p = sub.add_parser("bench", help="benchmarks: streaming load, capacity, SAM2 against its reference")
    bench = p.add_subparsers(dest="bench", required=True)

    add_stream_cli(bench)
    add_capacity_cli(bench)
    add_reference_cli(bench)
    add_cluster_cli(bench)
    add_faults_cli(bench)
    add_engines_cli(bench)

    p = sub.add_parser("demo", help="serve, replay a cine-MRI case and a DAVIS clip, write a table and plots")
    p.add_argument("--out", type=Path, default=Path("demo-output"))
    p.add_argument(
        "--davis", type=Path, default=None, help="DAVIS sequence folder; default: the shared data if present"
    )
    p.add_argument("--seed", type=int, default=7)
    p.set_defaults(func=_cmd_demo)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args, unknown = parser.parse_known_args(argv)
    if getattr(args, "forward_unknown", False):  # `bench reference` has its own argument parser
        args.forwarded = unknown
    elif unknown:
        parser.error(f"unrecognized arguments: {' '.join(unknown)}")
    logging.basicConfig(level=args.log_level, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    if args.log_format == "json":
        for handler in logging.getLogger().handlers:
            handler.setFormatter(JsonLogFormatter())
    try:
        return int(args.func(args) or 0)
    except (ValueError, FileNotFoundError, WeightsError) as exc:
        logger.error("%s", exc)
        return 2
    except ModuleNotFoundError as exc:  # an optional extra that this install lacks
        message = missing_module_message(exc)
        if message is None:
            raise
        logger.error("%s", message)
        return 2


if __name__ == "__main__":
    sys.exit(main())
