"""The ``tracker live`` subcommand; :func:`add_cli` plugs it into ``tracker``'s parser."""

from __future__ import annotations

import argparse
import json
import logging
import os
from pathlib import Path

from tracker.cli_args import key_values
from tracker.types import Modality

logger = logging.getLogger(__name__)

TOKEN_ENV = "TRACKER_TOKEN"  # a token on the command line would show in `ps`


def _cmd_live(args: argparse.Namespace) -> int:
    from tracker.lab.live.runner import LiveOptions, parse_box, run_live

    options = LiveOptions(
        server=args.server,
        engine=args.engine,
        engine_options=key_values(args.engine_option),
        prompt_box=parse_box(args.prompt_box) if args.prompt_box else None,
        prompt_mask=args.prompt_mask,
        prompt_click=args.prompt_click,
        label=args.label,
        record=args.record,
        view=args.view,
        view_host=args.view_host,
        view_port=args.view_port,
        max_frames=args.max_frames,
        duration_s=args.duration,
        frame_rate_hz=args.fps,
        latency_budget_ms=args.budget_ms,
        modality=Modality(args.modality) if args.modality else None,
        root_certificates=args.ca_cert,
        token=os.environ.get(TOKEN_ENV) or None,
        failover=args.failover,
        max_answer_age_ms=args.max_answer_age_ms,
    )
    summary = run_live(args.source, options)
    logger.info("live summary: %s", json.dumps(summary.as_dict()))
    return 1 if summary.error else 0


def add_cli(subparsers: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    """Add ``live`` to ``tracker``'s subcommands (``func`` returns the exit code)."""
    p = subparsers.add_parser(
        "live",
        help="track a live source (camera, stream, video, image folder); view and record it",
        description=(
            "Send frames from SRC at the source's rate (latest frame wins on the client too) and show"
            " or record the tracked masks. Without --server, a server is started in-process on loopback."
            f" A bearer token for a remote server is read from ${TOKEN_ENV}."
        ),
    )
    p.add_argument(
        "--source", required=True, help="capture device index, video file, image folder, or stream URL"
    )
    p.add_argument("--server", default=None, help="HOST:PORT; default: an in-process server on loopback")
    prompt = p.add_mutually_exclusive_group()
    prompt.add_argument("--prompt-box", default=None, metavar="X,Y,W,H", help="box around the target, px")
    prompt.add_argument("--prompt-mask", type=Path, default=None, metavar="FILE", help="first-frame mask")
    prompt.add_argument("--prompt-click", action="store_true", help="click on the --view page to add objects")
    p.add_argument("--label", default="target", help="label of the prompted object(s)")
    p.add_argument("--record", type=Path, default=None, metavar="OUT.mp4", help="write the overlaid video")
    p.add_argument("--view", action="store_true", help="serve a live web view")
    p.add_argument("--view-host", default="127.0.0.1")
    p.add_argument("--view-port", type=int, default=8765, help="0: a free port")
    p.add_argument("--max-frames", type=int, default=None, metavar="N", help="stop after N frames")
    p.add_argument("--duration", type=float, default=None, metavar="S", help="stop after S seconds")
    p.add_argument("--fps", type=float, default=None, help="override the source's frame rate (Hz)")
    p.add_argument("--budget-ms", type=float, default=None, help="default: the modality's")
    p.add_argument("--modality", choices=["cine_mri", "endoscopy", "other"], default=None)
    p.add_argument("--engine", default="", help="engine for the session (and the in-process server)")
    p.add_argument("--engine-option", action="append", default=[], metavar="KEY=VALUE")
    p.add_argument("--ca-cert", type=Path, default=None, help="PEM root certificate: connect with TLS")
    p.add_argument(
        "--failover",
        action="store_true",
        help="when the session's replica dies or drains, re-open through --server (a proxy) from the"
        " last masks; frames of the gap are answered LOST (docs/scale-out.md)",
    )
    p.add_argument(
        "--max-answer-age-ms",
        type=float,
        default=None,
        help="an answer older than this after its frame was read is stale and its BEAM_ON held"
        " (default: the session's budget; docs/protocol.md)",
    )
    p.set_defaults(func=_cmd_live)
