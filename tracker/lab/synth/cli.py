"""``tracker synth surgical``, ``cine-hard`` and ``cine-b``: kept apart from the generators so that building
the CLI stays light."""

from __future__ import annotations

import argparse
import logging
from pathlib import Path

from tracker.lab.synth.family_b import write_family_b_cases
from tracker.lab.synth.hard_cine import write_hard_cases

logger = logging.getLogger(__name__)


def add_cli(synth_subparsers: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    """Add ``synth surgical``, ``cine-hard`` and ``cine-b`` to the ``synth`` group of ``tracker``."""
    s = synth_subparsers.add_parser(
        "surgical", help="laparoscopic video with instruments entering/leaving; COCO + DAVIS-layout masks"
    )
    s.add_argument("--out", type=Path, required=True, help="sequence folder to write")
    s.add_argument("--frames", type=int, default=100)
    s.add_argument("--seed", type=int, default=0)
    s.add_argument("--height", type=int, default=240)
    s.add_argument("--width", type=int, default=320)
    s.add_argument("--instruments", type=int, default=0, help="instances over the sequence; 0: from --frames")
    s.add_argument(
        "--hard", action="store_true", help="smoke, blur, shading, tissue occlusion, entries from any edge"
    )
    s.set_defaults(func=_cmd_surgical)
    h = synth_subparsers.add_parser(
        "cine-hard",
        help="the hard cine-MRI set (sliding boundaries, through-plane motion, appearance change, coughs):"
        " tuning or validation split",
    )
    h.add_argument("--out", type=Path, required=True, help="folder for the TrackRAD case folders")
    h.add_argument("--set", choices=["tuning", "validation"], required=True, dest="which")
    h.add_argument("--cases", type=int, default=8, help="the first N cases of the set")
    h.set_defaults(func=_cmd_hard)
    b = synth_subparsers.add_parser(
        "cine-b",
        help="family B cine-MRI, validation only (never tune on it): written apart from the hard set, with"
        " other noise, contrast, banding, flow ghosts, 1-2.5 mm pixels and breathing model",
    )
    b.add_argument("--out", type=Path, required=True, help="folder for the TrackRAD case folders B001...")
    b.add_argument("--cases", type=int, default=8, help="the first N cases of family B")
    b.add_argument("--preview", action="store_true", help="also write a contact sheet, preview.png, per case")
    b.add_argument("--no-progress", action="store_true")
    b.set_defaults(func=_cmd_family_b)


def _cmd_surgical(args: argparse.Namespace) -> int:
    from tracker.lab.synth.surgical import write_sequence

    seq = write_sequence(
        args.out,
        args.frames,
        args.seed,
        height=args.height,
        width=args.width,
        n_instruments=args.instruments,
        hard=args.hard,
    )
    logger.info("instruments: %s", ", ".join(f"{p.instance_id}:{p.class_name}" for p in seq.instruments))
    return 0


def _cmd_hard(args: argparse.Namespace) -> int:
    if args.cases < 1:
        raise SystemExit(f"--cases must be >= 1, got {args.cases}")
    write_hard_cases(args.out, args.which, args.cases)
    return 0


def _cmd_family_b(args: argparse.Namespace) -> int:
    if args.cases < 1:
        raise SystemExit(f"--cases must be >= 1, got {args.cases}")
    paths = write_family_b_cases(args.out, args.cases, progress=not args.no_progress, preview=args.preview)
    logger.info("wrote %d family-B cases under %s", len(paths), args.out)
    return 0
